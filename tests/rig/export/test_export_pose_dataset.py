"""The trial's poses as movement datasets, on the DAQ's clock, and movement working on them."""

from __future__ import annotations

import numpy as np
import pytest
from movement.filtering import filter_by_confidence
from movement.kinematics import compute_velocity

from acquisition.sim.skeleton import BODY_PARTS
from rig.export import ExportError, to_movement_dataset
from tests.rig.export.export_trials import (
    FIRST_PULSE_SAMPLE,
    PULSE_PERIOD_SAMPLES,
    RATE_HZ,
    SUBJECT,
    SmallTrial,
)


def test_3d_poses_in_mm_at_their_pulses_times(small_trial: SmallTrial) -> None:
    dataset = to_movement_dataset(small_trial.path)
    assert dict(dataset.position.sizes) == {
        "time": small_trial.pose3d_trigger_index.size,
        "space": 3,
        "keypoints": len(BODY_PARTS),
        "individuals": 1,
    }
    assert list(dataset.space.values) == ["x", "y", "z"]
    assert list(dataset.individuals.values) == [SUBJECT]
    np.testing.assert_array_equal(
        dataset.position.values[:, :, :, 0].transpose(0, 2, 1), small_trial.pose3d_points
    )
    # Pulse 31 was never recorded: its time is estimated on the pulse line, not dropped.
    expected_times = (
        FIRST_PULSE_SAMPLE + PULSE_PERIOD_SAMPLES * small_trial.pose3d_trigger_index
    ) / RATE_HZ
    np.testing.assert_allclose(dataset.time.values, expected_times, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dataset.trigger_index.values, small_trial.pose3d_trigger_index)
    assert np.isnan(dataset.confidence.values).all()
    assert dataset.reprojection_error.shape == (small_trial.pose3d_trigger_index.size, 10, 1)
    assert (dataset.attrs["space_unit"], dataset.attrs["time_unit"]) == ("mm", "seconds")


def test_a_cameras_2d_poses_leave_out_frames_without_a_time(small_trial: SmallTrial) -> None:
    dataset = to_movement_dataset(small_trial.path, camera="cam_left")
    rows = [*range(30), 31, 32]  # row 30 has no pulse
    expected = small_trial.pose2d["cam_left"][rows]
    np.testing.assert_array_equal(
        dataset.position.values[:, :, :, 0].transpose(0, 2, 1), expected[:, :, :2]
    )
    np.testing.assert_array_equal(dataset.confidence.values[:, :, 0], expected[:, :, 2])
    assert dataset.attrs["space_unit"] == "pixels"
    filtered = filter_by_confidence(dataset.position, dataset.confidence, threshold=0.5)
    low = expected[:, :, 2] < 0.5
    assert np.isnan(filtered.values[:, 0, :, 0][low]).all()


def test_movement_computes_velocities_in_mm_per_s(small_trial: SmallTrial) -> None:
    dataset = to_movement_dataset(small_trial.path)
    velocity = compute_velocity(dataset.position)
    # Two consecutive regular rows: the central difference over the real time step.
    points = small_trial.pose3d_points
    step_s = PULSE_PERIOD_SAMPLES / RATE_HZ
    expected = (points[2, 0, 0] - points[0, 0, 0]) / (2 * step_s)
    assert float(velocity.sel(space="x", keypoints="nose").values[1, 0]) == pytest.approx(
        expected, rel=1e-5
    )


def test_missing_poses_or_cameras_are_named(
    small_trial: SmallTrial, untracked_trial: SmallTrial
) -> None:
    with pytest.raises(ExportError, match="no camera 'cam_side'"):
        to_movement_dataset(small_trial.path, camera="cam_side")
    with pytest.raises(ExportError, match="no 3D poses"):
        to_movement_dataset(untracked_trial.path)
    with pytest.raises(ExportError, match="no 2D poses"):
        to_movement_dataset(untracked_trial.path, camera="cam_left")
