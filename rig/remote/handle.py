"""The console's view of a worker process that a ``rig worker`` runs on another host.

It answers what the supervisor asks of a local process (``is_alive``, ``exitcode``, ``pid``) from
what the worker host reports: ``launched`` (pid), ``heartbeat``, ``exited`` (exit code). A worker
host that falls silent for :data:`~acquisition.control.HEARTBEAT_TIMEOUT_S` counts as dead, with
that reason, so a host that loses power or its network ends the trial like a crashed process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from acquisition.control import HEARTBEAT_TIMEOUT_S


@dataclass(frozen=True)
class WorkerHostInfo:
    """What a worker host said in its last ``hello``."""

    role: str
    host: str
    version: str


class RemoteWorkerProcess:
    """A worker process on another host, as its worker host reports it."""

    def __init__(self, role: str, host: str) -> None:
        self.role = role
        self.host = host
        self.pid: int | None = None
        self.exitcode: int | None = None
        self.launch_failure: str | None = None
        self.ended = False
        self.last_heard_s = time.monotonic()

    @property
    def name(self) -> str:
        return f"{self.role} on {self.host}"

    def on_message(self, message: dict[str, Any]) -> None:
        """Take in a message of this worker's host."""
        self.last_heard_s = time.monotonic()
        kind = message["type"]
        if kind == "launched":
            self.pid = int(message["pid"])
        elif kind == "launch_failed":
            self.launch_failure = str(message.get("reason", "unknown reason"))
            self.ended = True
        elif kind == "exited":
            code = message.get("exitcode")
            self.exitcode = int(code) if code is not None else None
            self.ended = True

    def silent_s(self) -> float:
        return time.monotonic() - self.last_heard_s

    def is_alive(self) -> bool:
        return not self.ended and self.silent_s() < HEARTBEAT_TIMEOUT_S

    def death_reason(self) -> str:
        if self.launch_failure is not None:
            return f"{self.name} could not start: {self.launch_failure}"
        if self.ended:
            return f"{self.name}: process died (exit code {self.exitcode})"
        return f"{self.name}: its worker host stopped answering for {self.silent_s():.1f} s"
