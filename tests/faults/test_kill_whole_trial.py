"""kill -9 of the whole trial (the `rig run` process and every worker) at a random moment.

Pass criterion (issue 7, fault 1): the file opens; frames and pulses are contiguous up to the
committed counters; at most one flush interval (plus the rows waiting to fill a chunk) is lost
against the last status line the rig printed before the kill; `rig recover` marks it incomplete.
"""

from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from rig.cli import main as rig_main
from rig.recover import ATTR_INCOMPLETE, RECOVERED_END_REASON, recover_main
from rig.trialfile.reader import open_trial
from rig.trialfile.writer import FRAME_COLUMN_CHUNK_ROWS, _daq_chunk_rows
from tests.faults.fault_trials import (
    CAMERAS,
    RigProcess,
    Status,
    fault_config,
    fault_seed,
    only_trial_file,
    rig_environment,
)

FLUSH_INTERVAL_S = 0.5  # trial.flush_interval_s of the default config
TRIGGER_RATE_HZ = 200.0
DAQ_RATE_HZ = 10_000.0
SAMPLES_PER_PULSE = 50
# The trial is killed this long (uniformly drawn) after the console first shows frames of every
# camera; the trial lasts TRIAL_S, so some kills land while it stops.
KILL_AFTER_S = (0.0, 4.5)
TRIAL_S = 5.0
# A kill drawn near the end of the window can land after a quick machine closed the file: that is
# no kill during a trial, and another moment is drawn (at most REDRAWS times per kill).
AFTER_CLOSE = "the kill came after the file was closed: not a kill during a trial"
REDRAWS = 3


@dataclass(frozen=True)
class KillOutcome:
    kill_after_s: float
    status: Status | None  # the last status line before the kill
    committed_frames: dict[str, int]
    committed_samples: int
    committed_pulses: int
    problems: tuple[str, ...]

    @property
    def readable(self) -> bool:
        return not any(problem.startswith("unreadable") for problem in self.problems)

    def lost_vs_status(self) -> dict[str, int]:
        """Frames per camera and DAQ samples the writer held at the last status but that are
        not committed (negative: committed since)."""
        if self.status is None:
            return {}
        held = min(self.status.writer_frames, self.status.writer_samples // SAMPLES_PER_PULSE)
        lost = {camera: held - frames for camera, frames in self.committed_frames.items()}
        lost["daq_samples"] = self.status.writer_samples - self.committed_samples
        return lost


def kill_whole_trial_once(folder: Path, kill_after_s: float) -> KillOutcome:
    """Run `rig run`, SIGKILL its process group ``kill_after_s`` after frames flow, check the
    file; returns what was found (problems listed, not raised, so a tally can be printed)."""
    out = folder / "trials"
    config = fault_config(folder)
    trial = RigProcess.start(
        ["run", "--config", str(config), "--duration-s", str(TRIAL_S), "--output", str(out)],
        rig_environment(folder / "tmp"),
        folder / "stderr.txt",
    )
    try:
        trial.wait_until_running()
        time.sleep(kill_after_s)
    finally:
        trial.kill_group()
    status = trial.last_status()
    problems: list[str] = []
    path = only_trial_file(out)
    inspect_out = io.StringIO()
    try:
        with open_trial(path) as opened:
            closed_cleanly = opened.closed_cleanly
            frames = {camera: opened.frame_table(camera) for camera in opened.camera_names}
            pulses = opened.trigger_sample_index()
            samples = opened.committed_rows("/daq/analog") or 0
            first_frames = [opened.frames(c, 0, 1) for c in CAMERAS if len(frames[c]["frame_id"])]
    except Exception as error:
        return KillOutcome(kill_after_s, status, {}, 0, 0, (f"unreadable: {error}",))
    committed_frames = {camera: int(table["frame_id"].size) for camera, table in frames.items()}
    if closed_cleanly:
        problems.append(AFTER_CLOSE)
    for camera, table in frames.items():
        trigger_index = table["trigger_index"]
        if not np.array_equal(trigger_index, np.arange(trigger_index.size)):
            problems.append(f"{camera}: trigger indices not contiguous from 0")
        if not np.array_equal(table["frame_id"], trigger_index):
            problems.append(f"{camera}: frame ids differ from trigger indices")
        known = trigger_index < pulses.size
        expected = pulses[trigger_index[known]]
        got = table["daq_sample_index"][known]
        if not np.all((got == expected) | (got == -1)):
            problems.append(f"{camera}: daq_sample_index disagrees with the committed pulses")
    if pulses.size and not np.all(np.diff(pulses) == SAMPLES_PER_PULSE):
        problems.append(
            f"pulses not every {SAMPLES_PER_PULSE} samples: {np.unique(np.diff(pulses))}"
        )
    if pulses.size and pulses[-1] >= samples:
        problems.append("a committed pulse lies beyond the committed samples")
    if any(frame.std() < 1.0 for frame in first_frames):
        problems.append("a committed frame is blank")
    if status is not None:
        # Against what the writer held at the last status: a frame's row waits for its pulse,
        # so frames count only as far as the writer's samples hold their pulses.
        held = min(status.writer_frames, status.writer_samples // SAMPLES_PER_PULSE)
        allowed_frames = FLUSH_INTERVAL_S * TRIGGER_RATE_HZ + FRAME_COLUMN_CHUNK_ROWS
        for camera, frames_committed in committed_frames.items():
            if held - frames_committed > allowed_frames:
                problems.append(
                    f"{camera}: {held - frames_committed} frames lost against the last status"
                )
        allowed_samples = FLUSH_INTERVAL_S * DAQ_RATE_HZ + _daq_chunk_rows(DAQ_RATE_HZ)
        if status.writer_samples - samples > allowed_samples:
            problems.append(
                f"{status.writer_samples - samples} DAQ samples lost against the last status"
            )
    if rig_main(["inspect", str(path), "--json"]) != 0:
        problems.append("rig inspect failed")
    recover_errors = io.StringIO()
    if recover_main(path, inspect_out, recover_errors) != 0:
        problems.append(f"rig recover failed: {recover_errors.getvalue()}")
    elif not closed_cleanly:
        with h5py.File(path, "r") as h5file:
            if h5file.attrs.get(ATTR_INCOMPLETE) != 1:
                problems.append("rig recover did not mark the file incomplete")
            if h5file.attrs.get("end_reason") != RECOVERED_END_REASON:
                problems.append("rig recover left no end_reason")
    return KillOutcome(
        kill_after_s, status, committed_frames, samples, int(pulses.size), tuple(problems)
    )


def run_kills(tmp_path: Path, repeats: int) -> list[KillOutcome]:
    seed = fault_seed()
    moments = random.Random(seed).uniform
    outcomes = []
    for attempt in range(repeats):
        for draw in range(REDRAWS):
            # Short names: ZeroMQ's ipc paths (inside the folder's TMPDIR) have a length limit.
            folder = tmp_path / f"kill_{attempt}_{draw}"
            outcome = kill_whole_trial_once(folder, moments(*KILL_AFTER_S))
            if outcome.problems != (AFTER_CLOSE,):
                break
            print(f"kill {attempt + 1}: {outcome.kill_after_s:.2f} s came after the end: again")
        outcomes.append(outcome)
        status = outcome.status
        status_text = (
            f"{status.state} at {status.elapsed_s} s, writer {status.writer_frames} frames, "
            f"{status.writer_samples} samples"
            if status
            else "none"
        )
        print(
            f"kill {attempt + 1}: {outcome.kill_after_s:.2f} s after frames flowed; last status "
            f"{status_text}; committed {outcome.committed_frames}, "
            f"{outcome.committed_samples} samples, {outcome.committed_pulses} pulses; not "
            f"committed of what the writer held {outcome.lost_vs_status()}; "
            f"problems {list(outcome.problems)}"
        )
    readable = sum(outcome.readable for outcome in outcomes)
    sound = sum(not outcome.problems for outcome in outcomes)
    print(
        f"seed {seed}: {readable}/{repeats} files readable after kill -9; "
        f"{sound}/{repeats} met every criterion"
    )
    return outcomes


@pytest.mark.timeout(600)
def test_kill_9_of_the_whole_trial_leaves_a_file_with_its_committed_data(tmp_path: Path) -> None:
    outcomes = run_kills(tmp_path, repeats=2)
    assert [list(outcome.problems) for outcome in outcomes] == [[]] * len(outcomes)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_9_of_the_whole_trial_fifteen_times(tmp_path: Path) -> None:
    outcomes = run_kills(tmp_path, repeats=15)
    assert [list(outcome.problems) for outcome in outcomes] == [[]] * len(outcomes)


def _workers(pid: int) -> list[int]:
    """The worker processes ``pid`` started (Linux's /proc children of each of its threads),
    without multiprocessing's resource tracker, which ends once every worker has."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in children if b"spawn_main" in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _describe(pid: int) -> str:
    """What a process left running is doing, for the failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return f"{pid}: gone"
    state = next((line for line in status if line.startswith("State:")), "")
    parent = next((line for line in status if line.startswith("PPid:")), "")
    return f"{pid}: {state}, {parent}, waiting in {wchan or '-'}"


def test_workers_end_when_the_supervisor_alone_is_killed(tmp_path: Path) -> None:
    """kill -9 of the `rig` process only (a supervisor crash): its workers must not run on
    headless. Each gets SIGTERM from the kernel as its parent dies; the writer flushes and
    closes the file with the reason."""
    out = tmp_path / "trials"
    trial = RigProcess.start(
        [
            "run",
            "--config",
            str(fault_config(tmp_path)),
            "--duration-s",
            "30",
            "--output",
            str(out),
        ],
        rig_environment(tmp_path / "tmp"),
        tmp_path / "stderr.txt",
    )
    workers: list[int] = []
    try:
        trial.wait_until_running()
        workers = _workers(trial.process.pid)
        assert len(workers) >= 7  # writer, jump detector, 4 cameras, DAQ
        trial.process.kill()
        trial.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [_describe(pid) for pid in workers if _alive(pid)]
        assert left == [], f"workers still running 60 s after the supervisor died: {left}"
    finally:
        trial.kill_group()
    with open_trial(only_trial_file(out)) as recorded:
        assert recorded.closed_cleanly
        assert "writer received SIGTERM" in recorded.end_reason
        for camera in CAMERAS:
            assert recorded.frame_table(camera)["trigger_index"].size > 0, camera
