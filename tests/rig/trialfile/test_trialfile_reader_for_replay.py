"""Reader methods the replay uses: stored frame chunks, the list of datasets, a full read check
that names the damaged dataset, and copying a group to another file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from trialfile_synthetic import SyntheticTrial

from acquisition.frame_codec import decode_frame_chunk, encode_frame_chunk
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
        datasets={"/sim/truth/points": np.ones((3, 10, 3), dtype=np.float32)},
        group_attrs={"/sim": {"seed": 7}},
    )
    return trial_path


def flip_byte(path: Path, dataset: str, chunk: tuple[int, ...]) -> None:
    with h5py.File(path, "r") as h5file:
        info = h5file[dataset].id.get_chunk_info_by_coord(chunk)
    position = info.byte_offset + info.size // 2
    with path.open("r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x10]))


def test_raw_frame_chunk_is_the_stored_chunk(finished_trial: Path) -> None:
    with open_trial(finished_trial) as trial:
        frames = trial.frames("cam_left")
        for row in (0, frames.shape[0] - 1):
            mask, chunk = trial.raw_frame_chunk("cam_left", row)
            assert mask == 0
            assert chunk == encode_frame_chunk(frames[row])
            np.testing.assert_array_equal(decode_frame_chunk(chunk, 48, 64), frames[row])
        with pytest.raises(IndexError, match="committed rows"):
            trial.raw_frame_chunk("cam_left", frames.shape[0])
        with pytest.raises(KeyError):
            trial.raw_frame_chunk("cam_top", 0)


def test_dataset_paths_lists_every_dataset(finished_trial: Path) -> None:
    with open_trial(finished_trial) as trial:
        paths = trial.dataset_paths()
    assert "/cameras/cam_left/frames" in paths
    assert "/daq/analog" in paths
    assert "/pose2d/cam_left" in paths
    assert "/sim/truth/points" in paths
    assert all(path.startswith("/") for path in paths)
    assert paths == sorted(paths)


def test_check_readable_passes_a_sound_file(finished_trial: Path) -> None:
    with open_trial(finished_trial) as trial:
        for path in trial.dataset_paths():
            trial.check_readable(path)


def test_check_readable_names_a_damaged_frame(finished_trial: Path) -> None:
    flip_byte(finished_trial, "/cameras/cam_right/frames", (4, 0, 0))
    with open_trial(finished_trial) as trial:
        trial.check_readable("/cameras/cam_left/frames")
        with pytest.raises(TrialFileError) as raised:
            trial.check_readable("/cameras/cam_right/frames")
    assert raised.value.dataset == "/cameras/cam_right/frames"
    assert "frame row 4 cannot be read" in str(raised.value)
    assert str(finished_trial) in str(raised.value)


def test_check_readable_names_a_damaged_daq_chunk(finished_trial: Path) -> None:
    flip_byte(finished_trial, "/daq/analog", (0, 0))
    with open_trial(finished_trial) as trial, pytest.raises(TrialFileError) as raised:
        trial.check_readable("/daq/analog")
    assert raised.value.dataset == "/daq/analog"
    assert "cannot be read" in str(raised.value)


def test_copy_object_copies_a_group_with_its_attributes(
    finished_trial: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "copy.h5"
    with open_trial(finished_trial) as trial, h5py.File(destination, "w") as output:
        trial.copy_object("/sim", output, "/sim")
        with pytest.raises(TrialFileError, match="no such group or dataset"):
            trial.copy_object("/absent", output, "/absent")
    with h5py.File(destination, "r") as copied:
        assert copied["sim"].attrs["seed"] == 7
        np.testing.assert_array_equal(copied["sim/truth/points"][:], np.ones((3, 10, 3)))
