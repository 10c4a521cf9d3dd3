"""A short recording without tracking, replayed through the whole pipeline.

It has frames a camera dropped (the twin's fault knob): the replay reproduces them as drops, so
the frame tables, the frames and the DAQ samples come out identical.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import pytest
from replay_recordings import CAMERAS, SMALL_DROPPED

from rig.replay.command import EXIT_FAILED, EXIT_OK, add_replay_arguments, replay_main
from rig.replay.compare import Status, compare_trials
from rig.replay.pacing import ReplaySpeed
from rig.replay.run import replay_trial

pytestmark = pytest.mark.timeout(300)


def replay_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rig replay")
    add_replay_arguments(parser)
    return parser.parse_args(list(argv))


def test_replay_reproduces_frames_drops_and_samples(small_recording: Path, tmp_path: Path) -> None:
    result = replay_trial(small_recording, output_dir=tmp_path, speed=ReplaySpeed.parse("max"))
    print(
        f"replayed {result.frames_written} frames in {result.wall_s:.1f} s "
        f"(first to last frame {result.frame_span_s} s, pace {result.pace}), "
        f"peak backlog {result.peak_backlog_frames}"
    )
    assert result.trial.completed, result.trial.end_reason
    assert result.frames_dropped == 0
    assert result.path.parent == tmp_path
    comparison = compare_trials(small_recording, result.path)
    assert comparison.identical, comparison.differences
    for camera in CAMERAS:
        for column in ("frames", "frame_id", "trigger_index", "daq_sample_index", "t_device_ns"):
            assert comparison.row(f"/cameras/{camera}/{column}").status is Status.IDENTICAL
    with h5py.File(result.path, "r") as replay:
        trigger_index = replay["cameras/cam_left/trigger_index"][:]
        assert not set(SMALL_DROPPED) & set(trigger_index.tolist())
        assert replay["cameras/cam_left"].attrs["frames_dropped"] == len(SMALL_DROPPED)
        np.testing.assert_array_equal(
            replay["cameras/cam_left/dropped_trigger_indices"][:], SMALL_DROPPED
        )
        assert replay["cameras/cam_right"].attrs["frames_dropped"] == 0
        # No new drops were injected: the twin's fault knobs are off in the replay's config.
        assert "drop_trigger_indices" not in replay.attrs["config"]
        assert replay.attrs["replay_speed"] == "max"
        assert replay.attrs["replay_tracking"] == 0
        assert replay.attrs["replay_model"] == ""


def test_paced_replay_and_compare_command(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = replay_main(
        replay_args(str(small_recording), "--speed", "2", "--output", str(tmp_path), "--compare")
    )
    out = capsys.readouterr().out
    print(out[-3000:])
    assert code == EXIT_OK
    assert "IDENTICAL" in out
    assert "/cameras/cam_left/frames" in out and "/daq/analog" in out
    (replay,) = tmp_path.glob("*.h5")
    with h5py.File(replay, "r") as f:
        assert f.attrs["replay_speed"] == "2"
    # The comparison alone, on two given files.
    assert replay_main(replay_args(str(small_recording), "--compare", str(replay))) == EXIT_OK


def test_compare_finds_a_changed_frame_and_sample(small_recording: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed.h5"
    changed.write_bytes(small_recording.read_bytes())
    with h5py.File(changed, "r+") as f:
        frame = f["cameras/cam_top/frames"][7]
        frame[10, 20] = frame[10, 20] ^ 0x10
        f["cameras/cam_top/frames"][7] = frame
        f["daq/analog"][123, 2] += 0.5
    comparison = compare_trials(small_recording, changed)
    assert not comparison.identical
    frames = comparison.row("/cameras/cam_top/frames")
    assert frames.status is Status.DIFFERENT
    assert frames.first_difference.startswith("frame 7, pixel (x 20, y 10)")
    assert frames.max_abs_difference == 16
    analog = comparison.row("/daq/analog")
    assert analog.status is Status.DIFFERENT
    assert analog.first_difference.startswith("at (123, 2)")
    assert analog.max_abs_difference == pytest.approx(0.5, abs=1e-5)
    assert comparison.row("/cameras/cam_left/frames").status is Status.IDENTICAL
    assert {row.dataset for row in comparison.differences} == {
        "/cameras/cam_top/frames",
        "/daq/analog",
    }


def test_compare_of_different_files_exits_1(
    small_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.h5"
    other.write_bytes(small_recording.read_bytes())
    with h5py.File(other, "r+") as f:
        f["daq/trigger_sample_index"][3] += 1
        f.create_dataset("extra/notes", data=np.zeros(2))
    code = replay_main(replay_args(str(small_recording), "--compare", str(other)))
    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    assert "DIFFERENT" in out
    assert "/extra/notes" in out and "only in the replay" in out
    assert "/daq/trigger_sample_index" in out and "at (3,)" in out
