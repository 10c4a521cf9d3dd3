"""Messages between the rig's processes, and the ZeroMQ sockets that carry them.

Every data message is multipart ``[topic, header, payload]``:

- ``topic``: a short bytes tag (``b"frame"``, ``b"daq"``, ``b"eos"``, ...); SUB sockets filter
  on it.
- ``header``: a small JSON object (:class:`Header`): stream name, sequence number, frame id,
  trigger index, host time in integer ns, device time, shape, dtype, encoding and a few
  stream-specific extras. Never arrays: arrays travel as the payload.
- ``payload``: the raw array buffer (or an already-compressed chunk), sent without copying.

Every stream numbers its messages from 0 (``seq``) and ends with an ``eos`` message whose ``seq``
is the number of data messages sent, so a receiver can prove it lost nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import zmq

TOPIC_FRAME = b"frame"
TOPIC_DAQ = b"daq"
TOPIC_TRIGGER = b"trigger"
TOPIC_EOS = b"eos"
TOPIC_LIVE_FRAME = b"live"
TOPIC_POSE2D = b"pose2d"
TOPIC_POSE3D = b"pose3d"
# Jump detector output: the phase, new events and the last jump's numbers (header extra).
TOPIC_JUMP = b"jump"
# The supervisor's status snapshot (header extra), for the preview.
TOPIC_STATUS = b"status"

ENCODING_RAW = "raw"
# An HDF5 chunk ready for write_direct_chunk: Blosc (lz4, bitshuffle) plus a fletcher32 trailer.
ENCODING_H5CHUNK = "h5chunk"


@dataclass(frozen=True)
class Header:
    """Metadata of one message; the array itself travels as the payload.

    ``t_host_ns`` comes from ``time.monotonic_ns()`` on the sending host; ``t_device_ns`` is the
    device's own clock (camera timestamp, DAQ sample clock), -1 where a device has none.
    """

    stream: str
    seq: int
    t_host_ns: int
    frame_id: int = -1
    trigger_index: int = -1
    t_device_ns: int = -1
    shape: tuple[int, ...] = ()
    dtype: str = ""
    encoding: str = ENCODING_RAW
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Header:
        fields = json.loads(raw)
        fields["shape"] = tuple(fields["shape"])
        return cls(**fields)


@dataclass(frozen=True)
class Message:
    topic: bytes
    header: Header
    payload: memoryview | bytes

    def array(self) -> np.ndarray:
        """The payload as an array of the header's shape and dtype (no copy; read-only)."""
        if self.header.encoding != ENCODING_RAW:
            raise ValueError(
                f"stream {self.header.stream!r}: payload is {self.header.encoding!r}, "
                "not a raw array"
            )
        return np.frombuffer(self.payload, dtype=np.dtype(self.header.dtype)).reshape(
            self.header.shape
        )


def send_message(
    socket: zmq.Socket,
    topic: bytes,
    header: Header,
    payload: np.ndarray | bytes | memoryview = b"",
    flags: int = 0,
) -> None:
    """Send ``[topic, header, payload]``; a contiguous array is sent without a copy.

    With ``flags=zmq.NOBLOCK`` a full queue raises ``zmq.Again`` and nothing is sent, so the
    caller can buffer or count the drop itself.
    """
    if isinstance(payload, np.ndarray):
        payload = np.ascontiguousarray(payload)
    parts: list[Any] = [topic, header.to_bytes(), payload]
    socket.send_multipart(parts, flags=flags, copy=False)


def recv_message(socket: zmq.Socket, flags: int = 0) -> Message:
    topic, header, payload = socket.recv_multipart(flags=flags, copy=False)
    return Message(
        topic=bytes(topic.buffer),
        header=Header.from_bytes(bytes(header.buffer)),
        payload=payload.buffer,
    )


def array_header(stream: str, seq: int, array: np.ndarray, **fields: Any) -> Header:
    """A header describing ``array`` as a raw payload, stamped with the host time now."""
    return Header(
        stream=stream,
        seq=seq,
        t_host_ns=time.monotonic_ns(),
        shape=tuple(array.shape),
        dtype=array.dtype.str,
        **fields,
    )


def eos_header(stream: str, messages_sent: int, **extra: Any) -> Header:
    """End of a stream: ``seq`` is the number of data messages that were sent before it."""
    return Header(stream=stream, seq=messages_sent, t_host_ns=time.monotonic_ns(), extra=extra)


class SequenceChecker:
    """Counts messages lost on a stream from its sequence numbers.

    ``observe`` returns how many messages were skipped before this one (0 when in order).
    """

    def __init__(self) -> None:
        self.next_seq = 0
        self.received = 0
        self.lost = 0

    def observe(self, seq: int) -> int:
        if seq < self.next_seq:
            raise ValueError(f"sequence went backwards: got {seq}, expected {self.next_seq}")
        gap = seq - self.next_seq
        self.lost += gap
        self.received += 1
        self.next_seq = seq + 1
        return gap

    def finish(self, messages_sent: int) -> int:
        """At end-of-stream: count what went missing after the last message received."""
        if messages_sent > self.next_seq:
            self.lost += messages_sent - self.next_seq
            self.next_seq = messages_sent
        return self.lost


@dataclass(frozen=True)
class Endpoints:
    """The ZeroMQ endpoints of one trial (``ipc://`` on one machine, ``tcp://`` across several).

    ``live_frames`` is a template with ``{camera}``: each camera publishes its newest raw frames
    there for tracking; ``live_frames_by_camera`` names a camera's endpoint outright (a TCP port
    per camera, where cameras run on several hosts) and wins over the template. ``jump_input``
    is where the jump detector takes DAQ blocks, pulses and 3D poses. ``monitor`` (empty: none)
    is where the live preview listens: every live stage connects a PUB socket there and offers
    what it makes (frames decimated to the preview's rate, DAQ blocks, 2D and 3D poses, jump
    phase and events, the supervisor's status), never waiting.
    """

    control: str
    record: str
    trigger_line: str
    live_frames: str = ""
    poses: str = ""
    jump_input: str = ""
    monitor: str = ""
    live_frames_by_camera: Mapping[str, str] = field(default_factory=dict)

    def live_frames_of(self, camera: str) -> str:
        return self.live_frames_by_camera.get(camera) or self.live_frames.format(camera=camera)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a JSON control message (:meth:`from_dict` reads it back)."""
        return {**asdict(self), "live_frames_by_camera": dict(self.live_frames_by_camera)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Endpoints:
        return cls(**values)


# --- sockets -----------------------------------------------------------------------------------

# A process that ends keeps delivering what it queued on the recording path for this long: on a
# loaded machine the writer may take seconds to read it, and the recording path never drops.
RECORD_LINGER_MS = 30_000
# The recording path: a producer may queue this many messages before NOBLOCK sends fail and it
# falls back on its own bounded buffer.
RECORD_HWM = 1000
# The twin trigger line: pulses queued for a slow twin camera are kept, not dropped (a camera that
# lags is still triggered by every pulse, as a real camera on a wire would be), and the receiving
# side takes them all at once so none is left in the sender's queue when the DAQ process exits.
TWIN_LINE_HWM = 10_000_000
# The latest-frame paths (tracking, preview) must never queue stale frames.
LATEST_HWM = 2
# Small live messages to the preview (DAQ blocks, poses, events): a few seconds' worth, then drop.
MONITOR_HWM = 1000


def make_socket(
    context: zmq.Context,
    kind: int,
    endpoint: str,
    bind: bool,
    hwm: int | None = None,
    subscribe: Sequence[bytes] = (),
    options: Mapping[int, int] | None = None,
) -> zmq.Socket:
    """One socket, configured before it binds or connects (ZeroMQ reads the options then)."""
    socket = context.socket(kind)
    # A SUB only receives: all it could leave queued is its subscription to a publisher that has
    # gone, and lingering on that holds the process's exit up for nothing.
    socket.setsockopt(zmq.LINGER, 0 if kind == zmq.SUB else 2000)
    for option, value in (options or {}).items():
        socket.setsockopt(option, value)
    if hwm is not None:
        socket.setsockopt(zmq.SNDHWM, hwm)
        socket.setsockopt(zmq.RCVHWM, hwm)
    for topic in subscribe:
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    if bind:
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket
