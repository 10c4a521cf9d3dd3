"""Clock drift between a camera and the DAQ (issue 7, fault 8): alignment by trigger index stays
exact, and the drift the rig measures is stored with the camera (60 s in the slow tier)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rig.clock_drift import fit_camera_clock
from tests.faults.fault_trials import fault_config, only_trial_file
from tests.rig.trial_configs import rig

DAQ_RATE_HZ = 10_000.0


def test_the_fit_measures_drift_and_scatter_of_a_camera_clock() -> None:
    rng = np.random.default_rng(3)
    pulses = 7 + 50 * np.arange(12_000, dtype=np.int64)  # 60 s of 200 Hz pulses at 10 kHz
    t_daq_ns = pulses * 1e9 / DAQ_RATE_HZ
    jitter_ns = rng.normal(0.0, 200.0, pulses.size)
    t_device_ns = np.round(3e12 + t_daq_ns * (1 + 50e-6) + jitter_ns).astype(np.int64)
    t_device_ns[[10, 500]] = -1  # frames without a timestamp
    pulses_of_frames = pulses.copy()
    pulses_of_frames[[20, 21]] = -1  # frames whose pulse was not recorded
    fit = fit_camera_clock(pulses_of_frames, t_device_ns, DAQ_RATE_HZ)
    print(fit)
    assert fit.frames == pulses.size - 4
    assert fit.drift_ppm == pytest.approx(50.0, abs=0.01)
    assert fit.residual_rms_ns == pytest.approx(200.0, rel=0.05)
    assert 600.0 < fit.residual_max_ns < 1200.0
    exact = fit_camera_clock(pulses, np.round(t_daq_ns).astype(np.int64), DAQ_RATE_HZ)
    assert exact.drift_ppm == pytest.approx(0.0, abs=1e-6)
    assert exact.residual_max_ns < 1.0


def test_the_fit_says_nothing_without_two_timestamps() -> None:
    none = fit_camera_clock(np.array([5, 55]), np.array([-1, -1]), DAQ_RATE_HZ)
    assert math.isnan(none.drift_ppm) and none.frames == 0
    one = fit_camera_clock(np.array([5]), np.array([100]), DAQ_RATE_HZ)
    assert math.isnan(one.residual_rms_ns) and one.frames == 1
    with pytest.raises(ValueError, match="one length"):
        fit_camera_clock(np.array([1, 2]), np.array([1]), DAQ_RATE_HZ)
    with pytest.raises(ValueError, match="daq_rate_hz"):
        fit_camera_clock(np.array([1, 2]), np.array([1, 2]), 0.0)


def check_drift_trial(tmp_path: Path, duration_s: float) -> None:
    """A trial of ``duration_s`` with two cameras' clocks drifting: alignment by trigger index
    exact, each camera's drift measured and stored on /cameras/<name>."""
    extra = (
        "[sim.faults.cameras.cam_front]\ndrift_ppm = 50.0\n"
        "[sim.faults.cameras.cam_left]\ndrift_ppm = -20.0\n"
    )
    # Small frames: 60 s of 4 full-size cameras would be about 10 GB of test data.
    config = fault_config(tmp_path, extra=extra, frame_size=(160, 120))
    out = tmp_path / "out"
    started = time.monotonic()
    result = rig(
        "run",
        "--config",
        str(config),
        "--duration-s",
        str(duration_s),
        "--output",
        str(out),
        timeout_s=840,
    )
    print(f"rig run took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with h5py.File(only_trial_file(out), "r") as f:
        pulses = f["daq/trigger_sample_index"][:]
        rate_hz = f["daq/analog"].attrs["rate_hz"]
        seconds = (pulses[-1] - pulses[0]) / rate_hz
        print(f"{pulses.size} pulses over {seconds:.1f} s")
        assert seconds >= duration_s - 1.0
        for camera, drift_ppm in (
            ("cam_front", 50.0),
            ("cam_left", -20.0),
            ("cam_right", 0.0),
            ("cam_top", 0.0),
        ):
            group = f[f"cameras/{camera}"]
            trigger_index = group["trigger_index"][:]
            # Alignment by trigger index: exact, whatever the camera's clock does.
            np.testing.assert_array_equal(trigger_index, np.arange(pulses.size))
            np.testing.assert_array_equal(group["daq_sample_index"][:], pulses[trigger_index])
            stored = group.attrs["clock_drift_ppm"]
            residual = group.attrs["clock_fit_residual_max_ns"]
            # Over 60 s, 50 ppm is 3 ms: the camera's clock ends 3 ms ahead of the DAQ's.
            device_s = (group["t_device_ns"][-1] - group["t_device_ns"][0]) * 1e-9
            print(
                f"{camera}: stored drift {stored:.4f} ppm (set {drift_ppm}), residual max "
                f"{residual:.1f} ns, camera clock ahead by {(device_s - seconds) * 1e3:.3f} ms"
            )
            assert stored == pytest.approx(drift_ppm, abs=0.01)
            assert residual < 10.0  # the twin's timestamps are exact to the nanosecond
            assert device_s - seconds == pytest.approx(seconds * drift_ppm * 1e-6, abs=1e-6)


@pytest.mark.timeout(300)
def test_drift_over_a_few_seconds_is_measured_and_stored(tmp_path: Path) -> None:
    check_drift_trial(tmp_path, 3.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fifty_ppm_over_sixty_seconds_is_measured_and_stored(tmp_path: Path) -> None:
    check_drift_trial(tmp_path, 60.0)
