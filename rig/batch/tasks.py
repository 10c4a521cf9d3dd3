"""The Dask task of a batch: one trial, skipped when finished, else replayed and committed.

:func:`replay_task` runs in a Dask worker. The output's final name is made only by renaming a
replay that :mod:`rig.batch.runner` checked (closed cleanly, accounting balanced, the source's
SHA-256 and the batch's settings recorded): the rename is the commit. A worker that dies before
it leaves at most a temporary folder in ``<output>/.partial/``, which the next attempt removes.

Failures: a source that cannot be replayed (not HDF5, truncated, a config the replay refuses) is
returned as a failed :class:`TrialOutcome`, since another attempt would fail the same way. An
attempt that failed by itself (a replay process died, the replay did not complete, the runner
was killed) raises :class:`ReplayAttemptError`, so Dask retries the task (``retries``); a Dask
worker that dies mid-task has the scheduler run it on another worker.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.batch import PARTIAL_FOLDER
from rig.batch.jobs import TrialJob, output_problems
from rig.batch.metrics import jump_rows
from rig.batch.runner import (
    JOB_NAME,
    LOG_NAME,
    RESULT_NAME,
    STATUS_BAD_INPUT,
    STATUS_DONE,
)

STATUS_DONE_OUTCOME = "done"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
# Lines of the runner's log quoted in an error.
LOG_TAIL_LINES = 12


class ReplayAttemptError(RuntimeError):
    """One attempt at a trial failed in a way the next attempt may not; Dask retries it."""


@dataclass(frozen=True)
class TrialOutcome:
    """What became of one trial of a batch.

    ``status``: done (replayed now), skipped (finished by an earlier batch) or failed;
    ``message``: the error of a failed trial, or a note (an unfinished output that was replaced);
    ``worker``: host and process id of the Dask worker that did it; ``jumps``: its rows of the
    metrics table (done and skipped trials).
    """

    source: str
    output: str
    status: str
    message: str = ""
    wall_s: float = 0.0
    replay_wall_s: float | None = None
    worker: str = ""
    jumps: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def finished(self) -> bool:
        return self.status in (STATUS_DONE_OUTCOME, STATUS_SKIPPED)


def replay_task(job: TrialJob) -> TrialOutcome:
    """Make ``job.output`` unless a finished one is there; see the module's docstring."""
    from rig.replay.source import file_sha256
    from rig.trialfile.reader import TrialFileError

    started_s = time.monotonic()
    worker = f"{platform.node()}:{os.getpid()}"
    output = Path(job.output)

    def outcome(status: str, message: str = "", **more: Any) -> TrialOutcome:
        return TrialOutcome(
            source=job.source,
            output=job.output,
            status=status,
            message=message,
            wall_s=time.monotonic() - started_s,
            worker=worker,
            **more,
        )

    note = ""
    if output.exists():
        try:
            source_sha256 = file_sha256(job.source)
        except OSError as error:
            return outcome(STATUS_FAILED, f"{job.source}: cannot be read: {error}")
        problems = output_problems(output, job.settings, source_sha256, job.open_timeout_s)
        if not problems:
            try:
                return outcome(STATUS_SKIPPED, jumps=tuple(jump_rows(output, job.open_timeout_s)))
            except TrialFileError as error:
                return outcome(STATUS_FAILED, f"the finished output cannot be read: {error}")
        note = f"replaced an unfinished output ({'; '.join(problems)})"
    partial = output.parent / PARTIAL_FOLDER
    partial.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(partial, job.stem)
    folder = Path(tempfile.mkdtemp(prefix=f"{job.stem}.", dir=partial))
    try:
        result = _run_replay(job, folder)
        if result["status"] == STATUS_BAD_INPUT:
            return outcome(STATUS_FAILED, result["message"])
        if result["status"] != STATUS_DONE:
            raise ReplayAttemptError(f"{job.source}: {result['message']}")
        # On disk before the name says it is finished, and the name on disk right after.
        _sync(Path(result["replay_path"]))
        os.replace(result["replay_path"], output)
        _sync(output.parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        rows = jump_rows(output, job.open_timeout_s)
    except TrialFileError as error:
        return outcome(STATUS_FAILED, f"the new output cannot be read: {error}")
    return outcome(
        STATUS_DONE_OUTCOME, note, replay_wall_s=result.get("replay_wall_s"), jumps=tuple(rows)
    )


def remove_stale_temporaries(partial: Path, stem: str) -> list[Path]:
    """Remove what earlier attempts at ``stem`` left in ``partial`` (they died: an attempt that
    ends removes its own); returns what was removed."""
    removed = []
    for entry in partial.iterdir() if partial.is_dir() else ():
        # mkdtemp's suffix holds no dot, so this matches <stem>.<suffix> and nothing else.
        if entry.is_dir() and entry.name.rsplit(".", 1)[0] == stem:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _run_replay(job: TrialJob, folder: Path) -> dict[str, Any]:
    """Run :mod:`rig.batch.runner` on ``job`` in ``folder``; its result."""
    import json

    (folder / JOB_NAME).write_text(job.to_json())
    with (folder / LOG_NAME).open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rig.batch.runner", str(folder), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A group of its own, which it kills when this process dies; and Ctrl-C at a
            # terminal, which reaches the client's group, does not reach the replay.
            start_new_session=True,
        )
        try:
            returncode = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    result_path = folder / RESULT_NAME
    if not result_path.exists():
        raise ReplayAttemptError(
            f"{job.source}: the replay process ended (exit code {returncode}) without a result; "
            f"its log ends with:\n{_log_tail(folder / LOG_NAME)}"
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    if result["status"] != STATUS_DONE and result["status"] != STATUS_BAD_INPUT:
        result["message"] += f"; the replay's log ends with:\n{_log_tail(folder / LOG_NAME)}"
    return result


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:])


def _sync(path: Path) -> None:
    """fsync a file, or a folder (which makes a rename in it durable)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
