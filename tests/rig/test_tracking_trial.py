"""A trial with online tracking on the twin: 2D poses, 3D points, jump events, all in the file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest

from tests.rig.preview.chromium import HeadlessPage, wait_for_report
from tests.rig.trial_configs import rig, tracked_config_with
from tracking.jump_detection import detect_jumps, events_from_table, events_table
from tracking.jump_process import jump_channels, live_settings

CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")
PREVIEW_WINDOW = (1400, 1000)


@dataclass
class TrackedTrial:
    path: Path
    stdout: str
    # What the live preview showed in a headless Chromium while the trial ran.
    preview_report: dict[str, Any] | None
    preview_error: str
    screenshot: Path | None


def watch_preview(url: str, folder: Path) -> tuple[dict[str, Any] | None, str, Path | None]:
    """Open the preview in Chromium and wait until it has drawn every camera with its skeleton
    and the detected jump; returns the page's report, an error (or ""), a screenshot."""

    def complete(report: dict[str, Any]) -> bool:
        return (
            all(report["frames_drawn"].get(name, 0) >= 5 for name in CAMERAS)
            and all(report["skeletons_drawn"].get(name, 0) >= 1 for name in CAMERAS)
            and bool(report["jump_shown"])
        )

    try:
        with HeadlessPage(url, folder / "browser", PREVIEW_WINDOW) as page:
            report = wait_for_report(url, complete, timeout_s=300, page=page)
            shot = page.screenshot(folder / "preview.png")
        return report, "", shot
    except Exception as error:  # reported by the preview test, not by every test here
        return None, f"{type(error).__name__}: {error}", None


@pytest.fixture(scope="module")
def tracked_trial(tmp_path_factory: pytest.TempPathFactory) -> TrackedTrial:
    """The default rig, as `rig run --preview` uses it (tracking on), watched in a browser."""
    folder = tmp_path_factory.mktemp("tracked")
    config = tracked_config_with(folder, "")
    command = [sys.executable, "-m", "rig.cli", "run", "--config", str(config)]
    command += ["--duration-s", "2.6", "--output", str(folder), "--preview", "--preview-port", "0"]
    with (
        (folder / "stderr.txt").open("w") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as process,
    ):
        assert process.stdout is not None
        lines: list[str] = []
        url = ""
        for line in process.stdout:
            lines.append(line)
            if line.startswith("live preview: "):
                url = line.split(": ", 1)[1].strip()
                break
        # Keep reading the console while the browser watches, so the rig never blocks on it.
        reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
        reader.start()
        report, error, shot = watch_preview(url, folder) if url else (None, "no URL", None)
        returncode = process.wait(timeout=600)
        reader.join(timeout=10)
    stdout = "".join(lines)
    assert returncode == 0, stdout[-3000:] + (folder / "stderr.txt").read_text()[-3000:]
    (path,) = folder.glob("*.h5")
    return TrackedTrial(path, stdout, report, error, shot)


@pytest.mark.timeout(600)
def test_poses_are_complete_and_live_frames_recorded(tracked_trial: TrackedTrial) -> None:
    path = tracked_trial.path
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
def test_3d_error_against_truth(tracked_trial: TrackedTrial) -> None:
    path = tracked_trial.path
    with h5py.File(path, "r") as f:
        points = f["pose3d/points"][:]
        used = f["pose3d/cameras_used"][:].sum(axis=-1)
        truth = f["sim/truth/points"][:]
    error = np.linalg.norm(points - truth, axis=-1)[used >= 2]
    print(f"3D error: median {np.median(error):.2f} mm, p95 {np.percentile(error, 95):.2f} mm")
    assert np.median(error) <= 2.0


@pytest.mark.timeout(600)
def test_jump_events_match_the_twin(tracked_trial: TrackedTrial) -> None:
    path = tracked_trial.path
    with h5py.File(path, "r") as f:
        events = events_from_table(f["events"][:])
        truth = dict(f["sim/truth"].attrs)
    by_name = {event.name: event for event in events}
    assert abs(by_name["takeoff"].t_s - truth["takeoff_s"]) < 0.005
    assert abs(by_name["landing"].t_s - truth["landing_s"]) < 0.005
    assert abs(by_name["jump"].values["jump_height_mm"] - truth["jump_height_mm"]) < 2.0


@pytest.mark.timeout(600)
def test_inspect_reports_the_tracking(tracked_trial: TrackedTrial) -> None:
    path, stdout = tracked_trial.path, tracked_trial.stdout
    assert "3D error against the twin's truth" in stdout
    result = rig("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["tracking"]
    assert report["pose3d"]["error_vs_truth_mm"]["median"] <= 2.0
    assert report["pose3d"]["error_vs_truth_mm"]["p95"] > 0


@pytest.mark.timeout(600)
def test_live_events_match_the_twin_and_are_reproduced_offline(
    tracked_trial: TrackedTrial,
) -> None:
    path, stdout = tracked_trial.path, tracked_trial.stdout
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


@pytest.mark.timeout(600)
def test_the_preview_showed_the_cameras_skeletons_and_the_jump(
    tracked_trial: TrackedTrial,
) -> None:
    assert tracked_trial.preview_report is not None, tracked_trial.preview_error
    report = tracked_trial.preview_report
    print(
        f"preview: {report.get('updates_per_s')} updates/s; frames drawn "
        f"{report['frames_drawn']}; jump shown {report['jump_shown']}"
    )
    assert tracked_trial.screenshot is not None
    image = cv2.imread(str(tracked_trial.screenshot))
    assert image is not None and image.shape == (PREVIEW_WINDOW[1], PREVIEW_WINDOW[0], 3)
    assert float(image.std()) > 10.0  # camera views and panels, not a blank page
