"""The twin's frames: determinism, noise, the body and markers where the parts project, speed."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from acquisition.sim.camera_model import PinholeCamera, twin_cameras
from acquisition.sim.render import (
    PLATFORM_HEIGHT_MM,
    SURFACES,
    FrameRenderer,
    ray_cast_scene,
)
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters

NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]


@pytest.fixture(scope="module")
def cameras() -> list[PinholeCamera]:
    return twin_cameras(NAMES, 640, 480)


@pytest.fixture(scope="module")
def jump() -> JumpModel:
    return JumpModel(JumpParameters())


@pytest.fixture(scope="module")
def quiet(cameras: list[PinholeCamera]) -> list[FrameRenderer]:
    """Noise-free renderers, one per default camera."""
    return [FrameRenderer(camera, noise_dn=0.0, seed=5) for camera in cameras]


@pytest.fixture(scope="module")
def quiet_left(quiet: list[FrameRenderer]) -> FrameRenderer:
    return quiet[0]


def _standing(jump: JumpModel) -> np.ndarray:
    return jump.points_mm(np.array([0.5]))[0]


def test_frame_shape_and_dtype(cameras: list[PinholeCamera], jump: JumpModel) -> None:
    frame = FrameRenderer(cameras[2], seed=1).render(_standing(jump), 0)
    assert frame.shape == (480, 640) and frame.dtype == np.uint8
    small = twin_cameras(["small"], 320, 240)[0]
    assert FrameRenderer(small).render(_standing(jump), 3).shape == (240, 320)


def test_deterministic_for_seed_index_and_points(
    cameras: list[PinholeCamera], jump: JumpModel
) -> None:
    points = jump.points_mm(np.array([1.95]))[0]
    first = FrameRenderer(cameras[0], seed=7, blur_px=1.0)
    second = FrameRenderer(cameras[0], seed=7, blur_px=1.0)
    assert np.array_equal(first.render(points, 12), second.render(points, 12))
    assert np.array_equal(first.render(points, 12), first.render(points, 12))
    other_seed = FrameRenderer(cameras[0], seed=8, blur_px=1.0)
    assert not np.array_equal(first.render(points, 12), other_seed.render(points, 12))
    assert not np.array_equal(first.render(points, 12), first.render(points, 13))


def test_noise_has_the_requested_size(cameras: list[PinholeCamera], jump: JumpModel) -> None:
    renderer = FrameRenderer(cameras[1], noise_dn=2.0, seed=3)
    # Far away, the mouse is out of view: the frame is background plus noise.
    away = _standing(jump) + np.array([5000.0, 0.0, 0.0])
    background = renderer.background.astype(np.float64)
    unsaturated = (background > 20) & (background < 235)
    for trigger_index in (0, 1, 1000):
        residual = renderer.render(away, trigger_index).astype(np.float64) - background
        assert residual[unsaturated].mean() == pytest.approx(0.0, abs=0.05)
        assert residual[unsaturated].std() == pytest.approx(2.0, rel=0.08)
    successive = renderer.render(away, 4).astype(np.float64) - renderer.render(away, 5)
    assert successive[unsaturated].std() > 2.0, "noise changes from frame to frame"
    quiet = FrameRenderer(cameras[1], noise_dn=0.0, seed=3)
    assert np.array_equal(quiet.render(away, 9), quiet.background)


def test_body_is_dark_and_markers_bright_where_parts_project(
    quiet: list[FrameRenderer], jump: JumpModel
) -> None:
    for renderer in quiet:
        camera = renderer.camera
        for t_s in (0.5, 1.93, 2.0):
            points = jump.points_mm(np.array([t_s]))[0]
            frame = renderer.render(points, 0).astype(np.int64)
            background = renderer.background.astype(np.int64)
            pixels = np.rint(camera.project(points)).astype(int)
            at_parts = frame[pixels[:, 1], pixels[:, 0]]
            # Markers are brighter than the dark body and than most of the scene.
            assert np.all(at_parts >= 180), f"{camera.name} t={t_s}: {at_parts}"
            # The trunk between eye and iliac crest, below the back, is dark.
            eye, iliac = points[BODY_PARTS.index("eye")], points[BODY_PARTS.index("iliac_crest")]
            trunk = 0.5 * (eye + iliac) + np.array([0.0, 0.0, -6.0])
            x, y = np.rint(camera.project(trunk[None, :])[0]).astype(int)
            assert frame[y, x] <= 55 and frame[y, x] < background[y, x] - 25


def test_drawing_stays_near_the_mouse(quiet_left: FrameRenderer, jump: JumpModel) -> None:
    points = _standing(jump)
    frame = quiet_left.render(points, 0)
    changed = np.argwhere(frame != quiet_left.background)
    pixels = quiet_left.camera.project(points)
    assert changed.size > 0
    # Nothing is drawn farther than a body radius and the tail from the parts' bounding box.
    low, high = pixels.min(axis=0) - 60, pixels.max(axis=0) + 60
    assert np.all(changed[:, 1] >= low[0]) and np.all(changed[:, 1] <= high[0])
    assert np.all(changed[:, 0] >= low[1]) and np.all(changed[:, 0] <= high[1])


def test_brightness_scales_the_light(
    cameras: list[PinholeCamera], quiet: list[FrameRenderer], jump: JumpModel
) -> None:
    points = _standing(jump)
    bright = quiet[3].render(points, 0)
    dim = FrameRenderer(cameras[3], noise_dn=0.0, brightness=0.3).render(points, 0)
    ratio = dim.astype(np.float64).mean() / bright.astype(np.float64).mean()
    assert ratio == pytest.approx(0.3, abs=0.02)


def test_blur_smooths_only_around_the_mouse(
    cameras: list[PinholeCamera], quiet_left: FrameRenderer, jump: JumpModel
) -> None:
    points = jump.points_mm(np.array([2.0]))[0]
    sharp = quiet_left.render(points, 0)
    blurred_renderer = FrameRenderer(cameras[0], noise_dn=0.0, blur_px=2.0, seed=5)
    blurred = blurred_renderer.render(points, 0)
    pixels = cameras[0].project(points)
    x0, y0 = (pixels.min(axis=0) - 5).astype(int)
    x1, y1 = (pixels.max(axis=0) + 5).astype(int)

    def sharpness(image: np.ndarray) -> float:
        box = image[y0:y1, x0:x1].astype(np.float64)
        return float(np.abs(cv2.Laplacian(box, cv2.CV_64F)).mean())

    assert sharpness(blurred) < 0.6 * sharpness(sharp)
    far_corner = (slice(0, 20), slice(0, 20))
    assert np.array_equal(blurred[far_corner], blurred_renderer.background[far_corner])


def test_background_agrees_with_projection(cameras: list[PinholeCamera]) -> None:
    gap_mm = 80.0
    for camera in cameras:
        surface, hits = ray_cast_scene(camera, gap_mm)
        top = camera.project(np.array([[-40.0, -20.0, 0.0], [gap_mm + 40.0, -20.0, 0.0]]))
        for x, y in np.rint(top).astype(int):
            assert SURFACES[surface[y, x]] == "platform_top"
        # Rays cast through pixel centres land on points that project back onto those pixels.
        rng = np.random.default_rng(0)
        rows = rng.integers(0, camera.height, 200)
        cols = rng.integers(0, camera.width, 200)
        seen = surface[rows, cols] != SURFACES.index("sky")
        reprojected = camera.project(hits[rows[seen], cols[seen]])
        expected = np.stack((cols[seen], rows[seen]), axis=1)
        assert np.abs(reprojected - expected).max() < 0.01
    # The top camera looks down into the gap, onto the floor the platforms stand on.
    top_surface, _ = ray_cast_scene(cameras[3], gap_mm)
    floor_in_gap = cameras[3].project(np.array([[gap_mm / 2, 0.0, -PLATFORM_HEIGHT_MM]]))
    x, y = np.rint(floor_in_gap[0]).astype(int)
    assert SURFACES[top_surface[y, x]] == "floor"


def test_mouse_out_of_view_or_behind_the_camera_draws_nothing(
    quiet_left: FrameRenderer, jump: JumpModel
) -> None:
    far = _standing(jump) + np.array([5000.0, 0.0, 0.0])
    assert np.array_equal(quiet_left.render(far, 0), quiet_left.background)
    behind = _standing(jump) + np.array([0.0, 1000.0, 0.0])
    assert np.array_equal(quiet_left.render(behind, 0), quiet_left.background)


def test_invalid_input(cameras: list[PinholeCamera], quiet_left: FrameRenderer) -> None:
    with pytest.raises(ValueError):
        quiet_left.render(np.zeros((9, 3)), 0)
    with pytest.raises(ValueError):
        quiet_left.render(np.full((10, 3), np.nan), 0)
    with pytest.raises(ValueError):
        quiet_left.render(np.zeros((10, 3)), -1)
    for settings in ({"noise_dn": -1.0}, {"blur_px": -0.5}, {"brightness": 0.0}, {"gap_mm": 0.0}):
        with pytest.raises(ValueError):
            FrameRenderer(cameras[0], **settings)  # type: ignore[arg-type]


def test_render_time_per_frame(
    cameras: list[PinholeCamera], quiet: list[FrameRenderer], jump: JumpModel
) -> None:
    """Prints the time per 640x480 frame through the jump; the rig needs 4 x 200 frames/s."""
    points = jump.points_mm(np.linspace(1.4, 2.4, 100))
    renderers = [(f"{r.camera.name} noise 0", r) for r in quiet] + [
        ("cam_left noise 2 DN", FrameRenderer(cameras[0], noise_dn=2.0, seed=1)),
        ("cam_left noise 2 DN blur 1.5 px", FrameRenderer(cameras[0], blur_px=1.5, seed=1)),
    ]
    for label, renderer in renderers:
        best_s = np.inf
        for _ in range(3):
            start = time.perf_counter()
            for index, pose in enumerate(points):
                frame = renderer.render(pose, index)
            best_s = min(best_s, (time.perf_counter() - start) / len(points))
        assert frame.shape == (480, 640)
        print(f"render 640x480 {label}: {best_s * 1e3:.3f} ms per frame (best of 3 x 100)")
