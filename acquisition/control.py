"""The control channel between the supervisor and its worker processes.

The supervisor binds a ROUTER socket; every worker connects a DEALER whose identity is its role
(``"writer"``, ``"daq"``, ``"camera:cam_left"``). Control messages are single JSON objects with a
``type``. Workers send ``ready`` (with what they found), ``heartbeat`` (with status counters) at
least every :data:`HEARTBEAT_INTERVAL_S`, ``done`` (with a summary) and ``error`` (with a reason).
The supervisor sends commands (``arm``, ``start``, ``stop``, ``finish``) and gets an ``ack`` back.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import zmq

HEARTBEAT_INTERVAL_S = 0.2
# A worker silent for longer than this is taken for hung. A worker that dies is noticed at once
# from its process exit; silence only catches a hang, and a loaded 2-core machine with a busy
# disk was seen to stall a healthy writer for two seconds.
HEARTBEAT_TIMEOUT_S = 5.0


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError(f"not a control message: {raw[:80]!r}")
    return message


class WorkerControl:
    """A worker's end of the control channel. Not thread-safe: use it from the main loop."""

    def __init__(self, context: zmq.Context, endpoint: str, role: str) -> None:
        self.role = role
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, role.encode())
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(endpoint)
        self._last_heartbeat_ns = 0

    def send(self, type_: str, **fields: Any) -> None:
        self.socket.send(encode({"type": type_, **fields}))

    def ready(self, **info: Any) -> None:
        self.send("ready", info=info)

    def heartbeat_due(self) -> bool:
        return time.monotonic_ns() - self._last_heartbeat_ns >= HEARTBEAT_INTERVAL_S * 1e9

    def heartbeat(self, **status: Any) -> None:
        self._last_heartbeat_ns = time.monotonic_ns()
        self.send("heartbeat", status=status)

    def poll_command(self, timeout_s: float = 0.0) -> dict[str, Any] | None:
        """The next command from the supervisor, or None if none arrived within ``timeout_s``."""
        if not self.socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        return decode(self.socket.recv())

    def wait_command(
        self, expected: str, timeout_s: float, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Wait for command ``expected`` (or ``abort``), heartbeating meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.heartbeat_due():
                self.heartbeat(**status)
            command = self.poll_command(HEARTBEAT_INTERVAL_S / 2)
            if command is None:
                continue
            if command["type"] in (expected, "abort"):
                return command
            logging.getLogger(self.role).warning(
                "ignoring %s while waiting for %s", command, expected
            )
        raise TimeoutError(f"{self.role}: no {expected!r} command within {timeout_s} s")

    def ack(self, command: dict[str, Any], **fields: Any) -> None:
        self.send("ack", command=command["type"], **fields)

    def done(self, **summary: Any) -> None:
        self.send("done", summary=summary)

    def error(self, reason: str) -> None:
        self.send("error", reason=reason)

    def close(self) -> None:
        self.socket.close()
