"""``python -m rig.batch.runner FOLDER PARENT_PID``: one trial of a batch, replayed and checked.

The Dask task (:mod:`rig.batch.tasks`) starts this process as the leader of a new process group,
with the job in ``FOLDER/job.json``; the replay's own processes (writer, cameras, DAQ, trackers)
join that group. It writes the replay into ``FOLDER/replay/``, checks it, records the batch's
settings in it, and writes what happened to ``FOLDER/result.json``. It never gives the file its
final name: the task does that, by a rename, once this process says the file checks out.

Why a process of its own: a Dask worker that dies mid-task must take its replay with it. The
replay's processes end when the process that runs ``replay_trial`` dies (each asks Linux for
SIGTERM when its parent dies: acquisition/worker.py); that process is this one, and it watches
its parent, the Dask worker, and when that is gone kills its whole group, itself included. (A
task runs in one of the Dask worker's threads, which may end while the worker lives on, so this
process cannot ask Linux for the same signal: it follows the worker by its parent pid.)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rig.batch.jobs import TrialJob, output_problems

JOB_NAME = "job.json"
RESULT_NAME = "result.json"
LOG_NAME = "runner.log"
REPLAY_FOLDER = "replay"
# How often the parent is checked: the longest a dead worker's replay goes on.
PARENT_POLL_S = 0.2

STATUS_DONE = "done"
STATUS_BAD_INPUT = "bad_input"  # the source cannot be replayed: another attempt would fail too
STATUS_FAILED = "failed"  # this attempt failed (a process died, a timeout): another may not


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2:
        print("usage: python -m rig.batch.runner FOLDER PARENT_PID", file=sys.stderr)
        return 2
    folder, parent_pid = Path(arguments[0]), int(arguments[1])
    watch_parent(parent_pid)
    job = TrialJob.from_json((folder / JOB_NAME).read_text())
    result = replay_job(job, folder / REPLAY_FOLDER)
    written = folder / (RESULT_NAME + ".tmp")
    written.write_text(json.dumps(result))
    # The task reads the result only once it is whole.
    os.replace(written, folder / RESULT_NAME)
    return 0


def watch_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Kill this process group (or, when this process does not lead one, this process) as soon as
    ``parent_pid`` is no longer this process's parent."""

    def kill_all() -> None:
        # Only a group this process leads: started by hand, the group would be the shell's.
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    if os.getppid() != parent_pid:
        kill_all()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            # An orphan is adopted by init or a subreaper: its parent changes.
            if os.getppid() != parent_pid:
                kill_all()

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def replay_job(job: TrialJob, folder: Path) -> dict[str, Any]:
    """Replay ``job.source`` at max speed into ``folder`` and check the file; the result as a
    JSON-ready dict: ``status`` (done, bad_input, failed), ``message``, and for a replay that ran,
    ``replay_path``, ``frames``, ``replay_wall_s``."""
    from rig.replay.config import ReplayConfigError
    from rig.replay.run import MAX_SPEED, replay_trial
    from rig.trialfile.reader import TrialFileError

    settings = job.settings
    try:
        result = replay_trial(
            job.source,
            output_dir=folder,
            speed=MAX_SPEED,
            model=Path(settings.model) if settings.model is not None else None,
            calibration=Path(settings.calibration) if settings.calibration is not None else None,
            tracking=settings.tracking,
            open_timeout_s=job.open_timeout_s,
        )
    except (TrialFileError, ReplayConfigError) as error:
        return {"status": STATUS_BAD_INPUT, "message": str(error)}
    except Exception as error:
        return {
            "status": STATUS_FAILED,
            "message": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    ran = {
        "replay_path": str(result.path),
        "frames": result.frames_written,
        "replay_wall_s": result.wall_s + result.completion_s,
    }
    if not result.trial.completed:
        return {
            "status": STATUS_FAILED,
            "message": f"the replay did not complete: {result.trial.end_reason}",
            **ran,
        }
    if result.frames_dropped:
        return {
            "status": STATUS_FAILED,
            "message": f"the replay dropped {result.frames_dropped} frames the recording has",
            **ran,
        }
    _record_settings(result.path, settings.to_attribute())
    problems = output_problems(result.path, settings, None, job.open_timeout_s)
    if problems:
        return {"status": STATUS_FAILED, "message": "; ".join(problems), **ran}
    return {"status": STATUS_DONE, "message": "", **ran}


def _record_settings(path: Path, settings_attribute: str) -> None:
    import h5py

    from rig.batch import ATTR_BATCH_SETTINGS

    with h5py.File(path, "r+") as output:
        output.attrs[ATTR_BATCH_SETTINGS] = settings_attribute


if __name__ == "__main__":
    raise SystemExit(main())
