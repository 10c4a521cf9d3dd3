"""Recorded trials shared by the replay tests: recorded once per session, through `rig run`
(replay_recordings.py says which)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

# The helper module sits beside this file (tests import it too).
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from replay_recordings import (  # noqa: E402
    SMALL_DROPPED,
    TRACKED_CROUCH_ONSET_S,
    TRACKED_DURATION_S,
    CommandRun,
    default_config_text,
    only_trial_file,
    record,
    run_command,
    small_untracked_config_text,
)


@pytest.fixture(scope="session")
def small_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small_recording")
    text = small_untracked_config_text()
    text += (
        "\n[sim.faults.cameras.cam_left]\n"
        f"drop_trigger_indices = [{', '.join(str(i) for i in SMALL_DROPPED)}]\n"
    )
    run = record(text, folder, 0.6)
    print(f"small recording: {run.wall_s:.1f} s")
    return run.path


@pytest.fixture(scope="session")
def tracked_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tracked_recording")
    text = default_config_text()
    onset = "crouch_onset_s = 1.5"
    assert onset in text
    text = text.replace(onset, f"crouch_onset_s = {TRACKED_CROUCH_ONSET_S}")
    run = record(text, folder, TRACKED_DURATION_S)
    print(f"tracked recording (with completion): {run.wall_s:.1f} s")
    return run.path


@pytest.fixture(scope="session")
def tracked_replay(tracked_recording: Path, tmp_path_factory: pytest.TempPathFactory) -> CommandRun:
    output = tmp_path_factory.mktemp("tracked_replay")
    started = time.monotonic()
    result = run_command(
        "-m",
        "rig.cli",
        "replay",
        str(tracked_recording),
        "--speed",
        "max",
        "--output",
        str(output),
        "--compare",
    )
    wall_s = time.monotonic() - started
    print(f"tracked replay (with completion and comparison): {wall_s:.1f} s")
    return CommandRun(
        only_trial_file(output), result.returncode, result.stdout, result.stderr, wall_s
    )
