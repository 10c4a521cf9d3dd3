"""``rig worker``: runs one role of the rig's trials on this host, for a console on another.

It connects to the console's control endpoint (from the config), says ``hello`` until a trial
needs it, then starts the role's worker process (spawn, as the supervisor starts its own) from the
plan the console sends, reports its pid and its exit, and passes on the console's abort. One
worker process at a time; it serves trial after trial until stopped (Ctrl-C, SIGTERM) or, with
``trials``, after that many. Protocol: :mod:`rig.remote.protocol`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import platform
import signal
import tempfile
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import zmq

from acquisition.control import decode, encode
from rig.config import ConfigError, RigConfig, parse_config
from rig.remote.protocol import (
    ABORT_GRACE_S,
    AGENT_HEARTBEAT_S,
    CONSOLE_SILENT_S,
    agent_identity,
)
from rig.versions import software_versions
from rig.workers import TrialPlan, WorkerCall, camera_factory_from_spec, worker_call

log = logging.getLogger("rig.worker")


class WorkerHost:
    """One role's worker host: the control connection and the worker process of the trial."""

    def __init__(self, config: RigConfig, role: str, out: TextIO) -> None:
        if role not in config.remote.roles:
            raise ConfigError(
                config.source_path,
                "remote.roles",
                f"{role!r} is not one of this rig's remote roles "
                f"({', '.join(config.remote.roles) or 'none'})",
            )
        self.config = config
        self.role = role
        self.out = out
        self.spawn = multiprocessing.get_context("spawn")
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, agent_identity(role).encode())
        # Queue nothing while no console listens: a hello from before a trial is stale.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(config.endpoints.control)
        self.folder = tempfile.TemporaryDirectory(prefix="jumprig-worker-")
        self.process: multiprocessing.process.BaseProcess | None = None
        self.abort: Event | None = None
        self.trial_id = ""
        self.aborted_at_s: float | None = None
        self.last_console_s = time.monotonic()
        self.last_sent_s = 0.0
        self.trials_done = 0

    def serve(self, stop: threading.Event, trials: int | None = None) -> None:
        """Serve trials until ``stop`` is set (then abort a running worker and wait for it) or
        ``trials`` have ended."""
        self._say(f"{self.role}: waiting for the console at {self.config.endpoints.control}")
        while trials is None or self.trials_done < trials:
            if stop.is_set():
                if self.process is None:
                    break
                self._abort("this worker host is stopping")
            self._heartbeat()
            if self.socket.poll(50, zmq.POLLIN):
                self._handle(decode(self.socket.recv()))
            self._watch_process()

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.socket.close()
        self.context.term()
        self.folder.cleanup()

    # --- messages -----------------------------------------------------------------------------

    def _send(self, type_: str, **fields: Any) -> None:
        self.last_sent_s = time.monotonic()
        # Nothing is queued without a console; the next beat says it again.
        with contextlib.suppress(zmq.Again):
            self.socket.send(encode({"type": type_, **fields}), zmq.NOBLOCK)

    def _heartbeat(self) -> None:
        if time.monotonic() - self.last_sent_s < AGENT_HEARTBEAT_S:
            return
        if self.process is None:
            self._send(
                "hello",
                host=platform.node(),
                pid=os.getpid(),
                version=software_versions()["version_jumprig"],
            )
        else:
            self._send("heartbeat", trial_id=self.trial_id, pid=self.process.pid)

    def _handle(self, message: dict[str, Any]) -> None:
        self.last_console_s = time.monotonic()
        kind = message["type"]
        if kind == "launch":
            self._launch(message)
        elif kind == "abort" and self.process is not None:
            self._abort("the console aborted the trial")
        elif kind == "kill" and self.process is not None and self.process.pid is not None:
            self._say(f"{self.role}: killed on the console's request (fault injection)")
            os.kill(self.process.pid, signal.SIGKILL)

    def _launch(self, message: dict[str, Any]) -> None:
        trial_id = str(message.get("plan", {}).get("trial_id", "?"))
        if self.process is not None:
            self._send("launch_failed", reason=f"still running trial {self.trial_id}")
            return
        try:
            call = self._worker_call(message)
        except (ConfigError, ValueError, KeyError, OSError) as error:
            self._say(f"{self.role}: cannot start trial {trial_id}: {error}")
            self._send("launch_failed", reason=str(error))
            return
        self.trial_id = trial_id
        self.aborted_at_s = None
        self.process = self.spawn.Process(target=call.target, args=call.args, name=self.role)
        self.process.start()
        self._send("launched", trial_id=trial_id, pid=self.process.pid, host=platform.node())
        self._say(f"{self.role}: trial {trial_id} started (pid {self.process.pid})")

    def _worker_call(self, message: dict[str, Any]) -> WorkerCall:
        # The console's resolved config is the trial's config; this host must be able to use it
        # (its model folder, its calibration), which parse_config checks.
        config = parse_config(str(message["config_toml"]), self.config.source_path)
        plan = TrialPlan.from_message(message["plan"])
        calibration_path = ""
        if plan.calibration_toml:
            calibration = Path(self.folder.name) / "calibration.toml"
            calibration.write_text(plan.calibration_toml)
            calibration_path = str(calibration)
        self.abort = self.spawn.Event()
        return worker_call(
            self.role,
            config,
            plan,
            self.abort,
            calibration_path,
            camera_factory=camera_factory_from_spec(message["camera_factory"]),
        )

    # --- the worker process ---------------------------------------------------------------------

    def _abort(self, why: str) -> None:
        if self.abort is None or self.aborted_at_s is not None:
            return
        self._say(f"{self.role}: {why}: ending trial {self.trial_id}")
        self.abort.set()
        self.aborted_at_s = time.monotonic()

    def _watch_process(self) -> None:
        process = self.process
        if process is None:
            return
        now = time.monotonic()
        if process.is_alive():
            if now - self.last_console_s > CONSOLE_SILENT_S:
                self._abort(f"no word from the console for {CONSOLE_SILENT_S:.0f} s")
            if self.aborted_at_s is not None and now - self.aborted_at_s > ABORT_GRACE_S:
                self._say(f"{self.role}: still running {ABORT_GRACE_S:.0f} s after the abort")
                process.kill()
            return
        process.join()
        self._send("exited", trial_id=self.trial_id, exitcode=process.exitcode)
        self._say(f"{self.role}: trial {self.trial_id} ended (exit code {process.exitcode})")
        self.process = None
        self.abort = None
        self.trials_done += 1

    def _say(self, line: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} rig worker {line}\n")
        self.out.flush()


def worker_main(config: RigConfig, role: str, out: TextIO, trials: int | None = None) -> int:
    """``rig worker``: serve ``role`` until Ctrl-C or SIGTERM (or ``trials`` trials)."""
    host = WorkerHost(config, role, out)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    try:
        host.serve(stop, trials)
    finally:
        host.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
