"""The twin's cameras: calibrated pinhole models with OpenCV's lens distortion, around the jump.

Conventions (OpenCV's): world -> camera is ``x_cam = R @ x_world + t`` with ``R`` from the Rodrigues
vector ``rotation_vector``; camera x points right in the image, y down, z along the optical axis.
Distortion is ``(k1, k2, p1, p2, k3)``. World units are mm (see ``acquisition.sim.skeleton``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def _frozen_array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"PinholeCamera.{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"PinholeCamera.{name} must be finite")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """One calibrated camera: intrinsics, distortion and pose (world -> camera, mm)."""

    name: str
    width: int
    height: int
    matrix: np.ndarray  # (3, 3) camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    distortion: np.ndarray  # (5,) k1, k2, p1, p2, k3
    rotation_vector: np.ndarray  # (3,) Rodrigues, world -> camera
    translation_mm: np.ndarray  # (3,) world -> camera

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("PinholeCamera.name must not be empty")
        if int(self.width) != self.width or int(self.height) != self.height:
            raise ValueError(f"image size must be whole pixels, got {self.width}x{self.height}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "matrix", _frozen_array(self.matrix, (3, 3), "matrix"))
        object.__setattr__(self, "distortion", _frozen_array(self.distortion, (5,), "distortion"))
        object.__setattr__(
            self, "rotation_vector", _frozen_array(self.rotation_vector, (3,), "rotation_vector")
        )
        object.__setattr__(
            self, "translation_mm", _frozen_array(self.translation_mm, (3,), "translation_mm")
        )

    @property
    def rotation_matrix(self) -> np.ndarray:
        """(3, 3) world -> camera rotation."""
        rotation, _ = cv2.Rodrigues(self.rotation_vector)
        return np.asarray(rotation, dtype=np.float64)

    @property
    def position_mm(self) -> np.ndarray:
        """(3,) the camera's centre in world coordinates."""
        return np.asarray(-self.rotation_matrix.T @ self.translation_mm, dtype=np.float64)

    def to_camera_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera coordinates (N, 3), mm."""
        points = _points(points_mm)
        return np.asarray(points @ self.rotation_matrix.T + self.translation_mm, dtype=np.float64)

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) in mm -> pixel coordinates (N, 2), distortion applied.

        A row with a NaN, or a point not in front of the camera, gives a NaN row.
        """
        points = _points(points_mm)
        pixels = np.full((points.shape[0], 2), np.nan)
        finite = np.all(np.isfinite(points), axis=1)
        in_front = np.zeros_like(finite)
        in_front[finite] = self.to_camera_mm(points[finite])[:, 2] > 0
        if np.any(in_front):
            projected, _ = cv2.projectPoints(
                points[in_front].reshape(-1, 1, 3),
                self.rotation_vector,
                self.translation_mm,
                self.matrix,
                self.distortion,
            )
            pixels[in_front] = projected.reshape(-1, 2)
        return pixels

    def to_anipose(self) -> dict[str, Any]:
        """This camera as an entry of anipose's calibration TOML (aniposelib ``Camera.get_dict``).

        anipose takes the translation in whatever unit the calibration used; here it is mm, so
        triangulated points come out in mm.
        """
        return {
            "name": self.name,
            "size": [self.width, self.height],
            "matrix": self.matrix.tolist(),
            "distortions": self.distortion.tolist(),
            "rotation": self.rotation_vector.tolist(),
            "translation": self.translation_mm.tolist(),
        }

    @classmethod
    def from_anipose(cls, entry: Mapping[str, Any]) -> PinholeCamera:
        """The inverse of :meth:`to_anipose`."""
        missing = {"name", "size", "matrix", "distortions", "rotation", "translation"} - set(entry)
        if missing:
            raise ValueError(f"anipose camera entry lacks {sorted(missing)}")
        width, height = entry["size"]
        distortion = np.zeros(5)
        given = np.asarray(entry["distortions"], dtype=np.float64).ravel()
        if given.size > 5:
            raise ValueError(f"expected at most 5 distortion coefficients, got {given.size}")
        distortion[: given.size] = given
        return cls(
            name=str(entry["name"]),
            width=width,
            height=height,
            matrix=np.asarray(entry["matrix"]),
            distortion=distortion,
            rotation_vector=np.asarray(entry["rotation"]),
            translation_mm=np.asarray(entry["translation"]),
        )


def _points(points_mm: np.ndarray) -> np.ndarray:
    points = np.asarray(points_mm, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    return points


# --- the twin's camera placement -----------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    azimuth_deg: float  # from +x toward +y, about the jump volume's centre
    elevation_deg: float  # above the platforms' plane
    distance_mm: float
    k1: float


# Left side (+y, the labelled limbs' side), right side, front-oblique, top-oblique.
_PRESET_VIEWS = (
    _View(azimuth_deg=90.0, elevation_deg=12.0, distance_mm=400.0, k1=-0.08),
    _View(azimuth_deg=-90.0, elevation_deg=12.0, distance_mm=400.0, k1=-0.12),
    _View(azimuth_deg=45.0, elevation_deg=30.0, distance_mm=380.0, k1=-0.06),
    _View(azimuth_deg=125.0, elevation_deg=60.0, distance_mm=350.0, k1=-0.10),
)
# Extra cameras stand on a ring at this elevation, between the preset views.
_RING_ELEVATION_DEG = 35.0
_RING_DISTANCE_MM = 400.0
# The volume every camera frames, relative to the platforms: x from behind the take-off edge to
# past the landing edge, the mouse's lateral extent, and from the platform tops to above the apex.
_VOLUME_BEHIND_TAKEOFF_MM = 85.0
_VOLUME_PAST_LANDING_MM = 95.0
_VOLUME_Y_MM = (-10.0, 15.0)
_VOLUME_Z_MM = (0.0, 95.0)
# Share of the half-image the volume may fill (the rest is margin).
_FILL = 0.88


def jump_volume_corners_mm(gap_mm: float) -> np.ndarray:
    """(8, 3) corners of the box every twin camera keeps in view."""
    xs = (-_VOLUME_BEHIND_TAKEOFF_MM, gap_mm + _VOLUME_PAST_LANDING_MM)
    return np.array([(x, y, z) for x in xs for y in _VOLUME_Y_MM for z in _VOLUME_Z_MM])


def _look_at(position_mm: np.ndarray, target_mm: np.ndarray) -> np.ndarray:
    """(3, 3) world -> camera rotation for a camera at position looking at target, world z up."""
    forward = target_mm - position_mm
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack((right, down, forward))


def twin_cameras(
    names: Sequence[str], width: int, height: int, *, gap_mm: float = 80.0
) -> list[PinholeCamera]:
    """Deterministic virtual cameras, one per name, all framing the jump over a ``gap_mm`` gap.

    The first four take the preset views (left side, right side, front-oblique, top-oblique);
    more cameras stand on a ring between them. The focal length fits the whole jump volume
    in the image with a margin; distortion is mild barrel (k1 between -0.05 and -0.15).
    """
    if not names:
        raise ValueError("twin_cameras needs at least one camera name")
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique, got {list(names)}")
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    if not gap_mm > 0:
        raise ValueError(f"gap_mm must be positive, got {gap_mm}")
    corners = jump_volume_corners_mm(gap_mm)
    target = corners.mean(axis=0)
    n_extra = max(0, len(names) - len(_PRESET_VIEWS))
    views = list(_PRESET_VIEWS[: len(names)])
    for k in range(n_extra):
        share = (k + 0.5) / n_extra
        views.append(
            _View(
                azimuth_deg=90.0 + 45.0 + 360.0 * share,
                elevation_deg=_RING_ELEVATION_DEG,
                distance_mm=_RING_DISTANCE_MM,
                k1=-0.05 - 0.10 * share,
            )
        )
    cameras = []
    for index, (name, view) in enumerate(zip(names, views, strict=True)):
        azimuth, elevation = math.radians(view.azimuth_deg), math.radians(view.elevation_deg)
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        position = target + view.distance_mm * direction
        rotation = _look_at(position, target)
        in_camera = (corners - position) @ rotation.T
        normalized = in_camera[:, :2] / in_camera[:, 2:3]
        # A small, deterministic principal-point offset, as real lenses have.
        offset_px = np.array([(-1) ** index * 3.0, (-1) ** (index + 1) * 2.0]) * (width / 640.0)
        centre = np.array([width / 2.0, height / 2.0]) + offset_px
        half_room = np.minimum(centre, np.array([width, height]) - centre) * _FILL
        focal = float(np.min(half_room / np.abs(normalized).max(axis=0)))
        matrix = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
        sign = (-1) ** index
        distortion = np.array([view.k1, 0.02, sign * 4e-4, -sign * 3e-4, 0.0])
        rotation_vector, _ = cv2.Rodrigues(rotation)
        cameras.append(
            PinholeCamera(
                name=name,
                width=width,
                height=height,
                matrix=matrix,
                distortion=distortion,
                rotation_vector=rotation_vector.ravel(),
                translation_mm=-rotation @ position,
            )
        )
    return cameras
