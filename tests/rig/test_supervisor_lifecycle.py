"""The supervisor and workers at the edges of their lives. A worker that sends its summary and
exits is done, even when the supervisor sees the exit before the summary (found by the soak: a
writer that had closed its file cleanly was taken for dead, and its good file was marked
incomplete). A worker killed before its summary is dead. A trial that fails while starting lets
the workers still waiting for their start go at once (they used to ignore the stop, 10 s each)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import zmq

from acquisition.control import WorkerControl
from rig.config import load_config
from rig.supervisor import Supervisor, WorkerState, _TrialRun
from rig.workers import TrialPlan


def _say_done_and_exit(endpoint: str, role: str) -> None:
    context = zmq.Context()
    control = WorkerControl(context, endpoint, role)
    control.done(frames=7)
    control.close()
    context.term()


def _hang(endpoint: str, role: str) -> None:
    time.sleep(60)


def _wait_to_be_armed(endpoint: str, role: str) -> None:
    context = zmq.Context()
    control = WorkerControl(context, endpoint, role)
    control.ready()
    command = control.wait_command("arm", 60.0, {})
    if command["type"] == "arm":
        control.ack(command)
    control.close()
    context.term()


def _trial_run(folder: Path) -> _TrialRun:
    config = load_config()
    supervisor = Supervisor(config)
    plan = TrialPlan("t", str(folder / "t.h5"), {}, supervisor._endpoints(folder))
    spawn = multiprocessing.get_context("spawn")
    return _TrialRun(
        config, plan, spawn, None, "", supervisor.camera_factory, supervisor.daq_factory
    )


def _worker(run: _TrialRun, role: str, target: object) -> WorkerState:
    process = run.spawn.Process(target=target, args=(run.endpoints.control, role))
    process.start()
    state = WorkerState(role=role, process=process, last_heard_s=time.monotonic())
    run.workers[role] = state
    return state


def test_a_summary_that_arrives_after_the_exit_counts(tmp_path: Path) -> None:
    run = _trial_run(tmp_path)
    try:
        worker = _worker(run, "writer", _say_done_and_exit)
        worker.process.join(30)
        # The exit is seen before anything was read off the control socket.
        assert not worker.process.is_alive() and worker.done is None
        run._await_done(["writer"], timeout_s=5.0)
        assert worker.done == {"frames": 7}
        assert run.failure is None
    finally:
        run._reap()


def test_a_worker_killed_before_its_summary_is_dead(tmp_path: Path) -> None:
    run = _trial_run(tmp_path)
    try:
        worker = _worker(run, "writer", _hang)
        assert worker.process.pid is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(30)
        started = time.monotonic()
        run._await_done(["writer"], timeout_s=5.0)
        assert worker.done is None
        assert run.failure == "writer process died (exit code -9)"
        # Killed, not exited: no waiting for a summary that cannot come.
        assert time.monotonic() - started < 0.5
    finally:
        run._reap()


def test_a_trial_failing_while_starting_lets_unarmed_workers_go_at_once(tmp_path: Path) -> None:
    run = _trial_run(tmp_path)
    try:
        camera = _worker(run, "camera:cam_left", _wait_to_be_armed)
        deadline = time.monotonic() + 30
        while camera.ready_info is None and time.monotonic() < deadline:
            run._pump(0.05)
        assert camera.ready_info is not None
        started = time.monotonic()
        assert run._stop("DAQ: could not open") == {}  # no writer in this trial
        camera.process.join(5)
        stopped_s = time.monotonic() - started
        assert not camera.process.is_alive()
        assert camera.process.exitcode == 0
        assert stopped_s < 3.0, f"stopping took {stopped_s:.1f} s"
    finally:
        run._reap()
