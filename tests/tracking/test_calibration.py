"""Camera calibration: board specs, detection, Bouguet's real stereo images, the twin's four
cameras rendered with a ChArUco board, failures, and the ``rig calibrate`` command."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from acquisition.sim.camera_model import PinholeCamera, twin_cameras
from rig.calibrate_command import register
from tracking.calibration import (
    BoardDetection,
    CalibrationError,
    CalibrationResult,
    ChArUcoBoard,
    Chessboard,
    calibrate,
    calibrate_image_folders,
    calibrate_intrinsics,
    charuco_corner_offset_px,
    detect_in_images,
    find_images,
    parse_board,
)
from tracking.camera_group import CameraGroup

BOUGUET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bouguet_stereo"
needs_bouguet = pytest.mark.skipif(
    not (BOUGUET / "Calib_Results_left.mat").is_file(),
    reason=f"Bouguet's stereo calibration images are not at {BOUGUET} (external test data)",
)
TWIN_NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]
WIDTH, HEIGHT = 640, 480


# --- board specs ---------------------------------------------------------------------------------


def test_charuco_spec() -> None:
    board = parse_board("charuco:7x5:20:15:DICT_4X4_50")
    assert board == ChArUcoBoard(7, 5, 20.0, 15.0, "DICT_4X4_50")
    assert parse_board("charuco:7x5:20:15") == board
    legacy = parse_board("charuco:8x6:25:18.5:DICT_5X5_100:legacy")
    assert isinstance(legacy, ChArUcoBoard) and legacy.legacy_pattern
    assert legacy.marker_mm == 18.5 and legacy.dictionary == "DICT_5X5_100"
    for spec in (board.spec, legacy.spec):
        assert parse_board(spec) == parse_board(spec.upper().replace("CHARUCO", "charuco"))
        assert parse_board(parse_board(spec).spec) == parse_board(spec)


def test_chessboard_spec() -> None:
    board = parse_board("chessboard:9x6:30")
    assert board == Chessboard(9, 6, 30.0)
    assert parse_board(board.spec) == board
    assert not board.is_symmetric and Chessboard(7, 7, 20.0).is_symmetric
    points = board.object_points_mm()
    assert points.shape == (54, 3)
    assert points[1].tolist() == [30.0, 0.0, 0.0] and points[9].tolist() == [0.0, 30.0, 0.0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("circles:4x11:20", "not understood"),
        ("charuco:7x5:20", "not understood"),
        ("charuco:7by5:20:15", "size '7by5'"),
        ("charuco:7x5:20:25", "marker_mm .* smaller than square_mm"),
        ("charuco:7x5:20:15:DICT_9X9_9", "unknown ArUco dictionary"),
        ("charuco:11x11:20:15:DICT_4X4_50", "needs 60 markers, DICT_4X4_50 has only 50"),
        ("charuco:7x5:-20:15", "square_mm must be positive"),
        ("chessboard:9x6:30:2", "not understood"),
        ("chessboard:1x6:30", "inner_corners_x must be a whole number >= 2"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_board(spec)


def test_board_files(tmp_path: Path) -> None:
    top_level = tmp_path / "board.toml"
    top_level.write_text(
        'type = "charuco"\nsquares_x = 7\nsquares_y = 5\nsquare_mm = 20\nmarker_mm = 15.0\n'
    )
    assert parse_board(top_level) == ChArUcoBoard(7, 5, 20.0, 15.0)
    assert parse_board(str(top_level)) == ChArUcoBoard(7, 5, 20.0, 15.0)
    in_table = tmp_path / "rig_board.toml"
    in_table.write_text(
        '[board]\ntype = "chessboard"\ninner_corners_x = 9\ninner_corners_y = 6\nsquare_mm = 30\n'
    )
    assert parse_board(in_table) == Chessboard(9, 6, 30.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('type = "charuco"\nsquares_x = 7\nsquares_y = 5\nsquare_mm = 20\n', "missing key 'marker"),
        (
            'type = "chessboard"\ninner_corners_x = 9\ninner_corners_y = 6\nsquare_mm = 30\n'
            "colour = 1\n",
            "unknown key 'colour'",
        ),
        ('type = "circles"\n', "key 'type'"),
        (
            'type = "chessboard"\ninner_corners_x = 9.5\ninner_corners_y = 6\nsquare_mm = 30\n',
            "9.5",
        ),
        ("type = ", "board file"),
    ],
)
def test_bad_board_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "board.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        parse_board(path)
    assert "board.toml" in str(caught.value)
    with pytest.raises(ValueError, match="does not exist"):
        parse_board(tmp_path / "missing.toml")


# --- detection -----------------------------------------------------------------------------------


def _chessboard_image(board: Chessboard, square_px: int, border_px: int) -> np.ndarray:
    """A frontal chessboard whose first square (top left) is dark, blurred a little."""
    columns, rows = board.inner_corners_x + 1, board.inner_corners_y + 1
    image = np.full((rows * square_px + 2 * border_px, columns * square_px + 2 * border_px), 230)
    for row in range(rows):
        for column in range(columns):
            if (row + column) % 2 == 0:
                top, left = border_px + row * square_px, border_px + column * square_px
                image[top : top + square_px, left : left + square_px] = 25
    return cv2.GaussianBlur(image.astype(np.uint8), (0, 0), 1.0)


def test_chessboard_corners_are_numbered_the_same_from_any_side() -> None:
    board = Chessboard(9, 6, 30.0)
    square_px, border_px = 40, 50
    image = _chessboard_image(board, square_px, border_px)
    height, width = image.shape
    upright = board.detect(image)
    assert upright is not None
    # Corner k sits at (border + (column + 1) * square - 0.5, ...): square edges lie between pixels.
    expected = border_px - 0.5 + (board.object_points_mm()[:, :2] / 30.0 + 1.0) * square_px
    assert np.max(np.abs(upright.image_points_px - expected)) < 0.05
    turned = board.detect(cv2.rotate(image, cv2.ROTATE_180))
    assert turned is not None
    back = np.column_stack(
        (width - 1 - turned.image_points_px[:, 0], height - 1 - turned.image_points_px[:, 1])
    )
    assert np.max(np.abs(back - upright.image_points_px)) < 0.05
    quarter = board.detect(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    assert quarter is not None
    # Clockwise: image (x, y) came from the upright image's (y, height - 1 - x).
    back = np.column_stack(
        (quarter.image_points_px[:, 1], height - 1 - quarter.image_points_px[:, 0])
    )
    assert np.max(np.abs(back - upright.image_points_px)) < 0.05


def test_charuco_corners_are_where_the_board_puts_them() -> None:
    board = ChArUcoBoard(7, 5, 20.0, 15.0)
    pixels_per_mm, margin_mm = 4.0, 10.0
    image = board.render(pixels_per_mm, margin_mm)
    assert image.shape == (round(120 * pixels_per_mm), round(160 * pixels_per_mm))
    detection = board.detect(image)
    assert detection is not None and len(detection.corner_ids) == board.corner_count
    expected = (detection.object_points_mm[:, :2] + margin_mm) * pixels_per_mm - 0.5
    error = np.abs(detection.image_points_px - expected)
    print(f"OpenCV's ChArUco offset: {charuco_corner_offset_px()} px; residual {error.max():.3f}")
    assert error.max() < 0.05
    assert board.detect(np.full((480, 640), 128, dtype=np.uint8)) is None


# --- Bouguet's stereo images ---------------------------------------------------------------------


def _bouguet(side: str) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    return {
        key: np.asarray(value, dtype=np.float64)
        for key, value in loadmat(BOUGUET / f"Calib_Results_{side}.mat").items()
        if not key.startswith("__") and isinstance(value, np.ndarray) and value.dtype.kind in "fiu"
    }


def _bouguet_baseline_mm() -> float:
    """Bouguet's stereo baseline from his per-image extrinsics of the same board view in both
    cameras (x_cam = Rc_i X + Tc_i), averaged over the 14 views; there is no stereo results
    file in the data set."""
    left, right = _bouguet("left"), _bouguet("right")
    baselines = []
    for view in range(1, int(left["n_ima"].item()) + 1):
        rotation = right[f"Rc_{view}"] @ left[f"Rc_{view}"].T
        translation = right[f"Tc_{view}"].ravel() - rotation @ left[f"Tc_{view}"].ravel()
        baselines.append(np.linalg.norm(translation))
    print(f"Bouguet's per-view baselines: {np.round(baselines, 2)} mm")
    return float(np.mean(baselines))


@pytest.fixture(scope="module")
def bouguet_detections() -> dict[str, list[BoardDetection | None]]:
    board = Chessboard(9, 6, 30.0)
    return {
        side: detect_in_images(board, find_images(BOUGUET / f"{side}*.jpg"))[0]
        for side in ("left", "right")
    }


@needs_bouguet
def test_bouguet_stereo_images(bouguet_detections: dict[str, list[BoardDetection | None]]) -> None:
    board = Chessboard(9, 6, 30.0)
    started = time.perf_counter()
    result = calibrate(board, bouguet_detections, {"left": (640, 480), "right": (640, 480)})
    print(f"calibrated in {time.perf_counter() - started:.2f} s")
    for side in ("left", "right"):
        bouguet = _bouguet(side)
        # Bouguet's toolbox reports about three standard deviations as the uncertainty.
        focal, focal_error = bouguet["fc"].ravel(), bouguet["fc_error"].ravel()
        centre, centre_error = bouguet["cc"].ravel(), bouguet["cc_error"].ravel()
        alone = calibrate_intrinsics(bouguet_detections[side], (640, 480))
        for label, matrix in (("alone", alone.matrix), ("joint", result.group[side].matrix)):
            focal_here = matrix[[0, 1], [0, 1]]
            centre_here = matrix[[0, 1], [2, 2]]
            print(
                f"{side} {label}: f - Bouguet {np.round(focal_here - focal, 2)} "
                f"(+-{np.round(focal_error, 2)}), c - Bouguet {np.round(centre_here - centre, 2)} "
                f"(+-{np.round(centre_error, 2)})"
            )
            assert np.all(np.abs(focal_here - focal) < focal_error)
            assert np.all(np.abs(centre_here - centre) < centre_error)
        assert alone.rms_px < 0.3 and alone.views_used == 14
    baseline = result.group.baselines_mm()[("left", "right")]
    expected = _bouguet_baseline_mm()
    print(f"baseline {baseline:.3f} mm, Bouguet {expected:.3f} mm")
    assert abs(baseline - expected) < 0.5
    assert result.warnings == ()
    assert all(report.joint_rms_px < 0.3 for report in result.cameras)


@needs_bouguet
def test_reference_camera_sets_the_world_frame(
    bouguet_detections: dict[str, list[BoardDetection | None]],
) -> None:
    sizes = {"left": (640, 480), "right": (640, 480)}
    board = Chessboard(9, 6, 30.0)
    left_world = calibrate(board, bouguet_detections, sizes, refine_intrinsics=False).group
    right_world = calibrate(
        board, bouguet_detections, sizes, reference_camera="right", refine_intrinsics=False
    ).group
    assert np.allclose(right_world["right"].rotation_vector, 0.0)
    assert np.allclose(right_world["right"].translation_mm, 0.0)
    # The left camera sits where the right one sees it.
    expected = (
        left_world["right"].rotation_matrix @ np.zeros(3) + left_world["right"].translation_mm
    )
    assert np.allclose(right_world["left"].position_mm, expected, atol=0.05)


@needs_bouguet
def test_large_errors_are_warned_about(
    bouguet_detections: dict[str, list[BoardDetection | None]], caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    noisy = {
        "left": bouguet_detections["left"],
        "right": [
            BoardDetection(
                view.corner_ids,
                view.object_points_mm,
                view.image_points_px + rng.normal(0.0, 1.5, view.image_points_px.shape),
            )
            for view in bouguet_detections["right"]
            if view is not None
        ],
    }
    with caplog.at_level(logging.WARNING, logger="tracking.calibration"):
        result = calibrate(Chessboard(9, 6, 30.0), noisy, {"left": (640, 480), "right": (640, 480)})
    right = [warning for warning in result.warnings if "reprojection error" in warning]
    assert len(right) == 1 and right[0].startswith("camera right:")
    assert "exceeds 1 px" in caplog.text


@needs_bouguet
def test_one_camera(bouguet_detections: dict[str, list[BoardDetection | None]]) -> None:
    result = calibrate(
        Chessboard(9, 6, 30.0), {"left": bouguet_detections["left"]}, {"left": (640, 480)}
    )
    assert result.group.names == ["left"]
    assert np.allclose(result.group["left"].translation_mm, 0.0)
    assert np.isnan(result.cameras[0].joint_rms_px)
    assert result.group.metadata["adjusted"] is False


# --- the twin's four cameras and a rendered ChArUco board ----------------------------------------


class _BoardRenderer:
    """Exact images of a flat board seen by a twin camera.

    The board is warped with the pinhole homography into an undistorted image with a margin,
    then the lens distortion is applied with a remap whose map comes from the camera's own
    undistortion: every pixel shows the board point on its true ray.
    """

    margin_px = 160

    def __init__(self, board: ChArUcoBoard, cameras: Sequence[PinholeCamera]) -> None:
        self.board = board
        self.pixels_per_mm = 4.0
        self.board_margin_mm = 10.0
        texture = board.render(self.pixels_per_mm, self.board_margin_mm)
        # A little blur stands in for the optics and keeps the texture from aliasing.
        self.texture = cv2.GaussianBlur(texture, (0, 0), 0.8)
        offset = self.board_margin_mm * self.pixels_per_mm - 0.5
        self.board_to_texture = np.array(
            [[self.pixels_per_mm, 0.0, offset], [0.0, self.pixels_per_mm, offset], [0, 0, 1]]
        )
        self.maps = {camera.name: self._distortion_map(camera) for camera in cameras}

    def _distortion_map(self, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
        u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
        pixels = np.stack((u, v), axis=-1).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT, 10, 0.0)
        normalized = cv2.undistortPointsIter(
            pixels, camera.matrix, camera.distortion, np.eye(3), np.eye(3), criteria
        ).reshape(HEIGHT, WIDTH, 2)
        matrix = self._undistorted_matrix(camera)
        map_x = matrix[0, 0] * normalized[..., 0] + matrix[0, 1] * normalized[..., 1] + matrix[0, 2]
        map_y = matrix[1, 1] * normalized[..., 1] + matrix[1, 2]
        first, second = cv2.convertMaps(
            map_x.astype(np.float32), map_y.astype(np.float32), cv2.CV_16SC2
        )
        return first, second

    def _undistorted_matrix(self, camera: PinholeCamera) -> np.ndarray:
        matrix = camera.matrix.copy()
        matrix[:2, 2] += self.margin_px
        return matrix

    def render(
        self,
        camera: PinholeCamera,
        board_rotation: np.ndarray,
        board_translation_mm: np.ndarray,
        noise: np.ndarray,
    ) -> np.ndarray:
        rotation = camera.rotation_matrix @ board_rotation
        translation = camera.rotation_matrix @ board_translation_mm + camera.translation_mm
        homography = (
            self._undistorted_matrix(camera)
            @ np.column_stack((rotation[:, 0], rotation[:, 1], translation))
            @ np.linalg.inv(self.board_to_texture)
        )
        size = (WIDTH + 2 * self.margin_px, HEIGHT + 2 * self.margin_px)
        undistorted = cv2.warpPerspective(
            self.texture, homography, size, flags=cv2.INTER_LINEAR, borderValue=(90.0,)
        )
        image = cv2.remap(undistorted, *self.maps[camera.name], cv2.INTER_LINEAR)
        return cv2.add(image, noise)


def _look(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, 3) board -> world rotation whose printed side faces ``normal``, random in-plane."""
    z_axis = -normal / np.linalg.norm(normal)
    seed = rng.normal(size=3)
    x_axis = seed - z_axis * (seed @ z_axis)
    x_axis /= np.linalg.norm(x_axis)
    return np.column_stack((x_axis, np.cross(z_axis, x_axis), z_axis))


def _twin_board_poses(
    cameras: Sequence[PinholeCamera], board: ChArUcoBoard, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Board poses as one would take them: views that fill each camera's image at 15-45 degree
    tilts, then views shared by two cameras, facing between them."""
    board_size = np.array([board.squares_x * board.square_mm, board.squares_y * board.square_mm])

    def centre_in_view(camera: PinholeCamera, spread: float) -> np.ndarray:
        low, high = 0.5 - spread / 2, 0.5 + spread / 2
        pixel = rng.uniform((low * WIDTH, low * HEIGHT), (high * WIDTH, high * HEIGHT))
        normalized = cv2.undistortPoints(
            pixel.reshape(1, 1, 2), camera.matrix, camera.distortion
        ).ravel()
        in_camera = np.append(normalized, 1.0) * rng.uniform(330.0, 450.0)
        return camera.rotation_matrix.T @ (in_camera - camera.translation_mm)

    def placed(rotation: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rotation, centre - rotation @ np.append(board_size / 2.0, 0.0)

    def toward(camera: PinholeCamera, point: np.ndarray) -> np.ndarray:
        direction = camera.position_mm - point
        return direction / np.linalg.norm(direction)

    poses = []
    for camera in cameras:
        for _ in range(6):
            # Spread over the image, so that the corners constrain the lens distortion.
            centre = centre_in_view(camera, 0.8)
            facing = toward(camera, centre)
            side = rng.normal(size=3)
            side -= facing * (side @ facing)
            tilt = np.radians(rng.uniform(15.0, 45.0))
            normal = np.cos(tilt) * facing + np.sin(tilt) * side / np.linalg.norm(side)
            poses.append(placed(_look(normal, rng), centre))
    # Left and right face each other: the right camera is linked through the top one, which
    # it shares a board with at about 52 degrees each (the least this layout allows).
    pairs = [(0, 2), (0, 3), (2, 3), (1, 3), (1, 3)]
    for first, second in pairs:
        for _ in range(3):
            primary = cameras[first] if rng.random() < 0.5 else cameras[second]
            centre = centre_in_view(primary, 0.5)
            share = rng.uniform(0.45, 0.55)
            normal = share * toward(cameras[first], centre) + (1 - share) * toward(
                cameras[second], centre
            )
            normal = normal / np.linalg.norm(normal) + rng.normal(0.0, 0.03, 3)
            poses.append(placed(_look(normal, rng), centre))
    return poses


# Views steeper than this are not rendered: OpenCV 4.11's ChArUco corners lose accuracy fast
# beyond ~55 degrees (0.07 px RMS at 30-50 degrees here, 0.3-0.6 px at 60-80).
_STEEPEST_VIEW_DEG = 62.0


@pytest.fixture(scope="module")
def twin_calibration() -> tuple[list[PinholeCamera], CalibrationResult]:
    cameras = twin_cameras(TWIN_NAMES, WIDTH, HEIGHT)
    board = ChArUcoBoard(9, 7, 20.0, 15.0)
    rng = np.random.default_rng(2)
    started = time.perf_counter()
    renderer = _BoardRenderer(board, cameras)
    noise_bank = np.clip(rng.normal(0.0, 1.5, (HEIGHT + 32, WIDTH + 32)), 0, 255).astype(np.uint8)
    detections: dict[str, list[BoardDetection | None]] = {name: [] for name in TWIN_NAMES}
    rendered = 0
    for rotation, translation in _twin_board_poses(cameras, board, rng):
        centre = translation + rotation @ np.array([90.0, 70.0, 0.0])
        for camera in cameras:
            to_camera = camera.position_mm - centre
            cosine = (to_camera @ -rotation[:, 2]) / np.linalg.norm(to_camera)
            if cosine < np.cos(np.radians(_STEEPEST_VIEW_DEG)):
                detections[camera.name].append(None)
                continue
            dy, dx = rng.integers(0, 32, 2)
            noise = noise_bank[dy : dy + HEIGHT, dx : dx + WIDTH]
            image = renderer.render(camera, rotation, translation, noise)
            detections[camera.name].append(board.detect(image))
            rendered += 1
    rendered_s = time.perf_counter() - started
    result = calibrate(board, detections, dict.fromkeys(TWIN_NAMES, (WIDTH, HEIGHT)))
    print(
        f"\n{rendered} images rendered and searched in {rendered_s:.2f} s, calibrated in "
        f"{time.perf_counter() - started - rendered_s:.2f} s; views per camera "
        f"{[report.views_detected for report in result.cameras]}, shared {result.shared_views}"
    )
    return cameras, result


def test_twin_intrinsics_are_recovered(
    twin_calibration: tuple[list[PinholeCamera], CalibrationResult],
) -> None:
    cameras, result = twin_calibration
    for truth in cameras:
        camera = result.group[truth.name]
        focal_error = camera.matrix[[0, 1], [0, 1]] / truth.matrix[[0, 1], [0, 1]] - 1.0
        centre_error = camera.matrix[:2, 2] - truth.matrix[:2, 2]
        report = next(report for report in result.cameras if report.name == truth.name)
        print(
            f"{truth.name}: focal error {np.round(100 * focal_error, 3)} %, principal point "
            f"{np.round(centre_error, 2)} px, k1 {camera.distortion[0]:+.4f} (true "
            f"{truth.distortion[0]:+.4f}), RMS {report.intrinsic_rms_px:.3f} / "
            f"{report.joint_rms_px:.3f} px"
        )
        assert np.all(np.abs(focal_error) < 0.005)
        assert np.all(np.abs(centre_error) < 3.0)
        assert report.joint_rms_px < 0.3
    assert result.warnings == ()


def test_twin_camera_poses_are_recovered(
    twin_calibration: tuple[list[PinholeCamera], CalibrationResult],
) -> None:
    cameras, result = twin_calibration
    group = result.group
    assert group.names == TWIN_NAMES
    assert np.allclose(group["cam_left"].translation_mm, 0.0)  # the first camera is the world

    def pose(rotation: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = rotation, translation_mm
        return matrix

    world = pose(cameras[0].rotation_matrix, cameras[0].translation_mm)
    for truth in cameras[1:]:
        expected = pose(truth.rotation_matrix, truth.translation_mm) @ np.linalg.inv(world)
        found = group[truth.name]
        turn = expected[:3, :3].T @ found.rotation_matrix
        angle_deg = np.degrees(np.linalg.norm(cv2.Rodrigues(turn)[0]))
        shift_mm = np.linalg.norm(expected[:3, 3] - found.translation_mm)
        print(
            f"{truth.name}: rotation off by {angle_deg:.3f} deg, translation by {shift_mm:.2f} mm"
        )
        assert angle_deg < 0.1
    for (first, second), baseline_mm in group.baselines_mm().items():
        true_mm = np.linalg.norm(
            cameras[TWIN_NAMES.index(first)].position_mm
            - cameras[TWIN_NAMES.index(second)].position_mm
        )
        print(f"baseline {first}-{second}: {baseline_mm:.2f} mm, true {true_mm:.2f} mm")
        assert abs(baseline_mm - true_mm) < 0.5


def test_twin_calibration_triangulates(
    twin_calibration: tuple[list[PinholeCamera], CalibrationResult], tmp_path: Path
) -> None:
    """Through the file: the calibrated group triangulates the twin's exact projections of the
    jumping mouse close to where the mouse really was."""
    from acquisition.sim.skeleton import JumpModel, JumpParameters
    from tracking.triangulation import triangulate

    cameras, result = twin_calibration
    path = tmp_path / "calibration.toml"
    result.group.save(path)
    group = CameraGroup.load(path)
    jump = JumpModel(JumpParameters())
    points_mm = jump.points_mm(np.linspace(1.0, 3.0, 50)).reshape(-1, 3)
    pixels = np.stack([camera.project(points_mm) for camera in cameras])
    estimate = triangulate(group, pixels)
    # The calibration's world is the first camera's frame: bring the truth there.
    truth_mm = points_mm @ cameras[0].rotation_matrix.T + cameras[0].translation_mm
    error = np.linalg.norm(estimate - truth_mm, axis=1)
    # Most of that is the first camera's own small pose error, which moves the whole frame;
    # the shape of the jump, after the best rigid fit, is much closer.
    aligned = _rigid_fit(estimate, truth_mm)
    shape_error = np.linalg.norm(aligned - truth_mm, axis=1)
    print(
        f"3D error of the twin's exact projections: median {np.median(error):.3f} mm (max "
        f"{error.max():.3f}); after a rigid fit median {np.median(shape_error):.3f} mm (max "
        f"{shape_error.max():.3f})"
    )
    assert np.median(error) < 1.0
    assert np.median(shape_error) < 0.1


def _rigid_fit(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``points`` (N, 3) moved by the rotation and translation that best fit ``target``."""
    centre, target_centre = points.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((points - centre).T @ (target - target_centre))
    correction = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = (u @ correction @ vt).T
    return np.asarray((points - centre) @ rotation.T + target_centre)


# --- failures ------------------------------------------------------------------------------------


def test_images_are_found_in_folders_and_globs(tmp_path: Path) -> None:
    blank = np.full((60, 80), 128, dtype=np.uint8)
    for name in ("frame10.png", "frame2.png", "frame1.jpg", "notes.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            cv2.imwrite(str(tmp_path / name), blank)
    assert [path.name for path in find_images(tmp_path)] == [
        "frame1.jpg",
        "frame2.png",
        "frame10.png",
    ]
    assert [path.name for path in find_images(tmp_path / "*.png")] == ["frame2.png", "frame10.png"]
    with pytest.raises(CalibrationError, match="does not exist"):
        find_images(tmp_path / "missing")
    with pytest.raises(CalibrationError, match="no files match"):
        find_images(tmp_path / "*.bmp")
    with pytest.raises(CalibrationError, match="is not a folder"):
        find_images(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        find_images(empty)


def test_calibration_failures(tmp_path: Path) -> None:
    board = Chessboard(9, 6, 30.0)
    blank_folder = tmp_path / "blank"
    blank_folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(blank_folder / f"{index}.png"), np.full((60, 80), 128, dtype=np.uint8))
    with pytest.raises(CalibrationError, match=r"camera a: the board .* was not found in any of 3"):
        calibrate_image_folders(board, {"a": blank_folder})
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "0.png"), np.full((60, 80), 128, dtype=np.uint8))
    with pytest.raises(CalibrationError, match="different numbers of images"):
        calibrate_image_folders(board, {"a": blank_folder, "b": other})
    (other / "1.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match=r"cannot read image .*1\.png"):
        calibrate_image_folders(board, {"b": other})
    with pytest.raises(CalibrationError, match=r"camera b: folder .* does not exist"):
        calibrate_image_folders(board, {"a": blank_folder, "b": tmp_path / "nowhere"})


def test_too_few_views_and_unlinked_cameras() -> None:
    board = Chessboard(9, 6, 30.0)
    view = BoardDetection(
        np.arange(54), board.object_points_mm(), board.object_points_mm()[:, :2] + 100.0
    )
    with pytest.raises(CalibrationError, match="camera a: the board was found in 2 images"):
        calibrate(board, {"a": [view, view, None]}, {"a": (640, 480)})
    with pytest.raises(CalibrationError, match="reference camera 'c'"):
        calibrate(board, {"a": [view] * 3}, {"a": (640, 480)}, reference_camera="c")
    with pytest.raises(CalibrationError, match="same number of frames"):
        calibrate(board, {"a": [view] * 3, "b": [view] * 4}, dict.fromkeys("ab", (640, 480)))


@needs_bouguet
def test_cameras_that_never_share_a_view(
    bouguet_detections: dict[str, list[BoardDetection | None]],
) -> None:
    left = list(bouguet_detections["left"])
    right = list(bouguet_detections["right"])
    # The same images, but the left camera sees the first half and the right the second.
    left[7:] = [None] * 7
    right[:7] = [None] * 7
    with pytest.raises(CalibrationError, match=r"cameras \['right'\] never saw the board"):
        calibrate(
            Chessboard(9, 6, 30.0),
            {"left": left, "right": right},
            {"left": (640, 480), "right": (640, 480)},
        )


# --- the rig calibrate command -------------------------------------------------------------------


def _run_command(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rig")
    register(parser.add_subparsers())
    args = parser.parse_args(["calibrate", *arguments])
    return int(args.handler(args))


@needs_bouguet
def test_command_on_bouguet_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "stereo.toml"
    code = _run_command(
        [
            "--board",
            "chessboard:9x6:30",
            "--camera",
            f"left={BOUGUET}/left*.jpg",
            "--camera",
            f"right={BOUGUET}/right*.jpg",
            "--output",
            str(output),
        ]
    )
    printed = capsys.readouterr()
    print(printed.out)
    assert code == 0, printed.err
    assert "left: board in 14 of 14 images" in printed.out
    assert "baseline left - right: 99.8" in printed.out
    group = CameraGroup.load(output)
    assert group.names == ["left", "right"]
    assert group.metadata["board"] == "chessboard:9x6:30"


def test_command_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = str(tmp_path / "out.toml")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--board", "chessboard:9x6", "--camera", f"a={empty}"], 2, "not understood"),
        (["--board", "chessboard:9x6:30", "--camera", str(empty)], 2, "NAME=FOLDER"),
        (
            ["--board", "chessboard:9x6:30", "--camera", f"a={empty}", "--camera", f"a={empty}"],
            2,
            "given twice",
        ),
        (["--board", "chessboard:9x6:30", "--camera", f"a={tmp_path / 'no'}"], 1, "does not exist"),
        (["--board", "chessboard:9x6:30", "--camera", f"a={empty}"], 1, "no images"),
        (["--board", str(tmp_path / "b.toml"), "--camera", f"a={empty}"], 2, "does not exist"),
    ]
    for arguments, expected_code, message in cases:
        code = _run_command([*arguments, "--output", output])
        printed = capsys.readouterr()
        assert code == expected_code, (arguments, printed.err)
        assert message in printed.err, (arguments, printed.err)
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "0.png"), np.full((60, 80), 128, dtype=np.uint8))
    code = _run_command(
        ["--board", "charuco:7x5:20:15", "--camera", f"a={blank}", "--output", output]
    )
    assert code == 1 and "was not found in any of 1 images" in capsys.readouterr().err
    code = _run_command(
        ["--board", "charuco:7x5:20:15", "--camera", f"a={blank}", "--output", "/nowhere/x.toml"]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not Path(output).exists()
