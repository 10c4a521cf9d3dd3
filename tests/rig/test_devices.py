"""`rig devices` and the pre-flight check: missing drivers are clear messages, never tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rig.config import load_config
from rig.devices import preflight_problems, survey

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def rig(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_the_simulated_rig_needs_no_hardware() -> None:
    config = load_config()
    assert preflight_problems(config) == []
    kinds = [report.kind for report in survey(config)]
    assert kinds == ["cameras", "DAQ", "trigger box / serial ports"]


def test_devices_lists_the_twin() -> None:
    result = rig("devices")
    assert result.returncode == 0, result.stderr
    assert "cam_left: digital twin camera" in result.stdout
    assert "digital twin DAQ" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_hardware_config_without_drivers_is_a_clear_message(tmp_path: Path) -> None:
    # The real rig's example config on a machine without NI-DAQmx, GenTL producers or the box.
    config = load_config(CONFIG_DIR / "rig.example.toml")
    problems = preflight_problems(config)
    assert any("NI-DAQmx driver not found" in p for p in problems)
    assert any(p.startswith("cam_left:") for p in problems)
    listed = rig("devices", "--config", str(CONFIG_DIR / "rig.example.toml"))
    assert listed.returncode == 1
    assert "MISSING: NI-DAQmx driver not found" in listed.stdout
    assert "Traceback" not in listed.stdout + listed.stderr
    out = tmp_path / "out"
    run = rig("run", "--config", str(CONFIG_DIR / "rig.example.toml"), "--output", str(out))
    assert run.returncode == 1
    assert "cannot start the trial" in run.stderr
    assert "NI-DAQmx driver not found" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()
