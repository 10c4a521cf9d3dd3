"""Helpers of the replay tests: recording trials through `rig run`, the settings they use.

The session fixtures in conftest.py record with these:

- ``small_recording``: the default simulated rig with small frames, tracking off and a few
  frames dropped by a camera (the twin's fault knob), a fraction of a second long: fast to record,
  replay and damage.
- ``tracked_recording``: the default simulated rig with tracking on (the twin's pose model,
  completed after the trial), the jump moved early so a short trial holds it.
- ``tracked_replay``: ``tracked_recording`` replayed at ``--speed max`` with ``--compare``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rig.config import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = ROOT / "tracking" / "models" / "twin"
CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")
SMALL_DROPPED = (5, 6, 40)
# Trigger indices the small recording's cam_left loses (the twin's fault knob).
SMALL_FRAME_SIZE = "width = 64\nheight = 48\n"
TRACKED_DURATION_S = 1.2
TRACKED_CROUCH_ONSET_S = 0.3


@dataclass(frozen=True)
class CommandRun:
    path: Path  # the trial file made
    returncode: int
    stdout: str
    stderr: str
    wall_s: float


def run_command(*args: str, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
    )


def only_trial_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.h5"))
    assert len(files) == 1, files
    return files[0]


def default_config_text() -> str:
    """The default rig config with the twin's model path made absolute."""
    text = DEFAULT_CONFIG_PATH.read_text()
    relative_model = 'model = "../tracking/models/twin"'
    assert relative_model in text
    return text.replace(relative_model, f'model = "{MODEL_DIR}"')


def small_untracked_config_text() -> str:
    """The default rig config with tracking off and every camera's frames SMALL_FRAME_SIZE."""
    text = default_config_text()
    tracking_on = "enabled = true"
    assert text.count(tracking_on) == 1
    text = text.replace(tracking_on, "enabled = false")
    for camera in CAMERAS:
        table = f'[[cameras]]\nname = "{camera}"\n'
        text = text.replace(table, table + SMALL_FRAME_SIZE)
    assert text.count(SMALL_FRAME_SIZE) == len(CAMERAS)
    return text


def record(config_text: str, folder: Path, duration_s: float) -> CommandRun:
    config = folder / "rig.toml"
    config.write_text(config_text)
    output = folder / "trials"
    started = time.monotonic()
    result = run_command(
        "-m",
        "rig.cli",
        "run",
        "--config",
        str(config),
        "--duration-s",
        str(duration_s),
        "--output",
        str(output),
    )
    wall_s = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return CommandRun(
        only_trial_file(output), result.returncode, result.stdout, result.stderr, wall_s
    )
