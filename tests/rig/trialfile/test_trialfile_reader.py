"""Reader: committed rows only, damaged and foreign files raise TrialFileError naming the place."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from trialfile_synthetic import CAMERAS, DAQ, SyntheticTrial

from acquisition.frame_codec import encode_frame_chunk
from rig.trialfile import layout, reader
from rig.trialfile.reader import TrialFileError, open_trial
from rig.trialfile.writer import TrialFileWriter

WriterFactory = Callable[..., TrialFileWriter]


@pytest.fixture
def finished_trial(open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial) -> Path:
    writer = open_writer()
    for block in range(synthetic.block_count):
        synthetic.write_block(writer, block)
        writer.flush()
    writer.finalize(
        closed_cleanly=True,
        end_reason="completed",
        group_attrs={"/cameras/cam_left": {"frames_dropped": 0}},
    )
    return trial_path


def test_reader_returns_what_was_written(finished_trial: Path, synthetic: SyntheticTrial) -> None:
    with open_trial(finished_trial) as trial:
        assert trial.schema_version == layout.SCHEMA_VERSION
        assert trial.closed_cleanly is True
        assert trial.end_reason == "completed"
        assert trial.camera_names == tuple(camera.name for camera in CAMERAS)
        assert trial.daq_rate_hz == DAQ.rate_hz
        assert trial.daq_channel_names == DAQ.channel_names
        assert trial.attrs["trial_id"] == "trial_0001"
        for camera in CAMERAS:
            np.testing.assert_array_equal(trial.frames(camera.name), synthetic.frames[camera.name])
            np.testing.assert_array_equal(
                trial.frames(camera.name, 3, 7), synthetic.frames[camera.name][3:7]
            )
            table = trial.frame_table(camera.name)
            for column, expected in synthetic.columns[camera.name].items():
                np.testing.assert_array_equal(table[column], expected)
        np.testing.assert_array_equal(trial.daq_analog(), synthetic.analog)
        np.testing.assert_array_equal(trial.daq_trigger_line(), synthetic.trigger_line)
        np.testing.assert_array_equal(trial.trigger_sample_index(), synthetic.pulses)
        np.testing.assert_array_equal(
            trial.read("/pose3d/points"), synthetic.stream_rows["/pose3d/points"]
        )
        np.testing.assert_array_equal(
            trial.read("pose2d/cam_left"), synthetic.stream_rows["/pose2d/cam_left"]
        )
        assert trial.verify() == []


def test_reader_trusts_counters_over_dataset_sizes(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    synthetic.write_block(writer, 0)
    writer.flush(complete=True)
    synthetic.write_block(writer, 1)
    # Written to HDF5 but never committed: the reader must not return these rows.
    writer._analog.write_pending(complete=True)
    writer._h5file().flush()
    with open_trial(trial_path) as trial:
        assert trial.opened_in_swmr_mode
        assert trial.frames("cam_left").shape[0] == synthetic.frames_through(1)
        assert trial.daq_analog().shape[0] == synthetic.samples_through(1)
        np.testing.assert_array_equal(
            trial.daq_analog(), synthetic.analog[: synthetic.samples_through(1)]
        )
        assert trial.read("/pose2d/cam_left").shape[0] == synthetic.frames_through(1)
        assert trial.committed_rows("/cameras/cam_left/frames") == synthetic.frames_through(1)
        assert trial.committed_rows("/sim/truth/points") is None
        problems = trial.verify()
    assert any("not closed cleanly" in problem for problem in problems)


def test_summary_is_json_and_describes_the_trial(
    finished_trial: Path, synthetic: SyntheticTrial
) -> None:
    with open_trial(finished_trial) as trial:
        summary = trial.summary()
    text = json.dumps(summary)  # must not raise
    assert json.loads(text) == summary
    assert summary["trial_id"] == "trial_0001"
    assert summary["subject"] == "mouse_07"
    assert summary["closed_cleanly"] is True
    assert summary["duration_s"] == pytest.approx(synthetic.sample_count / DAQ.rate_hz)
    assert summary["daq"]["samples"] == synthetic.sample_count
    assert summary["daq"]["channels"] == list(DAQ.channel_names)
    assert summary["pulses"]["count"] == synthetic.pulse_count
    assert summary["pulses"]["spacing_samples_min"] == 20
    assert summary["pulses"]["spacing_samples_max"] == 20
    left = summary["cameras"]["cam_left"]
    assert left["frames"] == synthetic.pulse_count
    assert left["frames_dropped"] == 0
    assert summary["cameras"]["cam_right"]["frames_dropped"] is None  # not given at finalize
    assert left["first_trigger_index"] == 0
    assert left["last_trigger_index"] == synthetic.pulse_count - 1
    assert left["frame_ids_contiguous"] is True
    assert left["trigger_indices_contiguous"] is True
    assert left["pulses_without_frame"] == 0
    assert left["compression_ratio"] > 1.0
    assert summary["file_size_bytes"] == finished_trial.stat().st_size
    print(f"\nsummary: {text}")


def test_drops_show_in_summary_and_verify(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    line = synthetic.trigger_line[:200]
    writer.append_daq(synthetic.analog[:200], line, synthetic.pulses[:10])
    for frame in (0, 1, 2, 4, 5, 6, 7, 8, 9):  # the camera missed pulse 3 and did not know
        writer.append_frame(
            "cam_left",
            encode_frame_chunk(synthetic.frames["cam_left"][frame]),
            frame_id=frame - (frame > 3),
            trigger_index=frame,
            t_host_ns=frame,
            t_device_ns=-1,
        )
    writer.finalize(closed_cleanly=True, end_reason="completed")
    with open_trial(trial_path) as trial:
        left = trial.summary()["cameras"]["cam_left"]
        problems = trial.verify()
    assert left["pulses_without_frame"] == 1
    assert left["trigger_indices_contiguous"] is False
    assert left["frame_ids_contiguous"] is True
    assert any("/cameras/cam_left/trigger_index: not contiguous" in problem for problem in problems)
    assert not any("frame_id" in problem for problem in problems)


def test_corrupted_frame_chunk_names_dataset_and_row(finished_trial: Path) -> None:
    damaged_row = 6
    with h5py.File(finished_trial, "r") as h5file:
        info = h5file["/cameras/cam_right/frames"].id.get_chunk_info_by_coord((damaged_row, 0, 0))
    with finished_trial.open("r+b") as handle:
        position = info.byte_offset + info.size // 2
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x04]))
    with open_trial(finished_trial) as trial:
        np.testing.assert_array_equal(
            trial.frames("cam_right", 0, damaged_row).shape, (damaged_row, 40, 56)
        )
        with pytest.raises(TrialFileError) as raised:
            trial.frames("cam_right")
        assert raised.value.dataset == "/cameras/cam_right/frames"
        assert f"frame row {damaged_row}" in str(raised.value)
        assert str(finished_trial) in str(raised.value)
        problems = trial.verify()
        trial.frames("cam_left")  # other cameras are unaffected
    assert any(
        "/cameras/cam_right/frames" in problem and f"row {damaged_row}" in problem
        for problem in problems
    )


def test_corrupted_daq_chunk_is_an_error(finished_trial: Path) -> None:
    with h5py.File(finished_trial, "r") as h5file:
        info = h5file["/daq/analog"].id.get_chunk_info(0)
    with finished_trial.open("r+b") as handle:
        handle.seek(info.byte_offset + 100)
        byte = handle.read(1)[0]
        handle.seek(info.byte_offset + 100)
        handle.write(bytes([byte ^ 0x80]))
    with open_trial(finished_trial) as trial, pytest.raises(TrialFileError) as raised:
        trial.daq_analog()
    assert raised.value.dataset == "/daq/analog"


def test_not_hdf5_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("this is a text file, not a trial\n" * 100)
    with pytest.raises(TrialFileError, match="not an HDF5 file") as raised:
        open_trial(path)
    assert raised.value.path == str(path)
    assert raised.value.dataset == "/"


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TrialFileError, match="no such file"):
        open_trial(tmp_path / "absent.h5")


def test_truncated_file_raises(finished_trial: Path) -> None:
    size = finished_trial.stat().st_size
    with finished_trial.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(TrialFileError) as raised, open_trial(finished_trial) as trial:
        trial.verify()
    assert raised.value.path == str(finished_trial)
    print(f"\ntruncated: {raised.value}")


def test_newer_schema_version_raises(finished_trial: Path) -> None:
    with h5py.File(finished_trial, "r+") as h5file:
        h5file.attrs["schema_version"] = np.int64(layout.SCHEMA_VERSION + 1)
    with pytest.raises(TrialFileError, match="schema version 2") as raised:
        open_trial(finished_trial)
    assert "schema_version" in raised.value.dataset


def test_missing_schema_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5file:
        h5file["data"] = np.arange(3)
    with pytest.raises(TrialFileError, match="not a trial file"):
        open_trial(path)


@pytest.mark.parametrize(
    "removed",
    ["/cameras/cam_left/trigger_index", "/daq/trigger_sample_index", "/commit/committed_rows"],
)
def test_missing_required_dataset_raises(finished_trial: Path, removed: str) -> None:
    with h5py.File(finished_trial, "r+") as h5file:
        del h5file[removed]
    with pytest.raises(TrialFileError) as raised:
        open_trial(finished_trial)
    assert raised.value.dataset == removed
    assert removed in str(raised.value)


def test_open_gives_up_on_a_stalled_file_system(
    finished_trial: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()

    def stalled_check(path: Path) -> None:
        released.wait(5.0)

    monkeypatch.setattr(reader, "_check_file_bytes", stalled_check)
    started_s = time.monotonic()
    with pytest.raises(TrialFileError, match=r"within 0\.2 s"):
        open_trial(finished_trial, timeout_s=0.2)
    print(f"\ngave up after {time.monotonic() - started_s:.3f} s")
    released.set()


def test_truncated_crashed_file_raises_instead_of_hanging(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial, tmp_path: Path
) -> None:
    writer = open_writer()
    for block in range(3):
        synthetic.write_block(writer, block)
        writer.flush()
    snapshot = tmp_path / "crashed.h5"  # the bytes a crash would leave: still marked open
    shutil.copyfile(trial_path, snapshot)
    with snapshot.open("r+b") as handle:
        handle.truncate(snapshot.stat().st_size * 2 // 3)
    with pytest.raises(TrialFileError, match="truncated") as raised:
        open_trial(snapshot)
    assert raised.value.dataset == "/"


def test_damaged_metadata_of_crashed_file_fails_fast(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial, tmp_path: Path
) -> None:
    """SWMR readers retry bad metadata with a doubling sleep; the reader must bound that."""
    writer = open_writer()
    for block in range(3):
        synthetic.write_block(writer, block)
        writer.flush()
    snapshot = tmp_path / "crashed.h5"
    shutil.copyfile(trial_path, snapshot)
    with h5py.File(snapshot, "r", swmr=True) as h5file:
        # The object header of a per-frame column: metadata with a checksum.
        header_address = h5py.h5o.get_info(h5file["/cameras/cam_left/trigger_index"].id).addr
    with snapshot.open("r+b") as handle:
        handle.seek(header_address + 12)
        byte = handle.read(1)[0]
        handle.seek(header_address + 12)
        handle.write(bytes([byte ^ 0x01]))
    started_s = time.monotonic()
    with pytest.raises(TrialFileError) as raised, open_trial(snapshot) as trial:
        trial.frame_table("cam_left")
    elapsed_s = time.monotonic() - started_s
    print(f"\ndamaged metadata reported after {elapsed_s:.3f} s: {raised.value}")
    assert "trigger_index" in str(raised.value)


def test_read_rejects_unknown_paths(finished_trial: Path) -> None:
    with open_trial(finished_trial) as trial:
        with pytest.raises(TrialFileError, match="no such dataset") as raised:
            trial.read("/pose2d/cam_middle")
        assert raised.value.dataset == "/pose2d/cam_middle"
        with pytest.raises(TrialFileError, match="group"):
            trial.read("/cameras")
        with pytest.raises(KeyError):
            trial.frames("cam_middle")
