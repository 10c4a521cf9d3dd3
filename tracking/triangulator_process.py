"""The triangulator process: joins the cameras' 2D poses of each trigger index into 3D, live.

Entry point :func:`run_triangulator`. Poses arrive from the pose processes in any order; those of
one trigger index are joined once every camera has sent its pose, or once ``join_wait_ms`` has
passed since the first arrived (a camera that skipped that frame is not waited for), and are
triangulated from the cameras that have them (two or more), rejecting a camera that disagrees.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
import zmq

from acquisition.control import WorkerControl
from acquisition.transport import (
    MONITOR_HWM,
    RECORD_HWM,
    RECORD_LINGER_MS,
    TOPIC_EOS,
    TOPIC_POSE2D,
    TOPIC_POSE3D,
    Endpoints,
    Header,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)
from acquisition.worker import setup_worker
from tracking.camera_group import CameraGroup
from tracking.settings import TrackingSettings
from tracking.triangulation import triangulate_robust

ROLE = "triangulator"
STREAM = "pose3d"
READY_TIMEOUT_S = 120.0
# Trigger indices already triangulated are remembered this far back, so a pose that arrives
# after its index was joined without it is dropped instead of making a second 3D record.
DONE_INDEX_MEMORY = 4096


def pose3d_record_dtype(n_parts: int, n_cameras: int) -> np.dtype:
    """One trigger index in 3D on the wire: points (mm), reprojection error (px), cameras used."""
    return np.dtype(
        [
            ("points", "<f4", (n_parts, 3)),
            ("reprojection_error", "<f4", (n_parts,)),
            ("cameras_used", "?", (n_parts, n_cameras)),
        ]
    )


@dataclass
class _Pending:
    first_arrival_ns: int
    poses: dict[str, np.ndarray] = field(default_factory=dict)


def run_triangulator(
    camera_names: Sequence[str],
    calibration_path: str,
    tracking: TrackingSettings,
    endpoints: Endpoints,
    abort: Event,
) -> None:
    log = setup_worker(ROLE)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, ROLE)
    try:
        _run(camera_names, Path(calibration_path), tracking, endpoints, abort, context, control)
    except Exception as error:
        log.exception("triangulation failed")
        control.send("error", reason=f"triangulator: {error}")
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=1000)


def _run(
    camera_names: Sequence[str],
    calibration_path: Path,
    tracking: TrackingSettings,
    endpoints: Endpoints,
    abort: Event,
    context: zmq.Context,
    control: WorkerControl,
) -> None:
    group = CameraGroup.load(calibration_path).subset(camera_names)
    cameras = list(camera_names)
    poses_in = make_socket(context, zmq.PULL, endpoints.poses, bind=True, hwm=RECORD_HWM)
    record = make_socket(context, zmq.PUSH, endpoints.record, bind=False, hwm=RECORD_HWM)
    # Side feeds: the jump detector (counted when it cannot keep up) and the preview; neither
    # may hold up the recording of 3D poses.
    jump_feed = (
        make_socket(context, zmq.PUSH, endpoints.jump_input, bind=False, hwm=RECORD_HWM)
        if endpoints.jump_input
        else None
    )
    monitor = (
        make_socket(context, zmq.PUB, endpoints.monitor, bind=False, hwm=MONITOR_HWM)
        if endpoints.monitor
        else None
    )
    pending: dict[int, _Pending] = {}
    ended: set[str] = set()
    seq = 0
    status = {"triangulated": 0, "pending": 0, "late_poses": 0, "jump_feed_dropped": 0}
    done_indices: collections.deque[int] = collections.deque(maxlen=DONE_INDEX_MEMORY)
    done_set: set[int] = set()
    control.ready()
    command = control.wait_command("start", READY_TIMEOUT_S, status)
    if command["type"] == "abort":
        return
    control.ack(command)
    stopping = False
    wait_ns = int(tracking.join_wait_ms * 1e6)
    while not abort.is_set():
        if poses_in.poll(10, zmq.POLLIN):
            while True:
                try:
                    message = recv_message(poses_in, zmq.NOBLOCK)
                except zmq.Again:
                    break
                if message.topic == TOPIC_EOS:
                    ended.add(message.header.stream.split("/", 1)[-1])
                    continue
                if message.topic != TOPIC_POSE2D:
                    continue
                camera = message.header.stream.split("/", 1)[-1]
                if message.header.trigger_index in done_set:
                    status["late_poses"] += 1
                    continue
                entry = pending.setdefault(
                    message.header.trigger_index, _Pending(time.monotonic_ns())
                )
                entry.poses[camera] = message.array().copy()
        now = time.monotonic_ns()
        all_ended = ended >= set(cameras)
        ready = [
            index
            for index, entry in pending.items()
            if len(entry.poses) == len(cameras)
            or now - entry.first_arrival_ns > wait_ns
            or all_ended
        ]
        for index in sorted(ready):
            entry = pending.pop(index)
            if len(done_indices) == done_indices.maxlen:
                done_set.discard(done_indices[0])
            done_indices.append(index)
            done_set.add(index)
            record_row = _triangulate(group, cameras, entry.poses, tracking)
            header = Header(
                stream=STREAM,
                seq=seq,
                t_host_ns=time.monotonic_ns(),
                trigger_index=index,
                shape=(1,),
                dtype="pose3d_record",
                extra={
                    "parts": record_row["points"].shape[1],
                    "cameras": cameras,
                    "join_latency_ns": now - entry.first_arrival_ns,
                },
            )
            send_message(record, TOPIC_POSE3D, header, record_row)
            if jump_feed is not None:
                try:
                    send_message(jump_feed, TOPIC_POSE3D, header, record_row, flags=zmq.NOBLOCK)
                except zmq.Again:
                    status["jump_feed_dropped"] += 1
            if monitor is not None:
                with contextlib.suppress(zmq.Again):
                    send_message(monitor, TOPIC_POSE3D, header, record_row, flags=zmq.NOBLOCK)
            seq += 1
            status["triangulated"] += 1
        status["pending"] = len(pending)
        request = control.poll_command()
        if request is not None and request["type"] == "stop":
            stopping = True
            control.ack(request)
        if stopping and all_ended and not pending:
            break
        if control.heartbeat_due():
            control.heartbeat(**status)
    end = eos_header(STREAM, seq)
    send_message(record, TOPIC_EOS, end)
    record.close(linger=RECORD_LINGER_MS)
    if jump_feed is not None:
        with contextlib.suppress(zmq.Again):
            send_message(jump_feed, TOPIC_EOS, end, flags=zmq.NOBLOCK)
        jump_feed.close(linger=RECORD_LINGER_MS)
    if monitor is not None:
        monitor.close(linger=0)
    poses_in.close(linger=0)
    control.done(triangulated=status["triangulated"], jump_feed_dropped=status["jump_feed_dropped"])


def _triangulate(
    group: CameraGroup,
    cameras: list[str],
    poses: dict[str, np.ndarray],
    tracking: TrackingSettings,
) -> np.ndarray:
    """(1,) record of :func:`pose3d_record_dtype` from the poses (K, 3) some cameras sent."""
    n_parts = next(iter(poses.values())).shape[0]
    points_px = np.full((len(cameras), n_parts, 2), np.nan)
    likelihood = np.full((len(cameras), n_parts), np.nan)
    for c, camera in enumerate(cameras):
        if camera in poses:
            points_px[c] = poses[camera][:, :2]
            likelihood[c] = poses[camera][:, 2]
    result = triangulate_robust(
        group,
        points_px,
        likelihood,
        min_likelihood=tracking.min_likelihood,
        max_reprojection_px=tracking.max_reprojection_px,
    )
    row = np.zeros(1, dtype=pose3d_record_dtype(n_parts, len(cameras)))
    row["points"][0] = result.points_mm
    row["reprojection_error"][0] = result.reprojection_error_px
    row["cameras_used"][0] = result.cameras_used
    return row
