"""The twin's pinhole cameras: projection against hand-written formulas, framing of the jump."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from acquisition.sim.camera_model import PinholeCamera, jump_volume_corners_mm, twin_cameras
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters

DEFAULT_NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]


def _random_camera(rng: np.random.Generator, distortion: np.ndarray) -> PinholeCamera:
    rotation_vector = rng.normal(0.0, 0.4, 3)
    return PinholeCamera(
        name="test",
        width=640,
        height=480,
        matrix=np.array([[700.0, 0.0, 318.0], [0.0, 705.0, 243.0], [0.0, 0.0, 1.0]]),
        distortion=distortion,
        rotation_vector=rotation_vector,
        translation_mm=np.array([10.0, -20.0, 400.0]),
    )


def _manual_projection(camera: PinholeCamera, points: np.ndarray) -> np.ndarray:
    """Pinhole projection with the (k1, k2, p1, p2, k3) model, written out by hand."""
    theta = np.linalg.norm(camera.rotation_vector)
    axis = camera.rotation_vector / theta
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross
    in_camera = points @ rotation.T + camera.translation_mm
    x = in_camera[:, 0] / in_camera[:, 2]
    y = in_camera[:, 1] / in_camera[:, 2]
    k1, k2, p1, p2, k3 = camera.distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    fx, fy = camera.matrix[0, 0], camera.matrix[1, 1]
    cx, cy = camera.matrix[0, 2], camera.matrix[1, 2]
    return np.stack((fx * xd + cx, fy * yd + cy), axis=1)


def test_projection_without_distortion_is_a_plain_pinhole() -> None:
    rng = np.random.default_rng(0)
    camera = _random_camera(rng, np.zeros(5))
    points = rng.uniform(-80.0, 80.0, (50, 3))
    assert np.allclose(camera.project(points), _manual_projection(camera, points), atol=1e-6)
    # And by matrix algebra: K (R X + t), divided by depth.
    homogeneous = (points @ camera.rotation_matrix.T + camera.translation_mm) @ camera.matrix.T
    assert np.allclose(camera.project(points), homogeneous[:, :2] / homogeneous[:, 2:], atol=1e-6)


def test_projection_with_distortion_matches_opencv_model() -> None:
    rng = np.random.default_rng(1)
    camera = _random_camera(rng, np.array([-0.1, 0.03, 5e-4, -3e-4, 0.001]))
    points = rng.uniform(-80.0, 80.0, (50, 3))
    assert np.allclose(camera.project(points), _manual_projection(camera, points), atol=1e-6)


def test_nan_rows_and_points_behind_give_nan_rows() -> None:
    camera = _random_camera(np.random.default_rng(2), np.zeros(5))
    behind = -camera.rotation_matrix.T @ (camera.translation_mm + np.array([0.0, 0.0, 100.0]))
    points = np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 2.0], behind, [5.0, 5.0, 5.0]])
    pixels = camera.project(points)
    assert pixels.shape == (4, 2) and pixels.dtype == np.float64
    assert np.all(np.isfinite(pixels[[0, 3]]))
    assert np.all(np.isnan(pixels[[1, 2]]))
    assert camera.project(np.zeros((0, 3))).shape == (0, 2)
    with pytest.raises(ValueError):
        camera.project(np.zeros((3, 2)))


def test_pose_helpers_agree() -> None:
    camera = _random_camera(np.random.default_rng(3), np.zeros(5))
    rotation = camera.rotation_matrix
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert np.allclose(camera.to_camera_mm(camera.position_mm[None, :]), 0.0, atol=1e-9)


def test_validation_and_immutability() -> None:
    good = _random_camera(np.random.default_rng(4), np.zeros(5))
    with pytest.raises(ValueError, match="matrix"):
        PinholeCamera("c", 640, 480, np.eye(2), np.zeros(5), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="distortion"):
        PinholeCamera("c", 640, 480, np.eye(3), np.zeros(4), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        PinholeCamera("c", 640, 480, np.eye(3), np.zeros(5), np.array([np.nan, 0, 0]), np.zeros(3))
    with pytest.raises(ValueError):
        PinholeCamera("c", 0, 480, np.eye(3), np.zeros(5), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError):
        good.matrix[0, 0] = 1.0
    copy = pickle.loads(pickle.dumps(good))
    assert np.array_equal(copy.matrix, good.matrix) and copy.name == good.name


def test_anipose_entry_round_trips() -> None:
    camera = twin_cameras(["cam_left"], 640, 480)[0]
    entry = camera.to_anipose()
    assert set(entry) == {"name", "size", "matrix", "distortions", "rotation", "translation"}
    assert entry["size"] == [640, 480]
    assert all(isinstance(entry[key], list) for key in ("matrix", "distortions", "rotation"))
    again = PinholeCamera.from_anipose(entry)
    points = np.array([[0.0, 0.0, 10.0], [50.0, 5.0, 30.0]])
    assert np.allclose(again.project(points), camera.project(points))


def test_twin_cameras_are_deterministic_and_named() -> None:
    first = twin_cameras(DEFAULT_NAMES, 640, 480)
    second = twin_cameras(DEFAULT_NAMES, 640, 480)
    assert [camera.name for camera in first] == DEFAULT_NAMES
    for a, b in zip(first, second, strict=True):
        assert a.to_anipose() == b.to_anipose()
    with pytest.raises(ValueError):
        twin_cameras([], 640, 480)
    with pytest.raises(ValueError):
        twin_cameras(["a", "a"], 640, 480)


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_every_camera_sees_the_whole_default_jump(count: int) -> None:
    names = [f"cam{i}" for i in range(count)]
    jump = JumpModel(JumpParameters())
    events = jump.true_events()
    t_s = np.concatenate(
        (
            np.arange(-0.5, 4.0, 0.005),
            np.linspace(events["crouch_onset_s"], events["settled_s"], 2000),
        )
    )
    points = jump.points_mm(t_s).reshape(-1, 3)
    for camera in twin_cameras(names, 640, 480):
        pixels = camera.project(points)
        inside = (
            (pixels[:, 0] >= 0) & (pixels[:, 0] < 640) & (pixels[:, 1] >= 0) & (pixels[:, 1] < 480)
        )
        assert inside.all(), f"{camera.name}: {np.count_nonzero(~inside)} points outside"
        assert -0.15 <= camera.distortion[0] <= -0.05
        distance = np.linalg.norm(camera.position_mm - jump_volume_corners_mm(80.0).mean(axis=0))
        assert 250.0 <= distance <= 450.0


def test_mouse_size_in_the_default_views() -> None:
    jump = JumpModel(JumpParameters())
    standing = jump.points_mm(np.array([0.0]))[0]
    nose, tail = BODY_PARTS.index("nose"), BODY_PARTS.index("tail_base")
    for camera in twin_cameras(DEFAULT_NAMES, 640, 480):
        pixels = camera.project(standing)
        span_px = float(np.linalg.norm(pixels[nose] - pixels[tail]))
        print(f"{camera.name}: nose to tail base {span_px:.0f} px, f = {camera.matrix[0, 0]:.0f}")
        assert 90.0 <= span_px <= 250.0


def test_wider_gap_is_framed_when_given() -> None:
    jump = JumpModel(JumpParameters(gap_mm=160.0))
    points = jump.points_mm(np.linspace(-0.5, 4.0, 901)).reshape(-1, 3)
    for camera in twin_cameras(DEFAULT_NAMES, 320, 240, gap_mm=160.0):
        pixels = camera.project(points)
        assert np.all((pixels >= 0) & (pixels < [320, 240]))


def test_projection_matches_opencv_directly() -> None:
    camera = twin_cameras(["cam_top"], 640, 480)[0]
    points = np.array([[0.0, 0.0, 0.0], [80.0, 10.0, 40.0]])
    expected, _ = cv2.projectPoints(
        points, camera.rotation_vector, camera.translation_mm, camera.matrix, camera.distortion
    )
    assert np.allclose(camera.project(points), expected.reshape(-1, 2))
