"""A soak (issue 7, fault 12): short trials back to back with random faults, in `rig run --trials
N` sessions. Every file opens and either validates (closed cleanly, accounting balanced, no
problem found) or carries the reason it ended; the session process's memory grows by less than
50 MB (VmRSS from /proc at every trial boundary).

Default tier: one session of 4 trials with random per-pulse faults. Slow tier: 100 trials, as 5
sessions of 20, each session with its own random faults: per-pulse faults in all, and in four of
them a fault that ends every trial early at a random moment (a camera, the writer, the DAQ
process or the jump detector killed, a DAQ overrun, the trigger box unplugged: four of these).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rig.recover import read_trial_contents
from rig.trialfile.reader import open_trial
from tests.faults.fault_trials import (
    CAMERAS,
    RigProcess,
    fault_config,
    fault_seed,
    rig_environment,
    rss_bytes,
)

TRIAL_S = 1.0
FRAME_SIZE = (160, 120)
RSS_GROWTH_LIMIT_BYTES = 50_000_000
TRIAL_BOUNDARY = re.compile(r"^=== trial (\d+) of (\d+) ===")


@dataclass(frozen=True)
class FaultSet:
    """The faults of one session: TOML lines for [sim.faults] and per-camera tables."""

    faults: str
    cameras: str

    def describe(self) -> str:
        text = (self.faults + "\n" + self.cameras).strip()
        return " ".join(line for line in text.splitlines() if line)


# Faults that end every trial of a session early: (name, [sim.faults] lines for a time in s).
TRIAL_ENDING_FAULTS: dict[str, Callable[[str, float], list[str]]] = {
    "a camera killed": lambda camera, after_s: [
        f'kill_worker = "camera:{camera}"',
        f"kill_worker_after_s = {after_s:.2f}",
    ],
    "the writer killed": lambda camera, after_s: [
        'kill_worker = "writer"',
        f"kill_worker_after_s = {after_s:.2f}",
    ],
    "the DAQ process killed": lambda camera, after_s: [
        'kill_worker = "daq"',
        f"kill_worker_after_s = {after_s:.2f}",
    ],
    "the jump detector killed": lambda camera, after_s: [
        'kill_worker = "jumps"',
        f"kill_worker_after_s = {after_s:.2f}",
    ],
    "a DAQ overrun": lambda camera, after_s: [f"daq_overrun_after_s = {after_s:.2f}"],
    "the trigger box unplugged": lambda camera, after_s: [
        f"triggerbox_unplug_after_s = {after_s:.2f}"
    ],
}


def random_fault_set(rng: random.Random, trial_ending: str | None) -> FaultSet:
    """Per-pulse faults on a random choice of cameras, a slow disk now and then, and the fault
    named ``trial_ending`` (a key of TRIAL_ENDING_FAULTS) at a random moment of each trial."""
    cameras = []
    for camera in CAMERAS:
        if rng.random() < 0.3:
            continue
        drops = sorted(rng.sample(range(150), rng.randrange(4)))
        cameras.append(
            f"[sim.faults.cameras.{camera}]\n"
            f"drop_trigger_indices = {drops}\n"
            f"drop_probability = {rng.uniform(0, 0.03):.4f}\n"
            f"fetch_timeout_probability = {rng.uniform(0, 0.02):.4f}\n"
            f"fetch_error_probability = {rng.uniform(0, 0.03):.4f}\n"
            f"drift_ppm = {rng.uniform(-80, 80):.2f}\n"
        )
    faults = []
    if rng.random() < 0.3:
        faults.append(f"slow_disk_ms_per_frame = {rng.uniform(0, 0.3):.3f}")
    if trial_ending is not None:
        lines = TRIAL_ENDING_FAULTS[trial_ending](rng.choice(CAMERAS), rng.uniform(0.3, 0.9))
        faults += lines
    return FaultSet("\n".join(faults), "".join(cameras))


@dataclass(frozen=True)
class SessionOutcome:
    files: int
    validated: int
    with_reason: int
    problems: tuple[str, ...]
    rss_at_boundaries: tuple[int, ...]  # bytes, at the start of each trial and at the end

    @property
    def rss_growth_bytes(self) -> int:
        """From the start of the second trial (the first imports what every trial uses) on."""
        warm = self.rss_at_boundaries[1:] or self.rss_at_boundaries
        return max(warm) - warm[0] if warm else 0


def run_session(folder: Path, trials: int, fault_set: FaultSet) -> SessionOutcome:
    folder.mkdir(parents=True, exist_ok=True)
    config = fault_config(folder, fault_set.faults, extra=fault_set.cameras, frame_size=FRAME_SIZE)
    out = folder / "trials"
    rss: list[int] = []
    pid: list[int] = []

    def at_boundary(line: str) -> None:
        if TRIAL_BOUNDARY.match(line) or line.startswith("session: "):
            size = rss_bytes(pid[0]) if pid else None
            if size is not None:
                rss.append(size)

    session = RigProcess.start(
        [
            "run",
            "--config",
            str(config),
            "--trials",
            str(trials),
            "--inter-trial-s",
            "0",
            "--duration-s",
            str(TRIAL_S),
            "--output",
            str(out),
        ],
        rig_environment(folder / "tmp"),
        folder / "stderr.txt",
        on_line=at_boundary,
    )
    pid.append(session.process.pid)
    session.finish(timeout_s=trials * 240)
    problems: list[str] = []
    validated = with_reason = 0
    paths = sorted(out.glob("*.h5"))
    if len(paths) != trials:
        problems.append(f"{len(paths)} files for {trials} trials:\n{session.text()[-2000:]}")
    for path in paths:
        try:
            with open_trial(path) as trial:
                clean = trial.closed_cleanly and trial.end_reason == "completed"
                reason = trial.end_reason
                balanced = bool(trial.attrs.get("accounting_balanced", False))
            # Every committed row read and checked; gaps from dropped frames are not damage.
            damage = read_trial_contents(path).problems
        except Exception as error:
            problems.append(f"{path.name}: does not open: {error}")
            continue
        if damage:
            problems.append(f"{path.name}: {list(damage)}")
        elif clean and balanced:
            validated += 1
        elif not clean and reason:
            with_reason += 1
        else:
            problems.append(f"{path.name}: neither valid nor with a reason: {reason!r}")
    return SessionOutcome(len(paths), validated, with_reason, tuple(problems), tuple(rss))


def report(label: str, outcome: SessionOutcome, fault_set: FaultSet) -> None:
    shown = ", ".join(f"{size / 1e6:.0f}" for size in outcome.rss_at_boundaries)
    print(
        f"{label}: {outcome.files} files, {outcome.validated} validated, {outcome.with_reason} "
        f"ended early with their reason; RSS at trial boundaries (MB): {shown}; growth from "
        f"trial 2: {outcome.rss_growth_bytes / 1e6:.1f} MB; faults: {fault_set.describe()}"
    )
    for problem in outcome.problems:
        print(f"  PROBLEM {problem}")


@pytest.mark.timeout(900)
def test_a_short_soak_with_random_faults(tmp_path: Path) -> None:
    seed = fault_seed()
    fault_set = random_fault_set(random.Random(seed), trial_ending=None)
    outcome = run_session(tmp_path, 4, fault_set)
    report(f"seed {seed}", outcome, fault_set)
    assert outcome.problems == ()
    assert outcome.validated == 4
    assert len(outcome.rss_at_boundaries) >= 4
    assert outcome.rss_growth_bytes < RSS_GROWTH_LIMIT_BYTES


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_a_hundred_trials_with_random_faults(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    # The first session only per-pulse faults; each other one a different trial-ending fault.
    endings: list[str | None] = [None, *rng.sample(sorted(TRIAL_ENDING_FAULTS), 4)]
    outcomes = []
    for number, ending in enumerate(endings):
        fault_set = random_fault_set(rng, trial_ending=ending)
        outcome = run_session(tmp_path / f"session_{number}", 20, fault_set)
        report(
            f"seed {seed}, session {number + 1} ({ending or 'no trial-ending fault'})",
            outcome,
            fault_set,
        )
        outcomes.append(outcome)
    files = sum(outcome.files for outcome in outcomes)
    fine = sum(outcome.validated + outcome.with_reason for outcome in outcomes)
    growth = max(outcome.rss_growth_bytes for outcome in outcomes)
    print(
        f"soak: {fine}/{files} files open and validate or carry their reason; largest RSS "
        f"growth of a session process over 20 trials: {growth / 1e6:.1f} MB"
    )
    assert [outcome.problems for outcome in outcomes] == [()] * len(outcomes)
    assert files == 100
    # Per-pulse faults alone never end a trial early: that session's files all validate.
    assert outcomes[0].validated == outcomes[0].files
    assert growth < RSS_GROWTH_LIMIT_BYTES
