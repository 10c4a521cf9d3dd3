"""`rig run --trials N`: a session of trials from the console, one file each, a summary."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.rig.trial_configs import config_with


def run_session(config: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "run",
            "--config",
            str(config),
            "--output",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(300)
def test_a_session_records_one_file_per_trial_and_sums_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = config_with(tmp_path, "")
    process = run_session(
        config, out, "--trials", "2", "--inter-trial-s", "0.5", "--duration-s", "1.5"
    )
    stdout, stderr = process.communicate(timeout=280)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    files = sorted(out.glob("*.h5"))
    assert len(files) == 2
    for path in files:
        with h5py.File(path, "r") as f:
            assert f.attrs["closed_cleanly"] == 1
            assert f.attrs["accounting_balanced"]
            # The live jump detector ran and wrote its (here empty: 1.5 s has no jump) table.
            assert f["events"].attrs["source"] == "live"
            assert f["events"].attrs["live_problem"] == ""
    assert "=== trial 1 of 2 ===" in stdout and "=== trial 2 of 2 ===" in stdout
    assert "session: 2 of 2 trials run" in stdout
    for path in files:
        assert path.stem in stdout.split("session: 2 of 2 trials run", 1)[1]
    assert "2 trials fine" in stdout


@pytest.mark.timeout(300)
def test_ctrl_c_ends_the_current_trial_keeps_its_file_and_ends_the_session(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    config = config_with(tmp_path, "")
    process = run_session(
        config, out, "--trials", "3", "--inter-trial-s", "0.2", "--duration-s", "60"
    )
    assert process.stdout is not None
    for line in process.stdout:  # wait until frames of the first trial are flowing
        if "running" in line and "cam_left 0 " not in line:
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=200)
    assert process.returncode == 1, stdout[-3000:] + stderr[-3000:]
    assert "Traceback" not in stderr
    (path,) = out.glob("*.h5")  # the session did not go on to trial 2
    with h5py.File(path, "r") as f:
        assert f.attrs["closed_cleanly"] == 1
        assert "stopped by the operator" in f.attrs["end_reason"]
    assert "session: 1 of 3 trials run" in stdout
    assert "=== trial 2 of 3 ===" not in stdout


def test_the_session_options_are_checked() -> None:
    for bad in (["--trials", "0"], ["--inter-trial-s", "-1"]):
        result = subprocess.run(
            [sys.executable, "-m", "rig.cli", "run", *bad],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert bad[0] in result.stderr
