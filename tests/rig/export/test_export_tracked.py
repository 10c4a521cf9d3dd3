"""Every export of a default simulated trial with tracking, recorded through `rig run`: the NWB
file as `rig export nwb FILE` writes it by default (videos referenced) passes nwbinspector with
no critical finding and reads back equal to the trial file; DeepLabCut tables load in movement;
the 3D poses make a movement dataset whose speeds match the twin's truth; the trial's
calibration projects alike in aniposelib."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter of the trial's frames)
import numpy as np
import pytest
from movement.io import load_poses
from movement.kinematics import compute_velocity
from pynwb import NWBHDF5IO

from rig.export import export_dlc, read_trial_contents, to_movement_dataset
from rig.export.command import EXIT_OK, add_export_parser
from rig.export.video_files import read_video
from tests.rig.export.conftest import TRACKED_TRIAL_TIMEOUT_S
from tests.rig.export.nwb_checks import inspector_findings, serious

pytestmark = pytest.mark.timeout(TRACKED_TRIAL_TIMEOUT_S)


@pytest.fixture(scope="module")
def tracked_export(tracked_trial: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rig export nwb FILE --output OUT` with every default."""
    output = tmp_path_factory.mktemp("tracked_nwb") / "trial.nwb"
    parser = argparse.ArgumentParser(prog="rig")
    add_export_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "nwb", str(tracked_trial), "--output", str(output)])
    started_s = time.perf_counter()
    assert args.handler(args) == EXIT_OK
    elapsed_s = time.perf_counter() - started_s
    print(f"tracked trial exported to NWB (videos referenced) in {elapsed_s:.1f} s")
    return output


@pytest.fixture(scope="module")
def nwbfile(tracked_export: Path) -> Iterator[Any]:
    with NWBHDF5IO(str(tracked_export), "r") as io:
        yield io.read()


@pytest.fixture(scope="module")
def trial(tracked_trial: Path) -> Iterator[h5py.File]:
    with h5py.File(tracked_trial, "r") as h5file:
        yield h5file


def test_the_default_export_has_no_critical_finding(tracked_export: Path) -> None:
    assert serious(inspector_findings(tracked_export)) == []


def test_3d_poses_read_back_equal_in_mm(nwbfile: Any, trial: h5py.File) -> None:
    points = trial["/pose3d/points"][:]
    trigger_index = trial["/pose3d/trigger_index"][:]
    parts = [str(part) for part in trial["/pose3d/points"].attrs["body_parts"]]
    rate_hz = float(trial["/daq/analog"].attrs["rate_hz"])
    pulses = trial["/daq/trigger_sample_index"][:]
    container = nwbfile.processing["behavior"]["MultiCameraPoseEstimation"]
    assert points.shape[0] > 400 and not np.isnan(points).all()
    for index, part in enumerate(parts):
        series = container.pose_estimation_series[part]
        np.testing.assert_array_equal(series.data[:], points[:, index, :])
        assert series.unit == "millimeters"
    np.testing.assert_allclose(
        container.pose_estimation_series[parts[0]].get_timestamps(),
        pulses[trigger_index] / rate_hz,
        rtol=0,
        atol=1e-9,
    )
    np.testing.assert_array_equal(
        nwbfile.processing["behavior"]["reprojection_error"].data[:],
        trial["/pose3d/reprojection_error"][:],
    )


def test_2d_poses_emg_and_force_read_back_equal(nwbfile: Any, trial: h5py.File) -> None:
    container = nwbfile.processing["behavior"]["MultiCameraPoseEstimation"]
    for camera in trial["/cameras"].attrs["names"]:
        expected = trial[f"/pose2d/{camera}"][:]
        estimation = container.pose_estimations[camera]
        assert estimation.device.neurodata_type == "CalibratedCamera"
        nose = estimation.pose_estimation_series["nose"]
        np.testing.assert_array_equal(nose.data[:], expected[:, 0, :2])
        np.testing.assert_array_equal(nose.confidence[:], expected[:, 0, 2])
    analog = trial["/daq/analog"]
    kinds = np.array([str(kind) for kind in analog.attrs["kinds"]])
    np.testing.assert_array_equal(nwbfile.acquisition["emg"].data[:], analog[:, kinds == "emg"])
    np.testing.assert_array_equal(nwbfile.acquisition["force"].data[:], analog[:, kinds == "force"])


def test_the_jump_is_on_the_sessions_clock(nwbfile: Any, trial: h5py.File) -> None:
    jumps = nwbfile.intervals["jumps"].to_dataframe()
    assert len(jumps) == 1
    pulse0_s = trial["/daq/trigger_sample_index"][0] / float(trial["/daq"].attrs["rate_hz"])
    truth = trial["/sim/truth"].attrs
    takeoff_s = float(jumps["takeoff_time"].iloc[0])
    print(f"take-off at {takeoff_s:.4f} s; the twin's at {pulse0_s + truth['takeoff_s']:.4f} s")
    # The detector finds the take-off within a few samples of the truth (docs/jump-detection.md).
    assert takeoff_s == pytest.approx(pulse0_s + truth["takeoff_s"], abs=0.005)
    assert jumps["start_time"].iloc[0] < takeoff_s < jumps["stop_time"].iloc[0]


def test_a_referenced_video_is_the_cameras_frames(
    nwbfile: Any, tracked_export: Path, trial: h5py.File
) -> None:
    series = nwbfile.acquisition["video_cam_top"]
    frames = read_video(tracked_export.parent / series.external_file[0])
    np.testing.assert_array_equal(frames, trial["/cameras/cam_top/frames"][:])


def test_dlc_tables_of_every_camera_load_in_movement(
    tracked_trial: Path, trial: h5py.File, tmp_path: Path
) -> None:
    exports = export_dlc(tracked_trial, tmp_path)
    assert len(exports) == len(trial["/cameras"].attrs["names"])
    for export in exports:
        dataset = load_poses.from_dlc_file(export.h5_path, fps=200.0)
        expected = trial[f"/pose2d/{export.camera}"][:]
        position = dataset.position.values[:, :, :, 0].transpose(0, 2, 1)
        np.testing.assert_array_equal(position, expected[:, :, :2])
        np.testing.assert_array_equal(dataset.confidence.values[:, :, 0], expected[:, :, 2])


def test_movement_finds_the_twins_takeoff_speed(tracked_trial: Path, trial: h5py.File) -> None:
    dataset = to_movement_dataset(tracked_trial)
    np.testing.assert_array_equal(
        dataset.position.values[:, :, :, 0].transpose(0, 2, 1), trial["/pose3d/points"][:]
    )
    speed = np.sqrt((compute_velocity(dataset.position) ** 2).sum("space"))
    pulse0_s = trial["/daq/trigger_sample_index"][0] / float(trial["/daq"].attrs["rate_hz"])
    truth = trial["/sim/truth"].attrs
    hip = speed.sel(keypoints="hip").isel(individuals=0)
    at_takeoff = float(hip.sel(time=pulse0_s + truth["takeoff_s"], method="nearest"))
    expected = truth["takeoff_speed_mm_per_s"]
    print(f"hip speed at take-off {at_takeoff:.0f} mm/s; the twin's {expected:.0f} mm/s")
    assert at_takeoff == pytest.approx(expected, rel=0.15)


def test_the_trials_calibration_projects_alike_in_aniposelib(
    tracked_trial: Path, trial: h5py.File, tmp_path: Path
) -> None:
    anipose = pytest.importorskip("aniposelib.cameras")
    group = read_trial_contents(tracked_trial).calibration
    assert group is not None
    path = tmp_path / "calibration.toml"
    group.save(path)
    theirs = anipose.CameraGroup.load(str(path))
    points = trial["/pose3d/points"][:].reshape(-1, 3).astype(np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    expected = group.project(points)
    projected = np.asarray(theirs.project(points)).reshape(expected.shape)
    assert np.abs(projected - expected).max() < 1e-6
    # And they land where cam_left saw the body parts: its 2D poses of the same pulses.
    pose_pulses = trial["/pose3d/trigger_index"][:]
    frame_pulses = trial["/cameras/cam_left/trigger_index"][:]
    shared = np.intersect1d(pose_pulses, frame_pulses)
    points_3d = trial["/pose3d/points"][:][np.searchsorted(pose_pulses, shared)]
    seen = trial["/pose2d/cam_left"][:][np.searchsorted(frame_pulses, shared), :, :2]
    finite = np.isfinite(points_3d).all(axis=2) & np.isfinite(seen).all(axis=2)
    reprojected = np.asarray(theirs.project(points_3d[finite].astype(np.float64)))
    reprojected = reprojected.reshape(len(group), -1, 2)[group.index("cam_left")]
    error = np.linalg.norm(reprojected - seen[finite], axis=1)
    print(f"cam_left reprojection through aniposelib: median {np.median(error):.2f} px")
    assert np.median(error) < 3.0
