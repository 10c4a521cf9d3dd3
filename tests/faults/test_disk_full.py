"""A full disk (issue 7, fault 4), on a small tmpfs made for the test in a private mount namespace
(`unshare -rm`: no root needed where user namespaces are allowed, as on CI's Debian/Ubuntu).

- The disk fills while a trial runs: the trial stops with the full disk as its reason, the file is
  flagged incomplete, and reading it returns exactly the committed frames, each the frame the
  twin rendered (never a tail of zeros).
- The recorder refuses to start when free space is below what the configured trial needs.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition.sim.camera_model import twin_cameras
from acquisition.sim.render import FrameRenderer
from acquisition.sim.skeleton import JumpModel
from rig.config import RigConfig, load_config
from rig.recover import ATTR_INCOMPLETE, recover_main
from rig.trialfile.reader import TrialFile, open_trial
from tests.faults.fault_trials import fault_config, rig_environment

DRIVER = Path(__file__).resolve().parent / "disk_full_driver.py"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# 4 cameras of 64x48 at 200 fps for 10 s: the recorder estimates about 21 MB, so a 32 MB file
# system lets the trial start; the ballast then fills it.
SMALL_FS_MB = 32
FRAME_SIZE = (64, 48)


def in_small_file_system(folder: Path, size_mb: int, script: str) -> list[str]:
    """The shell ``script`` run where ``folder`` is a fresh tmpfs of ``size_mb`` MB, private to
    it (the tmpfs vanishes when the script ends)."""
    mount = f"mount -t tmpfs -o size={size_mb}m tmpfs {shlex.quote(str(folder))}"
    return ["unshare", "-rm", "sh", "-c", f"{mount} && {script}"]


def require_unshare(folder: Path) -> None:
    """Fail (not skip) with a clear message where a private tmpfs cannot be made."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        probe = subprocess.run(
            in_small_file_system(folder, 1, "true"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        pytest.fail("the disk-full tests need `unshare` (util-linux) to make a small tmpfs")
    if probe.returncode != 0:
        pytest.fail(
            "the disk-full tests make a small tmpfs in a private mount namespace with "
            f"`unshare -rm` (user namespaces), which failed here: {probe.stderr.strip()}; allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as "
            "root"
        )


def rendered_frame(
    config: RigConfig, camera: str, trigger_index: int, t_twin_ns: int
) -> np.ndarray:
    """(H, W) uint8: the frame the twin camera renders for that pulse (a pure function)."""
    names = list(config.camera_names)
    settings = config.cameras[names.index(camera)]
    model = twin_cameras(names, settings.width, settings.height, gap_mm=config.sim.jump.gap_mm)[
        names.index(camera)
    ]
    renderer = FrameRenderer(
        model,
        noise_dn=config.sim.noise_dn,
        blur_px=config.sim.blur_px,
        brightness=config.sim.brightness,
        seed=config.sim.seed + names.index(camera),
        gap_mm=config.sim.jump.gap_mm,
    )
    points = JumpModel(config.sim.jump).points_mm(np.array([t_twin_ns * 1e-9]))[0]
    return renderer.render(points, trigger_index)


def check_every_committed_frame(trial: TrialFile, config: RigConfig) -> dict[str, int]:
    """Read every committed frame (checksums checked) and compare it with the twin's rendering;
    returns the frames per camera."""
    pulses = trial.trigger_sample_index()
    rate_hz = trial.daq_rate_hz
    frames_per_camera = {}
    for camera in trial.camera_names:
        frames = trial.frames(camera)
        table = trial.frame_table(camera)
        np.testing.assert_array_equal(table["trigger_index"], np.arange(len(frames)))
        for row, frame in enumerate(frames):
            trigger_index = int(table["trigger_index"][row])
            assert frame.any(), f"{camera} frame {row} is all zeros"
            if trigger_index < pulses.size:
                t_twin_ns = round((pulses[trigger_index] - pulses[0]) * 1e9 / rate_hz)
                expected = rendered_frame(config, camera, trigger_index, t_twin_ns)
                np.testing.assert_array_equal(frame, expected, err_msg=f"{camera} frame {row}")
        frames_per_camera[camera] = len(frames)
    return frames_per_camera


@pytest.mark.timeout(600)
def test_a_disk_that_fills_during_the_trial_stops_it_and_keeps_the_committed_frames(
    tmp_path: Path,
) -> None:
    small_fs = tmp_path / "small_fs"
    require_unshare(small_fs)
    config_path = fault_config(tmp_path, frame_size=FRAME_SIZE)
    text = config_path.read_text()
    config_path.write_text(
        text.replace("duration_s = 5.0", "duration_s = 10.0").replace(
            "flush_interval_s = 0.5", "flush_interval_s = 0.5\ndisk_margin_bytes = 0"
        )
    )
    config = load_config(config_path)
    copies = tmp_path / "copies"
    command = [sys.executable, str(DRIVER), str(config_path), str(small_fs), str(copies)]
    driver = subprocess.run(
        in_small_file_system(small_fs, SMALL_FS_MB, shlex.join(command)),
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
        cwd=PROJECT_ROOT,
        env=rig_environment(tmp_path / "tmp"),
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    stdout = "\n".join(report["stdout"])
    print(stdout[-1500:])
    print(
        f"ballast {report['ballast_bytes'] / 1e6:.1f} MB of "
        f"{report['free_before_ballast_bytes'] / 1e6:.1f} MB free; the rig ended "
        f"{report['trial_ended_after_fill_s']} s after the disk was full"
    )
    assert report["returncode"] == 1, stdout + report["stderr_tail"]
    assert "disk full (no space left on device)" in stdout
    assert "Traceback" not in stdout
    (name,) = report["files"]
    path = copies / name
    with open_trial(path) as trial:
        assert not trial.closed_cleanly  # flagged incomplete: never finalized
        frames = check_every_committed_frame(trial, config)
        samples = trial.committed_rows("/daq/analog")
        pulses = trial.trigger_sample_index()
        assert trial.daq_analog().shape[0] == samples
        assert set(np.diff(pulses).tolist()) <= {50}
    print(f"committed frames {frames}, {samples} DAQ samples, {pulses.size} pulses")
    assert min(frames.values()) > 0
    out, errors = io.StringIO(), io.StringIO()
    assert recover_main(path, out, errors) == 0, errors.getvalue()
    with h5py.File(path, "r") as h5file:
        assert h5file.attrs[ATTR_INCOMPLETE] == 1
        end_reason = h5file.attrs["end_reason"]
    print(f"end_reason in the file: {end_reason!r}")
    assert "disk full" in end_reason or "recovered after" in end_reason


def test_the_recorder_refuses_to_start_without_the_space_the_trial_needs(tmp_path: Path) -> None:
    small_fs = tmp_path / "small_fs"
    require_unshare(small_fs)
    config_path = fault_config(tmp_path)  # 4 x 640x480 at 200 fps for 5 s: about 1 GB
    trials = small_fs / "trials"
    rig_run = [sys.executable, "-m", "rig.cli", "run", "--config", str(config_path)]
    script = (
        f'{shlex.join([*rig_run, "--output", str(trials)])}; echo "rig exit $?"; '
        f"echo \"trial files: $(find {shlex.quote(str(small_fs))} -name '*.h5' | wc -l)\""
    )
    result = subprocess.run(
        in_small_file_system(small_fs, 8, script),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=PROJECT_ROOT,
        env=rig_environment(tmp_path / "tmp"),
    )
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert "rig exit 1\n" in result.stdout, result.stdout + result.stderr
    assert "rig: cannot start the trial:" in result.stdout
    assert "MB free, the trial needs about" in result.stdout
    assert "trial files: 0\n" in result.stdout
    assert "Traceback" not in result.stderr
