"""The NI-DAQmx backend on nidaqmx's real Python API, with only the driver layer faked."""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nidaqmx.constants import (
    AcquisitionType,
    CountDirection,
    Edge,
    FrequencyUnits,
    Level,
    LineGrouping,
    TaskMode,
    TerminalConfiguration,
    VoltageUnits,
)

from acquisition.daq.interface import DaqBlock, rising_edges
from acquisition.daq.nidaq import (
    ANALOG_TASK_NAME,
    ERROR_BUFFER_OVERRUN,
    PULSE_CHANNEL_NAME,
    PULSE_TASK_NAME,
    TRIGGER_LINE_TASK_NAME,
    NiDaq,
)
from acquisition.daq.nidaq_settings import NiDaqSettings, TriggerLineMode
from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.settings import DaqChannelConfig, DaqConfig, TriggerConfig, TriggerLineConfig

# The fake driver sits beside this file; tests here are imported without a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_nidaqmx import (
    ATTR_AVAIL_SAMP_PER_CHAN,
    ATTR_CO_PULSE_FREQ,
    ATTR_INPUT_BUF_SIZE,
    ATTR_NUM_CHANS,
    ATTR_SAMP_CLK_RATE,
    FakeDriver,
    PulseTrain,
    analog_value,
    install_fake_driver,
    make_fake_interpreter_class,
)

REPO = Path(__file__).resolve().parents[3]
RATE_HZ = 10_000.0
BLOCK = 100
BUFFER = 100_000  # buffer_seconds 10 at 10 kHz
ATTR_CI_COUNT_EDGES_TERM = 0x18C7
ATTR_CO_PULSE_TERM = 0x18E1
CONTINUOUS = AcquisitionType.CONTINUOUS.value
RISING = Edge.RISING.value


def daq_config(trigger_physical: str = "Dev1/port0/line0") -> DaqConfig:
    return DaqConfig(
        backend="nidaqmx",
        device="Dev1",
        rate_hz=RATE_HZ,
        block_samples=BLOCK,
        channels=(
            DaqChannelConfig("emg_gastrocnemius", "emg", physical="Dev1/ai0", range_v=5.0),
            DaqChannelConfig("emg_tibialis_anterior", "emg", physical="Dev1/ai1", range_v=5.0),
            DaqChannelConfig("force_takeoff_platform", "force", physical="Dev1/ai4"),
        ),
        trigger_line=TriggerLineConfig(name="camera_trigger", physical=trigger_physical),
    )


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    return install_fake_driver(monkeypatch)


def read_blocks(daq: NiDaq, count: int) -> list[DaqBlock]:
    blocks = []
    for _ in range(count):
        block = daq.read_block(timeout_s=1.0)
        if block is None:
            raise AssertionError("a block did not arrive from the fake driver")
        blocks.append(block)
    return blocks


def edges_of(blocks: list[DaqBlock]) -> np.ndarray:
    line = np.concatenate([block.trigger_line for block in blocks])
    return rising_edges(line, blocks[0].first_sample_index, 0)


# --- the driver calls ----------------------------------------------------------------------------


def test_open_start_and_close_make_exactly_the_expected_driver_calls(driver: FakeDriver) -> None:
    """Trigger box pacing, the trigger line on a digital input: no counter output task."""
    daq = NiDaq(daq_config(), TriggerConfig(source="triggerbox"), NiDaqSettings())
    daq.open()
    daq.start()
    opened = driver.configuration_calls()
    daq.stop()
    daq.close()
    diff, volts = TerminalConfiguration.DIFF.value, VoltageUnits.VOLTS.value
    ai, line = ANALOG_TASK_NAME, TRIGGER_LINE_TASK_NAME
    expected_open = [
        ("create_task", (ai,)),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai0", "emg_gastrocnemius", diff, -5.0, 5.0, volts, ""),
        ),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai1", "emg_tibialis_anterior", diff, -5.0, 5.0, volts, ""),
        ),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai4", "force_takeoff_platform", diff, -10.0, 10.0, volts, ""),
        ),
        ("cfg_samp_clk_timing", (ai, RATE_HZ, "", RISING, CONTINUOUS, BUFFER)),
        ("set_buffer_attribute_uint32", (ai, ATTR_INPUT_BUF_SIZE, BUFFER)),
        ("get_timing_attribute_double", (ai, ATTR_SAMP_CLK_RATE)),
        ("create_task", (line,)),
        (
            "create_di_chan",
            (line, "Dev1/port0/line0", "camera_trigger", LineGrouping.CHAN_PER_LINE.value),
        ),
        (
            "cfg_samp_clk_timing",
            (line, RATE_HZ, "/Dev1/ai/SampleClock", RISING, CONTINUOUS, BUFFER),
        ),
        ("set_buffer_attribute_uint32", (line, ATTR_INPUT_BUF_SIZE, BUFFER)),
        ("task_control", (ai, TaskMode.TASK_COMMIT.value)),
        ("task_control", (line, TaskMode.TASK_COMMIT.value)),
        # The follower first: it must be armed when the AI sample clock ticks for the first time.
        ("start_task", (line,)),
        ("start_task", (ai,)),
    ]
    assert opened == expected_open
    assert driver.configuration_calls()[len(expected_open) :] == [
        ("stop_task", (ai,)),
        ("stop_task", (line,)),
        ("clear_task", (ai,)),
        ("clear_task", (line,)),
    ]
    assert driver.tasks == {}


def test_counter_pulses_counter_edges_and_start_trigger_make_the_expected_calls(
    driver: FakeDriver,
) -> None:
    settings = NiDaqSettings(
        emg_terminal_config="differential",
        force_terminal_config="rse",
        buffer_seconds=2.0,
        pulse_counter="Dev1/ctr0",
        co_pulse_term="/Dev1/PFI12",
        trigger_line_mode="counter_edges",
        edge_counter="Dev1/ctr1",
        start_trigger_source="/Dev1/PFI0",
        start_trigger_edge="falling",
    )
    trigger = TriggerConfig(source="daq_counter", rate_hz=200.0, duty_cycle=0.25)
    daq = NiDaq(daq_config("/Dev1/PFI8"), trigger, settings)
    daq.open()
    daq.start()
    read_blocks(daq, 1)
    daq.start_pulses(250.0)
    read_blocks(daq, 1)
    daq.stop_pulses()
    daq.stop()
    daq.close()
    calls = [c for c in driver.configuration_calls() if not c[0].startswith("read_")]
    calls = [c for c in calls if c[0] != "get_read_attribute_uint32"]
    diff, rse = TerminalConfiguration.DIFF.value, TerminalConfiguration.RSE.value
    volts = VoltageUnits.VOLTS.value
    ai, line, co = ANALOG_TASK_NAME, TRIGGER_LINE_TASK_NAME, PULSE_TASK_NAME
    buffer = 20_000
    assert calls == [
        ("create_task", (ai,)),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai0", "emg_gastrocnemius", diff, -5.0, 5.0, volts, ""),
        ),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai1", "emg_tibialis_anterior", diff, -5.0, 5.0, volts, ""),
        ),
        (
            "create_ai_voltage_chan",
            (ai, "Dev1/ai4", "force_takeoff_platform", rse, -10.0, 10.0, volts, ""),
        ),
        ("cfg_samp_clk_timing", (ai, RATE_HZ, "", RISING, CONTINUOUS, buffer)),
        ("set_buffer_attribute_uint32", (ai, ATTR_INPUT_BUF_SIZE, buffer)),
        ("get_timing_attribute_double", (ai, ATTR_SAMP_CLK_RATE)),
        ("cfg_dig_edge_start_trig", (ai, "/Dev1/PFI0", Edge.FALLING.value)),
        ("create_task", (line,)),
        (
            "create_ci_count_edges_chan",
            (line, "Dev1/ctr1", "camera_trigger", RISING, 0, CountDirection.COUNT_UP.value),
        ),
        (
            "set_chan_attribute_string",
            (line, "camera_trigger", ATTR_CI_COUNT_EDGES_TERM, "/Dev1/PFI8"),
        ),
        (
            "cfg_samp_clk_timing",
            (line, RATE_HZ, "/Dev1/ai/SampleClock", RISING, CONTINUOUS, buffer),
        ),
        ("set_buffer_attribute_uint32", (line, ATTR_INPUT_BUF_SIZE, buffer)),
        ("create_task", (co,)),
        (
            "create_co_pulse_chan_freq",
            (
                co,
                "Dev1/ctr0",
                PULSE_CHANNEL_NAME,
                FrequencyUnits.HZ.value,
                Level.LOW.value,
                0.0,
                200.0,
                0.25,
            ),
        ),
        ("set_chan_attribute_string", (co, PULSE_CHANNEL_NAME, ATTR_CO_PULSE_TERM, "/Dev1/PFI12")),
        ("cfg_implicit_timing", (co, CONTINUOUS, 1000)),
        ("task_control", (ai, TaskMode.TASK_COMMIT.value)),
        ("task_control", (line, TaskMode.TASK_COMMIT.value)),
        ("task_control", (co, TaskMode.TASK_COMMIT.value)),
        ("start_task", (line,)),
        ("start_task", (ai,)),
        # start_pulses(250.0): a rate other than the configured one is set before the start.
        ("set_chan_attribute_double", (co, PULSE_CHANNEL_NAME, ATTR_CO_PULSE_FREQ, 250.0)),
        ("start_task", (co,)),
        ("stop_task", (co,)),
        ("stop_task", (ai,)),
        ("stop_task", (line,)),
        # The pulses are released first, so no camera sees a pulse the DAQ does not record.
        ("clear_task", (co,)),
        ("clear_task", (ai,)),
        ("clear_task", (line,)),
    ]


def test_a_block_waits_for_the_buffer_then_reads_into_the_preallocated_arrays(
    driver: FakeDriver,
) -> None:
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings(read_timeout_s=0.5))
    daq.open()
    daq.start()
    first = len(driver.calls)
    read_blocks(daq, 2)
    reads = [c for c in driver.calls[first:] if c[0].startswith("read_")]
    assert (
        reads
        == [
            ("read_analog_f64", (ANALOG_TASK_NAME, BLOCK, 0.5, 0, (3, BLOCK))),
            ("read_digital_u8", (TRIGGER_LINE_TASK_NAME, BLOCK, 0.5, 0, (BLOCK,))),
        ]
        * 2
    )
    # The buffer is checked before every read, so a read never times out half-way.
    names = [c[0] for c in driver.calls[first:]]
    assert names.index("get_read_attribute_uint32") < names.index("read_analog_f64")
    assert (
        "get_read_attribute_uint32",
        (ANALOG_TASK_NAME, ATTR_AVAIL_SAMP_PER_CHAN),
    ) in driver.calls[first:]
    # nidaqmx checks the caller's array against the task's channel count.
    assert ("get_read_attribute_uint32", (ANALOG_TASK_NAME, ATTR_NUM_CHANS)) in driver.calls[first:]
    read_blocks(daq, 3)
    daq.close()
    # Every read fills the same preallocated arrays.
    for task_name in (ANALOG_TASK_NAME, TRIGGER_LINE_TASK_NAME):
        arrays = driver.read_arrays[task_name]
        assert len(arrays) == 5 and all(array is arrays[0] for array in arrays)


# --- samples and the trigger line ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["digital_input", "counter_edges"])
@pytest.mark.parametrize("pulse_rate_hz", [200.0, 300.0])
def test_blocks_are_contiguous_and_counter_pulses_land_on_the_expected_samples(
    driver: FakeDriver, mode: TriggerLineMode, pulse_rate_hz: float
) -> None:
    # Line 3: DAQmx reads a line back at its bit position (8), which must still count as high.
    physical = "Dev1/port0/line3" if mode == "digital_input" else "/Dev1/PFI8"
    trigger = TriggerConfig(source="daq_counter", rate_hz=pulse_rate_hz, duty_cycle=0.5)
    daq = NiDaq(daq_config(physical), trigger, NiDaqSettings(trigger_line_mode=mode))
    daq.open()
    daq.start()
    idle = read_blocks(daq, 2)
    daq.start_pulses(pulse_rate_hz)
    started = time.perf_counter()
    running = read_blocks(daq, 30)
    elapsed_s = time.perf_counter() - started
    daq.stop_pulses()
    after = read_blocks(daq, 3)
    daq.close()
    print(f"{mode} {pulse_rate_hz} Hz: {elapsed_s / 30 * 1e6:.0f} us per block on the fake driver")

    blocks = idle + running + after
    assert [block.first_sample_index for block in blocks] == list(range(0, 35 * BLOCK, BLOCK))
    samples = np.arange(35 * BLOCK)
    analog = np.concatenate([block.analog for block in blocks])
    assert analog.dtype == np.float32 and analog.shape == (35 * BLOCK, 3)
    assert all(block.analog.flags.c_contiguous for block in blocks)
    for channel in range(3):
        np.testing.assert_array_equal(analog[:, channel], analog_value(channel, samples))
    assert all(block.trigger_line.dtype == np.uint8 for block in blocks)
    assert set(np.concatenate([b.trigger_line for b in blocks]).tolist()) <= {0, 1}

    # Pulse 0 is due 3 samples (the fake's delay) after the sample current at start_pulses.
    period = RATE_HZ / pulse_rate_hz
    first_pulse = 2 * BLOCK + driver.pulse_start_delay_samples
    stop_sample = 32 * BLOCK
    expected = first_pulse + np.round(np.arange(200) * period).astype(np.int64)
    expected = expected[expected < stop_sample]
    np.testing.assert_array_equal(edges_of(blocks), expected)


@pytest.mark.parametrize("mode", ["digital_input", "counter_edges"])
def test_trigger_box_pulses_are_recorded_and_start_pulses_is_refused(
    driver: FakeDriver, mode: TriggerLineMode
) -> None:
    driver.external_pulses = PulseTrain(first_sample=123, period_samples=50.0, high_samples=10)
    physical = "Dev1/port0/line0" if mode == "digital_input" else "/Dev1/PFI8"
    daq = NiDaq(
        daq_config(physical),
        TriggerConfig(source="triggerbox"),
        NiDaqSettings(trigger_line_mode=mode),
    )
    daq.open()
    daq.start()
    with pytest.raises(RuntimeError, match="daq_counter"):
        daq.start_pulses(200.0)
    daq.stop_pulses()  # nothing to stop: no error
    blocks = read_blocks(daq, 10)
    daq.close()
    np.testing.assert_array_equal(edges_of(blocks), np.arange(123, 1000, 50))
    if mode == "digital_input":
        line = np.concatenate([block.trigger_line for block in blocks])
        assert line[123:133].all() and not line[133:173].any()


def test_a_block_not_yet_acquired_returns_none_and_loses_no_sample(driver: FakeDriver) -> None:
    driver.acquired_samples_limit = 250
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    daq.open()
    daq.start()
    read_blocks(daq, 2)
    assert daq.samples_due() == 50
    started = time.perf_counter()
    assert daq.read_block(timeout_s=0.02) is None
    print(
        f"read_block timed out after {(time.perf_counter() - started) * 1e3:.1f} ms (asked 20 ms)"
    )
    assert daq.read_block(timeout_s=0.0) is None
    driver.acquired_samples_limit = 400
    block = daq.read_block(timeout_s=0.02)
    assert block is not None and block.first_sample_index == 200
    np.testing.assert_array_equal(block.analog[:, 1], analog_value(1, np.arange(200, 300)))
    daq.close()


def test_a_follower_started_after_the_analog_input_would_misalign_the_trigger_line(
    driver: FakeDriver,
) -> None:
    """Checks the fake itself: a late follower reads shifted samples, so the order tests matter."""
    driver.external_pulses = PulseTrain(first_sample=120, period_samples=50.0, high_samples=10)
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    daq.open()
    analog = driver.task("ai")
    follower = driver.task("di")
    interpreter = make_fake_interpreter_class(driver)()
    interpreter.start_task(analog.name)
    interpreter.start_task(follower.name)
    levels = np.zeros(2 * BLOCK, np.uint8)
    interpreter.read_digital_u8(follower.name, 2 * BLOCK, 1.0, 0, levels)
    late_edge = int(np.flatnonzero(levels)[0])
    assert late_edge == 120 - driver.late_follower_offset_samples
    daq.close()


# --- errors --------------------------------------------------------------------------------------


def test_a_buffer_overrun_ends_the_trial_with_nis_error_code(driver: FakeDriver) -> None:
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    daq.open()
    daq.start()
    read_blocks(daq, 1)
    driver.next_read_error_code = ERROR_BUFFER_OVERRUN
    with pytest.raises(DeviceError, match="buffer overrun") as caught:
        daq.read_block(timeout_s=1.0)
    assert caught.value.code == -200279
    assert "-200279" in str(caught.value)
    daq.close()
    assert driver.tasks == {}


def test_any_driver_error_becomes_a_device_error_with_its_code(driver: FakeDriver) -> None:
    driver.failing_calls["start_task"] = -50103  # the device is in use elsewhere
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    daq.open()
    with pytest.raises(DeviceError) as caught:
        daq.start()
    assert caught.value.code == -50103
    daq.close()
    assert driver.tasks == {}


def test_a_failed_open_releases_the_tasks_it_created(driver: FakeDriver) -> None:
    driver.failing_calls["create_di_chan"] = -200170  # physical channel does not exist
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    with pytest.raises(DeviceError) as caught:
        daq.open()
    assert caught.value.code == -200170
    assert driver.tasks == {}
    assert [c[1][0] for c in driver.calls if c[0] == "clear_task"] == [
        ANALOG_TASK_NAME,
        TRIGGER_LINE_TASK_NAME,
    ]
    daq.close()


def test_a_sample_rate_the_device_would_coerce_is_refused(
    driver: FakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    interpreter_class: Any = make_fake_interpreter_class(driver)

    def coerced_rate(self: Any, task: str, attribute: int) -> float:
        return 9_999.000099990002

    monkeypatch.setattr(interpreter_class, "get_timing_attribute_double", coerced_rate)
    from nidaqmx import _library_interpreter

    monkeypatch.setattr(_library_interpreter, "LibraryInterpreter", interpreter_class)
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    with pytest.raises(ValueError, match=r"daq\.rate_hz.*9999\.0000"):
        daq.open()
    assert driver.tasks == {}


def test_without_nis_driver_open_says_the_driver_was_not_found() -> None:
    """No fake here: the real situation on a machine without NI-DAQmx."""
    import nidaqmx.system
    from nidaqmx.errors import DaqNotFoundError, DaqNotSupportedError

    try:
        nidaqmx.system.System.local().driver_version  # noqa: B018 - only asks whether it loads
    except (DaqNotFoundError, DaqNotSupportedError):
        pass
    else:
        pytest.skip("NI-DAQmx is installed here")
    daq = NiDaq(daq_config(), TriggerConfig(), NiDaqSettings())
    with pytest.raises(HardwareUnavailable, match="NI-DAQmx driver not found"):
        daq.open()
    daq.close()


def test_lifecycle_misuse_is_an_error_and_close_is_idempotent(driver: FakeDriver) -> None:
    daq = NiDaq(daq_config(), TriggerConfig(source="daq_counter"), NiDaqSettings())
    with pytest.raises(RuntimeError, match="before open"):
        daq.start()
    daq.open()
    with pytest.raises(RuntimeError, match="already open"):
        daq.open()
    with pytest.raises(RuntimeError, match="before start"):
        daq.read_block(timeout_s=0.0)
    with pytest.raises(RuntimeError, match="before start"):
        daq.start_pulses(200.0)
    daq.start()
    with pytest.raises(ValueError, match="half the sample rate"):
        daq.start_pulses(6_000.0)
    with pytest.raises(ValueError, match="negative"):
        daq.read_block(timeout_s=-1.0)
    daq.start_pulses(200.0)
    with pytest.raises(RuntimeError, match="already running"):
        daq.start_pulses(200.0)
    daq.close()
    daq.close()
    assert driver.tasks == {}
    assert sum(1 for c in driver.calls if c[0] == "clear_task") == 3
    # Closed, it can be opened again (a new trial).
    daq.open()
    daq.close()
    assert driver.tasks == {}


@pytest.mark.parametrize(
    ("config", "trigger", "settings", "key"),
    [
        (DaqConfig(channels=()), TriggerConfig(), NiDaqSettings(), "daq.channels"),
        (
            DaqConfig(channels=(DaqChannelConfig("emg", "emg"),)),
            TriggerConfig(),
            NiDaqSettings(),
            r"daq.channels\[0\].physical",
        ),
        (daq_config(""), TriggerConfig(), NiDaqSettings(), "daq.trigger_line.physical"),
        (
            daq_config("/Dev1/PFI8"),
            TriggerConfig(source="daq_counter"),
            NiDaqSettings(trigger_line_mode="counter_edges", edge_counter="Dev1/ctr0"),
            "daq.nidaqmx.edge_counter",
        ),
        (
            daq_config(),
            TriggerConfig(source="daq_counter"),
            NiDaqSettings(co_pulse_term=""),
            "daq.nidaqmx.co_pulse_term",
        ),
        (daq_config(), TriggerConfig(rate_hz=6_000.0), NiDaqSettings(), "trigger.rate_hz"),
    ],
)
def test_settings_the_backend_cannot_run_with_name_their_key(
    config: DaqConfig, trigger: TriggerConfig, settings: NiDaqSettings, key: str
) -> None:
    with pytest.raises(ValueError, match=key):
        NiDaq(config, trigger, settings)


# --- the fake and the example config -------------------------------------------------------------


def test_the_fake_driver_fills_every_abstract_method_of_nidaqmx(driver: FakeDriver) -> None:
    from nidaqmx._base_interpreter import BaseInterpreter

    abstract = BaseInterpreter.__abstractmethods__
    assert len(abstract) > 300
    interpreter: Any = make_fake_interpreter_class(driver)()
    interpreter.get_device_attribute_string("Dev1", 0x631)
    assert driver.calls[-1] == ("get_device_attribute_string", ("Dev1", 0x631))
    assert interpreter.get_device_attribute_uint32("Dev1", 0x1) == 0
    assert interpreter.get_device_attribute_bool("Dev1", 0x1) is False


def test_the_example_rig_config_runs_on_the_fake_driver(driver: FakeDriver) -> None:
    """config/rig.example.toml's DAQ tables, read by the rig's config loader, open and run."""
    from rig.config import _build

    path = REPO / "config" / "rig.example.toml"
    table = tomllib.loads(path.read_text())
    daq_table = dict(table["daq"])
    settings = _build(NiDaqSettings, daq_table.pop("nidaqmx"), "daq.nidaqmx", path)
    config = _build(DaqConfig, daq_table, "daq", path)
    trigger = _build(TriggerConfig, table["trigger"], "trigger", path)
    assert config.backend == "nidaqmx" and len(config.channels) == 6
    driver.external_pulses = PulseTrain(first_sample=7, period_samples=50.0, high_samples=25)
    daq = NiDaq(config, trigger, settings)
    daq.open()
    daq.start()
    blocks = read_blocks(daq, 5)
    daq.close()
    assert blocks[0].analog.shape == (config.block_samples, 6)
    np.testing.assert_array_equal(edges_of(blocks), np.arange(7, 5 * config.block_samples, 50))
