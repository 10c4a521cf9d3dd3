"""A DAQ buffer overrun (issue 7, fault 7): the trial ends with NI's error code in its end reason,
and the samples in the file run without a hidden gap up to the overrun."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter of the trigger line)
import numpy as np
import pytest

from acquisition.daq.interface import rising_edges
from acquisition.daq.nidaq import ERROR_BUFFER_OVERRUN
from acquisition.daq.simulated import SimulatedDaq
from acquisition.errors import DeviceError
from acquisition.settings import (
    DaqChannelConfig,
    DaqConfig,
    FaultsConfig,
    SimConfig,
    TriggerConfig,
)
from tests.faults.fault_trials import CAMERAS, fault_config, only_trial_file
from tests.rig.trial_configs import rig

OVERRUN_AFTER_S = 1.0


def test_the_twin_daq_overruns_like_nidaqmx_after_delivering_every_earlier_sample() -> None:
    config = DaqConfig(
        rate_hz=10_000.0,
        block_samples=100,
        channels=(DaqChannelConfig(name="emg", kind="emg"),),
    )
    daq = SimulatedDaq(
        config, TriggerConfig(), SimConfig(faults=FaultsConfig(daq_overrun_after_s=0.05))
    )
    daq.open()
    daq.start()
    firsts = []
    with pytest.raises(DeviceError) as caught:
        for _ in range(100):
            block = daq.read_block(timeout_s=1.0)
            if block is not None:
                firsts.append(block.first_sample_index)
    daq.close()
    print(caught.value)
    assert caught.value.code == ERROR_BUFFER_OVERRUN
    assert "NI-DAQmx error -200279 while reading samples" in str(caught.value)
    assert "buffer overrun" in str(caught.value)
    # 0.05 s at 10 kHz: the blocks before sample 500 came, each right after the one before.
    assert firsts == list(range(0, 500, 100))


@pytest.mark.timeout(300)
def test_an_overrun_ends_the_trial_with_the_error_code_and_no_gap_in_the_samples(
    tmp_path: Path,
) -> None:
    config = fault_config(
        tmp_path, f"daq_overrun_after_s = {OVERRUN_AFTER_S}", frame_size=(160, 120)
    )
    out = tmp_path / "out"
    started = time.monotonic()
    result = rig("run", "--config", str(config), "--duration-s", "10", "--output", str(out))
    print(f"rig run took {time.monotonic() - started:.1f} s")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    with h5py.File(only_trial_file(out), "r") as f:
        end_reason = f.attrs["end_reason"]
        print(f"end_reason: {end_reason}")
        assert f.attrs["closed_cleanly"]  # the writer finished the file
        assert "(error code -200279)" in end_reason
        assert "buffer overrun" in end_reason
        analog = f["daq/analog"]
        line = f["daq/trigger_line"][:]
        pulses = f["daq/trigger_sample_index"][:]
        samples = analog.shape[0]
        rate_hz = analog.attrs["rate_hz"]
        # Every sample up to the overrun, as many as committed, none after it.
        assert samples == f["daq"].attrs["samples_committed"] == line.size
        assert samples == f.attrs["daq_samples"]
        assert samples <= OVERRUN_AFTER_S * rate_hz
        assert samples >= OVERRUN_AFTER_S * rate_hz - 2 * 100  # within a block or two
        # No hidden gap: the pulses found again in the recorded line are the stored ones, every
        # 50 samples (a missing stretch of samples would break the spacing).
        np.testing.assert_array_equal(rising_edges(line, 0, 0), pulses)
        assert set(np.diff(pulses).tolist()) == {50}
        assert f.attrs["accounting_balanced"]
        for camera in CAMERAS:
            trigger_index = f[f"cameras/{camera}/trigger_index"][:]
            assert np.all(trigger_index < pulses.size)
            assert (
                trigger_index.size + f[f"cameras/{camera}"].attrs["frames_dropped"] == pulses.size
            )
        print(f"{samples} samples ({samples / rate_hz:.2f} s), {pulses.size} pulses")
    assert "-200279" in result.stdout
