"""Triangulation of 2D detections from several calibrated cameras into 3D points.

Shapes, kept throughout (aniposelib's convention):

- ``points_px``: ``(C, N, 2)`` pixels, one row per camera of the group in group order, NaN where
  a camera has no detection;
- ``likelihood``: ``(C, N)`` in [0, 1] (DeepLabCut's likelihood), NaN counts as missing;
- 3D points: ``(N, 3)`` in mm, in the group's world frame, NaN where too few views were usable.

``N`` is whatever the caller flattens: the body parts of one trigger index, or frames x parts.

The linear DLT runs on undistorted, normalized image coordinates, each view's two equations
multiplied by its likelihood, and is batched over points: one matrix product builds every
point's normal equations (no Python loop per point).

``triangulate_robust`` adds outlier rejection: views under a likelihood threshold are
dropped, and while the worst remaining view reprojects too far, the view whose removal leaves
the smallest mean reprojection error is dropped. That rejects limb switching, where one camera
labels the left hind paw as the right one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from tracking.camera_group import IDENTITY_3, UNDISTORT_CRITERIA, CameraGroup, LensArrays

DEFAULT_MIN_LIKELIHOOD = 0.5
DEFAULT_MAX_REPROJECTION_PX = 8.0
DEFAULT_MIN_CAMERAS = 2


@dataclass(frozen=True, eq=False)
class TriangulationResult:
    """What ``triangulate_robust`` found for N points from C cameras."""

    points_mm: np.ndarray  # (N, 3), NaN where fewer than min_cameras views were usable
    reprojection_error_px: np.ndarray  # (N,) mean over the cameras used; NaN with the point
    cameras_used: np.ndarray  # (N, C) bool, the views the point was triangulated from


def triangulate(
    group: CameraGroup,
    points_px: np.ndarray,
    likelihood: np.ndarray | None = None,
    min_cameras: int = DEFAULT_MIN_CAMERAS,
) -> np.ndarray:
    """Points ``(C, N, 2)`` px -> ``(N, 3)`` mm by likelihood-weighted linear DLT.

    A view counts when its pixel is finite and, if ``likelihood`` ``(C, N)`` is given, its
    likelihood is finite and above 0. A point with fewer than ``min_cameras`` views is NaN.
    """
    points = _check_points_px(group, points_px)
    weights = _view_weights(points, likelihood)
    _check_min_cameras(min_cameras)
    geometry = _geometry(group)
    with np.errstate(divide="ignore", invalid="ignore"):
        features = _dlt_features(_undistort(geometry, points))
        return _dlt(geometry, features, weights, min_cameras)


def reprojection_error(
    group: CameraGroup, points_mm: np.ndarray, points_px: np.ndarray
) -> np.ndarray:
    """Distance in pixels ``(C, N)`` between ``points_mm`` ``(N, 3)`` projected into every
    camera and the observed ``points_px`` ``(C, N, 2)``; NaN where either is missing."""
    points = _check_points_px(group, points_px)
    points_3d = np.asarray(points_mm, dtype=np.float64)
    if points_3d.shape != (points.shape[1], 3):
        raise ValueError(f"points_mm must have shape ({points.shape[1]}, 3), got {points_3d.shape}")
    projected = group.project(points_3d)
    return np.asarray(np.linalg.norm(projected - points, axis=2), dtype=np.float64)


def triangulate_robust(
    group: CameraGroup,
    points_px: np.ndarray,
    likelihood: np.ndarray,
    *,
    min_likelihood: float = DEFAULT_MIN_LIKELIHOOD,
    max_reprojection_px: float = DEFAULT_MAX_REPROJECTION_PX,
    min_cameras: int = DEFAULT_MIN_CAMERAS,
) -> TriangulationResult:
    """Points ``(C, N, 2)`` px with ``likelihood`` ``(C, N)`` -> 3D points with outliers rejected.

    1. Views with a likelihood under ``min_likelihood`` (or NaN) are not used.
    2. The rest are triangulated (likelihood-weighted DLT).
    3. While a point's worst used view reprojects further than ``max_reprojection_px`` and more
       than ``min_cameras`` views are used, every used view is left out in turn, and the
       candidate with the smallest mean reprojection error over its remaining views is kept.

    A point whose last ``min_cameras`` views still disagree keeps them and reports its error;
    a point behind one of its cameras reports an infinite error. Each round of step 3 is one
    batched DLT over all points that still need it, so the cost grows with C, not with N.
    """
    points = _check_points_px(group, points_px)
    scores = _check_likelihood(points, likelihood)
    _check_min_cameras(min_cameras)
    if not np.isfinite(min_likelihood):
        raise ValueError(f"min_likelihood must be a number, got {min_likelihood}")
    if not max_reprojection_px > 0:
        raise ValueError(f"max_reprojection_px must be positive, got {max_reprojection_px}")

    with np.errstate(divide="ignore", invalid="ignore"):
        return _triangulate_robust(
            _geometry(group), points, scores, min_likelihood, max_reprojection_px, min_cameras
        )


def _triangulate_robust(
    geometry: _Geometry,
    points: np.ndarray,
    scores: np.ndarray,
    min_likelihood: float,
    max_reprojection_px: float,
    min_cameras: int,
) -> TriangulationResult:
    """The work of ``triangulate_robust`` on checked inputs, under ignored NaN/inf warnings."""
    camera_count = scores.shape[0]
    used = np.isfinite(points).all(axis=2) & (scores >= min_likelihood) & (scores > 0)
    weights = np.where(used, scores, 0.0)
    features = _dlt_features(_undistort(geometry, points))
    triangulated = _dlt(geometry, features, weights, min_cameras)
    errors = _reprojection_errors(geometry, triangulated[None], points)[0]  # (C, N)

    leave_out = ~np.eye(camera_count, dtype=bool)  # (dropped camera, camera)
    for _ in range(camera_count - min_cameras):
        worst = np.max(np.where(used, errors, -np.inf), axis=0)
        todo = np.flatnonzero((worst > max_reprojection_px) & (used.sum(axis=0) > min_cameras))
        if todo.size == 0:
            break
        # One candidate per camera left out: (dropped camera, C, M) weights -> (C, M, 3).
        candidate_weights = weights[None, :, todo] * leave_out[:, :, None]
        candidates = _dlt(geometry, features[:, todo], candidate_weights, min_cameras)
        candidate_errors = _reprojection_errors(geometry, candidates, points[:, todo])
        remaining = used[None, :, todo] & leave_out[:, :, None]
        mean_errors = np.sum(np.where(remaining, candidate_errors, 0.0), axis=1) / np.sum(
            remaining, axis=1
        )
        # Only a used view can be dropped; a candidate without enough views cannot win.
        mean_errors = np.where(used[:, todo] & ~np.isnan(mean_errors), mean_errors, np.inf)
        dropped = np.argmin(mean_errors, axis=0)  # (M,)
        picked = np.arange(todo.size)
        used[dropped, todo] = False
        weights[dropped, todo] = 0.0
        triangulated[todo] = candidates[dropped, picked]
        errors[:, todo] = candidate_errors[dropped, :, picked].T

    valid = np.all(np.isfinite(triangulated), axis=1)
    used &= valid[None, :]
    mean_error = np.sum(np.where(used, errors, 0.0), axis=0) / np.sum(used, axis=0)
    mean_error[~valid] = np.nan
    return TriangulationResult(
        points_mm=triangulated,
        reprojection_error_px=mean_error,
        cameras_used=np.ascontiguousarray(used.T),
    )


def undistort_all(group: CameraGroup, points_px: np.ndarray) -> np.ndarray:
    """Pixels ``(C, N, 2)`` -> normalized image coordinates ``(C, N, 2)``; NaN stays NaN."""
    return _undistort(_geometry(group), _check_points_px(group, points_px))


# --- batched geometry ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Geometry:
    """A group's parameters laid out for batched numpy (computed once per group)."""

    camera_matrices: tuple[np.ndarray, ...]  # C x (3, 3), for OpenCV
    distortions: tuple[np.ndarray, ...]  # C x (5,)
    normal_basis: np.ndarray  # (4C, 16), see _dlt
    rotations_transposed: np.ndarray  # (C, 3, 3)
    translations_mm: np.ndarray  # (1, C, 1, 3)
    lens: LensArrays  # fields (1, C, 1)


_GEOMETRY_CACHE: weakref.WeakKeyDictionary[CameraGroup, _Geometry] = weakref.WeakKeyDictionary()


def _geometry(group: CameraGroup) -> _Geometry:
    geometry = _GEOMETRY_CACHE.get(group)
    if geometry is None:
        geometry = _build_geometry(group)
        _GEOMETRY_CACHE[group] = geometry
    return geometry


def _build_geometry(group: CameraGroup) -> _Geometry:
    # For P = [p0; p1; p2], a view's two weighted rows w (x p2 - p0) and w (y p2 - p1) add
    # w^2 [(x^2 + y^2) p2 p2' - x (p2 p0' + p0 p2') - y (p2 p1' + p1 p2') + p0 p0' + p1 p1']
    # to the 4x4 normal matrix: four fixed 4x4 terms per camera, mixed by (x^2 + y^2, x, y, 1).
    terms: list[np.ndarray] = []
    for projection in group.projection_matrices:
        p0, p1, p2 = projection
        terms.extend(
            (
                np.outer(p2, p2),
                -(np.outer(p2, p0) + np.outer(p0, p2)),
                -(np.outer(p2, p1) + np.outer(p1, p2)),
                np.outer(p0, p0) + np.outer(p1, p1),
            )
        )
    return _Geometry(
        camera_matrices=tuple(camera.matrix for camera in group.cameras),
        distortions=tuple(camera.distortion for camera in group.cameras),
        normal_basis=np.stack(terms).reshape(4 * len(group), 16),
        rotations_transposed=np.ascontiguousarray(np.swapaxes(group.rotation_matrices, 1, 2)),
        translations_mm=group.translations_mm.reshape(1, len(group), 1, 3).copy(),
        lens=LensArrays.for_cameras(group.matrices, group.distortions, (1, len(group), 1)),
    )


def _undistort(geometry: _Geometry, points: np.ndarray) -> np.ndarray:
    """Pixels (C, N, 2) -> normalized coordinates (C, N, 2); OpenCV passes NaN through."""
    return np.stack(
        [
            cv2.undistortPointsIter(
                np.ascontiguousarray(points[index]).reshape(-1, 1, 2),
                matrix,
                distortion,
                IDENTITY_3,
                IDENTITY_3,
                UNDISTORT_CRITERIA,
            ).reshape(-1, 2)
            for index, (matrix, distortion) in enumerate(
                zip(geometry.camera_matrices, geometry.distortions, strict=True)
            )
        ]
    )


def _dlt_features(normalized: np.ndarray) -> np.ndarray:
    """Normalized coordinates (C, N, 2) -> (C, N, 4) ``(x^2 + y^2, x, y, 1)``, 0 where missing."""
    x = normalized[..., 0]
    y = normalized[..., 1]
    features = np.stack((x * x + y * y, x, y, np.ones_like(x)), axis=-1)
    return np.where(np.isnan(features), 0.0, features)


def _dlt(
    geometry: _Geometry, features: np.ndarray, weights: np.ndarray, min_cameras: int
) -> np.ndarray:
    """Weighted linear triangulation (DLT) of every point at once.

    features (C, N, 4) from ``_dlt_features``, weights (..., C, N) -> points (..., N, 3); a point
    with fewer than ``min_cameras`` positive weights is NaN.

    Each view gives two equations, ``x * P[2] - P[0]`` and ``y * P[2] - P[1]`` applied to
    ``(X, 1)``, scaled by the view's weight. They are solved in the least-squares sense with the
    last coordinate fixed to 1 (Hartley and Sturm's "linear-LS") through the normal equations,
    which one matrix product builds for all points: a stacked SVD per point costs ~10 us in
    numpy, and this whole function about as much as one.
    """
    positive = weights > 0
    squared = np.where(positive, weights * weights, 0.0)
    coefficients = features * squared[..., None]  # (..., C, N, 4)
    batch_shape = weights.shape[:-2]
    camera_count, point_count = weights.shape[-2:]
    stacked = np.moveaxis(coefficients, -3, -2).reshape(*batch_shape, point_count, 4 * camera_count)
    normal = (stacked @ geometry.normal_basis).reshape(*batch_shape, point_count, 4, 4)
    enough = np.count_nonzero(positive, axis=-2) >= min_cameras
    # A point without enough views gets a harmless system; it is set to NaN below.
    lhs = np.where(enough[..., None, None], normal[..., :3, :3], IDENTITY_3)
    rhs = -normal[..., :3, 3:4]
    try:
        points = np.linalg.solve(lhs, rhs)[..., 0]
    except np.linalg.LinAlgError:
        # An exactly singular system (parallel rays): solve point by point, NaN where singular.
        points = np.stack(
            [
                _solve_or_nan(a, b)
                for a, b in zip(lhs.reshape(-1, 3, 3), rhs.reshape(-1, 3, 1), strict=True)
            ]
        ).reshape(*batch_shape, point_count, 3)
    return np.where(enough[..., None] & np.isfinite(points), points, np.nan)


def _solve_or_nan(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(matrix, rhs)[:, 0]
    except np.linalg.LinAlgError:
        return np.full(3, np.nan)


def _reprojection_errors(
    geometry: _Geometry, points_mm: np.ndarray, points_px: np.ndarray
) -> np.ndarray:
    """Points (K, N, 3) projected into every camera vs observed (C, N, 2) -> errors (K, C, N).

    The lens model in numpy (``LensArrays``), so that K candidate sets cost one pass. A point at
    or behind a camera gets an infinite error there, so a candidate that needs it loses. Call
    under ``np.errstate(divide="ignore", invalid="ignore")``.
    """
    in_camera = points_mm[:, None] @ geometry.rotations_transposed + geometry.translations_mm
    depth = in_camera[..., 2]  # (K, C, N)
    x = in_camera[..., 0] / depth
    y = in_camera[..., 1] / depth
    u, v = geometry.lens.to_pixels(x, y)
    errors = np.hypot(u - points_px[..., 0], v - points_px[..., 1])
    return np.where(depth > 0, errors, np.where(np.isnan(depth), np.nan, np.inf))


# --- input checks --------------------------------------------------------------------------------


def _check_points_px(group: CameraGroup, points_px: np.ndarray) -> np.ndarray:
    points = np.asarray(points_px, dtype=np.float64)
    if points.ndim != 3 or points.shape[0] != len(group) or points.shape[2] != 2:
        raise ValueError(
            f"points_px must have shape (cameras={len(group)}, N, 2), got {points.shape}"
        )
    return points


def _check_likelihood(points: np.ndarray, likelihood: np.ndarray | None) -> np.ndarray:
    if likelihood is None:
        raise ValueError("likelihood is required, shape (cameras, N)")
    scores = np.asarray(likelihood, dtype=np.float64)
    if scores.shape != points.shape[:2]:
        raise ValueError(f"likelihood must have shape {points.shape[:2]}, got {scores.shape}")
    return scores


def _view_weights(points: np.ndarray, likelihood: np.ndarray | None) -> np.ndarray:
    finite = np.all(np.isfinite(points), axis=2)
    if likelihood is None:
        return finite.astype(np.float64)
    scores = _check_likelihood(points, likelihood)
    usable = finite & np.isfinite(scores) & (scores > 0)
    return np.where(usable, scores, 0.0)


def _check_min_cameras(min_cameras: int) -> None:
    if isinstance(min_cameras, bool) or not isinstance(min_cameras, int | np.integer):
        raise ValueError(f"min_cameras must be an integer, got {min_cameras!r}")
    if min_cameras < 2:
        raise ValueError(f"min_cameras must be at least 2 (a ray per view), got {min_cameras}")
