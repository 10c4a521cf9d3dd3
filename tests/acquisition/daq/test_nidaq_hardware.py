"""The NI-DAQmx backend on a real or NI-simulated device: opt-in with ``pytest -m hardware``.

Needs NI's driver and a device named ``$JUMPRIG_NIDAQ_DEVICE`` (default ``Dev1``, e.g. the
simulated PCIe-6363 imported from ``config/ni-max-simulated-devices.ini``); skipped otherwise.
A simulated device checks the API calls and the routing only (its counters read 0, its lines do
not toggle), so the pulse spacing is checked on real devices:

- counter edges: counts ctr0's internal output, so no wire is needed;
- digital input: needs ctr0's output PFI12 wired to P0.0; set ``JUMPRIG_NIDAQ_LOOPBACK_WIRED=1``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from acquisition.daq.interface import DaqBlock, rising_edges
from acquisition.daq.nidaq import NiDaq
from acquisition.daq.nidaq_settings import NiDaqSettings, TriggerLineMode
from acquisition.settings import DaqChannelConfig, DaqConfig, TriggerConfig, TriggerLineConfig

pytestmark = pytest.mark.hardware

RATE_HZ = 10_000.0
PULSE_RATE_HZ = 200.0
BLOCK = 100


@pytest.fixture
def device() -> tuple[str, bool]:
    """The device's name and whether it is simulated; skips without the driver or the device."""
    nidaqmx_system = pytest.importorskip("nidaqmx.system")
    from nidaqmx.errors import DaqNotFoundError, DaqNotSupportedError

    try:
        system = nidaqmx_system.System.local()
        names = list(system.devices.device_names)
    except (DaqNotFoundError, DaqNotSupportedError):
        pytest.skip("NI-DAQmx driver not installed")
    name = os.environ.get("JUMPRIG_NIDAQ_DEVICE", "Dev1")
    if name not in names:
        pytest.skip(f"no NI-DAQmx device named {name!r} (found {names})")
    return name, bool(nidaqmx_system.Device(name).is_simulated)


def run_one_second(daq: NiDaq) -> tuple[list[DaqBlock], list[float]]:
    """Blocks of about one second, with the pulse train running after the first 5 blocks."""
    blocks: list[DaqBlock] = []
    read_times_s: list[float] = []
    with daq:
        daq.start()
        for index in range(int(RATE_HZ) // BLOCK):
            if index == 5:
                daq.start_pulses(PULSE_RATE_HZ)
            started = time.perf_counter()
            block = daq.read_block(timeout_s=1.0)
            read_times_s.append(time.perf_counter() - started)
            if block is None:
                raise AssertionError(f"block {index} did not arrive within 1 s")
            blocks.append(block)
        daq.stop_pulses()
        daq.stop()
    return blocks, read_times_s


def make_daq(name: str, mode: TriggerLineMode, trigger_physical: str) -> NiDaq:
    config = DaqConfig(
        backend="nidaqmx",
        device=name,
        rate_hz=RATE_HZ,
        block_samples=BLOCK,
        channels=(
            DaqChannelConfig("emg", "emg", physical=f"{name}/ai0", range_v=5.0),
            DaqChannelConfig("force", "force", physical=f"{name}/ai1", range_v=10.0),
        ),
        trigger_line=TriggerLineConfig(physical=trigger_physical),
    )
    settings = NiDaqSettings(
        pulse_counter=f"{name}/ctr0",
        co_pulse_term=f"/{name}/PFI12",
        trigger_line_mode=mode,
        edge_counter=f"{name}/ctr1",
    )
    return NiDaq(config, TriggerConfig(source="daq_counter", rate_hz=PULSE_RATE_HZ), settings)


def check_blocks(blocks: list[DaqBlock], read_times_s: list[float]) -> np.ndarray:
    """Contiguity and finite samples; returns the rising edges of the trigger line."""
    starts = [block.first_sample_index for block in blocks]
    assert starts == list(range(0, len(blocks) * BLOCK, BLOCK))
    analog = np.concatenate([block.analog for block in blocks])
    assert analog.shape == (len(blocks) * BLOCK, 2) and np.isfinite(analog).all()
    print(
        f"read_block: median {np.median(read_times_s) * 1e3:.2f} ms, "
        f"max {max(read_times_s) * 1e3:.2f} ms for {BLOCK}-sample blocks"
    )
    line = np.concatenate([block.trigger_line for block in blocks])
    return rising_edges(line, 0, 0)


def check_pulse_spacing(edges: np.ndarray) -> None:
    period = RATE_HZ / PULSE_RATE_HZ
    print(f"{edges.size} pulses, spacing {sorted(set(np.diff(edges).tolist()))} samples")
    assert edges.size > 0.8 * (RATE_HZ - 5 * BLOCK) / period
    # Counter and sample clock share the timebase: the spacing may only wobble by one sample.
    assert set(np.diff(edges).tolist()) <= {period - 1, period, period + 1}
    assert abs(float(np.mean(np.diff(edges))) - period) < 0.01


def test_counter_edges_for_one_second(device: tuple[str, bool]) -> None:
    name, simulated = device
    daq = make_daq(name, "counter_edges", f"/{name}/Ctr0InternalOutput")
    edges = check_blocks(*run_one_second(daq))
    if simulated:
        print("simulated device: counters read 0, pulse spacing not checked")
        return
    check_pulse_spacing(edges)


def test_digital_input_for_one_second(device: tuple[str, bool]) -> None:
    name, simulated = device
    daq = make_daq(name, "digital_input", f"{name}/port0/line0")
    edges = check_blocks(*run_one_second(daq))
    if simulated or os.environ.get("JUMPRIG_NIDAQ_LOOPBACK_WIRED") != "1":
        print("pulse spacing not checked: simulated device or PFI12 not wired to P0.0")
        return
    check_pulse_spacing(edges)
