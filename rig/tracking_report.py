"""How well a trial was tracked: poses per camera, 3D error against the truth, jump events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tracking.jump_detection import events_from_table


def tracking_report(path: Path) -> dict[str, Any]:
    """A JSON-serialisable summary; empty when the file has no tracking."""
    report: dict[str, Any] = {}
    with h5py.File(path, "r", swmr=True) as f:
        if "pose2d" in f:
            report["pose2d"] = {
                camera: {
                    "frames": int(f[f"pose2d/{camera}"].shape[0]),
                    "inferred_live": int(f[f"tracking/inferred_live/{camera}"][:].sum())
                    if f"tracking/inferred_live/{camera}" in f
                    else None,
                    "median_likelihood": float(np.nanmedian(f[f"pose2d/{camera}"][:, :, 2]))
                    if f[f"pose2d/{camera}"].shape[0]
                    else None,
                }
                for camera in f["pose2d"]
            }
        if "pose3d/points" in f:
            points = f["pose3d/points"][:]
            used = f["pose3d/cameras_used"][:] if "pose3d/cameras_used" in f else None
            trigger_index = f["pose3d/trigger_index"][:]
            errors = f["pose3d/reprojection_error"][:]
            pose3d: dict[str, Any] = {
                "trigger_indices": int(points.shape[0]),
                "points_triangulated": int(np.isfinite(points[..., 0]).sum()),
                "median_reprojection_error_px": _nan_stat(errors, 50),
            }
            if "sim/truth/points" in f:
                truth = f["sim/truth/points"][:]
                valid = trigger_index < truth.shape[0]
                error_mm = np.linalg.norm(points[valid] - truth[trigger_index[valid]], axis=-1)
                if used is not None:
                    # Only points seen by at least two cameras count (the others are NaN anyway).
                    error_mm = np.where(used[valid].sum(axis=-1) >= 2, error_mm, np.nan)
                pose3d["error_vs_truth_mm"] = {
                    "median": _nan_stat(error_mm, 50),
                    "p95": _nan_stat(error_mm, 95),
                    "points": int(np.isfinite(error_mm).sum()),
                }
            report["pose3d"] = pose3d
        if "events" in f:
            events = events_from_table(f["events"][:])
            report["events"] = [
                {"name": e.name, "trigger_index": e.trigger_index, "t_s": e.t_s} for e in events
            ]
            jumps = [e for e in events if e.name == "jump"]
            if jumps:
                report["last_jump"] = dict(jumps[-1].values)
                if "sim/truth" in f:
                    truth_attrs = f["sim/truth"].attrs
                    report["last_jump_vs_truth"] = {
                        key: float(jumps[-1].values[key] - truth_attrs[key])
                        for key in ("takeoff_s", "landing_s", "jump_height_mm")
                        if key in jumps[-1].values and key in truth_attrs
                    }
    return report


def _nan_stat(values: np.ndarray, percentile: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, percentile)) if finite.size else None
