"""After a trial: make its tracking complete. `rig track FILE` runs the same on request.

Live inference takes the newest frame and skips what it cannot keep up with, so a trial file
holds 2D poses for only some frames. This step infers every frame that has none, triangulates
every trigger index seen by two or more cameras, and runs the jump detector offline over the
whole trial (the same detector code as live, fed in the same way), rewriting ``/pose2d``,
``/pose3d`` and ``/events``. Which frames were inferred live stays recorded in
``/tracking/inferred_live/<camera>``, and the live detector's events move to
``/tracking_live/events``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter the frames are stored with)
import numpy as np

from rig.calibration_record import group_from_attribute
from tracking.camera_group import CameraGroup
from tracking.jump_detection import JumpDetectorSettings, detect_jumps, events_table
from tracking.jump_process import jump_channels
from tracking.pose import PoseEstimator
from tracking.settings import TrackingSettings
from tracking.triangulation import triangulate_robust

# Where the live detector's events are kept once /events holds the offline ones.
LIVE_EVENTS = "tracking_live/events"
# Points triangulated per call: bounds memory, keeps the batched DLT efficient.
TRIANGULATION_BATCH_POINTS = 20_000


@dataclass(frozen=True)
class CompletionSummary:
    frames_inferred_offline: dict[str, int]
    trigger_indices_triangulated: int
    events: int


def complete_tracking(
    path: Path,
    tracking: TrackingSettings,
    on_progress: Callable[[str], None] | None = None,
) -> CompletionSummary:
    """Infer, triangulate and detect jumps over a finished trial file, in place."""
    progress = on_progress or (lambda message: None)
    with h5py.File(path, "r+") as f:
        cameras = list(f["cameras"].keys())
        if "anipose_toml" not in f["calibration"].attrs:
            raise ValueError(f"{path}: /calibration has no anipose_toml: no calibration to use")
        group = group_from_attribute(str(f["calibration"].attrs["anipose_toml"]), f"{path}")
        group = group.subset(cameras)
        estimators: dict[str, PoseEstimator] = {}
        inferred: dict[str, int] = {}
        body_parts: tuple[str, ...] = ()
        try:
            for camera in cameras:
                model = tracking.model_for(camera)
                if model not in estimators:
                    estimators[model] = PoseEstimator(model)
                estimator = estimators[model]
                body_parts = estimator.body_parts
                inferred[camera] = _infer_missing(f, camera, estimator, progress)
        finally:
            for estimator in estimators.values():
                estimator.close()
        trigger_count = int(f["daq/trigger_sample_index"].shape[0])
        triangulated = _triangulate_all(f, cameras, group, tracking, trigger_count, body_parts)
        progress(f"triangulated {triangulated} trigger indices")
        events = _detect_jumps(f, body_parts)
        f.attrs["tracking_completed_utc"] = dt.datetime.now(dt.UTC).isoformat()
    return CompletionSummary(inferred, triangulated, events)


def _replace(f: h5py.File, path: str, data: np.ndarray, **attrs: Any) -> None:
    if path in f:
        del f[path]
    dataset = f.create_dataset(
        path, data=data, chunks=True if data.size else None, fletcher32=bool(data.size)
    )
    for key, value in attrs.items():
        dataset.attrs[key] = value


def _infer_missing(
    f: h5py.File, camera: str, estimator: PoseEstimator, progress: Callable[[str], None]
) -> int:
    frames = f[f"cameras/{camera}/frames"]
    rows = frames.shape[0]
    parts = len(estimator.body_parts)
    pose2d_path = f"pose2d/{camera}"
    poses = (
        f[pose2d_path][:]
        if pose2d_path in f
        else np.full((rows, parts, 3), np.nan, dtype=np.float32)
    )
    if poses.shape != (rows, parts, 3):
        raise ValueError(f"{pose2d_path} has shape {poses.shape}, expected {(rows, parts, 3)}")
    missing = np.flatnonzero(np.all(np.isnan(poses[:, :, 2]), axis=1))
    for count, row in enumerate(missing):
        poses[row] = estimator.estimate(frames[row])
        if count % 500 == 0:
            progress(f"{camera}: inferred {count}/{missing.size} frames not inferred live")
    inferred_live = np.ones(rows, dtype=bool)
    inferred_live[missing] = False
    if f"tracking/inferred_live/{camera}" not in f:
        _replace(f, f"tracking/inferred_live/{camera}", inferred_live)
    _replace(
        f,
        pose2d_path,
        poses.astype(np.float32),
        body_parts=list(estimator.body_parts),
        columns=["x_px", "y_px", "likelihood"],
        model=str(estimator.model_dir),
    )
    return int(missing.size)


def _triangulate_all(
    f: h5py.File,
    cameras: list[str],
    group: CameraGroup,
    tracking: TrackingSettings,
    trigger_count: int,
    body_parts: tuple[str, ...],
) -> int:
    parts = len(body_parts)
    points_px = np.full((len(cameras), trigger_count, parts, 2), np.nan)
    likelihood = np.full((len(cameras), trigger_count, parts), np.nan)
    for c, camera in enumerate(cameras):
        trigger_index = f[f"cameras/{camera}/trigger_index"][:]
        poses = f[f"pose2d/{camera}"][:]
        valid = (trigger_index >= 0) & (trigger_index < trigger_count)
        points_px[c, trigger_index[valid]] = poses[valid, :, :2]
        likelihood[c, trigger_index[valid]] = poses[valid, :, 2]
    flat_px = points_px.reshape(len(cameras), -1, 2)
    flat_likelihood = likelihood.reshape(len(cameras), -1)
    total = flat_px.shape[1]
    points = np.full((total, 3), np.nan)
    errors = np.full(total, np.nan)
    used = np.zeros((total, len(cameras)), dtype=bool)
    for start in range(0, total, TRIANGULATION_BATCH_POINTS):
        stop = min(total, start + TRIANGULATION_BATCH_POINTS)
        result = triangulate_robust(
            group,
            flat_px[:, start:stop],
            flat_likelihood[:, start:stop],
            min_likelihood=tracking.min_likelihood,
            max_reprojection_px=tracking.max_reprojection_px,
        )
        points[start:stop] = result.points_mm
        errors[start:stop] = result.reprojection_error_px
        used[start:stop] = result.cameras_used
    _replace(
        f,
        "pose3d/points",
        points.reshape(trigger_count, parts, 3).astype(np.float32),
        units="mm",
        body_parts=list(body_parts),
    )
    _replace(f, "pose3d/trigger_index", np.arange(trigger_count, dtype=np.int64))
    _replace(
        f,
        "pose3d/reprojection_error",
        errors.reshape(trigger_count, parts).astype(np.float32),
        units="px",
    )
    _replace(
        f,
        "pose3d/cameras_used",
        used.reshape(trigger_count, parts, len(cameras)),
        cameras=cameras,
    )
    return int(np.any(np.isfinite(points.reshape(trigger_count, parts, 3)[..., 0]), axis=1).sum())


def _detect_jumps(f: h5py.File, body_parts: tuple[str, ...]) -> int:
    analog = f["daq/analog"]
    kinds = [str(kind) for kind in analog.attrs["kinds"]]
    names = [str(name) for name in analog.attrs["channel_names"]]
    channels = jump_channels(names, kinds)
    if channels is None:
        return 0
    events = detect_jumps(
        analog[:],
        float(analog.attrs["rate_hz"]),
        f["daq/trigger_sample_index"][:],
        f["pose3d/points"][:],
        f["pose3d/trigger_index"][:],
        settings=JumpDetectorSettings(),
        force_channels=channels.force,
        emg_channels=channels.emg,
        body_parts=body_parts,
    )
    # What the live detector found stays, beside the other live results.
    live = f.get("events")
    if live is not None and live.attrs.get("source") == "live" and LIVE_EVENTS not in f:
        f.copy(live, LIVE_EVENTS)
    _replace(f, "events", events_table(events), source="offline, complete 3D poses")
    return len(events)
