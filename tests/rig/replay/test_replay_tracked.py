"""A tracked trial of the twin, replayed at --speed max: the same frames, samples, poses, events.

The replay runs every process of a live trial (writer, cameras, DAQ, pose, triangulator, jump
detector) and completes the tracking after it, as `rig run` does; with the same model,
calibration and settings, /pose2d, /pose3d and /events must come out identical.

The replay with another calibration is one more tracked trial (every frame inferred again, about
a minute on 2 cores): marked slow. Only one pose model exists (the twin's), so the replay with
another model is not tested.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from replay_recordings import CAMERAS, CommandRun, run_command

from rig.calibration_record import group_from_attribute
from rig.replay.compare import Status, compare_trials
from tracking.camera_group import CameraGroup

pytestmark = pytest.mark.timeout(600)

CONTRACT = (
    *(f"/cameras/{camera}/{column}" for camera in CAMERAS for column in ("frames", "frame_id")),
    *(
        f"/cameras/{camera}/{column}"
        for camera in CAMERAS
        for column in ("trigger_index", "daq_sample_index", "t_device_ns")
    ),
    "/daq/analog",
    "/daq/trigger_line",
    "/daq/trigger_sample_index",
    *(f"/pose2d/{camera}" for camera in CAMERAS),
    "/pose3d/points",
    "/pose3d/trigger_index",
    "/pose3d/reprojection_error",
    "/pose3d/cameras_used",
    "/events",
)


def test_replay_at_max_speed_is_identical(
    tracked_recording: Path, tracked_replay: CommandRun
) -> None:
    assert tracked_replay.returncode == 0, (
        tracked_replay.stdout[-4000:] + tracked_replay.stderr[-3000:]
    )
    print(tracked_replay.stdout[-6000:])
    assert "IDENTICAL" in tracked_replay.stdout
    comparison = compare_trials(tracked_recording, tracked_replay.path)
    assert comparison.identical, comparison.differences
    for dataset in CONTRACT:
        assert comparison.row(dataset).status is Status.IDENTICAL, dataset
        assert f"{dataset} " in tracked_replay.stdout  # printed in the table
    for camera in CAMERAS:
        assert comparison.row(f"/cameras/{camera}/t_host_ns").status is Status.HOST_TIME
    with h5py.File(tracked_replay.path, "r") as replay:
        names = {name.decode() for name in replay["events"]["name"]}
        print(f"events: {sorted(names)}")
        # The detector found the crouch at least (a short trial starts close to it; a 3 s
        # trial, whose take-off, landing and jump numbers all come out identical, is in
        # docs/replay.md), so identical events say something.
        assert "crouch_onset" in names, names
        assert np.isfinite(replay["pose3d/points"][:]).any()
        assert replay.attrs["closed_cleanly"] == 1


def test_replay_records_what_it_replayed(
    tracked_recording: Path, tracked_replay: CommandRun
) -> None:
    with h5py.File(tracked_recording, "r") as original:
        trial_id = original.attrs["trial_id"]
        model = original["pose2d/cam_left"].attrs["model"]
    digest = hashlib.sha256(tracked_recording.read_bytes()).hexdigest()
    with h5py.File(tracked_replay.path, "r") as replay:
        attrs = dict(replay.attrs)
        assert attrs["replay_of"] == str(tracked_recording.resolve())
        assert attrs["replay_of_trial_id"] == trial_id
        assert attrs["replay_of_sha256"] == digest
        assert attrs["replay_speed"] == "max"
        assert attrs["replay_model"] == model
        assert attrs["replay_model_source"] == "recorded"
        assert attrs["replay_calibration"] == "twin"
        assert attrs["replay_calibration_source"] == "recorded"
        assert attrs["trial_id"] != trial_id
        assert "[trial]" in attrs["config"]
        assert 'source = "daq_counter"' in attrs["config"]


def perturbed_calibration(recording: Path, folder: Path) -> Path:
    """The recording's calibration with cam_left moved 3 mm: an anipose TOML file."""
    with h5py.File(recording, "r") as f:
        anipose_toml = str(f["calibration"].attrs["anipose_toml"])
    group = group_from_attribute(anipose_toml, str(recording))
    document = group.to_anipose()
    for entry in document.values():
        if isinstance(entry, dict) and entry.get("name") == "cam_left":
            entry["translation"] = [float(value) + 3.0 for value in entry["translation"]]
    path = folder / "moved_cam_left.toml"
    CameraGroup.from_anipose(document, source="test").save(path)
    return path


@pytest.mark.slow
def test_replay_with_another_calibration_changes_3d(
    tracked_recording: Path, tmp_path: Path
) -> None:
    calibration = perturbed_calibration(tracked_recording, tmp_path)
    output = tmp_path / "replays"
    result = run_command(
        "-m",
        "rig.cli",
        "replay",
        str(tracked_recording),
        "--calibration",
        str(calibration),
        "--output",
        str(output),
        "--compare",
    )
    # Different 3D poses: --compare reports them and exits 1.
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-3000:]
    (replay,) = output.glob("*.h5")
    comparison = compare_trials(tracked_recording, replay)
    print("\n".join(f"{row.dataset}: {row.status.value}" for row in comparison.differences))
    assert comparison.row("/pose3d/points").status is Status.DIFFERENT
    assert comparison.row("/calibration/cam_left/translation_mm").status is Status.DIFFERENT
    for dataset in ("/cameras/cam_left/frames", "/daq/analog", "/pose2d/cam_left"):
        assert comparison.row(dataset).status is Status.IDENTICAL, dataset
    with h5py.File(replay, "r") as f:
        assert f.attrs["replay_calibration"] == str(calibration.resolve())
        assert f.attrs["replay_calibration_source"] == "--calibration"
        assert f["calibration"].attrs["source"] == str(calibration.resolve())
        moved = f["calibration/cam_left/translation_mm"][:]
    with h5py.File(tracked_recording, "r") as f:
        np.testing.assert_allclose(moved, f["calibration/cam_left/translation_mm"][:] + 3.0)
