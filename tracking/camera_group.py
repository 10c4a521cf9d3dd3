"""Calibrated cameras and camera groups, saved in anipose's calibration TOML.

Conventions (OpenCV's, and anipose's): world -> camera is ``x_cam = R @ x_world + t`` with ``R``
from the Rodrigues vector ``rotation_vector``; camera x points right in the image, y down, z along
the optical axis. Distortion is OpenCV's ``(k1, k2, p1, p2, k3)``. Lengths are mm, so the
translation is in mm and triangulated points come out in mm.

The file format is the one aniposelib's ``CameraGroup.dump``/``load`` write and read: one table
``[cam_0]``, ``[cam_1]``, ... per camera with ``name``, ``size = [width, height]``, ``matrix``
(3x3), ``distortions`` (5), ``rotation`` (3, Rodrigues) and ``translation`` (3), and a
``[metadata]`` table that is carried along unchanged.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tomli_w

ANIPOSE_CAMERA_KEYS = ("name", "size", "matrix", "distortions", "rotation", "translation")
METADATA_KEY = "metadata"
# Undistortion iterates OpenCV's fixed-point scheme until the reprojected pixel moves less than
# this; the default of cv2.undistortPoints (5 iterations) leaves ~1e-6 of normalized error, i.e.
# ~0.5 um at 400 mm, which would dominate exact round trips.
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
# R and P of cv2.undistortPoints: the identity for both keeps normalized coordinates.
IDENTITY_3 = np.eye(3)
IDENTITY_3.setflags(write=False)
_CAMERA_TABLE = re.compile(r"cam_(\d+)")


@dataclass(frozen=True, eq=False)
class LensArrays:
    """Intrinsics of one or many cameras as arrays that broadcast against point arrays.

    For C cameras and points laid out (..., C, N), each field has shape (1, C, 1) (see
    ``for_cameras``); for one value per observation, shape (O,).
    """

    fx: np.ndarray
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    skew: np.ndarray
    k1: np.ndarray
    k2: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    k3: np.ndarray

    @classmethod
    def for_cameras(
        cls, matrices: np.ndarray, distortions: np.ndarray, shape: tuple[int, ...]
    ) -> LensArrays:
        """From camera matrices (C, 3, 3) and distortions (C, 5), each field reshaped to shape."""
        fields = (
            matrices[:, 0, 0],
            matrices[:, 1, 1],
            matrices[:, 0, 2],
            matrices[:, 1, 2],
            matrices[:, 0, 1],
            *(distortions[:, index] for index in range(5)),
        )
        return cls(
            *(np.ascontiguousarray(field, dtype=np.float64).reshape(shape) for field in fields)
        )

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted normalized coordinates -> pixels (u, v): OpenCV's (k1, k2, p1, p2, k3)
        lens model written out, so that many cameras and points cost one numpy pass."""
        xy = x * y
        x2 = x * x
        y2 = y * y
        r2 = x2 + y2
        radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
        x_distorted = x * radial + 2.0 * self.p1 * xy + self.p2 * (r2 + 2.0 * x2)
        y_distorted = y * radial + self.p1 * (r2 + 2.0 * y2) + 2.0 * self.p2 * xy
        u = self.fx * x_distorted + self.skew * y_distorted + self.cx
        v = self.fy * y_distorted + self.cy
        return u, v


def _frozen_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be numbers of shape {shape}: {error}") from None
    if array.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite")
    array.setflags(write=False)
    return array


def _check_points(points: np.ndarray, columns: int, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{what} must have shape (N, {columns}), got {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera: intrinsics, lens distortion and pose (world -> camera, mm)."""

    name: str
    width: int
    height: int
    matrix: np.ndarray  # (3, 3) [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]
    distortion: np.ndarray  # (5,) k1, k2, p1, p2, k3
    rotation_vector: np.ndarray  # (3,) Rodrigues, world -> camera
    translation_mm: np.ndarray  # (3,) world -> camera

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"camera name must be a non-empty string, got {self.name!r}")
        for what, size in (("width", self.width), ("height", self.height)):
            if isinstance(size, bool) or int(size) != size or size < 1:
                raise ValueError(f"camera {self.name!r}: {what} must be a positive whole number")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        prefix = f"camera {self.name!r}: "
        matrix = _frozen_array(self.matrix, (3, 3), prefix + "matrix")
        if not (matrix[0, 0] > 0 and matrix[1, 1] > 0):
            raise ValueError(prefix + "focal lengths matrix[0][0], matrix[1][1] must be positive")
        if not np.allclose(matrix[2], (0.0, 0.0, 1.0)) or matrix[1, 0] != 0.0:
            raise ValueError(prefix + "matrix must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(
            self, "distortion", _frozen_array(self.distortion, (5,), prefix + "distortion")
        )
        object.__setattr__(
            self,
            "rotation_vector",
            _frozen_array(self.rotation_vector, (3,), prefix + "rotation_vector"),
        )
        object.__setattr__(
            self,
            "translation_mm",
            _frozen_array(self.translation_mm, (3,), prefix + "translation_mm"),
        )

    @property
    def rotation_matrix(self) -> np.ndarray:
        """(3, 3) world -> camera rotation."""
        rotation, _ = cv2.Rodrigues(self.rotation_vector)
        return np.asarray(rotation, dtype=np.float64)

    @property
    def position_mm(self) -> np.ndarray:
        """(3,) the camera's optical centre in world coordinates."""
        return np.asarray(-self.rotation_matrix.T @ self.translation_mm, dtype=np.float64)

    @property
    def projection_matrix(self) -> np.ndarray:
        """(3, 4) ``[R | t]``: world (homogeneous, mm) -> normalized image coordinates."""
        return np.hstack((self.rotation_matrix, self.translation_mm[:, None]))

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) in mm -> pixels (N, 2), lens distortion applied.

        A row with a NaN gives a NaN row. There is no check that a point lies in front of the
        camera: like ``cv2.projectPoints``, a point behind it still gets a (mirrored) pixel.
        """
        points = _check_points(points_mm, 3, "points_mm")
        pixels = np.full((points.shape[0], 2), np.nan)
        finite = np.all(np.isfinite(points), axis=1)
        if np.any(finite):
            projected, _ = cv2.projectPoints(
                points[finite].reshape(-1, 1, 3),
                self.rotation_vector,
                self.translation_mm,
                self.matrix,
                self.distortion,
            )
            pixels[finite] = projected.reshape(-1, 2)
        return pixels

    def undistort(self, points_px: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> normalized image coordinates (N, 2) (``x/z, y/z`` in the camera).

        A row with a NaN gives a NaN row.
        """
        points = _check_points(points_px, 2, "points_px")
        normalized = np.full(points.shape, np.nan)
        finite = np.all(np.isfinite(points), axis=1)
        if np.any(finite):
            undistorted = cv2.undistortPointsIter(
                points[finite].reshape(-1, 1, 2),
                self.matrix,
                self.distortion,
                IDENTITY_3,
                IDENTITY_3,
                UNDISTORT_CRITERIA,
            )
            normalized[finite] = undistorted.reshape(-1, 2)
        return normalized

    def to_anipose(self) -> dict[str, Any]:
        """This camera as one ``[cam_N]`` table of anipose's TOML (aniposelib ``get_dict``)."""
        return {
            "name": self.name,
            "size": [self.width, self.height],
            "matrix": self.matrix.tolist(),
            "distortions": self.distortion.tolist(),
            "rotation": self.rotation_vector.tolist(),
            "translation": self.translation_mm.tolist(),
        }

    @classmethod
    def from_anipose(cls, entry: Mapping[str, Any], where: str = "camera") -> Camera:
        """A camera from one anipose table; errors name ``where`` (e.g. ``"file.toml [cam_0]"``).

        ``distortions`` may hold fewer than 5 values (the rest are 0), as older files do.
        """
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a table, got {type(entry).__name__}")
        if entry.get("fisheye", False):
            raise ValueError(f"{where}: fisheye cameras are not supported")
        missing = [key for key in ANIPOSE_CAMERA_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{where}: missing key {missing[0]!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: key 'name' must be a non-empty string, got {name!r}")
        size = entry["size"]
        if (
            not isinstance(size, Sequence)
            or len(size) != 2
            or not all(_is_positive_whole(value) for value in size)
        ):
            raise ValueError(f"{where}: key 'size' must be [width, height] in pixels, got {size}")
        values: dict[str, np.ndarray] = {}
        for key, shape in (("matrix", (3, 3)), ("rotation", (3,)), ("translation", (3,))):
            values[key] = _table_array(entry[key], shape, f"{where}: key {key!r}")
        given = _table_array(entry["distortions"], None, f"{where}: key 'distortions'").ravel()
        if given.size > 5:
            raise ValueError(f"{where}: key 'distortions' holds {given.size} values, at most 5")
        distortion = np.zeros(5)
        distortion[: given.size] = given
        try:
            return cls(
                name=name,
                width=int(size[0]),
                height=int(size[1]),
                matrix=values["matrix"],
                distortion=distortion,
                rotation_vector=values["rotation"],
                translation_mm=values["translation"],
            )
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def _is_positive_whole(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
        and value >= 1
    )


def _table_array(value: Any, shape: tuple[int, ...] | None, what: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold numbers, got {value!r}") from None
    if shape is not None and array.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return array


class CameraGroup:
    """Cameras in a fixed order, sharing one world frame.

    Index by name (``group["cam_left"]``) or iterate in order. The order is the first axis of
    every ``(C, N, ...)`` array in ``tracking``. Immutable: ``subset`` returns a new group.
    """

    def __init__(
        self, cameras: Sequence[Camera], metadata: Mapping[str, Any] | None = None
    ) -> None:
        cameras = tuple(cameras)
        if not cameras:
            raise ValueError("a camera group needs at least one camera")
        for camera in cameras:
            if not isinstance(camera, Camera):
                raise ValueError(f"expected Camera objects, got {type(camera).__name__}")
        names = [camera.name for camera in cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique, repeated: {duplicates}")
        self._cameras = cameras
        self._by_name = {camera.name: camera for camera in cameras}
        self._metadata = dict(metadata or {})
        # Stacked parameters, so batched code (triangulation) needs no per-camera Python loop.
        self._rotation_matrices = _read_only(np.stack([c.rotation_matrix for c in cameras]))
        self._translations_mm = _read_only(np.stack([c.translation_mm for c in cameras]))
        self._matrices = _read_only(np.stack([c.matrix for c in cameras]))
        self._distortions = _read_only(np.stack([c.distortion for c in cameras]))
        self._projection_matrices = _read_only(
            np.concatenate((self._rotation_matrices, self._translations_mm[:, :, None]), axis=2)
        )

    @property
    def cameras(self) -> tuple[Camera, ...]:
        return self._cameras

    @property
    def names(self) -> list[str]:
        return [camera.name for camera in self._cameras]

    @property
    def metadata(self) -> dict[str, Any]:
        """The file's ``[metadata]`` table (a copy)."""
        return dict(self._metadata)

    @property
    def rotation_matrices(self) -> np.ndarray:
        """(C, 3, 3) world -> camera rotations."""
        return self._rotation_matrices

    @property
    def translations_mm(self) -> np.ndarray:
        """(C, 3) world -> camera translations."""
        return self._translations_mm

    @property
    def matrices(self) -> np.ndarray:
        """(C, 3, 3) camera matrices."""
        return self._matrices

    @property
    def distortions(self) -> np.ndarray:
        """(C, 5) distortion coefficients k1, k2, p1, p2, k3."""
        return self._distortions

    @property
    def projection_matrices(self) -> np.ndarray:
        """(C, 3, 4) ``[R | t]`` of every camera (world -> normalized image coordinates)."""
        return self._projection_matrices

    def __len__(self) -> int:
        return len(self._cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self._cameras)

    def __getitem__(self, name: str) -> Camera:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no camera {name!r} in the group; cameras: {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"CameraGroup({self.names})"

    def index(self, name: str) -> int:
        """Position of camera ``name`` along the cameras axis."""
        if name not in self._by_name:
            raise KeyError(f"no camera {name!r} in the group; cameras: {self.names}")
        return self.names.index(name)

    def subset(self, names: Sequence[str]) -> CameraGroup:
        """A group of the named cameras, in the order given; metadata is kept."""
        return CameraGroup([self[name] for name in names], self._metadata)

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) in mm -> pixels (C, N, 2) in every camera; NaN rows stay NaN."""
        points = _check_points(points_mm, 3, "points_mm")
        return np.stack([camera.project(points) for camera in self._cameras])

    def baselines_mm(self) -> dict[tuple[str, str], float]:
        """Distance between the optical centres of every pair of cameras, in group order."""
        positions = [camera.position_mm for camera in self._cameras]
        return {
            (self._cameras[i].name, self._cameras[j].name): float(
                np.linalg.norm(positions[i] - positions[j])
            )
            for i in range(len(self._cameras))
            for j in range(i + 1, len(self._cameras))
        }

    def to_anipose(self) -> dict[str, Any]:
        """The whole group as anipose's TOML document (aniposelib ``CameraGroup.dump``)."""
        document: dict[str, Any] = {
            f"cam_{index}": camera.to_anipose() for index, camera in enumerate(self._cameras)
        }
        document[METADATA_KEY] = _plain(self._metadata)
        return document

    @classmethod
    def from_anipose(cls, document: Mapping[str, Any], source: str = "calibration") -> CameraGroup:
        """A group from anipose's TOML document; errors name ``source`` and the offending key.

        Cameras are every table other than ``[metadata]``, ordered by the number in ``cam_N``.
        aniposelib orders them by sorting the keys as text, which is the same order for up to
        ten cameras.
        """
        if not isinstance(document, Mapping):
            raise ValueError(f"{source}: expected a TOML document, got {type(document).__name__}")
        metadata = document.get(METADATA_KEY, {})
        if not isinstance(metadata, Mapping):
            raise ValueError(f"{source}: key '{METADATA_KEY}' must be a table")
        keys = [key for key in document if key != METADATA_KEY]
        if not keys:
            raise ValueError(f"{source}: no camera tables ([cam_0], [cam_1], ...)")
        cameras = [
            Camera.from_anipose(document[key], where=f"{source} [{key}]")
            for key in sorted(keys, key=_camera_key_order)
        ]
        try:
            return cls(cameras, metadata)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def to_toml(self) -> str:
        """anipose's calibration TOML as text, one line per key as aniposelib writes it."""
        document = self.to_anipose()
        parts = []
        for index in range(len(self._cameras)):
            entry = document[f"cam_{index}"]
            lines = [f"[cam_{index}]", tomli_w.dumps({"name": entry["name"]}).strip()]
            lines += [
                f"{key} = {_toml_numbers(entry[key])}"
                for key in ("size", "matrix", "distortions", "rotation", "translation")
            ]
            parts.append("\n".join(lines) + "\n")
        parts.append(tomli_w.dumps({METADATA_KEY: document[METADATA_KEY]}))
        return "\n".join(parts)

    def save(self, path: str | Path) -> None:
        """Write anipose's calibration TOML to ``path``."""
        Path(path).write_bytes(self.to_toml().encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> CameraGroup:
        """Read anipose's calibration TOML; a malformed file raises ValueError naming it."""
        path = Path(path)
        try:
            with path.open("rb") as file:
                document = tomllib.load(file)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
        return cls.from_anipose(document, source=str(path))


def _camera_key_order(key: str) -> tuple[int, int, str]:
    match = _CAMERA_TABLE.fullmatch(key)
    return (0, int(match.group(1)), key) if match else (1, 0, key)


def _toml_numbers(value: Any) -> str:
    """A number or nested list of numbers as a one-line TOML array (floats round-trip exactly)."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml_numbers(item) for item in value) + "]"
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def _plain(value: Any) -> Any:
    """Metadata with numpy scalars and arrays turned into what TOML can hold."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
