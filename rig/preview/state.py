"""The preview's picture of the rig: the newest of everything on the monitor feed, nothing queued.

:class:`PreviewState` is fed :class:`~acquisition.transport.Message` objects by the receive
thread and read by the HTTP threads; one lock guards it. It keeps the newest frame and the last
2D poses of each camera, the newest 3D pose and a short trajectory, the last seconds of the
force and EMG channels (decimated), the jump phase, recent events and the last jump's numbers,
and the supervisor's status. A new trial id in the status clears what belongs to a trial.

Frames are JPEG-encoded only when a browser asks for one, at most once per frame received.
"""

from __future__ import annotations

import collections
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from acquisition.daq.interface import unpack_block
from acquisition.transport import (
    TOPIC_DAQ,
    TOPIC_EOS,
    TOPIC_JUMP,
    TOPIC_LIVE_FRAME,
    TOPIC_POSE2D,
    TOPIC_POSE3D,
    TOPIC_STATUS,
    Message,
)
from rig.preview.layout import PreviewLayout
from rig.preview.traces import TraceWindow
from tracking.triangulator_process import pose3d_record_dtype

JPEG_QUALITY = 80
# Recent jump events listed on the page.
MAX_EVENTS = 20
# Trajectory points kept at most (also bounded by the trace window in time).
MAX_TRAJECTORY_POINTS = 2000
POSE2D_STREAM_PREFIX = "pose2d/"
# 2D poses kept per camera, to find the one that belongs to the frame a browser is shown.
POSES_KEPT = 32


class FeedError(ValueError):
    """A message on the monitor feed that cannot be understood (counted, never fatal)."""


@dataclass
class CameraFeed:
    """The newest frame and the last 2D poses of one camera.

    ``frame_seq`` counts the frames this preview received from the camera since it started (it
    never goes back, across trials), so the page can ask for a frame it has not drawn yet.
    """

    name: str
    frame: np.ndarray | None = None  # (H, W) uint8, read-only view of the received message
    frame_seq: int = 0
    frame_id: int = -1
    trigger_index: int = -1
    frame_t_host_ns: int = 0
    frames_received: int = 0  # this trial
    # The newest 2D poses, oldest first: (trigger_index, frame_id, (K, 3) float32 x, y, likelihood).
    poses: collections.deque[tuple[int, int, np.ndarray]] = field(
        default_factory=lambda: collections.deque(maxlen=POSES_KEPT)
    )
    poses_received: int = 0  # this trial
    jpeg_seq: int = -1
    jpeg: bytes = b""
    jpeg_encodes: int = 0
    encode_lock: threading.Lock = field(default_factory=threading.Lock)

    def clear_trial(self) -> None:
        self.frames_received = 0
        self.poses.clear()
        self.poses_received = 0

    def pose_near(self, trigger_index: int, max_age: int) -> tuple[int, int, np.ndarray] | None:
        """The pose of the trigger index nearest ``trigger_index``, within ``max_age`` of it."""
        best = None
        for pose in self.poses:
            distance = abs(pose[0] - trigger_index)
            if distance <= max_age and (best is None or distance < abs(best[0] - trigger_index)):
                best = pose
        return best


@dataclass(frozen=True)
class JpegFrame:
    """A camera's frame as JPEG, and the 2D pose nearest it (None: none near enough)."""

    camera: str
    frame_seq: int
    frame_id: int
    trigger_index: int
    jpeg: bytes
    pose: dict[str, Any] | None = None


class PreviewState:
    """The newest state of the rig as seen on the monitor feed; thread-safe."""

    def __init__(
        self,
        layout: PreviewLayout,
        *,
        jpeg_quality: int = JPEG_QUALITY,
        max_frame_width_px: int = 0,
    ) -> None:
        """``max_frame_width_px`` > 0 shrinks wider frames before encoding (0: full size)."""
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        if max_frame_width_px < 0:
            raise ValueError(f"max_frame_width_px must be >= 0, got {max_frame_width_px}")
        self.layout = layout
        self.jpeg_quality = jpeg_quality
        self.max_frame_width_px = max_frame_width_px
        # Changes whenever the preview restarts: the page reloads its layout when it sees a new one.
        self.server_id = secrets.token_hex(8)
        self.started_ns = time.monotonic_ns()
        self._lock = threading.Lock()
        self._version = 0
        self._cameras: dict[str, CameraFeed] = {
            camera.name: CameraFeed(camera.name) for camera in layout.cameras
        }
        samples_per_bin = max(1, round(layout.daq_rate_hz / layout.trace_bins_per_s))
        self._samples_per_bin = samples_per_bin
        self._traces = self._new_traces(layout.n_daq_channels)
        self._trace_columns = [channel.column for channel in layout.channels]
        self._pose3d: dict[str, Any] | None = None
        self._trajectory: collections.deque[tuple[int, float, float, float]] = collections.deque(
            maxlen=MAX_TRAJECTORY_POINTS
        )
        self._phase = ""
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_EVENTS)
        self._last_jump: dict[str, Any] | None = None
        self._jumps_seen = 0
        self._status: dict[str, Any] = {}
        self._status_ns = 0
        self._trial_id = ""
        self._trials_seen = 0
        self._next_seq: dict[str, int] = {}
        self._messages: collections.Counter[str] = collections.Counter()
        self._seq_gaps = 0
        self._unknown = 0
        self._bad = 0
        self._last_bad = ""
        # In trigger indices: a pose further than this from a frame is not drawn on it.
        self._pose_max_age = max(1, round(layout.pose_max_age_s * layout.trigger_rate_hz))
        self._snapshot_key: tuple[int, int] = (-1, -1)
        self._snapshot_json = b""

    # --- feeding ---------------------------------------------------------------------------------

    def apply(self, message: Message) -> None:
        """Take one message from the monitor feed. Unknown topics are counted and ignored; a
        malformed message is counted and raises FeedError."""
        topic = message.topic
        handler = self._HANDLERS.get(topic)
        with self._lock:
            self._messages[topic.decode(errors="replace")] += 1
            if handler is None:
                self._unknown += 1
                return
            try:
                # Live frames are decimated by the cameras (their seq is the frame id): their
                # gaps are by design, not losses.
                if topic not in (TOPIC_EOS, TOPIC_LIVE_FRAME):
                    self._observe_seq(message)
                handler(self, message)
            except (ValueError, TypeError, KeyError, IndexError) as error:
                self._bad += 1
                self._last_bad = f"{topic.decode(errors='replace')}: {error}"
                raise FeedError(self._last_bad) from error
            self._version += 1

    def _observe_seq(self, message: Message) -> None:
        stream = message.header.stream
        seq = message.header.seq
        expected = self._next_seq.get(stream)
        # A sequence that goes back is a stream that restarted (a new trial's process).
        if expected is not None and seq > expected:
            self._seq_gaps += seq - expected
        self._next_seq[stream] = seq + 1

    def _camera(self, name: str) -> CameraFeed:
        feed = self._cameras.get(name)
        if feed is None:
            # A camera the config did not list: shown all the same.
            feed = self._cameras[name] = CameraFeed(name)
        return feed

    def _on_live_frame(self, message: Message) -> None:
        frame = message.array()
        if frame.ndim != 2 or frame.dtype != np.uint8:
            raise FeedError(f"a live frame must be (H, W) uint8, got {frame.shape} {frame.dtype}")
        feed = self._camera(message.header.stream)
        feed.frame = frame
        feed.frame_seq += 1
        feed.frame_id = message.header.frame_id
        feed.trigger_index = message.header.trigger_index
        feed.frame_t_host_ns = message.header.t_host_ns
        feed.frames_received += 1

    def _on_pose2d(self, message: Message) -> None:
        stream = message.header.stream
        camera = (
            stream[len(POSE2D_STREAM_PREFIX) :]
            if stream.startswith(POSE2D_STREAM_PREFIX)
            else stream
        )
        pose = message.array()
        if pose.ndim != 2 or pose.shape[1] != 3:
            raise FeedError(f"a 2D pose must be (K, 3), got {pose.shape}")
        feed = self._camera(camera)
        feed.poses.append((message.header.trigger_index, message.header.frame_id, pose))
        feed.poses_received += 1

    def _on_pose3d(self, message: Message) -> None:
        extra = message.header.extra
        cameras = [str(name) for name in extra["cameras"]]
        n_parts = int(extra["parts"])
        record_dtype = pose3d_record_dtype(n_parts, len(cameras))
        if len(message.payload) != record_dtype.itemsize:
            raise FeedError(
                f"a 3D pose of {n_parts} parts and {len(cameras)} cameras is "
                f"{record_dtype.itemsize} bytes, got {len(message.payload)}"
            )
        record = np.frombuffer(message.payload, dtype=record_dtype)[0]
        points = np.asarray(record["points"], dtype=np.float64)  # (K, 3) mm
        self._pose3d = {
            "trigger_index": message.header.trigger_index,
            "points": points,
            "reprojection_error": np.asarray(record["reprojection_error"], dtype=np.float64),
            "cameras_used": np.asarray(record["cameras_used"]).sum(axis=1),  # (K,)
            "cameras": cameras,
        }
        finite = np.all(np.isfinite(points), axis=1)
        if np.any(finite):
            centre = points[finite].mean(axis=0)
            self._trajectory.append(
                (message.header.trigger_index, float(centre[0]), float(centre[1]), float(centre[2]))
            )
            oldest = message.header.trigger_index - round(
                self.layout.trace_window_s * self.layout.trigger_rate_hz
            )
            while self._trajectory and (
                self._trajectory[0][0] < oldest
                or self._trajectory[0][0] > message.header.trigger_index
            ):
                self._trajectory.popleft()

    def _on_daq(self, message: Message) -> None:
        extra = message.header.extra
        n_channels = int(extra.get("n_channels", self.layout.n_daq_channels))
        first_sample_index = int(extra["first_sample_index"])
        analog, _ = unpack_block(message.payload, n_channels)
        if n_channels != self._traces.n_channels:
            generation = self._traces.generation
            self._traces = self._new_traces(n_channels)
            self._traces.generation = generation + 1
        self._traces.add(first_sample_index, analog)

    def _on_jump(self, message: Message) -> None:
        extra = message.header.extra
        phase = extra.get("phase")
        if isinstance(phase, str):
            self._phase = phase
        for event in extra.get("events") or []:
            if not isinstance(event, dict):
                raise FeedError(f"a jump event must be an object, got {event!r}")
            self._events.append(event)
            if event.get("name") == "jump":
                self._jumps_seen += 1
                values = event.get("values")
                if isinstance(values, dict):
                    self._last_jump = dict(values)
        last_jump = extra.get("last_jump")
        if isinstance(last_jump, dict):
            self._last_jump = dict(last_jump)

    def _on_status(self, message: Message) -> None:
        status = dict(message.header.extra)
        trial_id = str(status.get("trial_id", ""))
        if trial_id and trial_id != self._trial_id:
            if self._trial_id:
                self._clear_trial()
            self._trial_id = trial_id
            self._trials_seen += 1
        self._status = status
        self._status_ns = time.monotonic_ns()
        # Without a jump detector the supervisor's status may carry the phase.
        phase = status.get("phase")
        if isinstance(phase, str) and phase and not self._messages[TOPIC_JUMP.decode()]:
            self._phase = phase

    def _on_eos(self, message: Message) -> None:
        # A stream ended (its process stopped); the next trial's stream starts again at 0.
        self._next_seq.pop(message.header.stream, None)

    _HANDLERS: ClassVar[dict[bytes, Any]] = {
        TOPIC_LIVE_FRAME: _on_live_frame,
        TOPIC_POSE2D: _on_pose2d,
        TOPIC_POSE3D: _on_pose3d,
        TOPIC_DAQ: _on_daq,
        TOPIC_JUMP: _on_jump,
        TOPIC_STATUS: _on_status,
        TOPIC_EOS: _on_eos,
    }

    def _clear_trial(self) -> None:
        """Forget what belonged to the trial before (the newest frames stay on screen)."""
        for feed in self._cameras.values():
            feed.clear_trial()
        self._traces.clear()
        self._pose3d = None
        self._trajectory.clear()
        self._phase = ""
        self._events.clear()
        self._last_jump = None
        self._jumps_seen = 0
        self._next_seq.clear()

    def _new_traces(self, n_channels: int) -> TraceWindow:
        n_bins = max(1, round(self.layout.trace_window_s * self.layout.trace_bins_per_s))
        return TraceWindow(n_channels, self._samples_per_bin, n_bins)

    # --- reading ---------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Counts the messages applied; changes whenever there is something new to show."""
        with self._lock:
            return self._version

    def camera_names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def jpeg(self, camera: str) -> JpegFrame | None:
        """The camera's newest frame as JPEG with the 2D pose nearest it; None before the first
        frame.

        Raises KeyError for a camera never seen. Each frame is encoded at most once, however
        many browsers ask (the encoding runs outside the state's lock). The pose is looked up
        at each request: a pose that arrives after its frame was first sent still finds it.
        """
        with self._lock:
            feed = self._cameras[camera]
        with feed.encode_lock:
            with self._lock:
                frame, seq = feed.frame, feed.frame_seq
                frame_id, trigger_index = feed.frame_id, feed.trigger_index
                cached = feed.jpeg if feed.jpeg_seq == seq and feed.jpeg else None
            if frame is None:
                return None
            encoded = cached if cached is not None else self._encode(frame)
            with self._lock:
                if cached is None:
                    feed.jpeg_seq, feed.jpeg = seq, encoded
                    feed.jpeg_encodes += 1
                pose = feed.pose_near(trigger_index, self._pose_max_age)
        return JpegFrame(
            camera, seq, frame_id, trigger_index, encoded, _pose_json(pose) if pose else None
        )

    def jpeg_encodes(self) -> dict[str, int]:
        """How many frames were encoded so far, per camera."""
        with self._lock:
            return {name: feed.jpeg_encodes for name, feed in self._cameras.items()}

    def _encode(self, frame: np.ndarray) -> bytes:
        height, width = frame.shape
        if self.max_frame_width_px and width > self.max_frame_width_px:
            size = (
                self.max_frame_width_px,
                max(1, round(height * self.max_frame_width_px / width)),
            )
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return bytes(buffer)

    def snapshot(self, trace_from_bin: int = -1) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready values (None where a number is not finite).

        Traces hold the bins from ``trace_from_bin`` on (-1: the whole window); see
        :meth:`TraceWindow.since`.
        """
        with self._lock:
            return self._snapshot_locked(trace_from_bin)

    def snapshot_json(self, trace_from_bin: int = -1) -> bytes:
        """:meth:`snapshot` encoded; the same bytes are reused until the state changes."""
        with self._lock:
            key = (self._version, trace_from_bin)
            if self._snapshot_key != key:
                self._snapshot_json = json.dumps(
                    self._snapshot_locked(trace_from_bin), separators=(",", ":"), allow_nan=False
                ).encode()
                self._snapshot_key = key
            return self._snapshot_json

    def _snapshot_locked(self, trace_from_bin: int) -> dict[str, Any]:
        now_ns = time.monotonic_ns()
        cameras = {}
        for name, feed in self._cameras.items():
            entry: dict[str, Any] = {
                "frame_seq": feed.frame_seq,
                "frame_id": feed.frame_id,
                "trigger_index": feed.trigger_index,
                "width": int(feed.frame.shape[1]) if feed.frame is not None else None,
                "height": int(feed.frame.shape[0]) if feed.frame is not None else None,
                "frame_age_s": _age_s(now_ns, feed.frame_t_host_ns) if feed.frame_seq else None,
                "frames_received": feed.frames_received,
                "poses_received": feed.poses_received,
                # The newest pose's trigger index; the page gets poses with the frames.
                "pose_trigger_index": feed.poses[-1][0] if feed.poses else None,
            }
            cameras[name] = entry
        pose3d = None
        if self._pose3d is not None:
            pose3d = {
                "trigger_index": self._pose3d["trigger_index"],
                "points": _rows(self._pose3d["points"], 2),
                "reprojection_error": _rows(self._pose3d["reprojection_error"], 2),
                "cameras_used": [int(n) for n in self._pose3d["cameras_used"].tolist()],
                "cameras": self._pose3d["cameras"],
            }
        traces = self._traces
        status_age_s = _age_s(now_ns, self._status_ns) if self._status_ns else None
        return {
            "server_id": self.server_id,
            "version": self._version,
            "uptime_s": round((now_ns - self.started_ns) / 1e9, 3),
            "trial": {
                "trial_id": self._trial_id,
                "trials_seen": self._trials_seen,
                "status": _json_safe(self._status),
                "status_age_s": status_age_s,
            },
            "cameras": cameras,
            "pose3d": pose3d,
            "trajectory": [
                [index, round(x, 2), round(z, 2)] for index, x, _, z in self._trajectory
            ],
            "traces": {
                "generation": traces.generation,
                "end_sample": traces.end_sample,
                "samples_per_bin": traces.samples_per_bin,
                "n_bins": traces.n_bins,
                **traces.since(
                    trace_from_bin, [c for c in self._trace_columns if c < traces.n_channels]
                ),
            },
            "jump": {
                "phase": self._phase,
                "events": _json_safe(list(self._events)),
                "last_jump": _json_safe(self._last_jump),
                "jumps_seen": self._jumps_seen,
            },
            "feed": {
                "messages": dict(self._messages),
                "seq_gaps": self._seq_gaps,
                "unknown_topics": self._unknown,
                "bad_messages": self._bad,
                "last_bad": self._last_bad,
            },
        }


def _pose_json(pose: tuple[int, int, np.ndarray]) -> dict[str, Any]:
    trigger_index, frame_id, points = pose
    return {"trigger_index": trigger_index, "frame_id": frame_id, "points": _rows(points, 2)}


def _age_s(now_ns: int, then_ns: int) -> float:
    return round(max(0, now_ns - then_ns) / 1e9, 3)


def _rows(array: np.ndarray, decimals: int) -> list[Any]:
    """An array as nested lists of rounded floats, None where not finite."""
    rounded = np.round(np.asarray(array, dtype=np.float64), decimals)
    listed = np.where(np.isfinite(rounded), rounded, np.nan).tolist()
    return list(_json_safe(listed))


def _json_safe(value: Any) -> Any:
    """Value with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
