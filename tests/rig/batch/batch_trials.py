"""Helpers of the batch tests: the small recordings they replay, and what they check outputs with.

The recordings are the default simulated rig with small frames (64x48) and tracking off, 2 s
long with the twin's crouch moved to 1.1 s: the jump detector (which runs on the forces without
tracking) finds one jump in each, and a replay takes a few seconds.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc filter of the frames
import numpy as np

from tests.rig.replay.replay_recordings import (
    CAMERAS,
    run_command,
    small_untracked_config_text,
)
from tracking.jump_detection import events_from_table

TRIALS = 3
DURATION_S = 2.0
CROUCH_ONSET_S = 1.1


def small_config_text() -> str:
    text = small_untracked_config_text()
    onset = "crouch_onset_s = 1.5"
    assert text.count(onset) == 1
    return text.replace(onset, f"crouch_onset_s = {CROUCH_ONSET_S}")


def record_trials(folder: Path) -> tuple[Path, ...]:
    """Record TRIALS trials in one `rig run` session into ``folder``/trials."""
    config = folder / "rig.toml"
    config.write_text(small_config_text())
    started_s = time.monotonic()
    result = run_command(
        "-m",
        "rig.cli",
        "run",
        "--config",
        str(config),
        "--duration-s",
        str(DURATION_S),
        "--trials",
        str(TRIALS),
        "--inter-trial-s",
        "0",
        "--output",
        str(folder / "trials"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"recorded {TRIALS} trials in {time.monotonic() - started_s:.1f} s")
    files = tuple(sorted((folder / "trials").glob("*.h5")))
    assert len(files) == TRIALS, files
    return files


def copy_trials(trials: tuple[Path, ...], folder: Path) -> tuple[Path, ...]:
    folder.mkdir(parents=True)
    return tuple(Path(shutil.copy2(trial, folder / trial.name)) for trial in trials)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def jump_events(path: Path) -> list[tuple[int, dict[str, float]]]:
    """(trigger index, values) of every "jump" event in ``path``'s /events, read with h5py."""
    with h5py.File(path, "r") as trial:
        if "events" not in trial:
            return []
        events = events_from_table(trial["events"][:])
    return [(event.trigger_index, event.values) for event in events if event.name == "jump"]


def frames_equal(source: Path, output: Path) -> bool:
    with h5py.File(source, "r") as a, h5py.File(output, "r") as b:
        return all(
            np.array_equal(a[f"cameras/{camera}/frames"][:], b[f"cameras/{camera}/frames"][:])
            for camera in CAMERAS
        ) and np.array_equal(a["daq/analog"][:], b["daq/analog"][:])
