"""The trial's poses as a `movement <https://movement.neuroinformatics.dev>`_ dataset, so its
filters and kinematics apply to them.

Built with movement's own constructor (``movement.io.load_poses.from_numpy``), then given the
rig's true time axis: each row's time in seconds on the DAQ's clock (time 0 is DAQ sample 0,
as in the NWB export), not frame number / fps, so dropped frames keep their place in time.
The 3D poses (``camera=None``) are in mm, ``space`` x, y, z, with NaN confidence (triangulation
gives none) and the reprojection error as an extra variable; a camera's 2D poses are in pixels
with DeepLabCut's likelihood as confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rig.export.timing import frame_times, pulse_times
from rig.export.trial_contents import ExportError, read_trial_contents

SOURCE_SOFTWARE = "jumprig"


def to_movement_dataset(path: Path | str, camera: str | None = None) -> Any:
    """The trial file's 3D poses (``camera=None``) or ``camera``'s 2D poses as a movement poses
    dataset (an ``xarray.Dataset``: position (time, space, keypoints, individuals), confidence
    (time, keypoints, individuals)); rows without a known time are left out. ExportError when
    the trial lacks those poses."""
    from movement.io import load_poses

    contents = read_trial_contents(path)
    daq = contents.daq
    if camera is None:
        pose3d = contents.pose3d
        if pose3d is None:
            raise ExportError(f"{contents.path}: the trial has no 3D poses (/pose3d)")
        times = pulse_times(pose3d.trigger_index, daq.trigger_sample_index, daq.rate_hz)
        rows = np.flatnonzero(times.known)
        points = pose3d.points_mm[rows].astype(np.float64)  # (T, K, 3)
        # Triangulation gives no confidence: NaN, as movement would fill in itself (given
        # explicitly, movement does not log a warning about it).
        confidence = np.full((rows.size, points.shape[1], 1), np.nan)
        body_parts = pose3d.body_parts
        trigger_index = pose3d.trigger_index
        units = "mm"
    else:
        camera_contents = contents.camera(camera)
        if camera_contents.pose2d is None:
            raise ExportError(f"{contents.path}: camera {camera!r} has no 2D poses (/pose2d)")
        times = frame_times(
            camera_contents.trigger_index,
            camera_contents.daq_sample_index,
            daq.trigger_sample_index,
            daq.rate_hz,
        )
        rows = np.flatnonzero(times.known)
        points = camera_contents.pose2d[rows, :, :2].astype(np.float64)  # (T, K, 2)
        confidence = camera_contents.pose2d[rows, :, 2].astype(np.float64)[:, :, None]
        body_parts = camera_contents.pose2d_body_parts
        trigger_index = camera_contents.trigger_index
        units = "pixels"
    dataset = load_poses.from_numpy(
        # movement's layout: (time, space, keypoints, individuals).
        position_array=np.transpose(points, (0, 2, 1))[:, :, :, None],
        confidence_array=confidence,
        individual_names=[contents.subject],
        keypoint_names=list(body_parts),
        source_software=SOURCE_SOFTWARE,
    )
    # Each row's pulse rides along as a coordinate, to find it in the trial file.
    dataset = dataset.assign_coords(
        time=times.times_s[rows], trigger_index=("time", trigger_index[rows])
    )
    if camera is None and contents.pose3d is not None:
        error = contents.pose3d.reprojection_error_px
        if error is not None:
            dataset["reprojection_error"] = (
                ("time", "keypoints", "individuals"),
                error[rows].astype(np.float64)[:, :, None],
            )
            dataset["reprojection_error"].attrs["units"] = "pixels"
    dataset.attrs.update(
        {
            "time_unit": "seconds",
            "space_unit": units,
            "trial_id": contents.trial_id,
            "source_file": str(contents.path),
            "camera": camera or "",
        }
    )
    return dataset
