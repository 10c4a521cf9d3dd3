"""The trial's poses in NWB, as ndx-pose lays them out for several calibrated cameras.

``processing/behavior`` holds a ``Skeletons`` container (the skeleton ``mouse``: the body parts as
nodes, the rig's skeleton edges) and a ``MultiCameraPoseEstimation``: the 3D series (one
``PoseEstimationSeries`` per body part, millimeters in the calibration's world frame) and, per
camera, a ``PoseEstimation`` of 2D series (pixels, with DeepLabCut's likelihood as confidence)
linked to the camera's device and video. The 3D poses' quality rides along as TimeSeries in the
same module: ``reprojection_error`` (pixels) and ``cameras_used``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.sim.skeleton import SKELETON_EDGES
from rig.export.nwb_signals import compressed, series_timing, shared_timing
from rig.export.timing import RowTimes, pulse_times
from rig.export.trial_contents import CameraContents, ExportError, Pose3dContents, TrialContents

BEHAVIOR_MODULE = "behavior"
SKELETON_NAME = "mouse"
POSE3D_CONTAINER = "MultiCameraPoseEstimation"
PIXEL_FRAME = (
    "(0, 0) is the centre of the image's top-left pixel; x to the right, y down, in pixels "
    "(OpenCV's and DeepLabCut's convention)"
)


def skeleton_edges(body_parts: Sequence[str]) -> np.ndarray:
    """The rig's skeleton edges (acquisition.sim.skeleton) between ``body_parts`` as index pairs
    (E, 2) uint8, as ndx-pose stores them; edges to parts the model lacks are left out."""
    index = {part: position for position, part in enumerate(body_parts)}
    if len(index) > np.iinfo(np.uint8).max + 1:
        raise ValueError(f"ndx-pose stores node indices as uint8: {len(index)} parts are too many")
    pairs = [(index[a], index[b]) for a, b in SKELETON_EDGES if a in index and b in index]
    return np.array(pairs, dtype=np.uint8).reshape(-1, 2)


def add_poses(
    nwbfile: Any,
    contents: TrialContents,
    devices: Mapping[str, Any],
    frame_rows: Mapping[str, np.ndarray],
    frame_times: Mapping[str, RowTimes],
    videos: Mapping[str, Any],
    notes: list[str],
) -> int:
    """Add the skeleton, 2D and 3D poses; returns the number of 3D rows exported.

    ``frame_rows[camera]`` (R,) are the trial file rows of the frames exported (those with a
    time), ``frame_times[camera]`` the times of all its frames.
    """
    from ndx_pose import MultiCameraPoseEstimation, PoseEstimation, Skeleton, Skeletons

    tracked = [camera for camera in contents.cameras if camera.pose2d is not None]
    if not tracked and contents.pose3d is None:
        notes.append("the trial has no poses")
        return 0
    body_parts = (
        contents.pose3d.body_parts if contents.pose3d is not None else tracked[0].pose2d_body_parts
    )
    for camera in tracked:
        if camera.pose2d_body_parts != body_parts:
            raise ExportError(
                f"{contents.path}: {camera.name}'s body parts {camera.pose2d_body_parts} differ "
                f"from {body_parts}"
            )
    behavior = nwbfile.create_processing_module(
        name=BEHAVIOR_MODULE, description="The mouse's poses and their quality."
    )
    skeleton = Skeleton(
        name=SKELETON_NAME,
        nodes=list(body_parts),
        edges=skeleton_edges(body_parts),
        subject=nwbfile.subject,
    )
    behavior.add(Skeletons(skeletons=[skeleton]))
    model = next((camera.pose_model for camera in tracked if camera.pose_model), "")
    scorer = Path(model).name if model else "DeepLabCut-Live model"
    rate_hz = contents.daq.rate_hz
    estimations = []
    for camera in tracked:
        rows = frame_rows.get(camera.name, np.zeros(0, dtype=np.int64))
        if rows.size == 0:
            continue
        timing = series_timing(frame_times[camera.name].times_s[rows], rate_hz)
        estimations.append(
            PoseEstimation(
                name=camera.name,
                pose_estimation_series=_pose2d_series(camera, rows, timing),
                description=(
                    f"2D poses in {camera.name}'s image, one per frame (NaN where a frame was not "
                    "inferred), from DeepLabCut-Live during and after the trial."
                ),
                device=devices[camera.name],
                scorer=scorer,
                source_software="DeepLabCut-Live",
                skeleton=skeleton,
                source_video=videos.get(camera.name),
            )
        )
    pose3d_series: list[Any] = []
    quality: list[Any] = []
    pose3d_rows = 0
    if contents.pose3d is not None:
        pose3d_rows, pose3d_series, quality = _pose3d(contents, contents.pose3d, notes)
    behavior.add(
        MultiCameraPoseEstimation(
            name=POSE3D_CONTAINER,
            pose_estimation_series=pose3d_series or None,
            pose_estimations=estimations or None,
            description=(
                "3D poses (millimeters, the calibration's world frame) triangulated from the 2D "
                "poses of every camera, weighted by likelihood, cameras that disagree rejected; "
                "each camera's 2D poses are its PoseEstimation."
            ),
            scorer=scorer,
            source_software="jumprig",
            source_software_version=contents.software_versions.get("jumprig", "unknown"),
            skeleton=skeleton,
        )
    )
    for series in quality:
        behavior.add(series)
    return pose3d_rows


def _pose2d_series(camera: CameraContents, rows: np.ndarray, timing: dict[str, Any]) -> list[Any]:
    from ndx_pose import PoseEstimationSeries

    if camera.pose2d is None:
        return []
    points = camera.pose2d[rows]
    series: list[Any] = []
    for part_index, part in enumerate(camera.pose2d_body_parts):
        series.append(
            PoseEstimationSeries(
                name=part,
                description=f"{part} in {camera.name}'s image",
                data=np.ascontiguousarray(points[:, part_index, :2]),
                unit="pixels",
                reference_frame=PIXEL_FRAME,
                confidence=np.ascontiguousarray(points[:, part_index, 2]),
                confidence_definition="DeepLabCut's likelihood (score map peak), 0 to 1",
                **shared_timing(timing, series),
            )
        )
    return series


def _pose3d(
    contents: TrialContents, pose3d: Pose3dContents, notes: list[str]
) -> tuple[int, list[Any], list[Any]]:
    """(rows exported, the 3D series, the quality series)."""
    from ndx_pose import PoseEstimationSeries
    from pynwb import TimeSeries

    daq = contents.daq
    times = pulse_times(pose3d.trigger_index, daq.trigger_sample_index, daq.rate_hz)
    rows = np.flatnonzero(times.known)
    if rows.size < pose3d.trigger_index.size:
        notes.append(
            f"{pose3d.trigger_index.size - rows.size} 3D poses without a known pulse left out"
        )
    if rows.size == 0:
        return 0, [], []
    timing = series_timing(times.times_s[rows], contents.daq.rate_hz)
    world = "the calibration's world frame, in millimeters"
    if contents.is_simulated:
        world += (
            " (the digital twin's: x along the jump, y to the mouse's left, z up, z = 0 the "
            "platforms' tops)"
        )
    series: list[Any] = []
    for part_index, part in enumerate(pose3d.body_parts):
        series.append(
            PoseEstimationSeries(
                name=part,
                description=f"{part} in 3D, triangulated",
                data=np.ascontiguousarray(pose3d.points_mm[rows, part_index, :]),
                unit="millimeters",
                reference_frame=world,
                **shared_timing(timing, series),
            )
        )
    parts = ", ".join(pose3d.body_parts)
    quality: list[Any] = []
    if pose3d.reprojection_error_px is not None:
        quality.append(
            TimeSeries(
                name="reprojection_error",
                data=compressed(pose3d.reprojection_error_px[rows]),
                unit="pixels",
                description=(
                    "Reprojection error of each triangulated body part, (time, body part) with "
                    f"the body parts in this order: {parts}; NaN where there is no 3D point."
                ),
                **shared_timing(timing, series),
            )
        )
    if pose3d.cameras_used is not None:
        quality.append(
            TimeSeries(
                name="cameras_used",
                data=compressed(pose3d.cameras_used[rows].astype(np.uint8)),
                unit="n.a.",
                description=(
                    "1 where a camera's 2D point went into a body part's 3D point: (time, body "
                    f"part, camera), body parts {parts}, cameras {', '.join(pose3d.camera_order)}."
                ),
                **shared_timing(timing, series),
            )
        )
    return int(rows.size), series, quality
