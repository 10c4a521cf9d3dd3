"""A trial with online tracking on the twin: 2D poses, 3D points, jump events, all in the file."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.rig.trial_configs import rig, tracked_config_with
from tracking.jump_detection import detect_jumps, events_from_table, events_table
from tracking.jump_process import jump_channels, live_settings

CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")


@pytest.fixture(scope="module")
def tracked_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("tracked")
    # The default rig, as `rig run` uses it (tracking on).
    config = tracked_config_with(folder, "")
    result = rig(
        "run",
        "--config",
        str(config),
        "--duration-s",
        "2.6",
        "--output",
        str(folder),
        timeout_s=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = folder.glob("*.h5")
    return path, result.stdout


@pytest.mark.timeout(600)
def test_poses_are_complete_and_live_frames_recorded(tracked_trial: tuple[Path, str]) -> None:
    path, _ = tracked_trial
    with h5py.File(path, "r") as f:
        pulses = f["daq/trigger_sample_index"].shape[0]
        for camera in CAMERAS:
            poses = f[f"pose2d/{camera}"][:]
            assert poses.shape == (f[f"cameras/{camera}/frames"].shape[0], 10, 3)
            assert np.isfinite(poses).all()  # completed after the trial
            live = f[f"tracking/inferred_live/{camera}"][:]
            assert live.shape == (poses.shape[0],) and live.dtype == bool
        assert f["pose3d/points"].shape == (pulses, 10, 3)
        assert f["pose3d/reprojection_error"].shape == (pulses, 10)
        assert f["pose3d/cameras_used"].shape == (pulses, 10, 4)
        np.testing.assert_array_equal(f["pose3d/trigger_index"][:], np.arange(pulses))


@pytest.mark.timeout(600)
def test_3d_error_against_truth(tracked_trial: tuple[Path, str]) -> None:
    path, _ = tracked_trial
    with h5py.File(path, "r") as f:
        points = f["pose3d/points"][:]
        used = f["pose3d/cameras_used"][:].sum(axis=-1)
        truth = f["sim/truth/points"][:]
    error = np.linalg.norm(points - truth, axis=-1)[used >= 2]
    print(f"3D error: median {np.median(error):.2f} mm, p95 {np.percentile(error, 95):.2f} mm")
    assert np.median(error) <= 2.0


@pytest.mark.timeout(600)
def test_jump_events_match_the_twin(tracked_trial: tuple[Path, str]) -> None:
    path, _ = tracked_trial
    with h5py.File(path, "r") as f:
        events = events_from_table(f["events"][:])
        truth = dict(f["sim/truth"].attrs)
    by_name = {event.name: event for event in events}
    assert abs(by_name["takeoff"].t_s - truth["takeoff_s"]) < 0.005
    assert abs(by_name["landing"].t_s - truth["landing_s"]) < 0.005
    assert abs(by_name["jump"].values["jump_height_mm"] - truth["jump_height_mm"]) < 2.0


@pytest.mark.timeout(600)
def test_inspect_reports_the_tracking(tracked_trial: tuple[Path, str]) -> None:
    path, stdout = tracked_trial
    assert "3D error against the twin's truth" in stdout
    result = rig("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["tracking"]
    assert report["pose3d"]["error_vs_truth_mm"]["median"] <= 2.0
    assert report["pose3d"]["error_vs_truth_mm"]["p95"] > 0


@pytest.mark.timeout(600)
def test_live_events_match_the_twin_and_are_reproduced_offline(
    tracked_trial: tuple[Path, str],
) -> None:
    path, stdout = tracked_trial
    with h5py.File(path, "r") as f:
        live_table = f["tracking_live/events"][:]
        assert f["tracking_live/events"].attrs["live_problem"] == ""
        assert f["events"].attrs["source"] == "offline, complete 3D poses"
        analog = f["daq/analog"]
        channels = jump_channels(
            [str(name) for name in analog.attrs["channel_names"]],
            [str(kind) for kind in analog.attrs["kinds"]],
        )
        assert channels is not None
        used = f["tracking_live/jump_pose3d_used"][:]
        live_index = f["tracking_live/pose3d/trigger_index"][:]
        taken = np.isin(live_index, used)
        assert np.unique(live_index).size == live_index.size  # one live 3D row per index
        offline = detect_jumps(
            analog[:],
            float(analog.attrs["rate_hz"]),
            f["daq/trigger_sample_index"][:],
            f["tracking_live/pose3d/points"][:][taken],
            live_index[taken],
            settings=live_settings(),
            force_channels=channels.force,
            emg_channels=channels.emg,
            body_parts=[str(part) for part in f["sim/truth"].attrs["body_parts"]],
        )
        truth = dict(f["sim/truth"].attrs)
    # The same detector code, fed offline what the live one took in time: the same events.
    assert events_table(offline).tobytes() == live_table.tobytes()
    live = {event.name: event for event in events_from_table(live_table)}
    assert abs(live["takeoff"].t_s - truth["takeoff_s"]) < 0.005
    assert abs(live["landing"].t_s - truth["landing_s"]) < 0.005
    print(f"live 3D poses the detector took in time: {used.size} of {live_index.size}")
    # The console showed the jump as it happened.
    assert "JUMP 1: take-off at" in stdout
