"""Files a replay must refuse: each gives a message naming the file and the dataset, exit code 2,
and no replay (nothing is written), never a hang or a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import pytest

from rig.replay.command import EXIT_BAD_INPUT, add_replay_arguments, replay_main

pytestmark = pytest.mark.timeout(60)


def refuse(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Replay ``path``; asserts exit code 2 and that nothing was written; returns stderr."""
    parser = argparse.ArgumentParser(prog="rig replay")
    add_replay_arguments(parser)
    output = tmp_path / "replays"
    args = parser.parse_args([str(path), "--output", str(output), "--compare", *extra])
    code = replay_main(args)
    captured = capsys.readouterr()
    print(captured.err)
    assert code == EXIT_BAD_INPUT
    assert "Traceback" not in captured.err + captured.out
    assert not output.exists() or not list(output.iterdir())
    assert captured.err.startswith("rig replay: ")
    assert str(path) in captured.err
    return captured.err


def copy_of(recording: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "damaged.h5"
    copy.write_bytes(recording.read_bytes())
    return copy


def flip_byte_in_chunk(path: Path, dataset: str, chunk: tuple[int, ...]) -> None:
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info_by_coord(chunk)
    position = info.byte_offset + info.size // 2
    with path.open("r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x08]))


def test_truncated_file(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size * 2 // 3)
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /: truncated" in error


def test_bit_flip_in_a_frame_chunk(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    flip_byte_in_chunk(path, "/cameras/cam_front/frames", (9, 0, 0))
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /cameras/cam_front/frames: frame row 9 cannot be read" in error
    assert "checksum" in error


def test_bit_flip_in_a_daq_chunk(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    flip_byte_in_chunk(path, "/daq/analog", (0, 0))
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /daq/analog: rows 0.." in error
    assert "checksum" in error


def test_missing_dataset(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["cameras/cam_right/frame_id"]
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /cameras/cam_right/frame_id: required dataset is missing" in error


def test_newer_schema_version(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: / (attribute schema_version): the file has schema version 99" in error


def test_not_an_hdf5_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trial.h5"
    path.write_text("frame_id,trigger_index\n0,0\n1,1\n" * 200)
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /: not an HDF5 file" in error


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = refuse(tmp_path / "absent.h5", tmp_path, capsys)
    assert "no such file" in error


def test_file_without_its_config(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    with h5py.File(path, "r+") as f:
        del f.attrs["config"]
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: / (attribute config): missing" in error


def test_trigger_line_that_does_not_match_its_pulses(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_of(small_recording, tmp_path)
    with h5py.File(path, "r+") as f:
        pulses = f["daq/trigger_sample_index"][:]
        f["daq/trigger_line"][int(pulses[4])] = 0
    error = refuse(path, tmp_path, capsys)
    assert f"{path}: /daq/trigger_sample_index: does not match the rising edges" in error


def test_bad_speed(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="rig replay")
    add_replay_arguments(parser)
    args = parser.parse_args([str(small_recording), "--speed", "fast", "--output", str(tmp_path)])
    assert replay_main(args) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--speed must be realtime, max or a positive factor, got 'fast'" in error
    assert not list(tmp_path.iterdir())
