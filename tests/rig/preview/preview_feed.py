"""A synthetic monitor feed: the digital twin's jump published as the rig's live stages do.

:class:`TwinFeed` connects one PUB socket per stage (each camera, the DAQ, pose, triangulator,
jump detector, supervisor) to the preview's endpoint and publishes, from a thread, at the rig's
rates: frames rendered by the twin at ``frame_hz`` per camera, 2D poses (the twin's body parts
projected into each camera) and 3D poses at ``pose_hz``, DAQ blocks of the twin's force and EMG
every 10 ms, the jump phase and events, and the supervisor's status at 5 Hz. The jump repeats
every ``period_s``; the events and the last jump's numbers are the twin's ground truth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from acquisition.daq.interface import DaqBlock, pack_block
from acquisition.sim.camera_model import PinholeCamera, twin_cameras
from acquisition.sim.render import FrameRenderer
from acquisition.sim.signals import AnalogTwin
from acquisition.sim.skeleton import BODY_PARTS, PHASES, JumpModel
from acquisition.transport import (
    LATEST_HWM,
    MONITOR_HWM,
    TOPIC_DAQ,
    TOPIC_JUMP,
    TOPIC_LIVE_FRAME,
    TOPIC_POSE2D,
    TOPIC_POSE3D,
    TOPIC_STATUS,
    Header,
    array_header,
    make_socket,
    send_message,
)
from rig.config import RigConfig
from tracking.jump_detection import EMG_ONSET_PREFIX
from tracking.triangulator_process import pose3d_record_dtype

DAQ_BLOCK_S = 0.01
STATUS_HZ = 5.0
# The twin's events as the jump detector names them, with the twin's truth key of their time.
EVENT_TIMES = (
    ("crouch_onset", "crouch_onset_s"),
    ("takeoff", "takeoff_s"),
    ("landing", "landing_s"),
)
JUMP_REPORT_DELAY_S = 0.05


@dataclass
class FeedCounts:
    """What the feed sent, per topic."""

    sent: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    def add(self, topic: bytes) -> None:
        self.sent[topic.decode()] = self.sent.get(topic.decode(), 0) + 1


class TwinFeed:
    """Publishes the twin's jump to ``endpoint`` until stopped; a context manager."""

    def __init__(
        self,
        config: RigConfig,
        endpoint: str,
        *,
        trial_id: str = "trial_0001",
        frame_hz: float = 30.0,
        pose_hz: float = 20.0,
        period_s: float = 2.5,
        start_s: float = 0.0,
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        self.trial_id = trial_id
        self.frame_hz = frame_hz
        self.pose_hz = pose_hz
        self.period_s = period_s
        self.start_s = start_s
        self.jump = JumpModel(config.sim.jump)
        self.truth = self.jump.true_events()
        names = list(config.camera_names)
        first = config.cameras[0]
        self.cameras = twin_cameras(names, first.width, first.height, gap_mm=config.sim.jump.gap_mm)
        self.renderers = [
            _renderer(camera, config.sim.seed, config.sim.jump.gap_mm) for camera in self.cameras
        ]
        channels = [(channel.name, channel.kind) for channel in config.daq.channels]
        self.analog = AnalogTwin(self.jump, channels, config.daq.rate_hz, config.sim.seed)
        self.counts = FeedCounts()
        self.jumps_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def last_jump(self) -> dict[str, float]:
        """The numbers the jump detector would report for the twin's jump (its ground truth)."""
        truth = self.truth
        values = {
            "takeoff_s": truth["takeoff_s"],
            "flight_time_s": truth["flight_time_s"],
            "jump_height_mm": truth["jump_height_mm"],
            "jump_distance_mm": truth["jump_distance_mm"],
            "takeoff_speed_mm_per_s": truth["takeoff_speed_mm_per_s"],
            "peak_push_off_force_n": truth["peak_push_off_force_n"],
            "landed": 1.0,
            "takeoff_angle_deg": float("nan"),
        }
        for name, onset_s in self.analog.emg_onsets_s().items():
            values[EMG_ONSET_PREFIX + name] = onset_s - truth["takeoff_s"]
        return values

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_safely, name="twin-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        if self._error is not None:
            raise RuntimeError("the twin feed failed") from self._error

    def __enter__(self) -> TwinFeed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_safely(self) -> None:
        try:
            self._run()
        except BaseException as error:  # handed to stop()
            self._error = error

    def _run(self) -> None:
        context = zmq.Context()
        sockets: dict[str, zmq.Socket] = {}
        try:
            for camera in self.config.camera_names:
                sockets["camera:" + camera] = make_socket(
                    context, zmq.PUB, self.endpoint, bind=False, hwm=LATEST_HWM
                )
            for role in ("daq", "pose", "triangulator", "jumps", "supervisor"):
                sockets[role] = make_socket(
                    context, zmq.PUB, self.endpoint, bind=False, hwm=MONITOR_HWM
                )
            self._publish(sockets)
        finally:
            for socket in sockets.values():
                socket.close(linger=0)
            context.term()

    def _publish(self, sockets: dict[str, zmq.Socket]) -> None:
        config = self.config
        names = list(config.camera_names)
        rate_hz = config.trigger.rate_hz
        daq_rate_hz = config.daq.rate_hz
        block_samples = round(DAQ_BLOCK_S * daq_rate_hz)
        seqs: dict[str, int] = {}
        next_at = {"frame": 0.0, "pose": 0.0, "daq": 0.0, "status": 0.0}
        jump_checked_s = -1.0
        begun_s = time.monotonic()
        sample = 0
        while not self._stop.is_set():
            run_s = time.monotonic() - begun_s
            twin_s = (run_s + self.start_s) % self.period_s
            trigger_index = round(run_s * rate_hz)
            if run_s >= next_at["frame"]:
                next_at["frame"] += 1.0 / self.frame_hz
                points = self.jump.points_mm(np.array([twin_s]))[0]
                for name, renderer in zip(names, self.renderers, strict=True):
                    frame = renderer.render(points, trigger_index)
                    self._send(
                        sockets["camera:" + name],
                        TOPIC_LIVE_FRAME,
                        name,
                        seqs,
                        frame,
                        frame_id=trigger_index,
                        trigger_index=trigger_index,
                    )
            if run_s >= next_at["pose"]:
                next_at["pose"] += 1.0 / self.pose_hz
                self._send_poses(sockets, seqs, twin_s, trigger_index)
                phase = int(self.jump.phase_at(np.array([twin_s]))[0])
                self._send_jump(sockets["jumps"], seqs, phase, jump_checked_s, run_s)
                jump_checked_s = run_s
            while run_s >= next_at["daq"]:
                next_at["daq"] += block_samples / daq_rate_hz
                # The twin's samples of this moment of its (repeating) jump.
                block_twin_s = (sample / daq_rate_hz + self.start_s) % self.period_s
                analog = self.analog.samples(round(block_twin_s * daq_rate_hz), block_samples, 0)
                block = DaqBlock(
                    first_sample_index=sample,
                    analog=analog,
                    trigger_line=np.zeros(block_samples, dtype=np.uint8),
                    t_host_ns=time.monotonic_ns(),
                )
                header = Header(
                    stream="daq",
                    seq=self._next(seqs, "daq"),
                    t_host_ns=block.t_host_ns,
                    shape=(block_samples,),
                    dtype="daq_block",
                    extra={"first_sample_index": sample, "n_channels": analog.shape[1]},
                )
                self._send_raw(sockets["daq"], TOPIC_DAQ, header, pack_block(block))
                sample += block_samples
            if run_s >= next_at["status"]:
                next_at["status"] += 1.0 / STATUS_HZ
                frames = {name: trigger_index + 1 for name in names}
                header = Header(
                    stream="status",
                    seq=self._next(seqs, "status"),
                    t_host_ns=time.monotonic_ns(),
                    extra={
                        "trial_id": self.trial_id,
                        "state": "running",
                        "elapsed_s": round(run_s, 3),
                        "frames": frames,
                        "dropped": {name: 0 for name in names},
                        "daq_samples": sample,
                        "pulses": trigger_index + 1,
                    },
                )
                self._send_raw(sockets["supervisor"], TOPIC_STATUS, header, b"")
            wait_s = min(next_at.values()) - (time.monotonic() - begun_s)
            if wait_s > 0:
                self._stop.wait(wait_s)

    def _send_poses(
        self, sockets: dict[str, zmq.Socket], seqs: dict[str, int], twin_s: float, trigger: int
    ) -> None:
        points = self.jump.points_mm(np.array([twin_s]))[0]  # (K, 3) mm
        rng = np.random.default_rng(trigger)
        for camera in self.cameras:
            pixels = camera.project(points)  # (K, 2)
            likelihood = rng.uniform(0.3, 1.0, size=(len(BODY_PARTS), 1))
            pose = np.hstack((pixels, likelihood)).astype(np.float32)
            self._send(
                sockets["pose"],
                TOPIC_POSE2D,
                "pose2d/" + camera.name,
                seqs,
                pose,
                frame_id=trigger,
                trigger_index=trigger,
            )
        names = [camera.name for camera in self.cameras]
        record = np.zeros(1, dtype=pose3d_record_dtype(len(BODY_PARTS), len(names)))
        record["points"][0] = points
        record["reprojection_error"][0] = 0.5
        record["cameras_used"][0] = True
        header = Header(
            stream="pose3d",
            seq=self._next(seqs, "pose3d"),
            t_host_ns=time.monotonic_ns(),
            trigger_index=trigger,
            shape=(1,),
            dtype="pose3d_record",
            extra={"parts": len(BODY_PARTS), "cameras": names},
        )
        self._send_raw(sockets["triangulator"], TOPIC_POSE3D, header, record)

    def _send_jump(
        self, socket: zmq.Socket, seqs: dict[str, int], phase: int, since_s: float, run_s: float
    ) -> None:
        """The phase, and the events whose time (run time, s) lies in (since_s, run_s]."""
        daq_rate_hz = self.config.daq.rate_hz
        rate_hz = self.config.trigger.rate_hz
        events: list[dict[str, Any]] = []
        first_loop = int((since_s + self.start_s) // self.period_s)
        last_loop = int((run_s + self.start_s) // self.period_s)
        for loop in range(max(0, first_loop), last_loop + 1):
            loop_start_s = loop * self.period_s - self.start_s
            timed = [(name, loop_start_s + self.truth[key], {}) for name, key in EVENT_TIMES]
            # The detector reports the jump once it has landed.
            timed.append(
                (
                    "jump",
                    loop_start_s + self.truth["landing_s"] + JUMP_REPORT_DELAY_S,
                    self.last_jump(),
                )
            )
            for name, event_s, values in timed:
                if since_s < event_s <= run_s:
                    at_s = loop_start_s + self.truth["takeoff_s"] if name == "jump" else event_s
                    events.append(_event(name, at_s, rate_hz, daq_rate_hz, values))
                    if name == "jump":
                        self.jumps_sent += 1
        header = Header(
            stream="jumps",
            seq=self._next(seqs, "jumps"),
            t_host_ns=time.monotonic_ns(),
            extra={
                "phase": PHASES[phase],
                "events": events,
                "last_jump": self.last_jump() if self.jumps_sent else None,
            },
        )
        self._send_raw(socket, TOPIC_JUMP, header, b"")

    def _send(
        self,
        socket: zmq.Socket,
        topic: bytes,
        stream: str,
        seqs: dict[str, int],
        array: np.ndarray,
        **fields: Any,
    ) -> None:
        header = array_header(stream, self._next(seqs, stream), array, **fields)
        self._send_raw(socket, topic, header, array)

    def _send_raw(
        self, socket: zmq.Socket, topic: bytes, header: Header, payload: np.ndarray | bytes
    ) -> None:
        # As the rig's stages do: never wait for the preview.
        try:
            send_message(socket, topic, header, payload, flags=zmq.NOBLOCK)
            self.counts.add(topic)
        except zmq.Again:
            self.counts.dropped += 1

    @staticmethod
    def _next(seqs: dict[str, int], stream: str) -> int:
        seq = seqs.get(stream, 0)
        seqs[stream] = seq + 1
        return seq


# Rendering a camera's background takes a while: feeds of the same rig share their renderers
# (a renderer keeps no state between frames).
_RENDERERS: dict[tuple[str, int, int, int, float], FrameRenderer] = {}


def _renderer(camera: PinholeCamera, seed: int, gap_mm: float) -> FrameRenderer:
    key = (camera.name, camera.width, camera.height, seed, gap_mm)
    if key not in _RENDERERS:
        _RENDERERS[key] = FrameRenderer(camera, seed=seed, gap_mm=gap_mm)
    return _RENDERERS[key]


def _event(
    name: str, t_s: float, rate_hz: float, daq_rate_hz: float, values: dict[str, float]
) -> dict[str, Any]:
    return {
        "name": name,
        "trigger_index": round(t_s * rate_hz),
        "daq_sample_index": round(t_s * daq_rate_hz),
        "t_s": t_s,
        "values": values,
    }
