"""Configs and the `rig` command for tests that run whole trials (imported, not collected)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rig.config import DEFAULT_CONFIG_PATH

MODEL_DIR = Path(__file__).resolve().parents[2] / "tracking" / "models" / "twin"
TRACKING_ON = (
    "[tracking]\n# DeepLabCut-Live on every camera, live 3D, jump detection; completed after "
    "the trial.\nenabled = true"
)


def rig(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``rig ARGS`` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def tracked_config_with(folder: Path, extra: str, name: str = "trial.toml") -> Path:
    """The default config (tracking on) plus ``extra``, written to ``folder``, its model path
    made absolute so the config works from anywhere."""
    text = DEFAULT_CONFIG_PATH.read_text()
    if TRACKING_ON not in text:
        raise ValueError(f"{DEFAULT_CONFIG_PATH} no longer turns tracking on as expected")
    text = text.replace('model = "../tracking/models/twin"', f'model = "{MODEL_DIR}"')
    path = folder / name
    path.write_text(text + "\n" + extra)
    return path


def config_with(folder: Path, extra: str) -> Path:
    """The default config plus ``extra``, with tracking off: for tests about recording."""
    path = tracked_config_with(folder, extra)
    path.write_text(path.read_text().replace(TRACKING_ON, "[tracking]\nenabled = false"))
    return path
