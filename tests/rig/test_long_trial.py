"""The recorder sustains 4 cameras at 640x480 and 200 fps for 30 s without a drop (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rig.config import DEFAULT_CONFIG_PATH


def recording_only_config(folder: Path) -> Path:
    """The default rig with tracking off: this measures the recorder."""
    text = DEFAULT_CONFIG_PATH.read_text()
    start = text.index("[tracking]")
    path = folder / "recording.toml"
    path.write_text(text[:start])
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thirty_seconds_at_200_fps_without_a_drop(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "run",
            "--duration-s",
            "30",
            "--output",
            str(tmp_path / "trials"),
            "--config",
            str(recording_only_config(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = (tmp_path / "trials").glob("*.h5")
    with h5py.File(path, "r") as f:
        pulses = f["daq/trigger_sample_index"].shape[0]
        assert pulses >= 30 * 200
        for camera in ("cam_left", "cam_right", "cam_front", "cam_top"):
            group = f[f"cameras/{camera}"]
            assert group.attrs["frames_dropped"] == 0
            assert group.attrs["dropped_by_pipeline"] == 0
            np.testing.assert_array_equal(group["trigger_index"][:], np.arange(pulses))
