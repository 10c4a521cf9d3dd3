"""A trial with online tracking on the twin: 2D poses, 3D points, jump events, all in the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rig.config import DEFAULT_CONFIG_PATH
from tracking.jump_detection import events_from_table

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tracking" / "models" / "twin"
CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")


def rig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def tracked_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("tracked")
    config = folder / "tracked.toml"
    # The default rig, as `rig run` uses it (tracking on), moved next to the trial.
    text = DEFAULT_CONFIG_PATH.read_text().replace(
        'model = "../tracking/models/twin"', f'model = "{MODEL}"'
    )
    assert f'model = "{MODEL}"' in text and "enabled = true" in text
    config.write_text(text)
    result = rig("run", "--config", str(config), "--duration-s", "2.6", "--output", str(folder))
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
