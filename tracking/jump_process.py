"""The jump detector process: the phases and events of a jump, live, while the trial records.

Entry point :func:`run_jump_detector`. It binds ``endpoints.jump_input``, where the DAQ process
pushes every sample block (with the trigger line) and the triangulator every 3D pose, and feeds
them to one :class:`tracking.jump_detection.JumpDetector` in arrival order, exactly as
:func:`tracking.jump_detection.detect_jumps` does offline. Events go to the writer (``/events``)
and to the preview; the phase, the number of jumps and the last jump's numbers go to the
supervisor with every heartbeat, for the console.

Which 3D poses the detector took (a pose arriving after its frame matured is not used) is sent
to the writer too, so the live events can be reproduced offline from the file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np
import zmq

from acquisition.control import WorkerControl
from acquisition.daq.interface import rising_edges, unpack_block
from acquisition.transport import (
    MONITOR_HWM,
    RECORD_HWM,
    RECORD_LINGER_MS,
    TOPIC_DAQ,
    TOPIC_EOS,
    TOPIC_JUMP,
    TOPIC_POSE3D,
    Endpoints,
    Header,
    SequenceChecker,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)
from acquisition.worker import setup_worker
from tracking.jump_detection import (
    JumpDetector,
    JumpDetectorSettings,
    JumpEvent,
    events_table,
)
from tracking.triangulator_process import STREAM as POSE3D_STREAM
from tracking.triangulator_process import pose3d_record_dtype

ROLE = "jumps"
STREAM = "jumps"
DAQ_STREAM = "daq"
READY_TIMEOUT_S = 120.0
# After "stop", how long to wait for the end of the DAQ and 3D streams, counted from the last
# message that arrived.
FINISH_TIMEOUT_S = 10.0
# The preview hears the phase at least this often, events or not.
MONITOR_INTERVAL_S = 0.2
# Live, a 3D pose comes a frame's inference and the cameras' join after its pulse: hundreds of
# ms on a loaded machine. The detector waits this long for it (which delays the jump's summary,
# not the force-driven phases).
LIVE_POSE_WAIT_MS = 1000.0
# Header dtype names of the two kinds of message this process sends the writer.
EVENTS_DTYPE_NAME = "events_table"
POSES_USED_DTYPE_NAME = "pose3d_used"


@dataclass(frozen=True)
class JumpChannels:
    """Which analog columns the detector reads: the two platforms' forces and the EMG."""

    force: tuple[int, int]
    emg: dict[str, int]


def jump_channels(names: Sequence[str], kinds: Sequence[str]) -> JumpChannels | None:
    """The detector's channels from the DAQ's channel names and kinds, or None without two force
    channels (the first is the platform the mouse starts on)."""
    force = [i for i, kind in enumerate(kinds) if kind == "force"]
    if len(force) < 2:
        return None
    emg = {str(names[i]): i for i, kind in enumerate(kinds) if kind == "emg"}
    return JumpChannels(force=(force[0], force[1]), emg=emg)


def live_settings() -> JumpDetectorSettings:
    """The live detector's settings (replaying its inputs through detect_jumps with these gives
    its events)."""
    return JumpDetectorSettings(pose_wait_ms=LIVE_POSE_WAIT_MS)


def event_as_dict(event: JumpEvent) -> dict[str, Any]:
    """One event as plain JSON values (NaN as None), for the preview and the console."""
    return {
        "name": event.name,
        "trigger_index": int(event.trigger_index),
        "daq_sample_index": int(event.daq_sample_index),
        "t_s": _finite_or_none(event.t_s),
        "values": json_values(event.values),
    }


def json_values(values: dict[str, float] | None) -> dict[str, float | None] | None:
    """Measurements as strict JSON allows them: NaN and infinities become None."""
    if values is None:
        return None
    return {key: _finite_or_none(value) for key, value in values.items()}


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def run_jump_detector(
    daq_rate_hz: float,
    channels: JumpChannels,
    body_parts: Sequence[str],
    n_cameras: int,
    with_poses: bool,
    endpoints: Endpoints,
    abort: Event,
) -> None:
    """Detect jumps live until told to stop. ``with_poses``: a triangulator sends 3D poses
    (of ``len(body_parts)`` parts seen by up to ``n_cameras``), so wait for its end of stream."""
    log = setup_worker(ROLE)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, ROLE)
    try:
        detector = JumpDetector(
            live_settings(),
            daq_rate_hz=daq_rate_hz,
            force_channels=channels.force,
            emg_channels=channels.emg,
            body_parts=body_parts,
        )
        streams = {DAQ_STREAM, POSE3D_STREAM} if with_poses else {DAQ_STREAM}
        _LiveDetection(detector, n_cameras, streams, endpoints, context, control).run(abort)
    except Exception as error:
        log.exception("jump detection failed")
        control.send("error", reason=f"jump detector: {error}")
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=1000)


class _LiveDetection:
    def __init__(
        self,
        detector: JumpDetector,
        n_cameras: int,
        expected_streams: set[str],
        endpoints: Endpoints,
        context: zmq.Context,
        control: WorkerControl,
    ) -> None:
        self.detector = detector
        self.n_cameras = n_cameras
        self.expected_streams = expected_streams
        self.control = control
        self.inputs = make_socket(
            context, zmq.PULL, endpoints.jump_input, bind=True, hwm=RECORD_HWM
        )
        self.record = make_socket(context, zmq.PUSH, endpoints.record, bind=False, hwm=RECORD_HWM)
        self.monitor = (
            make_socket(context, zmq.PUB, endpoints.monitor, bind=False, hwm=MONITOR_HWM)
            if endpoints.monitor
            else None
        )
        self.daq_checker = SequenceChecker()
        self.pose_checker = SequenceChecker()
        self.trigger_level = 0
        self.ended: set[str] = set()
        self.poses_used: list[int] = []
        self.events: list[JumpEvent] = []
        self.seq = 0
        # Set when an input was lost: the detector needs every sample, so it stops there.
        self.problem = ""
        self.status: dict[str, Any] = {"phase": "still", "jumps": 0, "last_jump": None}

    def run(self, abort: Event) -> None:
        control = self.control
        control.ready()
        command = control.wait_command("start", READY_TIMEOUT_S, self.status)
        if command["type"] == "abort":
            self._close()
            return
        control.ack(command)
        stop_deadline: float | None = None
        next_monitor = 0.0
        while not abort.is_set():
            new_events: list[JumpEvent] = []
            if self.inputs.poll(20, zmq.POLLIN):
                while True:
                    try:
                        message = recv_message(self.inputs, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    new_events += self._take(message.topic, message.header, message.payload)
                if stop_deadline is not None:
                    stop_deadline = time.monotonic() + FINISH_TIMEOUT_S
            self._publish(new_events, force=time.monotonic() >= next_monitor)
            if time.monotonic() >= next_monitor:
                next_monitor = time.monotonic() + MONITOR_INTERVAL_S
            request = control.poll_command()
            if request is not None and request["type"] == "stop":
                stop_deadline = time.monotonic() + FINISH_TIMEOUT_S
                control.ack(request)
            elif request is not None and request["type"] == "abort":
                break
            if stop_deadline is not None and (
                self.ended >= self.expected_streams or time.monotonic() > stop_deadline
            ):
                break
            if control.heartbeat_due():
                control.heartbeat(**self.status)
        if not self.problem:
            self._publish(self.detector.finish(), force=True)
        missing = sorted(self.expected_streams - self.ended)
        if missing and not self.problem:
            self.problem = f"no end of stream from {', '.join(missing)}"
        self._send_poses_used()
        send_message(self.record, TOPIC_EOS, eos_header(STREAM, self.seq, problem=self.problem))
        self._close()
        control.done(
            jumps=self.status["jumps"],
            events=len(self.events),
            poses_used=len(self.poses_used),
            poses_dropped=self.detector.poses_dropped,
            problem=self.problem,
        )

    def _take(self, topic: bytes, header: Header, payload: Any) -> list[JumpEvent]:
        if topic == TOPIC_EOS:
            self.ended.add(header.stream)
            checker = self.daq_checker if header.stream == DAQ_STREAM else self.pose_checker
            if checker.finish(header.seq) and not self.problem:
                self.problem = f"lost messages of the {header.stream} stream"
            return []
        if self.problem:
            return []
        if topic == TOPIC_DAQ:
            if self.daq_checker.observe(header.seq):
                self.problem = "lost DAQ blocks: live detection stopped there"
                return []
            first = int(header.extra["first_sample_index"])
            analog, line = unpack_block(payload, int(header.extra["n_channels"]))
            edges = rising_edges(line, first, self.trigger_level)
            if line.size:
                self.trigger_level = int(line[-1])
            self.detector.add_pulses(edges)
            return self.detector.add_samples(first, analog)
        if topic == TOPIC_POSE3D:
            self.pose_checker.observe(header.seq)
            parts = len(self.detector.body_parts)
            row = np.frombuffer(payload, dtype=pose3d_record_dtype(parts, self.n_cameras))
            dropped_before = self.detector.poses_dropped
            events = self.detector.add_pose3d(header.trigger_index, row["points"][0])
            if self.detector.poses_dropped == dropped_before:
                self.poses_used.append(header.trigger_index)
            return events
        return []

    def _publish(self, events: list[JumpEvent], force: bool) -> None:
        """New events to the writer; the phase and events to the preview and the supervisor."""
        if events:
            self.events += events
            table = events_table(events)
            header = Header(
                stream=STREAM,
                seq=self.seq,
                t_host_ns=time.monotonic_ns(),
                shape=table.shape,
                dtype=EVENTS_DTYPE_NAME,
            )
            send_message(self.record, TOPIC_JUMP, header, table)
            self.seq += 1
        self.status["phase"] = self.detector.phase
        self.status["jumps"] = sum(event.name == "jump" for event in self.events)
        self.status["last_jump"] = json_values(self.detector.last_jump)
        if events:  # the console shows a jump at once, not at the next heartbeat
            self.control.heartbeat(**self.status)
        if self.monitor is None or not (events or force):
            return
        header = Header(
            stream=STREAM,
            seq=self.seq,
            t_host_ns=time.monotonic_ns(),
            extra={
                "phase": self.detector.phase,
                "events": [event_as_dict(event) for event in events],
                "last_jump": self.status["last_jump"],
                "problem": self.problem,
            },
        )
        with contextlib.suppress(zmq.Again):
            send_message(self.monitor, TOPIC_JUMP, header, flags=zmq.NOBLOCK)

    def _send_poses_used(self) -> None:
        used = np.array(self.poses_used, dtype=np.int64)
        header = Header(
            stream=STREAM,
            seq=self.seq,
            t_host_ns=time.monotonic_ns(),
            shape=used.shape,
            dtype=POSES_USED_DTYPE_NAME,
        )
        send_message(self.record, TOPIC_JUMP, header, used)
        self.seq += 1

    def _close(self) -> None:
        self.record.close(linger=RECORD_LINGER_MS)
        self.inputs.close(linger=0)
        if self.monitor is not None:
            self.monitor.close(linger=0)
