"""A whole trial on the simulated rig, through the `rig` command, as a user runs it.

Real processes, real ZeroMQ sockets, a real HDF5 file, opened and checked afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter the frames are stored with)
import numpy as np
import pytest

from tests.rig.trial_configs import config_with, rig

CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")


def only_trial_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.h5"))
    assert len(files) == 1, files
    return files[0]


@pytest.fixture(scope="module")
def default_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("default")
    config = config_with(out, "")
    result = rig(
        "run",
        "--config",
        str(config),
        "--duration-s",
        "2",
        "--output",
        str(out / "trials"),
        "--subject",
        "m01",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return only_trial_file(out / "trials"), result.stdout


def test_trial_file_is_synchronized(default_trial: tuple[Path, str]) -> None:
    path, _ = default_trial
    with h5py.File(path, "r") as f:
        assert f.attrs["closed_cleanly"]
        assert f.attrs["subject"] == "m01"
        assert f.attrs["schema_version"] >= 1
        assert "[trial]" in f.attrs["config"]
        rate_hz = f["daq/analog"].attrs["rate_hz"]
        trigger_samples = f["daq/trigger_sample_index"][:]
        pulses = trigger_samples.size
        # 2 s at 200 Hz; the supervisor stops the box by the host clock, so a loaded machine
        # may add a few pulses (alignment does not depend on it)
        assert 390 <= pulses <= 480
        assert set(np.diff(trigger_samples).tolist()) == {50}
        assert f["daq/analog"].shape[0] >= 2.0 * rate_hz
        assert f["daq/analog"].shape[1] == 6
        for camera in CAMERAS:
            group = f[f"cameras/{camera}"]
            frame_id = group["frame_id"][:]
            trigger_index = group["trigger_index"][:]
            np.testing.assert_array_equal(frame_id, np.arange(pulses))
            np.testing.assert_array_equal(trigger_index, np.arange(pulses))
            np.testing.assert_array_equal(
                group["daq_sample_index"][:], trigger_samples[trigger_index]
            )
            assert group["frames"].shape == (pulses, 480, 640)
            assert group.attrs["frames_dropped"] == 0
            assert group["t_host_ns"].shape == (pulses,)
            assert np.all(np.diff(group["t_device_ns"][:]) > 0)


def test_frames_show_the_mouse_and_differ_between_cameras(default_trial: tuple[Path, str]) -> None:
    path, _ = default_trial
    with h5py.File(path, "r") as f:
        left = f["cameras/cam_left/frames"][100]
        right = f["cameras/cam_right/frames"][100]
        assert left.std() > 5  # not a blank frame
        assert np.abs(left.astype(int) - right.astype(int)).mean() > 5


def test_console_prints_summary_and_accounting(default_trial: tuple[Path, str]) -> None:
    path, stdout = default_trial
    assert str(path) in stdout
    for camera in CAMERAS:
        assert camera in stdout
    assert "MISMATCH" not in stdout


def test_inspect_reads_the_file(default_trial: tuple[Path, str]) -> None:
    path, _ = default_trial
    text = rig("inspect", str(path))
    assert text.returncode == 0, text.stderr
    assert "cam_left" in text.stdout
    as_json = rig("inspect", str(path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["closed_cleanly"] is True


def test_dropped_frames_are_accounted_exactly(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        "[sim.faults.cameras.cam_left]\ndrop_trigger_indices = [0, 10, 11, 150]\n"
        "[sim.faults.cameras.cam_top]\ndrop_probability = 0.03\n",
    )
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "1.5", "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        pulses = f["daq/trigger_sample_index"].shape[0]
        for camera in CAMERAS:
            group = f[f"cameras/{camera}"]
            truth = f[f"sim/dropped/{camera}"][:]
            dropped = group["dropped_trigger_indices"][:]
            np.testing.assert_array_equal(dropped, truth)
            assert group.attrs["frames_dropped"] == truth.size
            assert group["frame_id"].shape[0] + truth.size == pulses
            assert not np.isin(group["trigger_index"][:], truth).any()
        assert f["sim/dropped/cam_left"][:].tolist() == [0, 10, 11, 150]
        assert f["sim/dropped/cam_top"].shape[0] > 0
        assert f["sim/dropped/cam_right"].shape[0] == 0
    assert "dropped trigger indices: 0, 10, 11, 150" in result.stdout


def test_clock_drift_does_not_move_alignment(tmp_path: Path) -> None:
    config = config_with(tmp_path, "[sim.faults.cameras.cam_front]\ndrift_ppm = 50.0\n")
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "1.5", "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        trigger_samples = f["daq/trigger_sample_index"][:]
        rate_hz = f["daq/analog"].attrs["rate_hz"]
        group = f["cameras/cam_front"]
        trigger_index = group["trigger_index"][:]
        np.testing.assert_array_equal(trigger_index, np.arange(trigger_samples.size))
        np.testing.assert_array_equal(group["daq_sample_index"][:], trigger_samples[trigger_index])
        # The camera's clock runs 50 ppm fast against the DAQ's.
        device_s = (group["t_device_ns"][:] - group["t_device_ns"][0]) * 1e-9
        daq_s = (trigger_samples[trigger_index] - trigger_samples[0]) / rate_hz
        slope = np.polyfit(daq_s, device_s, 1)[0]
        assert slope == pytest.approx(1 + 50e-6, abs=2e-6)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[sim.faults.cameras.cam_left]\nspeed = 3\n", "sim.faults.cameras.cam_left.speed"),
        ("[[cameras]]\nname = 'cam5'\nwidth = 'wide'\n", "cameras[4].width"),
        ("[[daq.channels]]\nname = 'emg5'\nkind = 'emg'\nrange_v = -10.0\n", "range_v"),
    ],
)
def test_bad_config_fails_before_any_file(tmp_path: Path, extra: str, key: str) -> None:
    out = tmp_path / "out"
    result = rig("run", "--config", str(config_with(tmp_path, extra)), "--output", str(out))
    assert result.returncode == 2
    assert key in result.stderr
    assert "trial.toml" in result.stderr
    assert not out.exists()


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    result = rig("run", "--config", str(tmp_path / "absent.toml"), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "absent.toml" in result.stderr and "file not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_unplugged_trigger_box_ends_the_trial_within_a_second(tmp_path: Path) -> None:
    config = config_with(tmp_path, "")
    text = config.read_text().replace(
        "slow_disk_ms_per_frame = 0.0",
        "slow_disk_ms_per_frame = 0.0\ntriggerbox_unplug_after_s = 1.0",
    )
    config.write_text(text)
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "10", "--output", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert "trigger box" in f.attrs["end_reason"]
        rate_hz = f["daq/analog"].attrs["rate_hz"]
        trigger_samples = f["daq/trigger_sample_index"][:]
        print("stop requested after", f.attrs["stop_requested_after_s"], "s")
        # Pulses stop with the box (its cable powers it), 1 s after the DAQ started (the
        # emulator's timer may fire late on a loaded machine).
        pulses_s = (trigger_samples[-1] - trigger_samples[0]) / rate_hz
        assert pulses_s < 1.5
        # The supervisor decided to stop within a second of the unplug.
        assert f.attrs["stop_requested_after_s"] < 2.0
        for camera in CAMERAS:
            assert f[f"cameras/{camera}"].attrs["frames_dropped"] == 0
    assert "trigger box" in result.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_trial_stops_in_order_and_keeps_its_file(
    tmp_path: Path, signum: signal.Signals
) -> None:
    out = tmp_path / "out"
    config = config_with(tmp_path, "")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "run",
            "--config",
            str(config),
            "--duration-s",
            "60",
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group. Ctrl-C at a terminal reaches the whole foreground group, so
        # SIGINT goes to the group (the workers must leave the stop to the rig); SIGTERM, as
        # `kill PID` sends it, to the rig alone.
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until frames are flowing
            if "running" in line and "cam_left 0 " not in line:
                break
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        # Whatever went wrong, nothing of the trial outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert "stopped by the operator" in f.attrs["end_reason"]
        pulses = f["daq/trigger_sample_index"].shape[0]
        assert pulses > 0
        for camera in CAMERAS:
            group = f[f"cameras/{camera}"]
            assert group.attrs["frames_dropped"] == 0
            np.testing.assert_array_equal(group["trigger_index"][:], np.arange(pulses))


def test_a_trigger_box_failing_at_stop_fails_the_trial(tmp_path: Path) -> None:
    """Unplugged in the last moment of the trial, after the last poll: the STOP command fails.
    The trial ran its whole duration but did not complete: exit 1, the reason in the file."""
    config = _config_with_faults(tmp_path, "triggerbox_unplug_after_s = 1.98")
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "2", "--output", str(out))
    print(result.stdout[-1500:])
    assert result.returncode == 1, result.stdout + result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert "trigger box" in f.attrs["end_reason"]


def _config_with_faults(tmp_path: Path, faults: str) -> Path:
    config = config_with(tmp_path, "")
    text = config.read_text().replace(
        "slow_disk_ms_per_frame = 0.0", "slow_disk_ms_per_frame = 0.0\n" + faults
    )
    config.write_text(text)
    return config


def test_a_camera_killed_mid_trial_ends_it_with_the_reason(tmp_path: Path) -> None:
    config = _config_with_faults(
        tmp_path, 'kill_worker = "camera:cam_front"\nkill_worker_after_s = 1.0'
    )
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "10", "--output", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert "camera:cam_front process died (exit code -9)" in f.attrs["end_reason"]
        # Noticed within a second of the kill, 1 s after the pulses started.
        assert f.attrs["stop_requested_after_s"] < 2.0
        pulses = f["daq/trigger_sample_index"].shape[0]
        for camera in ("cam_left", "cam_right", "cam_top"):
            group = f[f"cameras/{camera}"]
            np.testing.assert_array_equal(group["trigger_index"][:], np.arange(pulses))
        assert f["cameras/cam_front/frame_id"].shape[0] < pulses


def test_a_jump_detector_killed_mid_trial_ends_it_and_the_recording_is_whole(
    tmp_path: Path,
) -> None:
    config = _config_with_faults(tmp_path, 'kill_worker = "jumps"\nkill_worker_after_s = 1.0')
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "10", "--output", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert "jumps process died (exit code -9)" in f.attrs["end_reason"]
        assert "no end-of-stream" not in f.attrs["end_reason"]  # its stream was let go
        assert f.attrs["accounting_balanced"]
        assert "events" not in f or f["events"].shape == (0,)


def test_a_writer_killed_mid_trial_leaves_a_readable_file(tmp_path: Path) -> None:
    # Late enough that several flushes (every 0.5 s, whole chunks) have committed frames even
    # when the machine is slow to get going.
    config = _config_with_faults(tmp_path, 'kill_worker = "writer"\nkill_worker_after_s = 4.0')
    out = tmp_path / "out"
    result = rig("run", "--config", str(config), "--duration-s", "10", "--output", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "writer process died" in result.stdout
    path = only_trial_file(out)
    inspected = rig("inspect", str(path), "--json")
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    assert summary["closed_cleanly"] is False
    frames = [camera["frames"] for camera in summary["cameras"].values()]
    assert min(frames) > 0  # what was flushed before the kill is there


def test_report_command_writes_the_plots_of_a_trial(
    default_trial: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = default_trial
    result = rig("report", str(path), "--output", str(tmp_path / "plots"))
    assert result.returncode == 0, result.stdout + result.stderr
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert any(p.name.endswith("_frame_accounting.png") for p in pngs)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for png in pngs:
        assert str(png) in result.stdout
    # Without tracking there is no 3D to plot, and the command says so.
    assert not any(p.name.endswith("_trajectory.png") for p in pngs)


def test_report_command_refuses_a_file_that_is_not_a_trial(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.h5"
    bogus.write_text("not HDF5")
    result = rig("report", str(bogus))
    assert result.returncode == 1  # as `rig inspect`: the file cannot be used
    assert str(bogus) in result.stderr and "Traceback" not in result.stderr


def test_a_temporary_folder_too_deep_for_socket_paths_is_refused_before_the_trial(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 40)
    deep.mkdir(parents=True)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "rig.cli", "run", "--duration-s", "1", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TMPDIR": str(deep)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is longer than the 107 characters the system allows" in result.stdout
    assert "set TMPDIR to a shorter folder" in result.stdout
    assert not list(out.glob("*.h5"))
