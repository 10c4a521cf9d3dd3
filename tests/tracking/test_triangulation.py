"""Triangulation on the twin's four cameras: exactness, noise, limb switching, missing views."""

from __future__ import annotations

import time

import numpy as np
import pytest

from acquisition.sim.camera_model import twin_cameras
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters
from tracking.camera_group import CameraGroup
from tracking.triangulation import (
    reprojection_error,
    triangulate,
    triangulate_robust,
    undistort_all,
)

NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]
PART_COUNT = len(BODY_PARTS)


@pytest.fixture(scope="module")
def group() -> CameraGroup:
    # Through anipose's dict form, as a calibration file would bring the cameras.
    document = {f"cam_{i}": c.to_anipose() for i, c in enumerate(twin_cameras(NAMES, 640, 480))}
    return CameraGroup.from_anipose(document)


@pytest.fixture(scope="module")
def jump_points_mm() -> np.ndarray:
    """(200 * 10, 3) body parts through the whole jump, trigger index-major."""
    jump = JumpModel(JumpParameters())
    events = jump.true_events()
    times_s = np.linspace(events["crouch_onset_s"], events["settled_s"], 200)
    return jump.points_mm(times_s).reshape(-1, 3)


def _noisy(group: CameraGroup, points_mm: np.ndarray, noise_px: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = group.project(points_mm)
    return pixels + rng.normal(0.0, noise_px, pixels.shape)


def _errors_mm(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(estimate - truth, axis=1))


def test_exact_projections_triangulate_back(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    pixels = group.project(jump_points_mm)
    points = triangulate(group, pixels)
    assert points.shape == jump_points_mm.shape
    assert np.max(_errors_mm(points, jump_points_mm)) < 1e-6
    robust = triangulate_robust(group, pixels, np.ones(pixels.shape[:2]))
    assert np.max(_errors_mm(robust.points_mm, jump_points_mm)) < 1e-6
    assert np.max(robust.reprojection_error_px) < 1e-6
    assert robust.cameras_used.shape == (jump_points_mm.shape[0], 4)
    assert robust.cameras_used.all()


def test_every_pair_of_cameras_triangulates(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    pixels = group.project(jump_points_mm)
    for first in range(4):
        for second in range(first + 1, 4):
            only_pair = np.full_like(pixels, np.nan)
            only_pair[[first, second]] = pixels[[first, second]]
            points = triangulate(group, only_pair)
            assert np.max(_errors_mm(points, jump_points_mm)) < 1e-6, (first, second)


def test_half_pixel_noise_gives_sub_millimetre_error(
    group: CameraGroup, jump_points_mm: np.ndarray
) -> None:
    pixels = _noisy(group, jump_points_mm, 0.5, seed=1)
    errors = _errors_mm(triangulate(group, pixels), jump_points_mm)
    print(f"0.5 px noise: median {np.median(errors):.3f} mm, p95 {np.percentile(errors, 95):.3f}")
    assert np.median(errors) < 0.5
    assert np.percentile(errors, 95) < 1.0
    robust = triangulate_robust(group, pixels, np.ones(pixels.shape[:2]))
    # Noise alone never reaches the 8 px threshold: every view is kept.
    assert robust.cameras_used.all()
    assert np.allclose(robust.points_mm, triangulate(group, pixels))


def test_limb_switching_is_rejected(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    point_count = jump_points_mm.shape[0]
    pixels = _noisy(group, jump_points_mm, 0.5, seed=2)
    likelihood = np.ones((4, point_count))
    clean = _errors_mm(triangulate_robust(group, pixels, likelihood).points_mm, jump_points_mm)

    # 20% of the points: one camera labels another body part of the same frame instead.
    switched = np.flatnonzero(rng.random(point_count) < 0.2)
    camera = rng.integers(0, 4, switched.size)
    other_part = (switched % PART_COUNT + rng.integers(1, PART_COUNT, switched.size)) % PART_COUNT
    source = (switched // PART_COUNT) * PART_COUNT + other_part
    exact = group.project(jump_points_mm)
    wrong = pixels.copy()
    wrong[camera, switched] = exact[camera, source] + rng.normal(0.0, 0.5, (switched.size, 2))

    plain = _errors_mm(triangulate(group, wrong, likelihood), jump_points_mm)
    result = triangulate_robust(group, wrong, likelihood)
    robust = _errors_mm(result.points_mm, jump_points_mm)
    print(
        f"clean median {np.median(clean):.3f} mm p90 {np.percentile(clean, 90):.3f}; "
        f"switched points: plain DLT median {np.median(plain[switched]):.2f} mm, robust median "
        f"{np.median(robust[switched]):.3f} p90 {np.percentile(robust[switched], 90):.3f}"
    )
    assert np.median(plain[switched]) > 5 * np.median(clean)  # the switch does hurt
    assert np.median(robust[switched]) < 2 * np.median(clean)
    assert np.percentile(robust[switched], 90) < 2 * np.percentile(clean, 90)
    assert np.median(robust) < 2 * np.median(clean)

    shift_px = np.linalg.norm(exact[camera, source] - exact[camera, switched], axis=1)
    far = shift_px > 20.0
    rejected = ~result.cameras_used[switched, camera]
    print(f"switched views rejected: {rejected.mean():.1%} ({rejected[far].mean():.1%} of > 20 px)")
    assert rejected[far].mean() > 0.95
    untouched = np.ones(point_count, dtype=bool)
    untouched[switched] = False
    assert result.cameras_used[untouched].all()


def test_error_report_matches_opencv_projection(
    group: CameraGroup, jump_points_mm: np.ndarray
) -> None:
    pixels = _noisy(group, jump_points_mm, 1.0, seed=3)
    pixels[2, ::7] = np.nan
    result = triangulate_robust(group, pixels, np.ones(pixels.shape[:2]))
    per_view = reprojection_error(group, result.points_mm, pixels)  # OpenCV's projectPoints
    used = result.cameras_used.T
    expected = np.nansum(np.where(used, per_view, 0.0), axis=0) / used.sum(axis=0)
    assert np.allclose(result.reprojection_error_px, expected, rtol=1e-9, atol=1e-9)


def test_reprojection_error_in_pixels(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    points = jump_points_mm[:10]
    pixels = group.project(points)
    pixels[1] += (3.0, 4.0)
    pixels[3, 5] = np.nan
    errors = reprojection_error(group, points, pixels)
    assert errors.shape == (4, 10)
    assert np.allclose(errors[1], 5.0)
    assert np.allclose(errors[[0, 2]], 0.0, atol=1e-9)
    assert np.isnan(errors[3, 5]) and np.isfinite(np.delete(errors[3], 5)).all()


def test_missing_views(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    points = jump_points_mm[:10]
    pixels = group.project(points)
    pixels[0, :5] = np.nan  # left camera lost parts 0-4
    pixels[1, 2:8] = np.nan  # right camera lost parts 2-7
    pixels[2, 3] = (np.nan, 100.0)  # half a pixel is no pixel
    pixels[3, 3:4] = np.nan  # part 3: only the right camera... which also lost it
    estimate = triangulate(group, pixels)
    assert np.isnan(estimate[3]).all()
    assert np.max(_errors_mm(np.delete(estimate, 3, axis=0), np.delete(points, 3, axis=0))) < 1e-6
    result = triangulate_robust(group, pixels, np.ones((4, 10)))
    assert np.isnan(result.points_mm[3]).all() and np.isnan(result.reprojection_error_px[3])
    assert not result.cameras_used[3].any()
    assert result.cameras_used[0].tolist() == [False, True, True, True]
    assert result.cameras_used[2].tolist() == [False, False, True, True]


def test_fewer_than_two_views_is_nan(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    pixels = group.project(jump_points_mm[:4])
    pixels[1:, 0] = np.nan  # one view
    pixels[:, 1] = np.nan  # none
    likelihood = np.ones((4, 4))
    likelihood[:3, 2] = 0.1  # one view above the robust threshold
    likelihood[:, 3] = np.nan  # likelihood missing: no views
    estimate = triangulate(group, pixels, likelihood)
    assert np.isnan(estimate[[0, 1, 3]]).all() and np.isfinite(estimate[2]).all()
    result = triangulate_robust(group, pixels, likelihood)
    assert np.isnan(result.points_mm[:, 0]).tolist() == [True, True, True, True]
    assert not result.cameras_used.any()
    three = triangulate(group, group.project(jump_points_mm[:4]), min_cameras=4)
    assert np.isfinite(three).all()
    pixels = group.project(jump_points_mm[:4])
    pixels[0, 1] = np.nan
    assert np.isnan(triangulate(group, pixels, min_cameras=4)[1]).all()


def test_low_likelihood_views_are_not_used(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    points = jump_points_mm[:10]
    pixels = group.project(points)
    pixels[0] += 40.0  # the left camera is wrong everywhere, and knows it
    likelihood = np.ones((4, 10))
    likelihood[0] = 0.3
    result = triangulate_robust(group, pixels, likelihood)
    assert not result.cameras_used[:, 0].any()
    assert np.max(_errors_mm(result.points_mm, points)) < 1e-6
    # In the plain DLT a low likelihood shrinks the wrong view's pull on the point.
    weak = _errors_mm(triangulate(group, pixels, np.where(likelihood < 1, 0.05, 1.0)), points)
    strong = _errors_mm(triangulate(group, pixels), points)
    assert np.all(weak < 0.2 * strong)


def test_undistort_all_shape(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    normalized = undistort_all(group, group.project(jump_points_mm[:6]))
    assert normalized.shape == (4, 6, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: triangulate(g, np.zeros((3, 5, 2))), r"points_px must have shape \(cameras=4"),
        (lambda g: triangulate(g, np.zeros((4, 5, 3))), r"points_px must have shape"),
        (lambda g: triangulate(g, np.zeros((4, 5))), r"points_px must have shape"),
        (lambda g: triangulate(g, np.zeros((4, 5, 2)), np.ones((4, 6))), r"likelihood .* \(4, 5\)"),
        (lambda g: triangulate(g, np.zeros((4, 5, 2)), min_cameras=1), "min_cameras"),
        (lambda g: triangulate_robust(g, np.zeros((4, 5, 2)), np.ones(5)), "likelihood"),
        (
            lambda g: triangulate_robust(
                g, np.zeros((4, 5, 2)), np.ones((4, 5)), max_reprojection_px=0.0
            ),
            "max_reprojection_px",
        ),
        (lambda g: reprojection_error(g, np.zeros((5, 2)), np.zeros((4, 5, 2))), "points_mm"),
    ],
)
def test_shapes_are_validated(group: CameraGroup, call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call(group)


def test_cost_per_trigger_index(group: CameraGroup, jump_points_mm: np.ndarray) -> None:
    """10 body parts x 4 cameras, one trigger index per call; timings printed, not asserted."""
    pixels = _noisy(group, jump_points_mm[:PART_COUNT], 0.5, seed=4)
    likelihood = np.ones((4, PART_COUNT))
    switched = pixels.copy()
    switched[1, :2] = pixels[1, 5:7]  # two limb switches: one rejection round
    cases = {
        "triangulate": lambda: triangulate(group, pixels, likelihood),
        "triangulate_robust, clean": lambda: triangulate_robust(group, pixels, likelihood),
        "triangulate_robust, 2 switched": lambda: triangulate_robust(group, switched, likelihood),
    }
    for name, call in cases.items():
        call()
        best_s = np.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(100):
                call()
            best_s = min(best_s, (time.perf_counter() - start) / 100)
        print(f"{name}: {best_s * 1e6:.0f} us per trigger index")
    assert triangulate_robust(group, switched, likelihood).cameras_used[:2, 1].sum() == 0
