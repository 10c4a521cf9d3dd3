"""A trial recorded from GenICam's TLSimu cameras through harvesters (genicam-sim.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tlsimu() -> Path:
    fetched = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_tlsimu.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if fetched.returncode != 0:
        pytest.skip(f"TLSimu could not be fetched: {fetched.stderr.strip()[-300:]}")
    return Path(fetched.stdout.strip().splitlines()[-1])


def test_genicam_sim_trial_is_synchronized(tlsimu: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "run",
            "--config",
            "config/genicam-sim.toml",
            "--duration-s",
            "2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("*.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["closed_cleanly"]
        trigger_samples = f["daq/trigger_sample_index"][:]
        assert set(np.diff(trigger_samples).tolist()) == {100}  # 10 kHz / 100 Hz
        assert f.attrs["triggerbox_pulses_sent"] == trigger_samples.size
        for camera in ("cam_left", "cam_right"):
            group = f[f"cameras/{camera}"]
            np.testing.assert_array_equal(group["frame_id"][:], np.arange(trigger_samples.size))
            np.testing.assert_array_equal(
                group["daq_sample_index"][:], trigger_samples[group["trigger_index"][:]]
            )
            assert group.attrs["frames_dropped"] == 0
            assert group["frames"].shape[1:] == (480, 640)
