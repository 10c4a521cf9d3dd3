"""One camera's process: read frames, compress them into HDF5 chunks, send them to the writer.

Entry point :func:`run_camera`. The recording path is lossless: a frame the writer cannot take
right now waits in a bounded buffer here; only when that buffer is full is a frame dropped, and
its trigger index is reported at end-of-stream so the drop lands in the file.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event

import zmq

from acquisition.cameras.interface import Camera, CameraFrame
from acquisition.control import WorkerControl
from acquisition.errors import DeviceError
from acquisition.frame_codec import encode_frame_chunk
from acquisition.settings import CameraConfig, SimConfig
from acquisition.transport import (
    ENCODING_H5CHUNK,
    LATEST_HWM,
    RECORD_HWM,
    RECORD_LINGER_MS,
    TOPIC_EOS,
    TOPIC_FRAME,
    TOPIC_LIVE_FRAME,
    Endpoints,
    Header,
    array_header,
    eos_header,
    make_socket,
    send_message,
)
from acquisition.worker import setup_worker

READ_TIMEOUT_S = 0.02
# After "stop" (the trigger has already stopped), a camera is drained once it has been this
# long without a frame: every exposure has finished and every frame has been transferred.
DRAIN_QUIET_S = 0.3
# ... or this long, while the frame of the last pulse the DAQ recorded has not come: on a loaded
# machine pulses and frames may still be on their way.
DRAIN_MISSING_S = 3.0
# How long the final flush of the buffer may block on a writer that stopped reading.
FINAL_SEND_TIMEOUT_MS = RECORD_LINGER_MS
ARM_TIMEOUT_S = 120.0
# Frames offered to the live preview: about this many per second (a screen needs no more).
MONITOR_FRAME_HZ = 30.0

# Builds the camera of one camera process (the replay offers its own, reading a trial file).
CameraFactory = Callable[[CameraConfig, SimConfig, Sequence[str], zmq.Context, Endpoints], Camera]


def role_of(camera_name: str) -> str:
    return f"camera:{camera_name}"


def make_camera(
    config: CameraConfig,
    sim: SimConfig,
    all_camera_names: Sequence[str],
    context: zmq.Context,
    endpoints: Endpoints,
) -> Camera:
    if config.backend == "sim":
        from acquisition.cameras.simulated import SimulatedCamera

        return SimulatedCamera(config, sim, all_camera_names, context, endpoints.trigger_line)
    if config.backend == "genicam":
        from acquisition.cameras.genicam import GenICamCamera, TriggerLinePulses

        pulses = (
            TriggerLinePulses(context, endpoints.trigger_line)
            if config.genicam.trigger == "software_per_pulse"
            else None
        )
        return GenICamCamera(
            config.name, config.width, config.height, config.pixel_format, config.genicam, pulses
        )
    raise ValueError(f"unknown camera backend {config.backend!r}")


def run_camera(
    config: CameraConfig,
    sim: SimConfig,
    all_camera_names: Sequence[str],
    endpoints: Endpoints,
    abort: Event,
    publish_live: bool = False,
    camera_factory: CameraFactory = make_camera,
    live_every_n_frames: int = 1,
) -> None:
    """Run one camera for one trial, driven by the supervisor's commands.

    With ``publish_live`` it also publishes every ``live_every_n_frames``-th frame (by trigger
    index, the frames tracking infers), raw, on its live endpoint for tracking;
    with ``endpoints.monitor`` it offers about MONITOR_FRAME_HZ frames a second to the preview.
    Both sockets keep only the newest frames and never slow the camera.
    """
    role = role_of(config.name)
    log = setup_worker(role)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, role)
    try:
        _run(
            config,
            sim,
            all_camera_names,
            endpoints,
            abort,
            context,
            control,
            publish_live,
            camera_factory,
            live_every_n_frames,
        )
    except Exception as error:
        log.exception("camera failed")
        code = error.code if isinstance(error, DeviceError) else None
        control.send("error", reason=f"camera {config.name}: {error}", code=code)
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=FINAL_SEND_TIMEOUT_MS)


def _run(
    config: CameraConfig,
    sim: SimConfig,
    all_camera_names: Sequence[str],
    endpoints: Endpoints,
    abort: Event,
    context: zmq.Context,
    control: WorkerControl,
    publish_live: bool,
    camera_factory: CameraFactory,
    live_every_n_frames: int,
) -> None:
    camera = camera_factory(config, sim, all_camera_names, context, endpoints)
    record = make_socket(context, zmq.PUSH, endpoints.record, bind=False, hwm=RECORD_HWM)
    live = (
        make_socket(
            context, zmq.PUB, endpoints.live_frames_of(config.name), bind=True, hwm=LATEST_HWM
        )
        if publish_live
        else None
    )
    monitor = (
        make_socket(context, zmq.PUB, endpoints.monitor, bind=False, hwm=LATEST_HWM)
        if endpoints.monitor
        else None
    )
    monitor_period_ns = int(1e9 / MONITOR_FRAME_HZ)
    next_monitor_ns = 0
    with camera:
        status = {"frames": 0, "buffered": 0, "dropped": 0, "last_frame_id": -1}
        control.ready(camera=camera.info())
        command = control.wait_command("arm", ARM_TIMEOUT_S, status)
        if command["type"] == "abort":
            return
        camera.arm()
        control.ack(command)

        backlog: collections.deque[tuple[Header, bytes]] = collections.deque()
        dropped_trigger_indices: list[int] = []
        seq = 0
        stopping = False
        last_pulse = -1
        last_frame_ns = time.monotonic_ns()
        while not abort.is_set():
            frame = camera.read(READ_TIMEOUT_S)
            if frame is not None:
                last_frame_ns = time.monotonic_ns()
                if len(backlog) >= config.max_buffered_frames:
                    dropped_trigger_indices.append(frame.frame_id)
                else:
                    header = Header(
                        stream=config.name,
                        seq=seq,
                        t_host_ns=frame.t_host_ns,
                        frame_id=frame.frame_id,
                        trigger_index=frame.frame_id,
                        t_device_ns=frame.t_device_ns,
                        shape=tuple(frame.image.shape),
                        dtype=frame.image.dtype.str,
                        encoding=ENCODING_H5CHUNK,
                    )
                    chunk = (
                        frame.chunk if frame.chunk is not None else encode_frame_chunk(frame.image)
                    )
                    backlog.append((header, chunk))
                    seq += 1
                status["last_frame_id"] = frame.frame_id
                if live is not None and frame.frame_id % live_every_n_frames == 0:
                    _publish_live(live, config.name, frame)
                if monitor is not None and last_frame_ns >= next_monitor_ns:
                    _publish_live(monitor, config.name, frame)
                    next_monitor_ns = last_frame_ns + monitor_period_ns
            _send_backlog(record, backlog, block=False)
            status["frames"] = seq
            status["buffered"] = len(backlog)
            status["dropped"] = len(dropped_trigger_indices)

            request = control.poll_command()
            if request is not None:
                if request["type"] == "stop":
                    stopping = True
                    last_pulse = int(request.get("pulses_sent", 0)) - 1
                    control.ack(request)
                elif request["type"] == "abort":
                    break
            if stopping:
                complete = status["last_frame_id"] >= last_pulse
                quiet_s = (time.monotonic_ns() - last_frame_ns) * 1e-9
                if quiet_s > (DRAIN_QUIET_S if complete else DRAIN_MISSING_S):
                    break
            if control.heartbeat_due():
                control.heartbeat(**status)
        camera.disarm()
        # Aborted (the writer is gone): nothing will take the frames, so do not wait for it.
        final_timeout_ms = 0 if abort.is_set() else FINAL_SEND_TIMEOUT_MS
        record.setsockopt(zmq.SNDTIMEO, final_timeout_ms)
        _send_backlog(record, backlog, block=True)
        unsent = [header.trigger_index for header, _ in backlog]
        with contextlib.suppress(zmq.Again) if abort.is_set() else contextlib.nullcontext():
            send_message(
                record,
                TOPIC_EOS,
                eos_header(
                    config.name,
                    seq - len(unsent),
                    dropped_trigger_indices=sorted(dropped_trigger_indices + unsent),
                ),
            )
        record.close(linger=final_timeout_ms)
        for latest in (live, monitor):
            if latest is not None:
                latest.close(linger=0)
        control.done(
            frames_sent=seq - len(unsent),
            dropped_trigger_indices=sorted(dropped_trigger_indices + unsent),
        )


def _publish_live(live: zmq.Socket, camera: str, frame: CameraFrame) -> None:
    """Offer the newest frame to tracking and the preview; a full queue drops it, never waits.

    ``seq`` is the frame id, so a subscriber counts the frames it never saw from the gaps.
    """
    header = array_header(
        camera,
        frame.frame_id,
        frame.image,
        frame_id=frame.frame_id,
        trigger_index=frame.frame_id,
        t_device_ns=frame.t_device_ns,
    )
    with contextlib.suppress(zmq.Again):
        send_message(live, TOPIC_LIVE_FRAME, header, frame.image, flags=zmq.NOBLOCK)


def _send_backlog(
    record: zmq.Socket, backlog: collections.deque[tuple[Header, bytes]], block: bool
) -> None:
    """Send buffered frames in order until the socket would block (or, with ``block``, fails)."""
    flags = 0 if block else zmq.NOBLOCK
    while backlog:
        header, chunk = backlog[0]
        try:
            send_message(record, TOPIC_FRAME, header, chunk, flags=flags)
        except zmq.Again:
            return
        backlog.popleft()
