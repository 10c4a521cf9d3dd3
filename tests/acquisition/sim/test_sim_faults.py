"""The twin's fault knobs: reproducible decisions, and limb switching as a mirror image."""

from __future__ import annotations

import numpy as np

from acquisition.settings import CameraFaultConfig
from acquisition.sim.faults import (
    SWAPPED_LIMB_PARTS,
    camera_drops_pulse,
    camera_swaps_limbs,
    limb_swapped_trigger_indices,
    swap_left_right_limbs,
)
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters


def test_swapped_indices_are_the_listed_ones_plus_a_reproducible_share() -> None:
    faults = CameraFaultConfig(swap_limbs_trigger_indices=(3, 7), swap_limbs_probability=0.2)
    first = limb_swapped_trigger_indices(faults, 1, "cam_top", 5000)
    again = limb_swapped_trigger_indices(faults, 1, "cam_top", 5000)
    np.testing.assert_array_equal(first, again)
    assert {3, 7} <= set(first.tolist())
    assert 0.17 < first.size / 5000 < 0.23
    other_camera = limb_swapped_trigger_indices(faults, 1, "cam_left", 5000)
    assert set(first.tolist()) != set(other_camera.tolist())
    assert all(camera_swaps_limbs(faults, 1, "cam_top", k) for k in first.tolist())


def test_limb_swaps_and_drops_are_decided_independently() -> None:
    faults = CameraFaultConfig(drop_probability=0.5, swap_limbs_probability=0.5)
    drops = [camera_drops_pulse(faults, 4, "cam", k) for k in range(2000)]
    swaps = [camera_swaps_limbs(faults, 4, "cam", k) for k in range(2000)]
    assert drops != swaps
    both = np.mean(np.array(drops) & np.array(swaps))
    assert 0.2 < both < 0.3  # about 0.5 x 0.5


def test_swapping_mirrors_the_limbs_across_the_midline_and_keeps_the_trunk() -> None:
    model = JumpModel(JumpParameters())
    times_s = np.linspace(0.0, 3.0, 31)
    poses = model.points_mm(times_s).reshape(times_s.size, len(BODY_PARTS), 3)
    limbs = [BODY_PARTS.index(name) for name in SWAPPED_LIMB_PARTS]
    others = [i for i in range(len(BODY_PARTS)) if i not in limbs]
    for pose in poses:
        swapped = swap_left_right_limbs(pose, BODY_PARTS)
        np.testing.assert_array_equal(swapped[others], pose[others])
        # The twin's mouse runs along +x with its midline at y = 0: a mirror flips y only.
        np.testing.assert_allclose(swapped[limbs][:, [0, 2]], pose[limbs][:, [0, 2]], atol=1e-9)
        np.testing.assert_allclose(swapped[limbs][:, 1], -pose[limbs][:, 1], atol=1e-9)
        # Swapping twice gives the pose back.
        np.testing.assert_allclose(swap_left_right_limbs(swapped, BODY_PARTS), pose, atol=1e-9)
    assert np.all(poses[:, limbs, 1] > 1.0)  # the labelled limbs are on the left (+y)
