"""`rig export dlc`: each camera's 2D poses as DeepLabCut's pose tables.

DeepLabCut writes the poses of a video ``<stem>.mp4`` analysed by a network ``<scorer>`` as
``<stem><scorer>.h5`` (a pandas DataFrame under the key ``df_with_missing``, PyTables "table"
format) and, on request, the same table as ``<stem><scorer>.csv``. Columns are a 3-level
MultiIndex ``(scorer, bodyparts, coords)`` with coords ``x``, ``y``, ``likelihood``; the index is
the frame number in the video; a body part not found is NaN. The export writes both files per
camera, the stem being ``<trial id>_<camera>`` (the name the NWB export gives its videos, less
the NWB file's stem) and rows being the trial file's frame rows of that camera.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.export.trial_contents import ExportError, read_trial_contents

DLC_KEY = "df_with_missing"
COLUMN_LEVELS = ("scorer", "bodyparts", "coords")
COORDS = ("x", "y", "likelihood")
_NOT_IN_SCORER = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class DlcExport:
    """The tables written for one camera."""

    camera: str
    h5_path: Path
    csv_path: Path
    frames: int


def default_scorer(model_path: str) -> str:
    """DeepLabCut-style scorer name from the model folder: ``.../twin`` -> ``DLC_twin``."""
    name = _NOT_IN_SCORER.sub("_", Path(model_path).name) if model_path else ""
    return f"DLC_{name or 'model'}"


def pose_table(points: np.ndarray, body_parts: Sequence[str], scorer: str) -> Any:
    """DeepLabCut's table of poses (N, K, 3) x px, y px, likelihood -> pandas DataFrame, N rows
    indexed by frame number, columns (scorer, bodyparts, coords)."""
    import pandas as pd

    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"points must have shape (N, K, 3), got {points.shape}")
    if len(body_parts) != points.shape[1]:
        raise ValueError(f"{len(body_parts)} body part names for {points.shape[1]} body parts")
    if len(set(body_parts)) != len(body_parts):
        raise ValueError(f"body part names must be unique: {list(body_parts)}")
    if not scorer:
        raise ValueError("scorer must not be empty")
    columns = pd.MultiIndex.from_product(
        [[scorer], list(body_parts), list(COORDS)], names=list(COLUMN_LEVELS)
    )
    # DeepLabCut stores float64; (N, K, 3) flattens row-major into (part, coord) column order.
    return pd.DataFrame(
        points.reshape(points.shape[0], -1).astype(np.float64),
        columns=columns,
        index=pd.RangeIndex(points.shape[0]),
    )


def write_pose_table(table: Any, h5_path: Path, csv_path: Path) -> None:
    """Write ``table`` as DeepLabCut does: HDF5 (PyTables table format) and CSV."""
    table.to_hdf(h5_path, key=DLC_KEY, format="table", mode="w")
    table.to_csv(csv_path)


def dlc_file_stem(trial_id: str, camera: str, scorer: str) -> str:
    """``<trial id>_<camera><scorer>``, as DeepLabCut names the poses of video
    ``<trial id>_<camera>``."""
    return f"{trial_id}_{camera}{scorer}"


def export_dlc(
    trial_path: Path | str,
    output_dir: Path | str | None = None,
    *,
    scorer: str | None = None,
    overwrite: bool = False,
) -> list[DlcExport]:
    """Write each tracked camera's 2D poses of the trial at ``trial_path`` as DeepLabCut tables
    into ``output_dir`` (default: beside the trial file). ExportError when the trial has no 2D
    poses, or a file exists and ``overwrite`` is not set."""
    trial_path = Path(trial_path)
    contents = read_trial_contents(trial_path)
    folder = Path(output_dir) if output_dir is not None else trial_path.parent
    tracked = [camera for camera in contents.cameras if camera.pose2d is not None]
    if not tracked:
        raise ExportError(f"{trial_path}: the trial has no 2D poses (/pose2d) to export")
    exports = []
    for camera in tracked:
        name = scorer or default_scorer(camera.pose_model)
        stem = dlc_file_stem(contents.trial_id, camera.name, name)
        exports.append(
            DlcExport(
                camera=camera.name,
                h5_path=folder / f"{stem}.h5",
                csv_path=folder / f"{stem}.csv",
                frames=camera.frame_count,
            )
        )
    if not overwrite:
        for export in exports:
            for path in (export.h5_path, export.csv_path):
                if path.exists():
                    raise ExportError(f"{path} exists; allow overwriting to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    for camera, export in zip(tracked, exports, strict=True):
        if camera.pose2d is None:
            continue
        name = scorer or default_scorer(camera.pose_model)
        table = pose_table(camera.pose2d, camera.pose2d_body_parts, name)
        write_pose_table(table, export.h5_path, export.csv_path)
    return exports
