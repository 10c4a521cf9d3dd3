"""Calibrating the rig's cameras from images of a ChArUco board or a chessboard.

The steps, each a function of its own:

1. ``parse_board``: the board from a compact spec (``"charuco:7x5:20:15:DICT_4X4_50"``,
   ``"chessboard:9x6:30"``) or a TOML file with the same fields.
2. ``Board.detect``: the board's corners in one grayscale image (``BoardDetection``).
3. ``calibrate_intrinsics``: camera matrix and lens distortion of one camera
   (``cv2.calibrateCamera``), with its RMS reprojection error.
4. ``calibrate``: intrinsics of every camera, then pairwise ``cv2.stereoCalibrate`` (intrinsics
   fixed) on the images in which two cameras see the board, chained along the best-connected
   pairs into one world frame (the reference camera's, the first camera unless told otherwise),
   then a joint refinement (bundle adjustment) of every camera pose, every board pose and, by
   default, every camera's intrinsics, that minimizes the reprojection error over all cameras.
5. ``calibrate_image_folders``: the same from image files, one folder (or glob) per camera;
   frames are matched across cameras by position in the sorted file names.

Lengths are mm (the board's unit), so the camera group's translations are mm.
"""

from __future__ import annotations

import functools
import glob
import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from scipy.sparse import csr_matrix

from tracking.camera_group import Camera, CameraGroup, LensArrays

log = logging.getLogger(__name__)

DEFAULT_DICTIONARY = "DICT_4X4_50"
# A view needs this many corners, not all on one line, to constrain a board pose.
MIN_CORNERS_PER_VIEW = 6
# Intrinsics need several views; fewer leave focal length and distortion poorly determined.
MIN_VIEWS_PER_CAMERA = 3
# Below this, warn that the intrinsics may be unreliable.
RECOMMENDED_VIEWS_PER_CAMERA = 10
# Two cameras are chained only through this many images in which both see the board.
MIN_SHARED_VIEWS = 2
DEFAULT_MAX_ERROR_PX = 1.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm")
# cornerSubPix searches a window of this share of the smallest corner spacing on each side:
# large enough to average over the edges, small enough to stay clear of the next corner.
# On Bouguet's 640x480 stereo images (spacing 19-37 px) a fixed 11 px window biased the focal
# length by 3.5 px; this rule reproduces his corners to 0.03 px.
_SUBPIX_WINDOW_SHARE = 0.3
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-5)
_CHESSBOARD_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE


class CalibrationError(ValueError):
    """Calibration cannot proceed: a missing folder, no images, a board never detected, ..."""


# --- boards --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BoardDetection:
    """The board corners found in one image."""

    corner_ids: np.ndarray  # (K,) int, the board's own corner numbering
    object_points_mm: np.ndarray  # (K, 3) on the board (z = 0)
    image_points_px: np.ndarray  # (K, 2)

    def __post_init__(self) -> None:
        count = len(self.corner_ids)
        if self.object_points_mm.shape != (count, 3) or self.image_points_px.shape != (count, 2):
            raise ValueError(
                f"a detection of {count} corners needs object points ({count}, 3) and image "
                f"points ({count}, 2), got {self.object_points_mm.shape} and "
                f"{self.image_points_px.shape}"
            )

    def select(self, corner_ids: np.ndarray) -> BoardDetection:
        """The corners with the given ids, in that order (ids must have been detected)."""
        index = {int(corner): row for row, corner in enumerate(self.corner_ids)}
        rows = np.array([index[int(corner)] for corner in corner_ids], dtype=np.intp)
        return BoardDetection(
            corner_ids=self.corner_ids[rows],
            object_points_mm=self.object_points_mm[rows],
            image_points_px=self.image_points_px[rows],
        )


class Board(Protocol):
    """What calibration needs of a board."""

    @property
    def spec(self) -> str:
        """The compact spec string that ``parse_board`` reads back."""
        ...

    def describe(self) -> str:
        """One line for people."""
        ...

    def detect(self, image: np.ndarray) -> BoardDetection | None:
        """Corners in a grayscale (H, W) uint8 image, or None when too few are found."""
        ...


def _positive_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _positive_mm(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{what} must be a length in mm, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return float(value)


def _format_mm(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class ChArUcoBoard:
    """A ChArUco board: a chessboard of ``squares_x`` x ``squares_y`` squares with ArUco markers
    in the white squares. Corners are identified by the markers, so a board seen partly, or
    from any side, still gives corners that match across cameras.

    ``legacy_pattern``: boards made by OpenCV before 4.6 (and by older anipose) with an even
    number of rows start with a marker in a different square; set it for those.
    """

    squares_x: int
    squares_y: int
    square_mm: float
    marker_mm: float
    dictionary: str = DEFAULT_DICTIONARY
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "squares_x", _positive_int(self.squares_x, "squares_x", 2))
        object.__setattr__(self, "squares_y", _positive_int(self.squares_y, "squares_y", 2))
        object.__setattr__(self, "square_mm", _positive_mm(self.square_mm, "square_mm"))
        object.__setattr__(self, "marker_mm", _positive_mm(self.marker_mm, "marker_mm"))
        if self.marker_mm >= self.square_mm:
            raise ValueError(
                f"marker_mm ({self.marker_mm:g}) must be smaller than square_mm "
                f"({self.square_mm:g})"
            )
        if not isinstance(self.legacy_pattern, bool):
            raise ValueError(f"legacy_pattern must be true or false, got {self.legacy_pattern!r}")
        marker_count = self.squares_x * self.squares_y // 2
        available = _aruco_dictionary(self.dictionary).bytesList.shape[0]
        if marker_count > available:
            raise ValueError(
                f"a {self.squares_x}x{self.squares_y} ChArUco board needs {marker_count} markers, "
                f"{self.dictionary} has only {available}"
            )

    @property
    def spec(self) -> str:
        spec = (
            f"charuco:{self.squares_x}x{self.squares_y}:{_format_mm(self.square_mm)}:"
            f"{_format_mm(self.marker_mm)}:{self.dictionary}"
        )
        return spec + (":legacy" if self.legacy_pattern else "")

    @property
    def corner_count(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    def describe(self) -> str:
        legacy = ", legacy pattern" if self.legacy_pattern else ""
        return (
            f"ChArUco board {self.squares_x}x{self.squares_y} squares of "
            f"{_format_mm(self.square_mm)} mm, {_format_mm(self.marker_mm)} mm markers "
            f"({self.dictionary}{legacy}), {self.corner_count} corners"
        )

    def opencv_board(self) -> cv2.aruco.CharucoBoard:
        return _charuco_board(self)

    def render(self, pixels_per_mm: float, margin_mm: float = 0.0) -> np.ndarray:
        """The board as a (H, W) uint8 image to print, ``pixels_per_mm`` in the board's plane
        (print at that scale and measure a square to check it)."""
        width_px = round((self.squares_x * self.square_mm + 2 * margin_mm) * pixels_per_mm)
        height_px = round((self.squares_y * self.square_mm + 2 * margin_mm) * pixels_per_mm)
        image = self.opencv_board().generateImage(
            (width_px, height_px), marginSize=round(margin_mm * pixels_per_mm)
        )
        return np.asarray(image, dtype=np.uint8)

    def detect(self, image: np.ndarray) -> BoardDetection | None:
        gray = _grayscale(image)
        corners, ids, _, _ = _charuco_detector(self).detectBoard(gray)
        if ids is None or len(ids) < MIN_CORNERS_PER_VIEW:
            return None
        # Typed loosely: OpenCV's stubs want a sequence of corners where it takes the array.
        board: Any = self.opencv_board()
        if board.checkCharucoCornersCollinear(ids):
            return None
        object_points, image_points = board.matchImagePoints(corners, ids)
        return BoardDetection(
            corner_ids=np.asarray(ids, dtype=np.int64).ravel(),
            object_points_mm=np.asarray(object_points, dtype=np.float64).reshape(-1, 3),
            image_points_px=np.asarray(image_points, dtype=np.float64).reshape(-1, 2)
            - charuco_corner_offset_px(),
        )


@functools.cache
def _aruco_dictionary(name: str) -> cv2.aruco.Dictionary:
    identifier = getattr(cv2.aruco, name, None) if name.startswith("DICT_") else None
    if not isinstance(identifier, int):
        known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))
        raise ValueError(f"unknown ArUco dictionary {name!r}; known: {', '.join(known)}")
    return cv2.aruco.getPredefinedDictionary(identifier)


@functools.cache
def _charuco_board(board: ChArUcoBoard) -> cv2.aruco.CharucoBoard:
    opencv_board = cv2.aruco.CharucoBoard(
        (board.squares_x, board.squares_y),
        board.square_mm,
        board.marker_mm,
        _aruco_dictionary(board.dictionary),
    )
    opencv_board.setLegacyPattern(board.legacy_pattern)
    return opencv_board


@functools.cache
def _charuco_detector(board: ChArUcoBoard) -> cv2.aruco.CharucoDetector:
    return cv2.aruco.CharucoDetector(_charuco_board(board))


@functools.cache
def charuco_corner_offset_px() -> float:
    """The constant offset this OpenCV's ``CharucoDetector`` adds to every corner (x and y).

    OpenCV 4.7 to 4.12 (at least) return ChArUco corners shifted by +0.5 px (opencv/opencv issue
    25539, fixed by pull request 28380). A constant shift moves the principal point, and with it
    every camera's orientation by ~0.04 degrees at f = 800 px, which is 0.25 mm at 400 mm. The
    offset is measured once on a rendered board whose corners are known exactly, so a fixed
    OpenCV needs no change here.
    """
    square_px = 40
    board = cv2.aruco.CharucoBoard((5, 5), float(square_px), 30.0, _aruco_dictionary("DICT_4X4_50"))
    border_px = square_px
    image = cv2.copyMakeBorder(
        board.generateImage((5 * square_px, 5 * square_px), marginSize=0),
        border_px,
        border_px,
        border_px,
        border_px,
        cv2.BORDER_CONSTANT,
        value=(255.0,),
    )
    corners, ids, _, _ = cv2.aruco.CharucoDetector(board).detectBoard(image)
    if ids is None or len(ids) < 4:
        return 0.0
    # Square edges fall between pixels, so corner k sits at border + k * square - 0.5.
    object_points = np.asarray(board.getChessboardCorners())[np.asarray(ids).ravel(), :2]
    expected = object_points + border_px - 0.5
    offset = float(np.mean(np.asarray(corners).reshape(-1, 2) - expected))
    return round(offset * 2.0) / 2.0  # whole half-pixels: the bug's size, not the test's noise


@dataclass(frozen=True)
class Chessboard:
    """A plain chessboard with ``inner_corners_x`` x ``inner_corners_y`` inner corners.

    The whole board must be visible in an image. Its corners are numbered row by row from the
    corner whose first square is dark, which makes the numbering the same in every camera if
    one count is odd and the other even (e.g. 9x6); a board with both odd or both even looks
    the same turned by 180 degrees, so cameras facing each other may number it differently.
    """

    inner_corners_x: int
    inner_corners_y: int
    square_mm: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "inner_corners_x", _positive_int(self.inner_corners_x, "inner_corners_x", 2)
        )
        object.__setattr__(
            self, "inner_corners_y", _positive_int(self.inner_corners_y, "inner_corners_y", 2)
        )
        object.__setattr__(self, "square_mm", _positive_mm(self.square_mm, "square_mm"))
        if self.inner_corners_x * self.inner_corners_y < MIN_CORNERS_PER_VIEW:
            raise ValueError(f"a chessboard needs at least {MIN_CORNERS_PER_VIEW} inner corners")

    @property
    def spec(self) -> str:
        return f"chessboard:{self.inner_corners_x}x{self.inner_corners_y}:{self.square_mm:g}"

    @property
    def corner_count(self) -> int:
        return self.inner_corners_x * self.inner_corners_y

    @property
    def is_symmetric(self) -> bool:
        """True when the board looks the same turned by 180 degrees (corner order ambiguous)."""
        return (self.inner_corners_x + self.inner_corners_y) % 2 == 0

    def describe(self) -> str:
        return (
            f"chessboard {self.inner_corners_x}x{self.inner_corners_y} inner corners, "
            f"{_format_mm(self.square_mm)} mm squares"
        )

    def object_points_mm(self) -> np.ndarray:
        """(K, 3) corner positions on the board, row by row."""
        grid = np.mgrid[0 : self.inner_corners_y, 0 : self.inner_corners_x]
        points = np.zeros((self.corner_count, 3))
        points[:, 0] = grid[1].ravel() * self.square_mm
        points[:, 1] = grid[0].ravel() * self.square_mm
        return points

    def detect(self, image: np.ndarray) -> BoardDetection | None:
        gray = _grayscale(image)
        pattern = (self.inner_corners_x, self.inner_corners_y)
        found, corners = cv2.findChessboardCorners(gray, pattern, flags=_CHESSBOARD_FLAGS)
        if not found or corners is None:
            return None
        grid = corners.reshape(self.inner_corners_y, self.inner_corners_x, 2).astype(np.float64)
        half_window = int(np.clip(round(_SUBPIX_WINDOW_SHARE * _min_spacing_px(grid)), 2, 15))
        refined = cv2.cornerSubPix(
            gray,
            corners.astype(np.float32),
            (half_window, half_window),
            (-1, -1),
            _SUBPIX_CRITERIA,
        )
        grid = refined.reshape(self.inner_corners_y, self.inner_corners_x, 2).astype(np.float64)
        if not self.is_symmetric and not _first_square_is_dark(gray, grid):
            grid = grid[::-1, ::-1]  # the same corners numbered from the opposite end
        return BoardDetection(
            corner_ids=np.arange(self.corner_count, dtype=np.int64),
            object_points_mm=self.object_points_mm(),
            image_points_px=grid.reshape(-1, 2),
        )


def _min_spacing_px(grid: np.ndarray) -> float:
    """Smallest distance between neighbouring corners of a (rows, columns, 2) grid."""
    along_rows = np.linalg.norm(np.diff(grid, axis=1), axis=2)
    along_columns = np.linalg.norm(np.diff(grid, axis=0), axis=2)
    return float(min(along_rows.min(), along_columns.min()))


def _first_square_is_dark(gray: np.ndarray, grid: np.ndarray) -> bool:
    """Whether the square between corners [0,0] and [1,1] is darker than the one after it."""

    def square_gray(row: int, column: int) -> float:
        centre = grid[row : row + 2, column : column + 2].reshape(-1, 2).mean(axis=0)
        x, y = np.clip(np.round(centre).astype(int), 1, np.array(gray.shape[::-1]) - 2)
        return float(gray[y - 1 : y + 2, x - 1 : x + 2].mean())

    return square_gray(0, 0) < square_gray(0, 1)


def _grayscale(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = cv2.cvtColor(
            array, cv2.COLOR_BGR2GRAY if array.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        )
    if array.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) or color (H, W, 3) image, got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {array.dtype}")
    return array


# --- board specs ---------------------------------------------------------------------------------

_CHARUCO_FIELDS = {"type", "squares_x", "squares_y", "square_mm", "marker_mm", "dictionary",
                   "legacy_pattern"}  # fmt: skip
_CHESSBOARD_FIELDS = {"type", "inner_corners_x", "inner_corners_y", "square_mm"}
_SIZE = re.compile(r"(\d+)x(\d+)")


def parse_board(spec_or_file: str | Path) -> ChArUcoBoard | Chessboard:
    """A board from a spec string or a TOML file.

    Spec strings (fields separated by ``:``, lengths in mm):

    - ``charuco:COLSxROWS:SQUARE:MARKER[:DICTIONARY][:legacy]``, e.g.
      ``charuco:7x5:20:15:DICT_4X4_50`` (squares across and down, as printed);
    - ``chessboard:COLSxROWS:SQUARE``, e.g. ``chessboard:9x6:30`` (inner corners).

    A file (``*.toml``) holds the same fields, at the top level or in a ``[board]`` table:
    ``type = "charuco"``, ``squares_x``, ``squares_y``, ``square_mm``, ``marker_mm``,
    ``dictionary``, ``legacy_pattern``; or ``type = "chessboard"``, ``inner_corners_x``,
    ``inner_corners_y``, ``square_mm``.
    """
    text = str(spec_or_file)
    path = Path(text)
    if isinstance(spec_or_file, Path) or text.lower().endswith(".toml") or path.is_file():
        return _board_from_file(path)
    return _board_from_spec(text)


def _board_from_spec(spec: str) -> ChArUcoBoard | Chessboard:
    fields = spec.strip().split(":")
    kind = fields[0].lower()
    try:
        if kind == "charuco" and 4 <= len(fields) <= 6:
            squares_x, squares_y = _parse_size(fields[1])
            extras = fields[4:]
            legacy = bool(extras) and extras[-1].lower() == "legacy"
            if legacy:
                extras = extras[:-1]
            if len(extras) > 1:
                raise ValueError("too many fields")
            return ChArUcoBoard(
                squares_x=squares_x,
                squares_y=squares_y,
                square_mm=float(fields[2]),
                marker_mm=float(fields[3]),
                dictionary=extras[0] if extras else DEFAULT_DICTIONARY,
                legacy_pattern=legacy,
            )
        if kind == "chessboard" and len(fields) == 3:
            corners_x, corners_y = _parse_size(fields[1])
            return Chessboard(corners_x, corners_y, float(fields[2]))
    except ValueError as error:
        raise ValueError(f"board spec {spec!r}: {error}") from None
    raise ValueError(
        f"board spec {spec!r} not understood; expected "
        "'charuco:COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY][:legacy]' or "
        "'chessboard:COLSxROWS:SQUARE_MM' (or a .toml file)"
    )


def _parse_size(text: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"size {text!r} must look like 7x5")
    return int(match.group(1)), int(match.group(2))


def _board_from_file(path: Path) -> ChArUcoBoard | Chessboard:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ValueError(f"board file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"board file {path}: {error}") from None
    table = document.get("board", document)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: key 'board' must be a table")
    kind = table.get("type")
    if kind not in ("charuco", "chessboard"):
        raise ValueError(f'{path}: key \'type\' must be "charuco" or "chessboard", got {kind!r}')
    allowed = _CHARUCO_FIELDS if kind == "charuco" else _CHESSBOARD_FIELDS
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} for a {kind} board")
    missing = sorted(allowed - {"type", "dictionary", "legacy_pattern"} - set(table))
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r}")
    fields = {key: value for key, value in table.items() if key != "type"}
    try:
        return ChArUcoBoard(**fields) if kind == "charuco" else Chessboard(**fields)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# --- one camera ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Intrinsics:
    """One camera's matrix and lens distortion from ``calibrate_intrinsics``."""

    matrix: np.ndarray  # (3, 3)
    distortion: np.ndarray  # (5,) k1, k2, p1, p2, k3
    rms_px: float  # RMS reprojection error over all corners used
    views_used: int
    rejected_frames: tuple[int, ...]  # views left out for reprojecting far worse than the rest


def _usable(detection: BoardDetection | None) -> bool:
    return detection is not None and len(detection.corner_ids) >= MIN_CORNERS_PER_VIEW


def calibrate_intrinsics(
    detections: Sequence[BoardDetection | None],
    image_size_px: tuple[int, int],
    *,
    fix_k3: bool = True,
) -> Intrinsics:
    """Camera matrix and distortion from the board views of one camera (``cv2.calibrateCamera``).

    ``image_size_px`` is (width, height). ``fix_k3`` keeps the sixth-order radial term at 0,
    as Bouguet's toolbox does by default: ordinary lenses do not need it, and it overfits.

    The start is computed from the views that show much of the board: the homography of a few
    corners at a steep angle is poorly determined, and in a synthetic test one such view pulled
    OpenCV's own start into a minimum 46% off in focal length. Views that then reproject
    far worse than the others (over 1 px and 3x the median view) are left out, once.
    """
    frames = [frame for frame, detection in enumerate(detections) if _usable(detection)]
    views = [detection for detection in detections if detection is not None and _usable(detection)]
    if len(views) < MIN_VIEWS_PER_CAMERA:
        raise CalibrationError(
            f"the board was found in {len(views)} images; "
            f"at least {MIN_VIEWS_PER_CAMERA} are needed"
        )
    size = (int(image_size_px[0]), int(image_size_px[1]))
    flags = cv2.CALIB_USE_INTRINSIC_GUESS | (cv2.CALIB_FIX_K3 if fix_k3 else 0)
    most_corners = max(len(view.corner_ids) for view in views)
    seeds = [
        view
        for view in views
        if len(view.corner_ids) >= max(_MIN_CORNERS_FOR_START, most_corners // 2)
    ]
    start = cv2.initCameraMatrix2D(
        [_object_points(view) for view in seeds or views],
        [_image_points(view) for view in seeds or views],
        size,
    )
    rms, matrix, distortion, view_errors = _calibrate_camera(views, size, start, flags)
    outliers = view_errors > max(
        _OUTLIER_VIEW_PX, _OUTLIER_VIEW_SHARE * float(np.median(view_errors))
    )
    rejected: tuple[int, ...] = ()
    if np.any(outliers) and len(views) - np.count_nonzero(outliers) >= MIN_VIEWS_PER_CAMERA:
        rejected = tuple(frame for frame, outlier in zip(frames, outliers, strict=True) if outlier)
        views = [view for view, outlier in zip(views, outliers, strict=True) if not outlier]
        rms, matrix, distortion, _ = _calibrate_camera(views, size, matrix, flags)
    return Intrinsics(
        matrix=matrix,
        distortion=distortion,
        rms_px=rms,
        views_used=len(views),
        rejected_frames=rejected,
    )


_MIN_CORNERS_FOR_START = 9
_OUTLIER_VIEW_PX = 1.0
_OUTLIER_VIEW_SHARE = 3.0


def _object_points(view: BoardDetection) -> np.ndarray:
    return view.object_points_mm.astype(np.float32).reshape(-1, 1, 3)


def _image_points(view: BoardDetection) -> np.ndarray:
    return view.image_points_px.astype(np.float32).reshape(-1, 1, 2)


def _calibrate_camera(
    views: Sequence[BoardDetection], size: tuple[int, int], start: np.ndarray, flags: int
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """RMS px, matrix (3, 3), distortion (5,) and each view's RMS px (V,)."""
    result = cv2.calibrateCameraExtended(
        [_object_points(view) for view in views],
        [_image_points(view) for view in views],
        size,
        np.array(start, dtype=np.float64),
        np.zeros(5),
        flags=flags,
    )
    rms, matrix, distortion = result[0], result[1], result[2]
    view_errors = np.asarray(result[7], dtype=np.float64).ravel()
    coefficients = np.zeros(5)
    flat = np.asarray(distortion, dtype=np.float64).ravel()
    coefficients[: min(5, flat.size)] = flat[:5]
    return float(rms), np.asarray(matrix, dtype=np.float64), coefficients, view_errors


# --- all cameras ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraReport:
    """How well one camera calibrated."""

    name: str
    images: int  # images given
    views_detected: int  # images with the board found
    views_rejected: int  # of those, left out for reprojecting far worse than the rest
    intrinsic_rms_px: float  # cv2.calibrateCamera's RMS reprojection error, this camera alone
    joint_rms_px: float  # RMS after the joint refinement over all cameras (NaN for one camera)


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """A calibrated camera group and how well each camera fits."""

    group: CameraGroup
    cameras: tuple[CameraReport, ...]
    shared_views: dict[tuple[str, str], int]  # images in which both cameras saw the board
    warnings: tuple[str, ...]


def calibrate(
    board: Board,
    detections: Mapping[str, Sequence[BoardDetection | None]],
    image_sizes_px: Mapping[str, tuple[int, int]],
    *,
    reference_camera: str | None = None,
    fix_k3: bool = True,
    refine_intrinsics: bool = True,
    max_error_px: float = DEFAULT_MAX_ERROR_PX,
) -> CalibrationResult:
    """Calibrate cameras from their board detections, one sequence per camera (frame-matched:
    entry k of every camera is the same moment; None where the board was not found).

    The world frame is ``reference_camera``'s (default: the first camera). With
    ``refine_intrinsics`` the joint refinement also adjusts every camera's matrix and
    distortion (from all of its views); otherwise they stay as each camera's own
    ``calibrate_intrinsics`` found them. A camera whose RMS reprojection error exceeds
    ``max_error_px`` gets a warning (logged and in the result).
    """
    names = list(detections)
    if not names:
        raise CalibrationError("no cameras to calibrate")
    frame_counts = {name: len(detections[name]) for name in names}
    if len(set(frame_counts.values())) != 1:
        raise CalibrationError(
            f"every camera needs the same number of frames to match them, got {frame_counts}"
        )
    missing_sizes = [name for name in names if name not in image_sizes_px]
    if missing_sizes:
        raise CalibrationError(f"no image size for {missing_sizes}")
    reference = names[0] if reference_camera is None else reference_camera
    if reference not in names:
        raise CalibrationError(f"reference camera {reference!r} is not one of {names}")

    warnings: list[str] = []
    intrinsics: dict[str, Intrinsics] = {}
    kept: dict[str, list[BoardDetection | None]] = {}
    for name in names:
        try:
            intrinsics[name] = calibrate_intrinsics(
                detections[name], image_sizes_px[name], fix_k3=fix_k3
            )
        except CalibrationError as error:
            raise CalibrationError(f"camera {name}: {error}") from None
        rejected = set(intrinsics[name].rejected_frames)
        kept[name] = [
            None if frame in rejected or not _usable(detection) else detection
            for frame, detection in enumerate(detections[name])
        ]
        warnings.extend(_view_warnings(name, intrinsics[name]))
    if isinstance(board, Chessboard) and board.is_symmetric and len(names) > 1:
        warnings.append(
            f"the {board.inner_corners_x}x{board.inner_corners_y} chessboard looks the same "
            "turned by 180 degrees: cameras may number its corners differently (use one odd "
            "and one even count, or a ChArUco board)"
        )

    shared = _shared_views(names, kept)
    lenses = {name: _Lens(intrinsics[name].matrix, intrinsics[name].distortion) for name in names}
    joint_rms: dict[str, float] = {}
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = {reference: (np.eye(3), np.zeros(3))}
    if len(names) > 1:
        poses = _chain_stereo_poses(names, reference, kept, intrinsics, shared)
        poses, lenses, joint_rms = _bundle_adjust(
            names,
            reference,
            kept,
            poses,
            lenses,
            refine_intrinsics=refine_intrinsics,
            fix_k3=fix_k3,
        )

    cameras = []
    reports = []
    for name in names:
        rotation, translation = poses[name]
        rotation_vector, _ = cv2.Rodrigues(rotation)
        width, height = image_sizes_px[name]
        cameras.append(
            Camera(
                name=name,
                width=int(width),
                height=int(height),
                matrix=lenses[name].matrix,
                distortion=lenses[name].distortion,
                rotation_vector=rotation_vector.ravel(),
                translation_mm=translation,
            )
        )
        report = CameraReport(
            name=name,
            images=frame_counts[name],
            views_detected=sum(1 for detection in detections[name] if _usable(detection)),
            views_rejected=len(intrinsics[name].rejected_frames),
            intrinsic_rms_px=intrinsics[name].rms_px,
            joint_rms_px=joint_rms.get(name, float("nan")),
        )
        reports.append(report)
        worst = max(report.intrinsic_rms_px, np.nan_to_num(report.joint_rms_px))
        if worst > max_error_px:
            warnings.append(
                f"camera {name}: reprojection error {worst:.2f} px exceeds {max_error_px:g} px "
                "(check focus, motion blur, the board's flatness and its spec)"
            )
    overall = [rms for rms in joint_rms.values() if np.isfinite(rms)]
    metadata = {
        "adjusted": len(names) > 1,
        "error": float(np.mean(overall)) if overall else reports[0].intrinsic_rms_px,
        "board": board.spec,
        "units": "mm",
        "reference_camera": reference,
    }
    for warning in warnings:
        log.warning(warning)
    return CalibrationResult(
        group=CameraGroup(cameras, metadata),
        cameras=tuple(reports),
        shared_views=shared,
        warnings=tuple(warnings),
    )


def _view_warnings(name: str, intrinsics: Intrinsics) -> list[str]:
    warnings = []
    if intrinsics.views_used < RECOMMENDED_VIEWS_PER_CAMERA:
        warnings.append(
            f"camera {name}: the board was found in only {intrinsics.views_used} usable "
            f"images; {RECOMMENDED_VIEWS_PER_CAMERA} or more, tilted and spread over the image, "
            "give reliable intrinsics"
        )
    if intrinsics.rejected_frames:
        frames = ", ".join(str(frame) for frame in intrinsics.rejected_frames)
        warnings.append(
            f"camera {name}: images {frames} (counting from 0) were left out: their corners "
            "reproject far worse than the other images' (blur, a bent board, a wrong detection?)"
        )
    return warnings


def _shared_views(
    names: Sequence[str], detections: Mapping[str, Sequence[BoardDetection | None]]
) -> dict[tuple[str, str], int]:
    shared = {}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared[(first, second)] = len(_common_views(detections[first], detections[second]))
    return shared


def _common_views(
    first: Sequence[BoardDetection | None], second: Sequence[BoardDetection | None]
) -> list[tuple[BoardDetection, BoardDetection]]:
    """Frames where both cameras saw enough of the same corners, restricted to those corners."""
    pairs = []
    for a, b in zip(first, second, strict=True):
        if a is None or b is None:
            continue
        common = np.intersect1d(a.corner_ids, b.corner_ids)
        if len(common) < MIN_CORNERS_PER_VIEW:
            continue
        a_common = a.select(common)
        if _collinear(a_common.object_points_mm):
            continue
        pairs.append((a_common, b.select(common)))
    return pairs


def _collinear(object_points_mm: np.ndarray) -> bool:
    centred = object_points_mm[:, :2] - object_points_mm[:, :2].mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return bool(singular[1] < 1e-6 * max(singular[0], 1e-12))


def _chain_stereo_poses(
    names: Sequence[str],
    reference: str,
    detections: Mapping[str, Sequence[BoardDetection | None]],
    intrinsics: Mapping[str, Intrinsics],
    shared: Mapping[tuple[str, str], int],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World -> camera (R (3, 3), t (3,)) of every camera from pairwise stereo calibrations,
    chained from the reference always through the pair that shares the most views with a
    camera already placed (a maximum spanning tree)."""
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = {reference: (np.eye(3), np.zeros(3))}
    while len(poses) < len(names):
        best: tuple[int, str, str] | None = None
        for (first, second), count in shared.items():
            if count < MIN_SHARED_VIEWS or (first in poses) == (second in poses):
                continue
            placed, new = (first, second) if first in poses else (second, first)
            if best is None or count > best[0]:
                best = (count, placed, new)
        if best is None:
            unplaced = [name for name in names if name not in poses]
            counts = {f"{a}-{b}": count for (a, b), count in shared.items()}
            raise CalibrationError(
                f"cameras {unplaced} never saw the board together with the others in "
                f"{MIN_SHARED_VIEWS} or more images (images shared per pair: {counts})"
            )
        _, placed, new = best
        rotation, translation = _stereo_pose(
            placed, new, detections[placed], detections[new], intrinsics
        )
        placed_rotation, placed_translation = poses[placed]
        # x_new = R x_placed + T and x_placed = R_p x_world + t_p.
        poses[new] = (rotation @ placed_rotation, rotation @ placed_translation + translation)
    return poses


def _stereo_pose(
    first: str,
    second: str,
    first_detections: Sequence[BoardDetection | None],
    second_detections: Sequence[BoardDetection | None],
    intrinsics: Mapping[str, Intrinsics],
) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), T (3,)) with x_second = R x_first + T, from cv2.stereoCalibrate."""
    pairs = _common_views(first_detections, second_detections)
    result = cv2.stereoCalibrate(
        [_object_points(a) for a, _ in pairs],
        [_image_points(a) for a, _ in pairs],
        [_image_points(b) for _, b in pairs],
        intrinsics[first].matrix,
        intrinsics[first].distortion,
        intrinsics[second].matrix,
        intrinsics[second].distortion,
        (0, 0),  # not used with fixed intrinsics
        flags=cv2.CALIB_FIX_INTRINSIC,
    )
    rotation, translation = result[5], result[6]
    log.debug("stereo %s-%s: %d views, RMS %.3f px", first, second, len(pairs), result[0])
    return np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64).ravel()


# --- joint refinement ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Lens:
    matrix: np.ndarray  # (3, 3)
    distortion: np.ndarray  # (5,)

    def parameters(self) -> np.ndarray:
        """(9,) fx, fy, cx, cy, k1, k2, p1, p2, k3."""
        return np.concatenate(
            ([self.matrix[0, 0], self.matrix[1, 1]], self.matrix[:2, 2], self.distortion)
        )

    @classmethod
    def from_parameters(cls, parameters: np.ndarray, skew: float) -> _Lens:
        fx, fy, cx, cy = parameters[:4]
        matrix = np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(matrix, np.array(parameters[4:9], dtype=np.float64))


@dataclass(frozen=True, eq=False)
class _Observations:
    """Every corner of the frames in the refinement, flattened."""

    camera: np.ndarray  # (O,) camera index
    frame: np.ndarray  # (O,) index into ``frames``
    object_points_mm: np.ndarray  # (O, 3)
    image_points_px: np.ndarray  # (O, 2)
    frames: np.ndarray  # (F,) original frame numbers


def _observations(
    names: Sequence[str],
    detections: Mapping[str, Sequence[BoardDetection | None]],
    min_cameras: int,
) -> _Observations:
    """The corners of every frame that at least ``min_cameras`` cameras saw."""
    frame_count = len(detections[names[0]])
    cameras: list[np.ndarray] = []
    frames: list[np.ndarray] = []
    objects: list[np.ndarray] = []
    images: list[np.ndarray] = []
    kept: list[int] = []
    for frame in range(frame_count):
        seen = [
            (index, detection)
            for index, name in enumerate(names)
            if (detection := detections[name][frame]) is not None
        ]
        if len(seen) < min_cameras:
            continue
        for index, detection in seen:
            count = len(detection.corner_ids)
            cameras.append(np.full(count, index))
            frames.append(np.full(count, len(kept)))
            objects.append(detection.object_points_mm)
            images.append(detection.image_points_px)
        kept.append(frame)
    return _Observations(
        camera=np.concatenate(cameras),
        frame=np.concatenate(frames),
        object_points_mm=np.concatenate(objects),
        image_points_px=np.concatenate(images),
        frames=np.array(kept),
    )


def _rotation_matrices(rotation_vectors: np.ndarray) -> np.ndarray:
    """Rodrigues vectors (K, 3) -> rotation matrices (K, 3, 3)."""
    theta = np.linalg.norm(rotation_vectors, axis=1)
    small = theta < 1e-12
    axis = rotation_vectors / np.where(small, 1.0, theta)[:, None]
    cross = np.zeros((len(theta), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2] = -axis[:, 2], axis[:, 1]
    cross[:, 1, 0], cross[:, 1, 2] = axis[:, 2], -axis[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -axis[:, 1], axis[:, 0]
    sin = np.sin(theta)[:, None, None]
    cos = np.cos(theta)[:, None, None]
    return np.eye(3) + sin * cross + (1.0 - cos) * (cross @ cross)


# Lens parameters the refinement may move, as indices into _Lens.parameters().
_LENS_FREE = (0, 1, 2, 3, 4, 5, 6, 7)
_LENS_FREE_WITH_K3 = (*_LENS_FREE, 8)


def _bundle_adjust(
    names: Sequence[str],
    reference: str,
    detections: Mapping[str, Sequence[BoardDetection | None]],
    poses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    lenses: Mapping[str, _Lens],
    *,
    refine_intrinsics: bool,
    fix_k3: bool,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, _Lens], dict[str, float]]:
    """Refine camera poses (all but the reference's), board poses and optionally the lenses,
    jointly, by least squares on the reprojection error of every corner.

    Parameters: 6 per free camera (Rodrigues vector, translation), 8 or 9 per lens when the
    intrinsics are refined, 6 per board pose. Without intrinsics only frames that two or more
    cameras saw are used (the others only constrain their own board pose); with them, every
    frame, since single views pin down their camera's lens. The Jacobian is sparse (a corner
    depends on one camera, one lens and one board pose), which ``_levenberg_marquardt`` uses.
    """
    observations = _observations(names, detections, min_cameras=1 if refine_intrinsics else 2)
    camera_count = len(names)
    frame_count = len(observations.frames)
    reference_index = names.index(reference)
    free_cameras = [index for index in range(camera_count) if index != reference_index]
    lens_free = np.array(
        (_LENS_FREE if fix_k3 else _LENS_FREE_WITH_K3) if refine_intrinsics else (), dtype=np.intp
    )
    camera_start = np.zeros((camera_count, 6))
    for index, name in enumerate(names):
        rotation, translation = poses[name]
        camera_start[index, :3] = cv2.Rodrigues(rotation)[0].ravel()
        camera_start[index, 3:] = translation
    lens_start = np.stack([lenses[name].parameters() for name in names])  # (C, 9)
    skews = [float(lenses[name].matrix[0, 1]) for name in names]
    frame_start = _initial_board_poses(names, detections, lenses, poses, observations)

    layout = _ParameterLayout(len(free_cameras), camera_count * lens_free.size, frame_count)

    def unpack(parameters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cameras = camera_start.copy()
        cameras[free_cameras] = parameters[layout.cameras].reshape(-1, 6)
        lens = lens_start.copy()
        if lens_free.size:
            lens[:, lens_free] = parameters[layout.lenses].reshape(camera_count, -1)
        frames = parameters[layout.frames].reshape(-1, 6)
        return cameras, lens, frames

    def residuals(parameters: np.ndarray) -> np.ndarray:
        return _corner_residuals(*unpack(parameters), skews, observations)

    start = np.concatenate(
        (camera_start[free_cameras].ravel(), lens_start[:, lens_free].ravel(), frame_start.ravel())
    )
    groups = _column_groups(observations, free_cameras, lens_free.size, layout)
    solution, iterations = _levenberg_marquardt(residuals, groups, start, layout.size)
    log.debug("joint refinement: %d iterations", iterations)
    cameras, lens, frames = unpack(solution)
    squared = np.sum(_corner_residuals(cameras, lens, frames, skews, observations) ** 2, axis=1)
    joint_rms = {
        name: float(np.sqrt(np.mean(squared[observations.camera == index])))
        for index, name in enumerate(names)
        if np.any(observations.camera == index)
    }
    rotations = _rotation_matrices(cameras[:, :3])
    refined_poses = {
        name: (rotations[index], cameras[index, 3:].copy()) for index, name in enumerate(names)
    }
    refined_lenses = {
        name: _Lens.from_parameters(lens[index], skews[index]) for index, name in enumerate(names)
    }
    return refined_poses, refined_lenses, joint_rms


@dataclass(frozen=True)
class _ParameterLayout:
    """Where each group of parameters sits in the flat vector: cameras, lenses, board poses."""

    free_cameras: int
    lens_parameters: int
    frame_count: int

    @property
    def cameras(self) -> slice:
        return slice(0, 6 * self.free_cameras)

    @property
    def lenses(self) -> slice:
        start = 6 * self.free_cameras
        return slice(start, start + self.lens_parameters)

    @property
    def frames(self) -> slice:
        start = 6 * self.free_cameras + self.lens_parameters
        return slice(start, start + 6 * self.frame_count)

    @property
    def size(self) -> int:
        return 6 * self.free_cameras + self.lens_parameters + 6 * self.frame_count


def _initial_board_poses(
    names: Sequence[str],
    detections: Mapping[str, Sequence[BoardDetection | None]],
    lenses: Mapping[str, _Lens],
    poses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    observations: _Observations,
) -> np.ndarray:
    """(F, 6) board -> world poses, each from the camera that saw most of that board."""
    frame_poses = np.zeros((len(observations.frames), 6))
    for slot, frame in enumerate(observations.frames):
        name, detection = max(
            (
                (name, detection)
                for name in names
                if (detection := detections[name][frame]) is not None
            ),
            key=lambda item: len(item[1].corner_ids),
        )
        found, rotation_vector, translation = cv2.solvePnP(
            detection.object_points_mm,
            detection.image_points_px,
            lenses[name].matrix,
            lenses[name].distortion,
            flags=cv2.SOLVEPNP_IPPE,
        )
        if not found:
            raise CalibrationError(f"camera {name}: no board pose in frame {frame}")
        board_rotation, _ = cv2.Rodrigues(rotation_vector)
        camera_rotation, camera_translation = poses[name]
        # board -> world = (world -> camera)^-1 after board -> camera.
        world_rotation = camera_rotation.T @ board_rotation
        world_translation = camera_rotation.T @ (translation.ravel() - camera_translation)
        frame_poses[slot, :3] = cv2.Rodrigues(world_rotation)[0].ravel()
        frame_poses[slot, 3:] = world_translation
    return frame_poses


def _corner_residuals(
    cameras: np.ndarray,
    lenses: np.ndarray,
    frames: np.ndarray,
    skews: Sequence[float],
    observations: _Observations,
) -> np.ndarray:
    """Projected minus detected corners (O, 2) px, for camera poses (C, 6), lens parameters
    (C, 9) as in ``_Lens.parameters`` and board poses (F, 6)."""
    frame_rotations = _rotation_matrices(frames[:, :3])[observations.frame]
    camera_rotations = _rotation_matrices(cameras[:, :3])[observations.camera]
    world = (
        np.einsum("oij,oj->oi", frame_rotations, observations.object_points_mm)
        + frames[observations.frame, 3:]
    )
    in_camera = np.einsum("oij,oj->oi", camera_rotations, world) + cameras[observations.camera, 3:]
    per_corner = lenses[observations.camera]
    lens = LensArrays(
        fx=per_corner[:, 0],
        fy=per_corner[:, 1],
        cx=per_corner[:, 2],
        cy=per_corner[:, 3],
        skew=np.asarray(skews)[observations.camera],
        k1=per_corner[:, 4],
        k2=per_corner[:, 5],
        p1=per_corner[:, 6],
        p2=per_corner[:, 7],
        k3=per_corner[:, 8],
    )
    u, v = lens.to_pixels(in_camera[:, 0] / in_camera[:, 2], in_camera[:, 1] / in_camera[:, 2])
    return np.stack((u, v), axis=1) - observations.image_points_px


def _column_groups(
    observations: _Observations,
    free_cameras: Sequence[int],
    lens_parameter_count: int,
    layout: _ParameterLayout,
) -> list[np.ndarray]:
    """Parameters that can be perturbed together for finite differences.

    Each group is an (O,) array giving, for every corner, the one parameter of the group it
    depends on (-1 for none): parameter j of every camera pose, of every lens, of every board
    pose. A corner depends on one camera, one lens and one board, so 6 + 8 + 6 residual
    evaluations give the whole Jacobian, however many frames there are.
    """
    camera_slot = np.full(int(observations.camera.max()) + 1, -1)
    camera_slot[list(free_cameras)] = np.arange(len(free_cameras))
    slots = camera_slot[observations.camera]
    groups = [
        np.where(slots >= 0, layout.cameras.start + 6 * slots + offset, -1) for offset in range(6)
    ]
    groups += [
        layout.lenses.start + lens_parameter_count * observations.camera + offset
        for offset in range(lens_parameter_count)
    ]
    groups += [layout.frames.start + 6 * observations.frame + offset for offset in range(6)]
    return groups


# Levenberg-Marquardt settings: relative finite-difference step, damping start and limits.
_DIFFERENCE_STEP = 1e-7
_DAMPING_START = 1e-3
_DAMPING_MAX = 1e12
_MAX_ITERATIONS = 200
_COST_TOLERANCE = 1e-12


def _levenberg_marquardt(
    residuals: Callable[[np.ndarray], np.ndarray],
    groups: Sequence[np.ndarray],
    start: np.ndarray,
    parameter_count: int,
) -> tuple[np.ndarray, int]:
    """Minimize the sum of squared ``residuals(x)`` ((O, 2) array) from ``start``.

    The Jacobian is sparse and built by grouped forward differences (``_column_groups``); the
    normal equations are only parameters x parameters, solved densely with Marquardt's
    diagonal damping. scipy's least_squares was tried first: with a sparse Jacobian it must use
    an iterative inner solver, which on a 4-camera problem stopped after 494 iterations short of
    the minimum that a dense step reaches in 4.
    """
    x = start.copy()
    current = residuals(x)
    cost = float(np.sum(current**2))
    damping = _DAMPING_START
    iterations = 0
    while iterations < _MAX_ITERATIONS:
        iterations += 1
        jacobian = _sparse_jacobian(residuals, groups, x, current, parameter_count)
        normal = (jacobian.T @ jacobian).toarray()
        gradient = jacobian.T @ current.ravel()
        diagonal = np.diag(normal).copy()
        diagonal[diagonal <= 0] = 1.0
        improved = False
        while damping < _DAMPING_MAX:
            try:
                step = np.linalg.solve(normal + damping * np.diag(diagonal), -gradient)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            candidate = residuals(x + step)
            candidate_cost = float(np.sum(candidate**2))
            if np.isfinite(candidate_cost) and candidate_cost < cost:
                improved = True
                break
            damping *= 10.0
        if not improved:
            break
        decrease = (cost - candidate_cost) / max(cost, 1e-300)
        x = x + step
        current, cost = candidate, candidate_cost
        damping = max(damping * 0.3, 1e-12)
        if decrease < _COST_TOLERANCE:
            break
    return x, iterations


def _sparse_jacobian(
    residuals: Callable[[np.ndarray], np.ndarray],
    groups: Sequence[np.ndarray],
    x: np.ndarray,
    current: np.ndarray,
    parameter_count: int,
) -> csr_matrix:
    """(2O, P) Jacobian of the flattened residuals by forward differences, one residual
    evaluation per column group."""
    steps = _DIFFERENCE_STEP * np.maximum(1.0, np.abs(x))
    rows: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for group in groups:
        observed = np.flatnonzero(group >= 0)
        group_columns = group[observed]
        perturbed = x.copy()
        touched = np.unique(group_columns)
        perturbed[touched] += steps[touched]
        change = (residuals(perturbed)[observed] - current[observed]) / steps[group_columns, None]
        for coordinate in (0, 1):
            rows.append(2 * observed + coordinate)
            columns.append(group_columns)
            values.append(change[:, coordinate])
    return csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
        shape=(2 * len(current), parameter_count),
    )


# --- images on disk ------------------------------------------------------------------------------


def find_images(source: str | Path) -> list[Path]:
    """Image files of one camera: every image in a folder, or the files a glob pattern matches
    (e.g. ``calib/left*.jpg``), sorted by name with numbers compared as numbers (frame2 before
    frame10)."""
    text = str(source)
    path = Path(text)
    if any(character in text for character in "*?["):
        files = [Path(match) for match in glob.glob(text) if Path(match).is_file()]
        if not files:
            raise CalibrationError(f"no files match {text}")
    elif path.is_dir():
        files = [item for item in path.iterdir() if item.is_file()]
    elif path.exists():
        raise CalibrationError(f"{path} is not a folder")
    else:
        raise CalibrationError(f"folder {path} does not exist")
    images = [file for file in files if file.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise CalibrationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {text}")
    return sorted(images, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def detect_in_images(
    board: Board, paths: Sequence[Path]
) -> tuple[list[BoardDetection | None], tuple[int, int]]:
    """The board in every image (None where not found), and the images' (width, height)."""
    detections: list[BoardDetection | None] = []
    size: tuple[int, int] | None = None
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CalibrationError(f"cannot read image {path}")
        image_size = (int(image.shape[1]), int(image.shape[0]))
        if size is not None and image_size != size:
            raise CalibrationError(
                f"{path} is {image_size[0]}x{image_size[1]}, the camera's other images "
                f"{size[0]}x{size[1]}"
            )
        size = image_size
        detections.append(board.detect(image))
    if size is None:
        raise CalibrationError("no images")
    return detections, size


def calibrate_image_folders(
    board: Board,
    sources: Mapping[str, str | Path],
    *,
    reference_camera: str | None = None,
    fix_k3: bool = True,
    refine_intrinsics: bool = True,
    max_error_px: float = DEFAULT_MAX_ERROR_PX,
) -> CalibrationResult:
    """``calibrate`` from images on disk: ``sources`` maps each camera name to a folder or glob.

    Image k (in sorted order) of every camera must show the same moment; every camera needs
    the same number of images.
    """
    paths = {}
    for name, source in sources.items():
        try:
            paths[name] = find_images(source)
        except CalibrationError as error:
            raise CalibrationError(f"camera {name}: {error}") from None
    counts = {name: len(files) for name, files in paths.items()}
    if len(set(counts.values())) > 1:
        raise CalibrationError(
            f"cameras have different numbers of images ({counts}); frames are matched by "
            "sorted file name, so every camera needs one image per moment"
        )
    detections = {}
    sizes = {}
    for name, files in paths.items():
        detections[name], sizes[name] = detect_in_images(board, files)
        if not any(_usable(detection) for detection in detections[name]):
            raise CalibrationError(
                f"camera {name}: the board ({board.describe()}) was not found in any of "
                f"{len(files)} images"
            )
    return calibrate(
        board,
        detections,
        sizes,
        reference_camera=reference_camera,
        fix_k3=fix_k3,
        refine_intrinsics=refine_intrinsics,
        max_error_px=max_error_px,
    )
