"""How fast a replay runs, and the credit messages that keep it from outrunning the recording path.

Speed: ``realtime`` replays the DAQ blocks at the pace they were sampled, ``FACTOR`` at that many
times the pace, ``max`` as fast as the pipeline takes them.

Credit: the replay DAQ emits a block only while no replay camera lags more than
:data:`PULSE_WINDOW` pulses behind it, and not while the writer is behind. The replay cameras
report how many frames they have delivered; the replay command reports whether any camera
process is holding a backlog of frames the writer has not taken yet (the supervisor's status). Both
travel as small JSON messages to one PULL socket that the replay DAQ binds.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from typing import Any

import zmq

# How far (in trigger pulses) the replay DAQ may run ahead of the slowest replay camera: small
# enough that the twin trigger line, the DAQ stream (and the live jump detector) and the frames
# stay close together, large enough that a camera always has pulses queued while its credit
# messages travel (well under a millisecond on one machine; 100 pulses are 0.5 s at 200 Hz).
PULSE_WINDOW = 100
# The replay stops emitting while the writer is behind: any camera has more than
# PAUSE_IN_FLIGHT_FRAMES frames made but not yet taken in by the writer (on the way or buffered),
# or any camera process buffers more than PAUSE_BACKLOG_FRAMES (its queue to the writer is full);
# it resumes below the RESUME_ counts. Both come from the supervisor's status (heartbeats every
# 0.2 s, each count may be that old), and the camera processes' buffers are made large enough
# (REPLAY_MIN_BUFFERED_FRAMES) to absorb what arrives while the status travels.
PAUSE_IN_FLIGHT_FRAMES = 1000
RESUME_IN_FLIGHT_FRAMES = 300
PAUSE_BACKLOG_FRAMES = 100
RESUME_BACKLOG_FRAMES = 20
# Camera processes buffer at least this many frames in a replay: PAUSE_BACKLOG_FRAMES, plus the
# frames a camera makes while the status travels (heartbeat 0.2 s + status 0.25 s at up to
# ~2,000 frames/s), plus PULSE_WINDOW, with a margin.
REPLAY_MIN_BUFFERED_FRAMES = 2000
# A camera that reports no progress for this long while the DAQ waits for it is left behind: a
# dead camera process must not stall the replay (the supervisor ends the trial for it anyway).
CAMERA_STALL_S = 10.0


class SpeedError(ValueError):
    """A ``--speed`` value that is not ``realtime``, ``max`` or a positive number."""


@dataclass(frozen=True)
class ReplaySpeed:
    """Replay pace as a multiple of the recorded pace; ``math.inf`` means as fast as possible."""

    factor: float

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not (self.factor > 0):
            raise SpeedError(f"replay speed must be a positive factor, got {self.factor!r}")

    @classmethod
    def parse(cls, text: str) -> ReplaySpeed:
        """``realtime`` (1), ``max`` (infinite) or a positive factor such as ``2`` or ``0.5``."""
        word = text.strip().lower()
        if word == "realtime":
            return cls(1.0)
        if word == "max":
            return cls(math.inf)
        try:
            factor = float(word.removesuffix("x"))
        except ValueError:
            raise SpeedError(
                f"--speed must be realtime, max or a positive factor, got {text!r}"
            ) from None
        if not math.isfinite(factor) or factor <= 0:
            raise SpeedError(f"--speed factor must be a positive number, got {text!r}")
        return cls(factor)

    @property
    def is_max(self) -> bool:
        return math.isinf(self.factor)

    @property
    def label(self) -> str:
        if self.is_max:
            return "max"
        if self.factor == 1.0:
            return "realtime"
        return f"{self.factor:g}"

    def paced_seconds(self, recorded_s: float) -> float:
        """Wall-clock seconds the pacing alone takes for ``recorded_s`` of recording."""
        return 0.0 if self.is_max else recorded_s / self.factor


def camera_progress_message(camera: str, frames_delivered: int) -> bytes:
    return json.dumps({"camera": camera, "frames": int(frames_delivered)}).encode()


def backlog_message(paused: bool) -> bytes:
    return json.dumps({"writer_backlog": bool(paused)}).encode()


def decode_credit_message(raw: bytes) -> dict[str, Any]:
    """A credit message as a dict; raises ValueError for anything else."""
    message = json.loads(raw)
    if not isinstance(message, dict):
        raise ValueError(f"credit message is not an object: {raw[:80]!r}")
    return message


class CreditSender:
    """A PUSH socket to the replay DAQ's credit endpoint; sends never wait.

    Every message carries a whole state (frames delivered so far, paused or not), so a message
    that cannot be queued right now is simply superseded by the next one.
    """

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self._socket = context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.LINGER, 1000)
        self._socket.connect(endpoint)
        self._pending: bytes | None = None

    def send(self, message: bytes) -> None:
        self._pending = message
        self.retry()

    def retry(self) -> None:
        """Send the last message that could not be queued, if any."""
        if self._pending is None:
            return
        with contextlib.suppress(zmq.Again):
            self._socket.send(self._pending, zmq.NOBLOCK)
            self._pending = None

    def close(self) -> None:
        self._socket.close()
