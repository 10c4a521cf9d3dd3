"""The pose process: DeepLabCut-Live on the newest frame of one or more cameras, while recording.

Entry point :func:`run_pose`. It subscribes to each camera's live frames (the cameras publish
only the frames whose trigger index is a multiple of ``infer_every_n_frames``, so every camera
offers the same trigger indices; the queue holds at most two: never stale frames). Each round it
takes the newest trigger index that two or more of its cameras have (so it can be triangulated;
with one camera, its newest), infers it on each of them, and sends the 2D poses to the writer and
to the triangulator. Frames it skipped are inferred after the trial.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event

import numpy as np
import zmq

from acquisition.control import WorkerControl
from acquisition.transport import (
    LATEST_HWM,
    MONITOR_HWM,
    RECORD_HWM,
    RECORD_LINGER_MS,
    TOPIC_EOS,
    TOPIC_LIVE_FRAME,
    TOPIC_POSE2D,
    Endpoints,
    Message,
    array_header,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)
from acquisition.worker import setup_worker
from tracking.pose import PoseEstimator
from tracking.settings import TrackingSettings

READY_TIMEOUT_S = 120.0
IDLE_POLL_MS = 10
# Frames of a camera kept waiting for inference: the newest few, so a shared process can pick
# a trigger index that several of its cameras have.
WAITING_FRAMES = 4


def role_of(cameras: Sequence[str]) -> str:
    return "pose:" + "+".join(cameras)


def pose_stream(camera: str) -> str:
    return f"pose2d/{camera}"


def run_pose(
    cameras: Sequence[tuple[str, int, int]],
    tracking: TrackingSettings,
    endpoints: Endpoints,
    abort: Event,
) -> None:
    """Infer poses live for ``cameras``, given as (name, height, width), until told to stop.

    The entry point of a spawned process: it ends the process when done."""
    names = [name for name, _, _ in cameras]
    role = role_of(names)
    log = setup_worker(role)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, role)
    try:
        _run(cameras, tracking, endpoints, abort, context, control)
    except Exception as error:
        log.exception("pose estimation failed")
        control.send("error", reason=f"pose ({', '.join(names)}): {error}")
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=1000)
    # Everything is sent and every socket closed. TensorFlow's teardown at interpreter exit
    # can take tens of seconds on a loaded machine, holding up the end of the trial: skip it.
    logging.shutdown()
    os._exit(0)


def _take_waiting(socket: zmq.Socket, waiting: dict[int, Message], every_n: int) -> None:
    """Move every frame waiting on ``socket`` whose trigger index is a multiple of ``every_n``
    into ``waiting`` (trigger index -> frame), keeping only the newest WAITING_FRAMES."""
    while True:
        try:
            message = recv_message(socket, zmq.NOBLOCK)
        except zmq.Again:
            break
        if message.header.trigger_index % every_n == 0:
            waiting[message.header.trigger_index] = message
    for stale in sorted(waiting)[:-WAITING_FRAMES]:
        del waiting[stale]


def choose_trigger_index(waiting: dict[str, dict[int, Message]]) -> int | None:
    """The trigger index to infer next: the newest one that two or more of the cameras have
    (so it can be triangulated), else the newest any camera has; None when nothing waits."""
    seen: dict[int, int] = {}
    for frames in waiting.values():
        for index in frames:
            seen[index] = seen.get(index, 0) + 1
    if not seen:
        return None
    shared = [index for index, cameras in seen.items() if cameras >= 2]
    return max(shared) if shared else max(seen)


def _run(
    cameras: Sequence[tuple[str, int, int]],
    tracking: TrackingSettings,
    endpoints: Endpoints,
    abort: Event,
    context: zmq.Context,
    control: WorkerControl,
) -> None:
    estimators: dict[str, PoseEstimator] = {}
    by_camera: dict[str, PoseEstimator] = {}
    for name, height, width in cameras:
        model = tracking.model_for(name)
        if model not in estimators:
            estimators[model] = PoseEstimator(model, threads=1)
            # The first inference builds the TensorFlow graph: do it now, not on frame 0.
            estimators[model].estimate(np.zeros((height, width), dtype=np.uint8))
        by_camera[name] = estimators[model]
    frames = {
        name: make_socket(
            context,
            zmq.SUB,
            endpoints.live_frames_of(name),
            bind=False,
            hwm=LATEST_HWM,
            subscribe=[TOPIC_LIVE_FRAME],
        )
        for name, _, _ in cameras
    }
    record = make_socket(context, zmq.PUSH, endpoints.record, bind=False, hwm=RECORD_HWM)
    poses = make_socket(context, zmq.PUSH, endpoints.poses, bind=False, hwm=RECORD_HWM)
    # The preview's feed (if any): offered, never waited for.
    monitor = (
        make_socket(context, zmq.PUB, endpoints.monitor, bind=False, hwm=MONITOR_HWM)
        if endpoints.monitor
        else None
    )
    seq = dict.fromkeys(frames, 0)
    last_inferred = dict.fromkeys(frames, -1)
    status: dict[str, dict[str, int]] = {"inferred": dict.fromkeys(frames, 0)}
    control.ready(cameras=list(frames))
    command = control.wait_command("start", READY_TIMEOUT_S, status)
    if command["type"] == "abort":
        return
    control.ack(command)
    stopping = False
    poller = zmq.Poller()
    for socket in frames.values():
        poller.register(socket, zmq.POLLIN)
    waiting: dict[str, dict[int, Message]] = {name: {} for name in frames}
    while not abort.is_set():
        worked = False
        for name, socket in frames.items():
            _take_waiting(socket, waiting[name], tracking.infer_every_n_frames)
        target = choose_trigger_index(waiting)
        if target is not None:
            for name in frames:
                message = waiting[name].pop(target, None)
                # Older frames will not be inferred live any more (the offline pass does them).
                for older in [index for index in waiting[name] if index < target]:
                    del waiting[name][older]
                if message is None or target <= last_inferred[name]:
                    continue
                started_ns = time.monotonic_ns()
                pose = by_camera[name].estimate(message.array())
                header = array_header(
                    pose_stream(name),
                    seq[name],
                    pose,
                    frame_id=message.header.frame_id,
                    trigger_index=target,
                    extra={
                        "inference_ns": time.monotonic_ns() - started_ns,
                        "frame_t_host_ns": message.header.t_host_ns,
                    },
                )
                send_message(record, TOPIC_POSE2D, header, pose)
                send_message(poses, TOPIC_POSE2D, header, pose)
                if monitor is not None:
                    with contextlib.suppress(zmq.Again):
                        send_message(monitor, TOPIC_POSE2D, header, pose, flags=zmq.NOBLOCK)
                seq[name] += 1
                last_inferred[name] = target
                status["inferred"][name] += 1
                worked = True
        request = control.poll_command()
        if request is not None:
            if request["type"] == "stop":
                stopping = True
                control.ack(request)
            elif request["type"] == "abort":
                break
        if stopping and not worked:
            break
        if control.heartbeat_due():
            control.heartbeat(**status)
        if not worked:
            poller.poll(IDLE_POLL_MS)
    for name in frames:
        send_message(record, TOPIC_EOS, eos_header(pose_stream(name), seq[name]))
        send_message(poses, TOPIC_EOS, eos_header(pose_stream(name), seq[name]))
    for socket in [record, poses]:
        socket.close(linger=RECORD_LINGER_MS)
    # The frame subscriptions only receive; with a linger their subscription messages to cameras
    # that have exited held the process's exit up for the whole linger (30 s).
    for socket in frames.values():
        socket.close(linger=0)
    if monitor is not None:
        monitor.close(linger=0)
    for estimator in estimators.values():
        estimator.close()
    control.done(inferred=status["inferred"])
