"""The supervisor: starts one process per device, the writer and the trackers, runs one trial.

Start order (ARCHITECTURE.md): writer, trackers (pose, triangulator, jump detector), cameras
(armed, waiting for triggers), DAQ acquisition, and only then the trigger pulse train, so pulse 0
is frame 0 on every camera. Stop in reverse: the pulse train, the DAQ (after the last pulse is
sampled), the cameras (after their last frame is sent), the trackers, and the writer last, once
every stream has ended. Every worker reports READY before the trial arms and heartbeats while it
runs; a worker that dies or falls silent ends the trial, with the reason recorded in the file.
The roles the config's ``[remote]`` lists run in ``rig worker`` processes on other hosts
(:mod:`rig.remote`); the supervisor launches, checks and reaps them through their hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from acquisition.camera_process import CameraFactory, make_camera, role_of
from acquisition.control import HEARTBEAT_TIMEOUT_S, decode, encode
from acquisition.daq_process import DaqFactory, make_daq
from acquisition.transport import (
    MONITOR_HWM,
    TOPIC_STATUS,
    Endpoints,
    Header,
    make_socket,
    send_message,
)
from rig.calibration_record import trial_camera_group
from rig.config import RigConfig
from rig.remote.handle import RemoteWorkerProcess, WorkerHostInfo
from rig.remote.protocol import CONSOLE_PING_S, agent_identity, role_of_agent
from rig.versions import software_versions
from rig.workers import DAQ, WRITER, TrialPlan, camera_factory_spec, worker_call
from rig.writer_process import trial_jump_channels
from tracking.jump_process import ROLE as JUMPS
from tracking.jump_process import STREAM as JUMP_STREAM
from tracking.pose_process import pose_stream
from tracking.pose_process import role_of as pose_role
from tracking.triangulator_process import ROLE as TRIANGULATOR
from tracking.triangulator_process import STREAM as POSE3D_STREAM

log = logging.getLogger("supervisor")

READY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 10.0
DONE_TIMEOUT_S = 30.0
STATUS_INTERVAL_S = 0.25
# How often the trigger box is asked for its pulse count while a trial runs: a box that was
# unplugged or stopped answering ends the trial within this plus its serial timeout.
TRIGGERBOX_POLL_S = 0.25
# A box that is unplugged fails at once; one that does not answer is given this many tries in a
# row (each up to triggerbox.timeout_s) before the trial ends, since a loaded host can delay a
# reply without anything being wrong with the box.
TRIGGERBOX_SILENT_POLLS = 3
# How long a worker that exited cleanly is given for its summary to arrive (it sends it first).
LAST_WORDS_S = 1.0
# Free space needed to write the incomplete mark into a file whose writer died.
MIN_FREE_BYTES_TO_MARK = 1_000_000
# Compressed frames are rarely smaller than this share of raw with sensor noise (measured).
ESTIMATED_COMPRESSION_RATIO = 1.3


class TrialState(enum.Enum):
    STARTING = "starting"
    ARMED = "armed"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"


class TrialAborted(RuntimeError):
    """The trial cannot go on (a worker died, a device failed); the message says why."""


class TrialNotStarted(RuntimeError):
    """Nothing of the trial was started (a worker host did not answer); the message says why."""


@dataclass
class WorkerState:
    role: str
    # A process on this host, or one that a `rig worker` runs on another (rig.remote).
    process: multiprocessing.process.BaseProcess | RemoteWorkerProcess
    ready_info: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    last_heard_s: float = 0.0
    done: dict[str, Any] | None = None
    error: str | None = None
    acks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StatusSnapshot:
    """What the console shows while a trial runs."""

    state: TrialState
    elapsed_s: float
    frames: dict[str, int]
    dropped: dict[str, int]
    buffered: dict[str, int]
    daq_samples: int
    pulses: int
    # The live jump detector's view ("" and 0 without one): phase, jumps so far, the last one.
    phase: str = ""
    jumps: int = 0
    last_jump: dict[str, float | None] | None = None
    # What the writer has taken in so far (frames per camera, DAQ samples): behind the cameras'
    # and the DAQ's counts when it lags; a crash loses at most one flush interval of it.
    recorded_frames: dict[str, int] = field(default_factory=dict)
    recorded_samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "elapsed_s": round(self.elapsed_s, 3),
            "frames": self.frames,
            "dropped": self.dropped,
            "buffered": self.buffered,
            "daq_samples": self.daq_samples,
            "pulses": self.pulses,
            "phase": self.phase,
            "jumps": self.jumps,
            "last_jump": self.last_jump,
            "recorded_frames": self.recorded_frames,
            "recorded_samples": self.recorded_samples,
        }


@dataclass(frozen=True)
class TrialResult:
    path: Path
    trial_id: str
    end_reason: str
    completed: bool  # the trial ran for its whole duration and every worker ended normally
    writer_summary: dict[str, Any]
    duration_s: float


def _mark_unfinished(path: Path, end_reason: str) -> str:
    """Record in a file its writer left unfinished that it is incomplete, and why; returns what
    to add to the end reason when that fails (a full disk), else ""."""
    if not path.exists():
        return ""
    from rig.recover import mark_unfinished

    # Opening the file to write fails on a full disk and leaves HDF5's "open for writing" mark
    # in it, which stops readers: do not try without room.
    if shutil.disk_usage(path.parent).free < MIN_FREE_BYTES_TO_MARK:
        return (
            f"; no space left to mark the file incomplete: run `rig recover {path}` once there is"
        )
    try:
        mark_unfinished(path, end_reason)
    except (OSError, RuntimeError) as error:
        log.warning("cannot mark %s incomplete: %s", path, error)
        return f"; the file is not marked incomplete ({error}): run `rig recover {path}`"
    return ""


def estimate_trial_bytes(config: RigConfig, duration_s: float) -> int:
    frames = sum(c.width * c.height for c in config.cameras) * config.trigger.rate_hz * duration_s
    samples = (len(config.daq.channels) * 4 + 1) * config.daq.rate_hz * duration_s
    return int(frames / ESTIMATED_COMPRESSION_RATIO + samples)


class Supervisor:
    """Runs trials of one rig config. Use :meth:`run_trial`; one trial at a time."""

    def __init__(
        self,
        config: RigConfig,
        *,
        camera_factory: CameraFactory = make_camera,
        daq_factory: DaqFactory = make_daq,
        monitor_endpoint: str = "",
    ) -> None:
        """``camera_factory`` and ``daq_factory`` build the devices inside their processes (the
        replay passes its own, which read a trial file); ``monitor_endpoint`` is where a live
        preview listens (empty: none)."""
        self.config = config
        self.camera_factory = camera_factory
        self.daq_factory = daq_factory
        self.monitor_endpoint = monitor_endpoint
        self._spawn = multiprocessing.get_context("spawn")
        # One compute thread per worker: the rig runs one process per device already, and
        # threaded BLAS or Blosc in each of them would only oversubscribe the cores.
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, "1")

    def run_trial(
        self,
        *,
        subject: str | None = None,
        duration_s: float | None = None,
        output_dir: Path | str | None = None,
        on_status: Callable[[StatusSnapshot], None] | None = None,
        extra_root_attrs: dict[str, Any] | None = None,
    ) -> TrialResult:
        """Run one trial and return how it ended; ``extra_root_attrs`` go on the file's root."""
        config = self.config
        subject = subject or config.trial.subject
        duration_s = duration_s if duration_s is not None else config.trial.duration_s
        out = Path(output_dir if output_dir is not None else config.trial.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        needed = estimate_trial_bytes(config, duration_s) + config.trial.disk_margin_bytes
        free = shutil.disk_usage(out).free
        # A writer on another host writes to its own disk, which this host cannot measure.
        if free < needed and WRITER not in config.remote.roles:
            raise OSError(
                f"{out}: {free / 1e6:.0f} MB free, the trial needs about {needed / 1e6:.0f} MB"
            )
        started = dt.datetime.now(dt.UTC)
        trial_id = f"{started:%Y%m%dT%H%M%S}_{subject}"
        path = out / f"{trial_id}.h5"
        suffix = 1
        while path.exists():
            suffix += 1
            path = out / f"{trial_id}-{suffix}.h5"
        trial_id = path.stem
        root_attrs = {
            "trial_id": trial_id,
            "subject": subject,
            "started_utc": started.isoformat(),
            "duration_requested_s": duration_s,
            "config": config.to_toml(),
            "config_source": config.source_path,
            "host": platform.node(),
            **software_versions(),
            **(extra_root_attrs or {}),
        }
        with tempfile.TemporaryDirectory(prefix="jumprig-") as ipc_dir:
            calibration_path = ""
            calibration_toml = ""
            if config.tracking.enabled:
                camera_group = trial_camera_group(config)
                if camera_group is None:
                    raise OSError("tracking needs a calibration (tracking.calibration)")
                calibration_path = str(Path(ipc_dir) / "calibration.toml")
                camera_group.save(calibration_path)
                calibration_toml = Path(calibration_path).read_text()
            endpoints = self._endpoints(Path(ipc_dir))
            _check_ipc_paths(endpoints, config.camera_names)
            plan = TrialPlan(
                trial_id=trial_id,
                trial_path=str(path),
                root_attrs=root_attrs,
                endpoints=endpoints,
                calibration_toml=calibration_toml,
            )
            run = _TrialRun(
                config,
                plan,
                self._spawn,
                on_status,
                calibration_path,
                self.camera_factory,
                self.daq_factory,
            )
            return run.execute(duration_s)

    def _endpoints(self, ipc_dir: Path) -> Endpoints:
        """The config's endpoints; ``ipc://`` sockets in ``ipc_dir`` for those it leaves empty."""
        configured = self.config.endpoints
        return Endpoints(
            control=configured.control or f"ipc://{ipc_dir}/control",
            record=configured.record or f"ipc://{ipc_dir}/record",
            trigger_line=configured.trigger_line or f"ipc://{ipc_dir}/trigger_line",
            live_frames=f"ipc://{ipc_dir}/live_{{camera}}",
            live_frames_by_camera=dict(configured.live_frames),
            poses=configured.poses or f"ipc://{ipc_dir}/poses",
            jump_input=configured.jump_input or f"ipc://{ipc_dir}/jump_input",
            monitor=self.monitor_endpoint,
        )


class _TrialRun:
    """One trial: its processes, its control socket and its state."""

    def __init__(
        self,
        config: RigConfig,
        plan: TrialPlan,
        spawn: Any,
        on_status: Callable[[StatusSnapshot], None] | None,
        calibration_path: str,
        camera_factory: CameraFactory,
        daq_factory: DaqFactory,
    ) -> None:
        self.config = config
        self.plan = plan
        self.camera_factory = camera_factory
        self.daq_factory = daq_factory
        self.trial_id = plan.trial_id
        self.calibration_path = calibration_path
        self.endpoints = endpoints = plan.endpoints
        self.spawn = spawn
        self.on_status = on_status
        self.state = TrialState.STARTING
        self.workers: dict[str, WorkerState] = {}
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.bind(endpoints.control)
        self.monitor = (
            make_socket(self.context, zmq.PUB, endpoints.monitor, bind=False, hwm=MONITOR_HWM)
            if endpoints.monitor
            else None
        )
        self.abort = spawn.Event()
        self.failure: str | None = None
        self.pose_roles: list[str] = []
        self.jump_detector = False
        self.started_s = time.monotonic()
        self.running_since_s: float | None = None
        self.triggerbox: Any = None
        self.triggerbox_silent_polls = 0
        # Roles that `rig worker`s run on other hosts, and what their hosts last said.
        self.remote_roles = set(config.remote.roles)
        self.worker_hosts: dict[str, WorkerHostInfo] = {}
        self.next_ping_s = 0.0
        # Workers that acknowledged their start (trackers), arm (cameras) or start (DAQ).
        self.started: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    def execute(self, duration_s: float) -> TrialResult:
        path = Path(self.plan.trial_path)
        end_reason = "completed"
        interrupted = False
        try:
            self._await_worker_hosts()
        except BaseException:
            self._reap()
            raise
        try:
            self._start()
            self._run_for(duration_s)
        except KeyboardInterrupt as interrupt:
            end_reason = (
                f"stopped by the operator ({interrupt.args[0]})"
                if interrupt.args
                else "stopped by the operator (Ctrl-C)"
            )
            interrupted = True
        except TrialAborted as error:
            end_reason = str(error)
        except Exception as error:
            log.exception("trial failed")
            end_reason = f"supervisor error: {error}"
        if self.failure and end_reason == "completed":
            end_reason = self.failure
        writer_summary: dict[str, Any] = {}
        try:
            writer_summary = self._stop(end_reason)
        except KeyboardInterrupt:
            interrupted = True
            self._abort_workers()
        finally:
            self._reap()
        # A failure found while stopping (the trigger box failing STOP, a worker dying while it
        # drains) also means the trial did not complete, though it ran its whole duration.
        completed = (
            end_reason == "completed"
            and self.failure is None
            and not interrupted
            and bool(writer_summary)
        )
        self.state = TrialState.FINISHED if completed else TrialState.FAILED
        if not writer_summary:
            end_reason = f"{end_reason}; the writer did not finish (file holds the last flush)"
            end_reason += _mark_unfinished(path, end_reason)
        return TrialResult(
            path=path,
            trial_id=self.trial_id,
            end_reason=writer_summary.get("end_reason", end_reason),
            completed=completed,
            writer_summary=writer_summary,
            duration_s=time.monotonic() - (self.running_since_s or self.started_s),
        )

    def _start(self) -> None:
        config = self.config
        self._start_worker(WRITER)
        self._await_ready([WRITER])
        trackers = self._start_trackers()
        camera_roles = [role_of(name) for name in config.camera_names]
        for role in [*camera_roles, DAQ]:
            self._start_worker(role)
        self._await_ready([*camera_roles, DAQ])
        for role in trackers:
            self._command(role, "start")
            self.started.add(role)
        for role in camera_roles:
            self._command(role, "arm")
            self.started.add(role)
        self.state = TrialState.ARMED
        self._command("daq", "start")
        self.started.add(DAQ)
        self._open_triggerbox()
        self.running_since_s = time.monotonic()
        self._start_pulses()
        self.state = TrialState.RUNNING

    def _start_trackers(self) -> list[str]:
        """Pose, triangulator and jump detector processes (before the cameras and the DAQ, so
        no frame or sample is missed)."""
        roles = self._start_pose_trackers()
        if trial_jump_channels(self.config) is not None:
            self._start_worker(JUMPS)
            self._await_ready([JUMPS])
            self.jump_detector = True
            roles.append(JUMPS)
        return roles

    def _start_pose_trackers(self) -> list[str]:
        if not self.config.tracking.enabled:
            return []
        roles = [pose_role(group) for group in self.config.pose_groups]
        roles.append(TRIANGULATOR)
        for role in roles:
            self._start_worker(role)
        self._await_ready(roles)
        self.pose_roles = roles[:-1]
        return roles

    def _run_for(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        next_status = 0.0
        next_box_poll = time.monotonic() + TRIGGERBOX_POLL_S
        faults = self.config.sim.faults
        kill_at = time.monotonic() + faults.kill_worker_after_s if faults.kill_worker else None
        while time.monotonic() < deadline:
            if kill_at is not None and time.monotonic() >= kill_at:
                self._kill_worker(faults.kill_worker)
                kill_at = None
            self._pump(0.05)
            if self.triggerbox is not None and time.monotonic() >= next_box_poll:
                self._poll_triggerbox()
                next_box_poll = time.monotonic() + TRIGGERBOX_POLL_S
            self._check_health()
            if time.monotonic() >= next_status:
                self._report_status()
                next_status = time.monotonic() + STATUS_INTERVAL_S

    def _stop(self, reason: str) -> dict[str, Any]:
        """Stop in reverse start order; returns the writer's summary ({} if it never finished)."""
        self.state = TrialState.STOPPING
        writer = self.workers.get("writer")
        if writer is None or writer.error is not None or not self._alive("writer"):
            # Nothing can be recorded any more: let every worker go at once rather than drain its
            # stream into a writer that is gone (a camera would wait out its final sends).
            self._abort_workers()
        # A trial that failed while starting: workers still waiting for their start have
        # recorded nothing and have nothing to drain; they would ignore a stop.
        for role in list(self.workers):
            if role != WRITER and role not in self.started and self._alive(role):
                self._send(role, "abort")
        # Seconds from the start of the pulse train to the decision to stop (for the file).
        stop_after_s = time.monotonic() - (self.running_since_s or self.started_s)
        triggerbox_report: dict[str, Any] = {}
        if self.running_since_s is not None:
            triggerbox_report = self._stop_pulses()
            # Let the last pulse be sampled: two pulse periods and one DAQ block.
            time.sleep(
                2.0 / self.config.trigger.rate_hz
                + self.config.daq.block_samples / self.config.daq.rate_hz
            )
        if self._alive(DAQ) and DAQ in self.started:
            self._try_command(DAQ, "stop", expect_ack=False)
            self._await_done([DAQ])
        cameras = [role_of(name) for name in self.config.camera_names]
        live_cameras = [role for role in cameras if self._alive(role) and role in self.started]
        daq = self.workers.get(DAQ)
        pulses_sent = int((daq.done or {}).get("pulses", 0)) if daq is not None else 0
        for role in live_cameras:
            self._try_command(role, "stop", pulses_sent=pulses_sent)
        self._await_done(live_cameras)
        stages = (
            self.pose_roles,
            [TRIANGULATOR] if self.pose_roles else [],
            [JUMPS] if self.jump_detector else [],
        )
        for stage in stages:
            live_trackers = [role for role in stage if self._alive(role) and role in self.started]
            for role in live_trackers:
                self._try_command(role, "stop")
            self._await_done(live_trackers)
        dead = [role.split(":", 1)[-1] for role in [*cameras, "daq"] if not self._ended(role)]
        for role in self.pose_roles:
            if not self._ended(role):
                dead += [pose_stream(name) for name in role.split(":", 1)[-1].split("+")]
        if self.pose_roles and not self._ended(TRIANGULATOR):
            dead.append(POSE3D_STREAM)
        if self.jump_detector and not self._ended(JUMPS):
            dead.append(JUMP_STREAM)
        if not self._alive("writer"):
            return {}
        if self.failure and self.failure not in reason:
            reason = f"{reason}; {self.failure}"
        self._try_command(
            "writer",
            "finish",
            reason=reason,
            dead_streams=dead,
            triggerbox=triggerbox_report,
            stop_requested_after_s=round(stop_after_s, 4),
        )
        self._await_done(["writer"], DONE_TIMEOUT_S)
        return self.workers["writer"].done or {}

    def _reap(self) -> None:
        if self.triggerbox is not None:
            self.triggerbox.close()
        self._abort_workers()
        for worker in self.workers.values():
            process = worker.process
            if isinstance(process, RemoteWorkerProcess):
                continue
            process.join(timeout=5.0)
            if process.is_alive():
                log.warning("%s did not exit; terminating it", worker.role)
                process.terminate()
                process.join(timeout=2.0)
        self._reap_remote()
        self.router.close()
        if self.monitor is not None:
            self.monitor.close(linger=0)
        self.context.term()

    # --- trigger pulses ---------------------------------------------------------------------------

    def _open_triggerbox(self) -> None:
        config = self.config
        if config.trigger.source != "triggerbox":
            return
        from acquisition.triggerbox.serial_box import SerialTriggerBox

        if config.triggerbox.backend == "sim":
            port = (self.workers["daq"].ready_info or {}).get("triggerbox_port", "")
        else:
            port = config.triggerbox.port
        self.triggerbox = SerialTriggerBox(
            port, baudrate=config.triggerbox.baudrate, timeout_s=config.triggerbox.timeout_s
        )
        self.triggerbox.open()

    def _start_pulses(self) -> None:
        rate_hz = self.config.trigger.rate_hz
        if self.triggerbox is not None:
            self.triggerbox.set_rate(rate_hz)
            self.triggerbox.arm()
            self.triggerbox.start()
        else:
            self._command("daq", "start_trigger", rate_hz=rate_hz)

    def _kill_worker(self, role: str) -> None:
        """The fault knob sim.faults.kill_worker: a crash of that worker, mid-trial."""
        worker = self.workers.get(role)
        if worker is None or worker.process.pid is None:
            log.warning("sim.faults.kill_worker: no worker %r", role)
            return
        log.warning("fault injected: killing %s", role)
        if isinstance(worker.process, RemoteWorkerProcess):
            self._send_to_worker_host(role, "kill")
        else:
            os.kill(worker.process.pid, signal.SIGKILL)

    def _poll_triggerbox(self) -> None:
        from acquisition.triggerbox.serial_box import NoReply

        try:
            self.triggerbox.pulse_count()
            self.triggerbox_silent_polls = 0
        except NoReply as error:
            self.triggerbox_silent_polls += 1
            if self.triggerbox_silent_polls >= TRIGGERBOX_SILENT_POLLS:
                self._fail(f"trigger box: {error} ({self.triggerbox_silent_polls} times in a row)")
        except Exception as error:
            self._fail(f"trigger box: {error}")

    def _stop_pulses(self) -> dict[str, Any]:
        if self.triggerbox is not None:
            try:
                pulses = self.triggerbox.stop()
                version = self.triggerbox.firmware_version()
            except Exception as error:
                self._fail(f"trigger box: {error}")
                return {}
            return {"pulses_sent": pulses, "firmware_version": version}
        if self._alive("daq"):
            self._try_command("daq", "stop_trigger")
        return {}

    # --- workers ----------------------------------------------------------------------------------

    def _start_worker(self, role: str) -> None:
        """Start ``role``'s process here, or have its worker host start it (rig.remote)."""
        if role in self.remote_roles:
            self._launch_remote(role)
            return
        call = worker_call(
            role,
            self.config,
            self.plan,
            self.abort,
            self.calibration_path,
            self.camera_factory,
            self.daq_factory,
        )
        process = self.spawn.Process(target=call.target, args=call.args, name=role)
        process.start()
        self.workers[role] = WorkerState(role=role, process=process, last_heard_s=time.monotonic())

    # --- workers on other hosts (rig.remote) ------------------------------------------------------

    def _await_worker_hosts(self) -> None:
        """Wait until the `rig worker` of every remote role has said hello; record who is where."""
        if not self.remote_roles:
            return
        wait_s = self.config.remote.worker_wait_s
        deadline = time.monotonic() + wait_s
        while missing := sorted(self.remote_roles - set(self.worker_hosts)):
            if time.monotonic() > deadline:
                raise TrialNotStarted(
                    f"no `rig worker` answered within {wait_s:g} s for {', '.join(missing)} "
                    f"(start `rig worker --config FILE --role ROLE` on its host; the console "
                    f"listens at {self.endpoints.control})"
                )
            self._pump(0.05)
        # Where each remote role ran, for the file (the console's host is the root's "host").
        hosts = {role: info.host for role, info in sorted(self.worker_hosts.items())}
        root_attrs = {**self.plan.root_attrs, "worker_hosts": json.dumps(hosts)}
        self.plan = dataclasses.replace(self.plan, root_attrs=root_attrs)
        version = software_versions()["version_jumprig"]
        for info in self.worker_hosts.values():
            if info.version != version:
                raise TrialNotStarted(
                    f"the worker host of {info.role} ({info.host}) runs jumprig {info.version}, "
                    f"the console {version}: the same version must run everywhere"
                )

    def _launch_remote(self, role: str) -> None:
        info = self.worker_hosts[role]
        process = RemoteWorkerProcess(role, info.host)
        self.workers[role] = WorkerState(role=role, process=process, last_heard_s=time.monotonic())
        self._send_to_worker_host(
            role,
            "launch",
            config_toml=self.config.to_toml(),
            plan=self.plan.as_message(),
            camera_factory=camera_factory_spec(self.camera_factory),
        )

    def _send_to_worker_host(self, role: str, type_: str, **fields: Any) -> None:
        self._send(agent_identity(role), type_, **fields)

    def _on_worker_host_message(self, role: str, message: dict[str, Any]) -> None:
        if role not in self.remote_roles:
            log.warning("a `rig worker` for %r, which this rig runs here, is ignored", role)
            return
        kind = message["type"]
        if kind == "hello":
            self.worker_hosts[role] = WorkerHostInfo(
                role=role,
                host=str(message.get("host", "?")),
                version=str(message.get("version", "?")),
            )
            return
        worker = self.workers.get(role)
        if worker is not None and isinstance(worker.process, RemoteWorkerProcess):
            worker.process.on_message(message)

    def _ping_worker_hosts(self) -> None:
        """Tell the worker hosts that run a process of this trial that the console is there."""
        if not self.remote_roles or time.monotonic() < self.next_ping_s:
            return
        self.next_ping_s = time.monotonic() + CONSOLE_PING_S
        for role, worker in self.workers.items():
            if isinstance(worker.process, RemoteWorkerProcess) and not worker.process.ended:
                self._send_to_worker_host(role, "ping")

    def _abort_workers(self) -> None:
        """End every worker now, here and on other hosts."""
        self.abort.set()
        for role, worker in self.workers.items():
            process = worker.process
            if isinstance(process, RemoteWorkerProcess) and not process.ended and not worker.done:
                with contextlib.suppress(zmq.ZMQError):
                    self.router.send_multipart(
                        [agent_identity(role).encode(), encode({"type": "abort"})]
                    )

    def _reap_remote(self) -> None:
        """Wait for the worker processes on other hosts to end; kill those that do not."""
        remote = [
            worker.process
            for worker in self.workers.values()
            if isinstance(worker.process, RemoteWorkerProcess)
        ]
        for grace_s, last_resort in ((5.0, "kill"), (2.0, "")):
            deadline = time.monotonic() + grace_s
            while any(p.is_alive() for p in remote) and time.monotonic() < deadline:
                self._pump(0.05)
            if last_resort:
                for process in remote:
                    if process.is_alive():
                        log.warning("%s did not exit; killing it", process.name)
                        self._send_to_worker_host(process.role, last_resort)

    def _pump(self, timeout_s: float) -> None:
        """Take in every control message that arrives within ``timeout_s`` (and tell the worker
        hosts, now and then, that the console is there: every wait goes through here)."""
        self._ping_worker_hosts()
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.router.poll(remaining_ms, zmq.POLLIN):
                return
            identity, raw = self.router.recv_multipart()
            host_role = role_of_agent(identity.decode())
            if host_role is not None:
                self._on_worker_host_message(host_role, decode(raw))
                continue
            worker = self.workers.get(identity.decode())
            if worker is None:
                log.warning("message from unknown worker %r", identity)
                continue
            message = decode(raw)
            worker.last_heard_s = time.monotonic()
            kind = message["type"]
            if kind == "ready":
                worker.ready_info = message.get("info", {})
            elif kind == "heartbeat":
                worker.status = message.get("status", {})
            elif kind == "ack":
                worker.acks.append(message["command"])
            elif kind == "done":
                worker.done = message.get("summary", {})
            elif kind == "error":
                worker.error = message.get("reason", "unknown error")
                code = message.get("code")
                self._fail(worker.error + (f" (error code {code})" if code is not None else ""))

    def _check_health(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.done is not None:
                continue
            if not worker.process.is_alive():
                if self._ended_without_summary(worker):
                    self._fail(_death_reason(worker))
            elif worker.ready_info is not None and now - worker.last_heard_s > HEARTBEAT_TIMEOUT_S:
                # Before READY a worker may be importing heavy libraries: only liveness counts.
                self._fail(f"{worker.role} stopped answering for {now - worker.last_heard_s:.1f} s")
        if self.failure:
            raise TrialAborted(self.failure)

    def _ended_without_summary(self, worker: WorkerState) -> bool:
        """Whether ``worker``'s process has ended without sending its summary. A worker that
        exits cleanly sends it first, but it may still be on its way (seen on a loaded machine:
        a writer that had closed its file cleanly was taken for dead): wait for it a moment."""
        if worker.done is not None or worker.process.is_alive():
            return False
        if worker.process.exitcode == 0:
            deadline = time.monotonic() + LAST_WORDS_S
            while worker.done is None and worker.error is None and time.monotonic() < deadline:
                self._pump(0.02)
        return worker.done is None

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            log.error("trial failing: %s", reason)
            self.failure = reason

    def _alive(self, role: str) -> bool:
        worker = self.workers.get(role)
        return worker is not None and worker.process.is_alive() and worker.done is None

    def _ended(self, role: str) -> bool:
        worker = self.workers.get(role)
        return worker is not None and worker.done is not None

    def _send(self, role: str, type_: str, **fields: Any) -> None:
        try:
            self.router.send_multipart([role.encode(), encode({"type": type_, **fields})])
        except zmq.ZMQError as error:  # the peer is gone (ROUTER_MANDATORY)
            self._fail(f"cannot reach {role}: {error}")

    def _command(self, role: str, type_: str, expect_ack: bool = True, **fields: Any) -> None:
        worker = self.workers[role]
        acks_before = len(worker.acks)
        self._send(role, type_, **fields)
        if not expect_ack:
            return
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while len(worker.acks) == acks_before:
            if time.monotonic() > deadline:
                raise TrialAborted(f"{role} did not acknowledge {type_!r}")
            self._pump(0.02)
            self._check_health_quiet(role)

    def _try_command(self, role: str, type_: str, expect_ack: bool = True, **fields: Any) -> None:
        """While stopping: a worker that fails a command is recorded, and the stop goes on."""
        try:
            self._command(role, type_, expect_ack, **fields)
        except TrialAborted as error:
            self._fail(str(error))

    def _check_health_quiet(self, role: str) -> None:
        worker = self.workers[role]
        if self._ended_without_summary(worker):
            raise TrialAborted(_death_reason(worker))

    def _await_ready(self, roles: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while any(self.workers[role].ready_info is None for role in roles):
            self._pump(0.05)
            self._check_health()
            if time.monotonic() > deadline:
                missing = [role for role in roles if self.workers[role].ready_info is None]
                raise TrialAborted(f"not ready within {READY_TIMEOUT_S} s: {', '.join(missing)}")

    def _await_done(self, roles: list[str], timeout_s: float = DONE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [
                role
                for role in roles
                if self.workers[role].done is None and self.workers[role].process.is_alive()
            ]
            if not pending:
                break
            if time.monotonic() > deadline:
                self._fail(f"did not finish within {timeout_s} s: {', '.join(pending)}")
                break
            self._pump(0.05)
            self._report_status()
        for role in roles:
            worker = self.workers[role]
            if worker.done is None and (
                worker.process.is_alive() or self._ended_without_summary(worker)
            ):
                self._fail(_death_reason(worker))

    def _report_status(self) -> None:
        if self.on_status is None and self.monitor is None:
            return
        cameras = {
            name: self.workers[role_of(name)].status if role_of(name) in self.workers else {}
            for name in self.config.camera_names
        }
        daq = self.workers["daq"].status if "daq" in self.workers else {}
        jumps = self.workers[JUMPS].status if JUMPS in self.workers else {}
        writer = self.workers["writer"].status if "writer" in self.workers else {}
        status = StatusSnapshot(
            state=self.state,
            elapsed_s=time.monotonic() - (self.running_since_s or self.started_s),
            frames={name: int(s.get("frames", 0)) for name, s in cameras.items()},
            dropped={name: int(s.get("dropped", 0)) for name, s in cameras.items()},
            buffered={name: int(s.get("buffered", 0)) for name, s in cameras.items()},
            daq_samples=int(daq.get("samples", 0)),
            pulses=int(daq.get("pulses", 0)),
            phase=str(jumps.get("phase", "")),
            jumps=int(jumps.get("jumps", 0)),
            last_jump=jumps.get("last_jump"),
            recorded_frames={
                name: int(count) for name, count in dict(writer.get("frames", {})).items()
            },
            recorded_samples=int(writer.get("daq_samples", 0)),
        )
        if self.on_status is not None:
            self.on_status(status)
        if self.monitor is not None:
            header = Header(
                stream="status",
                seq=0,
                t_host_ns=time.monotonic_ns(),
                extra={"trial_id": self.trial_id, **status.as_dict()},
            )
            with contextlib.suppress(zmq.Again):
                send_message(self.monitor, TOPIC_STATUS, header, flags=zmq.NOBLOCK)


def _check_ipc_paths(endpoints: Endpoints, camera_names: tuple[str, ...]) -> None:
    """Refuse, before anything starts, ``ipc://`` paths longer than a Unix socket address takes
    (a deep TMPDIR): a worker would fail to bind one only once the trial had begun."""
    addresses = [
        endpoints.control,
        endpoints.record,
        endpoints.trigger_line,
        endpoints.poses,
        endpoints.jump_input,
        *(endpoints.live_frames_of(name) for name in camera_names),
    ]
    limit = zmq.IPC_PATH_MAX_LEN
    for address in addresses:
        if address.startswith("ipc://") and len(address) - len("ipc://") > limit:
            raise OSError(
                f"the socket path {address[len('ipc://') :]} is longer than the {limit} "
                "characters the system allows: set TMPDIR to a shorter folder"
            )


def _death_reason(worker: WorkerState) -> str:
    """Why a worker ended without its summary, in words for the file's end_reason."""
    if worker.error:
        return worker.error
    if isinstance(worker.process, RemoteWorkerProcess):
        return worker.process.death_reason()
    return f"{worker.role} process died (exit code {worker.process.exitcode})"
