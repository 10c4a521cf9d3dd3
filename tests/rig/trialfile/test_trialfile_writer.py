"""TrialFileWriter: round trips through plain h5py, committed counters, pending pulses, finalize."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from trialfile_synthetic import CAMERAS, DAQ, ROOT_ATTRS, SyntheticTrial, create_writer

from acquisition.frame_codec import encode_frame_chunk
from rig.trialfile import layout
from rig.trialfile.writer import CameraLayout, DaqLayout, StreamLayout, TrialFileWriter

WriterFactory = Callable[..., TrialFileWriter]


def test_round_trip_through_plain_h5py(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    for block in range(synthetic.block_count):
        synthetic.write_block(writer, block)
        writer.flush()
    writer.finalize(closed_cleanly=True, end_reason="completed")

    with h5py.File(trial_path, "r") as h5file:
        for camera in CAMERAS:
            group = h5file[layout.camera_group(camera.name)]
            np.testing.assert_array_equal(group["frames"][:], synthetic.frames[camera.name])
            for column, expected in synthetic.columns[camera.name].items():
                np.testing.assert_array_equal(group[column][:], expected, err_msg=column)
                assert group[column].dtype == np.int64
        np.testing.assert_array_equal(h5file["/daq/analog"][:], synthetic.analog)
        assert h5file["/daq/analog"].dtype == np.float32
        np.testing.assert_array_equal(h5file["/daq/trigger_line"][:], synthetic.trigger_line)
        np.testing.assert_array_equal(h5file["/daq/trigger_sample_index"][:], synthetic.pulses)
        for path, rows in synthetic.stream_rows.items():
            np.testing.assert_array_equal(h5file[path][:], rows)
        analog_attrs = h5file["/daq/analog"].attrs
        assert analog_attrs["rate_hz"] == DAQ.rate_hz
        assert list(analog_attrs["channel_names"]) == list(DAQ.channel_names)
        assert list(analog_attrs["units"]) == list(DAQ.channel_units)
        assert list(analog_attrs["kinds"]) == list(DAQ.channel_kinds)
        assert h5file["/daq/trigger_line"].attrs["name"] == DAQ.trigger_line_name
        assert list(h5file["/cameras"].attrs["names"]) == [camera.name for camera in CAMERAS]
        assert h5file.attrs["schema_version"] == layout.SCHEMA_VERSION
        for key, value in ROOT_ATTRS.items():
            assert h5file.attrs[key] == value


def test_counters_advance_only_at_flush(
    open_writer: WriterFactory, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    synthetic.write_block(writer, 0)
    assert writer.frames_committed("cam_left") == 0
    assert writer.samples_committed() == 0
    assert writer.pulses_committed() == 0
    writer.flush(complete=True)
    assert writer.frames_committed("cam_left") == synthetic.frames_through(1)
    assert writer.frames_committed("cam_right") == synthetic.frames_through(1)
    assert writer.samples_committed() == synthetic.samples_through(1)
    assert writer.pulses_committed() == synthetic.frames_through(1)
    assert writer.rows_committed("/pose2d/cam_left") == synthetic.frames_through(1)
    synthetic.write_block(writer, 1)
    assert writer.frames_committed("cam_left") == synthetic.frames_through(1)


def test_live_flush_commits_whole_chunks_only(open_writer: WriterFactory, trial_path: Path) -> None:
    synthetic = SyntheticTrial(seed=3, block_count=13)  # 130 frames, 2600 samples
    writer = open_writer()
    for block in range(synthetic.block_count):
        synthetic.write_block(writer, block)
    writer.flush()
    paths = (
        "/cameras/cam_left/frame_id",
        "/daq/analog",
        "/daq/trigger_sample_index",
        "/pose2d/cam_left",
    )
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        chunk_rows = {path: h5file[path].chunks[0] for path in paths}
    frames, samples = synthetic.frames_through(13), synthetic.samples_through(13)

    def whole_chunks(rows: int, path: str) -> int:
        return rows // chunk_rows[path] * chunk_rows[path]

    assert writer.frames_committed("cam_left") == whole_chunks(frames, paths[0])
    assert writer.samples_committed() == whole_chunks(samples, paths[1])
    # Pulses are claimed only inside the claimed samples.
    pulses_in_samples = int(np.searchsorted(synthetic.pulses, writer.samples_committed()))
    assert writer.pulses_committed() == min(whole_chunks(frames, paths[2]), pulses_in_samples)
    assert writer.rows_committed(paths[3]) == whole_chunks(frames, paths[3])
    assert 0 < writer.frames_committed("cam_left") < frames
    assert 0 < writer.samples_committed() < samples
    writer.flush(complete=True)
    assert writer.frames_committed("cam_left") == frames
    assert writer.samples_committed() == samples
    assert writer.pulses_committed() == frames
    assert writer.rows_committed(paths[3]) == frames


def _append_frames(
    writer: TrialFileWriter,
    synthetic: SyntheticTrial,
    frames: range,
    cameras: tuple[str, ...] = ("cam_left", "cam_right"),
) -> None:
    for frame in frames:
        for camera in cameras:
            writer.append_frame(
                camera,
                encode_frame_chunk(synthetic.frames[camera][frame]),
                frame_id=frame,
                trigger_index=frame,
                t_host_ns=frame,
                t_device_ns=-1,
            )


def test_frames_wait_for_their_pulse_before_they_commit(
    open_writer: WriterFactory, trial_path: Path
) -> None:
    synthetic = SyntheticTrial(seed=4, block_count=7)
    writer = open_writer()
    # 70 frames arrive before the DAQ blocks holding their pulses: their rows wait in memory.
    _append_frames(writer, synthetic, range(70))
    writer.flush()
    assert writer.frames_committed("cam_left") == 0
    writer.append_daq(synthetic.analog[:1400], synthetic.trigger_line[:1400], synthetic.pulses[:70])
    writer.flush()
    assert writer.frames_committed("cam_left") == 64
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        np.testing.assert_array_equal(
            h5file["/cameras/cam_left/daq_sample_index"][:64], synthetic.pulses[:64]
        )


def test_late_pulses_are_filled_in_at_finalize(
    open_writer: WriterFactory, trial_path: Path
) -> None:
    synthetic = SyntheticTrial(seed=5, block_count=2)
    writer = open_writer()
    _append_frames(writer, synthetic, range(12))
    writer.append_daq(synthetic.analog[:200], synthetic.trigger_line[:200], synthetic.pulses[:10])
    # Frames 10 and 11 have no pulse yet: a complete flush writes them with -1 ...
    writer.flush(complete=True)
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        column = h5file["/cameras/cam_left/daq_sample_index"][:12]
    np.testing.assert_array_equal(column, [*synthetic.pulses[:10], -1, -1])
    # ... pulse 10 comes later and is filled in at finalize; pulse 11 never comes.
    writer.append_daq(
        synthetic.analog[200:220], synthetic.trigger_line[200:220], synthetic.pulses[10:11]
    )
    writer.finalize(closed_cleanly=True, end_reason="completed")
    with h5py.File(trial_path, "r") as h5file:
        left = h5file["/cameras/cam_left/daq_sample_index"][:]
        right = h5file["/cameras/cam_right/daq_sample_index"][:]
    np.testing.assert_array_equal(left, [*synthetic.pulses[:11], -1])
    np.testing.assert_array_equal(right, [*synthetic.pulses[:11], -1])


def test_frames_stop_waiting_for_a_pulse_that_does_not_come(
    open_writer: WriterFactory, trial_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rig.trialfile import writer as writer_module

    monkeypatch.setattr(writer_module, "PULSE_WAIT_NS", 0)
    synthetic = SyntheticTrial(seed=6, block_count=7)
    writer = open_writer()
    _append_frames(writer, synthetic, range(64), cameras=("cam_left",))
    writer.flush()  # the DAQ is silent: after PULSE_WAIT_NS the rows are written with -1
    assert writer.frames_committed("cam_left") == 64
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        assert (h5file["/cameras/cam_left/daq_sample_index"][:64] == -1).all()


def test_unknown_trigger_index_keeps_minus_one(
    open_writer: WriterFactory, trial_path: Path
) -> None:
    writer = open_writer()
    frame = np.full((48, 64), 7, dtype=np.uint8)
    writer.append_frame(
        "cam_left",
        encode_frame_chunk(frame),
        frame_id=0,
        trigger_index=-1,
        t_host_ns=1,
        t_device_ns=-1,
    )
    line = np.zeros(100, dtype=np.uint8)
    line[3:6] = 1
    writer.append_daq(np.zeros((100, 3), np.float32), line, np.array([3]))
    writer.finalize(closed_cleanly=True, end_reason="completed")
    with h5py.File(trial_path, "r") as h5file:
        assert h5file["/cameras/cam_left/daq_sample_index"][:].tolist() == [-1]


def test_finalize_trims_and_writes_closing_data(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    synthetic.write_block(writer, 0)
    writer.flush(complete=True)
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        # Grown in steps, not per row: the extent runs ahead of the committed rows.
        assert h5file["/cameras/cam_left/frames"].shape[0] > synthetic.frames_through(1)
        assert h5file.attrs["closed_cleanly"] == 0
    synthetic.write_block(writer, 1)
    truth = np.arange(20 * 10 * 3, dtype=np.float32).reshape(20, 10, 3)
    events = np.array(
        [(0, b"takeoff", 12, 247, 0.024), (1, b"landing", 19, 387, 0.038)],
        dtype=[
            ("event_number", "<i8"),
            ("name", "S32"),
            ("trigger_index", "<i8"),
            ("daq_sample_index", "<i8"),
            ("t_s", "<f8"),
        ],
    )
    writer.finalize(
        closed_cleanly=True,
        end_reason="completed",
        root_attrs={
            "accounting_balanced": True,
            "pulses_sent": 20,
            "closed_utc": "2025-01-01T12:01:00Z",
        },
        group_attrs={
            "/cameras/cam_left": {"frames_dropped": 3},
            "/calibration": {"format": "anipose"},
        },
        datasets={
            "/cameras/cam_left/dropped_trigger_indices": np.array([4, 9, 12], dtype=np.int64),
            "/sim/truth/points": truth,
            "/events/name": np.array(["take_off", "landing"]),
            "/events/table": events,
        },
    )
    writer.close()  # a no-op after finalize
    with h5py.File(trial_path, "r") as h5file:
        for path, dataset in _datasets(h5file).items():
            if path.startswith(("/cameras/", "/daq/", "/pose")) and "dropped" not in path:
                assert dataset.shape[0] == synthetic.frames_through(2) or dataset.shape[0] == (
                    synthetic.samples_through(2)
                ), path
        attrs = h5file.attrs
        assert attrs["closed_cleanly"] == 1
        assert attrs["end_reason"] == "completed"
        assert attrs["closed_utc"] == "2025-01-01T12:01:00Z"
        assert attrs["accounting_balanced"] == 1
        assert attrs["pulses_sent"] == 20
        left = h5file["/cameras/cam_left"]
        assert left.attrs["frames_dropped"] == 3
        assert left.attrs["frames_committed"] == synthetic.frames_through(2)
        assert h5file["/daq"].attrs["samples_committed"] == synthetic.samples_through(2)
        assert h5file["/daq"].attrs["pulses_committed"] == synthetic.frames_through(2)
        assert h5file["/calibration"].attrs["format"] == "anipose"
        np.testing.assert_array_equal(left["dropped_trigger_indices"][:], [4, 9, 12])
        np.testing.assert_array_equal(h5file["/sim/truth/points"][:], truth)
        assert [name.decode() for name in h5file["/events/name"][:]] == ["take_off", "landing"]
        np.testing.assert_array_equal(h5file["/events/table"][:], events)
        assert h5file["/events/table"].fletcher32
        committed = h5file["/commit/committed_rows"][:]
        assert committed.shape[0] == 2 and (committed[0] == committed[1]).all()
        assert committed.max() == synthetic.samples_through(2)
        flushes, last_flush_ns = h5file["/commit/flush_clock"][0]
        assert flushes == 2 and last_flush_ns > 0


def test_close_without_finalize_leaves_closed_cleanly_zero(
    open_writer: WriterFactory, trial_path: Path, synthetic: SyntheticTrial
) -> None:
    writer = open_writer()
    synthetic.write_block(writer, 0)
    writer.close()
    writer.close()
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        assert h5file.attrs["closed_cleanly"] == 0
        assert h5file.attrs["end_reason"] == ""
        names = [str(name) for name in h5file["/commit/committed_rows"].attrs["datasets"]]
        slots = h5file["/commit/committed_rows"][:]
        counts = dict(zip(names, slots.max(axis=0), strict=True))
    # close() flushed: everything appended is committed.
    assert counts["/cameras/cam_left/frames"] == synthetic.frames_through(1)
    assert counts["/daq/analog"] == synthetic.samples_through(1)
    with pytest.raises(RuntimeError, match="closed"):
        writer.flush()


def test_finalize_twice_raises(open_writer: WriterFactory) -> None:
    writer = open_writer()
    writer.finalize(closed_cleanly=False, end_reason="camera cam_left died")
    with pytest.raises(RuntimeError, match="finalized"):
        writer.finalize(closed_cleanly=True, end_reason="again")


def test_create_refuses_to_overwrite(trial_path: Path) -> None:
    trial_path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        create_writer(trial_path)
    assert trial_path.read_bytes() == b"precious"


def test_create_with_bad_layout_leaves_no_file(trial_path: Path) -> None:
    with pytest.raises(ValueError, match="schema_version"):
        create_writer(trial_path, root_attrs={"schema_version": 99})
    with pytest.raises(ValueError, match="attribute 'bad'"):
        create_writer(trial_path, root_attrs={"bad": object()})
    assert not trial_path.exists()


@pytest.mark.parametrize(
    "make_layout",
    [
        lambda: CameraLayout("cam left", 10, 10),
        lambda: CameraLayout("cam_left", 0, 10),
        lambda: DaqLayout(0.0, ("a",), ("V",), ("emg",), "trig"),
        lambda: DaqLayout(1000.0, ("a", "b"), ("V",), ("emg", "emg"), "trig"),
        lambda: DaqLayout(1000.0, (), (), (), "trig"),
        lambda: StreamLayout("pose2d/cam_left", (10, 3), "float32"),
        lambda: StreamLayout("/pose2d/cam_left", (10, 0), "float32"),
        lambda: StreamLayout("/pose2d/cam_left", (10, 3), "U8"),
    ],
)
def test_layouts_validate_at_the_boundary(make_layout: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make_layout()


def test_streams_may_not_overlap_owned_groups(trial_path: Path) -> None:
    with pytest.raises(ValueError, match="owns"):
        create_writer(trial_path, streams=[StreamLayout("/daq/extra", (3,), "float32")])
    with pytest.raises(ValueError, match="repeat"):
        create_writer(trial_path, cameras=[CAMERAS[0], CAMERAS[0]])


def test_append_validates_inputs(open_writer: WriterFactory, synthetic: SyntheticTrial) -> None:
    writer = open_writer()
    frame = encode_frame_chunk(synthetic.frames["cam_left"][0])
    with pytest.raises(KeyError, match="cam_middle"):
        writer.append_frame(
            "cam_middle", frame, frame_id=0, trigger_index=0, t_host_ns=0, t_device_ns=0
        )
    with pytest.raises(ValueError, match="bytes"):
        writer.append_frame(
            "cam_right", frame, frame_id=0, trigger_index=0, t_host_ns=0, t_device_ns=0
        )
    with pytest.raises(ValueError):
        writer.append_frame(
            "cam_left",
            b"not a chunk at all",
            frame_id=0,
            trigger_index=0,
            t_host_ns=0,
            t_device_ns=0,
        )
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        writer.append_daq(
            np.zeros((10, 2), np.float32), np.zeros(10, np.uint8), np.array([], np.int64)
        )
    with pytest.raises(ValueError, match="trigger_line"):
        writer.append_daq(
            np.zeros((10, 3), np.float32), np.zeros(9, np.uint8), np.array([], np.int64)
        )
    with pytest.raises(ValueError, match="0 and 1"):
        writer.append_daq(
            np.zeros((10, 3), np.float32), np.full(10, 2, np.uint8), np.array([], np.int64)
        )
    with pytest.raises(ValueError, match="this block"):
        writer.append_daq(np.zeros((10, 3), np.float32), np.zeros(10, np.uint8), np.array([10]))
    with pytest.raises(ValueError, match="increasing"):
        writer.append_daq(np.zeros((10, 3), np.float32), np.zeros(10, np.uint8), np.array([5, 5]))
    with pytest.raises(KeyError, match="not a declared stream"):
        writer.append_rows("/pose2d/cam_middle", np.zeros((1, 10, 3)))
    with pytest.raises(ValueError, match=r"\(n, 10, 3\)"):
        writer.append_rows("/pose2d/cam_left", np.zeros((1, 3, 10)))
    with pytest.raises(ValueError, match="cannot store"):
        writer.append_rows("/pose2d/cam_left", np.zeros((1, 10, 3), dtype=np.complex64))
    # Nothing half-appended: the file is still empty and consistent.
    writer.flush()
    assert writer.frames_committed("cam_left") == 0
    assert writer.samples_committed() == 0


def test_buffers_are_written_when_large_without_committing(
    open_writer: WriterFactory, trial_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rig.trialfile import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_BUFFERED_BYTES", 1024)
    writer = open_writer()
    samples = 3000  # DAQ chunks hold 1024 samples at 10 kHz
    writer.append_daq(
        np.ones((samples, 3), np.float32), np.zeros(samples, np.uint8), np.array([], np.int64)
    )
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        assert h5file["/daq/analog"].shape[0] == 2048  # whole chunks on disk already
        assert h5file["/commit/committed_rows"][:].max() == 0  # but not claimed
    assert writer.samples_committed() == 0
    writer.flush()
    assert writer.samples_committed() == 2048
    writer.flush(complete=True)
    assert writer.samples_committed() == samples


def test_writer_is_a_context_manager(trial_path: Path, synthetic: SyntheticTrial) -> None:
    with create_writer(trial_path) as writer:
        synthetic.write_block(writer, 0)
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        assert h5file["/commit/committed_rows"][:, 0].max() == synthetic.frames_through(1)


def _datasets(h5file: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    h5file.visititems(
        lambda name, item: (
            found.__setitem__("/" + name, item) if isinstance(item, h5py.Dataset) else None
        )
    )
    return found
