"""The NI-DAQmx backend: EMG and force on the AI sample clock, the master clock of the rig.

Three DAQmx tasks on one device:

- **analog input**: one voltage channel per ``daq.channels`` entry, continuous, on the device's
  own sample clock (optionally waiting for a hardware start trigger);
- **trigger line**: the camera trigger line recorded on a digital input line, or counted by a
  counter, clocked by ``/<device>/ai/SampleClock``, so sample *i* of the line is sample *i* of the
  analog input;
- **camera pulses** (``trigger.source = "daq_counter"`` only): a counter output pulse train on the
  device's timebase, started by :meth:`NiDaq.start_pulses` once the analog input is running, so
  pulse 0 lands on a recorded sample like every later pulse.

``nidaqmx`` is imported in this module only, when :meth:`NiDaq.open` runs. Without NI's driver
``open`` raises :class:`~acquisition.errors.HardwareUnavailable`; every driver error after that is a
:class:`~acquisition.errors.DeviceError` carrying NI's error code (-200279: buffer overrun).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from acquisition.daq.interface import Daq, DaqBlock
from acquisition.daq.nidaq_settings import NiDaqSettings
from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.settings import DaqChannelConfig, DaqConfig, TriggerConfig

ERROR_BUFFER_OVERRUN = -200279
ANALOG_TASK_NAME = "jumprig_analog_input"
TRIGGER_LINE_TASK_NAME = "jumprig_trigger_line"
PULSE_TASK_NAME = "jumprig_camera_pulses"
PULSE_CHANNEL_NAME = "camera_pulses"

DRIVER_MISSING = (
    "NI-DAQmx driver not found: the nidaqmx package is installed but NI's driver library is not. "
    "Install NI-DAQmx from ni.com (Windows, Ubuntu 22.04/24.04, RHEL, openSUSE), check the "
    "device in NI MAX or with `nidaqmxconfig --export`, or set daq.backend = 'sim' to run the "
    "digital twin"
)

_TERMINAL_CONFIGURATIONS = {
    "differential": "DIFF",
    "rse": "RSE",
    "nrse": "NRSE",
    "pseudo_differential": "PSEUDO_DIFF",
    "default": "DEFAULT",
}


class NiDaq(Daq):
    """An NI-DAQmx device (X Series: PCIe-6363, USB-6343, ...) as the rig's DAQ.

    Lifecycle: ``open`` (create, configure and commit the tasks), ``start`` (trigger line first,
    analog input last), ``read_block`` repeatedly, ``start_pulses``/``stop_pulses`` around the
    recording when the DAQ paces the cameras, ``stop``, ``close`` (idempotent).
    """

    def __init__(self, config: DaqConfig, trigger: TriggerConfig, settings: NiDaqSettings) -> None:
        check_nidaq_settings(config, trigger, settings)
        self._config = config
        self._trigger = trigger
        self._settings = settings
        self._n_channels = len(config.channels)
        # At least two blocks, so a block can be read while the next one is being acquired.
        self.buffer_samples = max(
            math.ceil(settings.buffer_seconds * config.rate_hz), 2 * config.block_samples
        )
        self._nidaqmx: Any = None
        self._analog_task: Any = None
        self._line_task: Any = None
        self._pulse_task: Any = None
        self._pulse_channel: Any = None
        self._analog_reader: Any = None
        self._line_reader: Any = None
        self._read_line: Callable[[], None] = self._read_line_unopened
        # Filled in place by every read; only the block handed out is a new array.
        self._analog_buffer = np.zeros((self._n_channels, config.block_samples), dtype=np.float64)
        line_dtype = np.uint32 if settings.trigger_line_mode == "counter_edges" else np.uint8
        self._line_buffer = np.zeros(config.block_samples, dtype=line_dtype)
        self._previous_edge_count = np.uint32(0)
        self._next_sample_index = 0
        self._running = False
        self._pulses_running = False
        self._pulse_rate_hz = trigger.rate_hz
        self._actual_rate_hz: float | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        if self._analog_task is not None:
            raise RuntimeError("NI-DAQmx tasks are already open")
        self._nidaqmx = _import_nidaqmx()
        try:
            with self._driver_errors("configuring the DAQ"):
                self._analog_task = self._new_task(ANALOG_TASK_NAME)
                self._configure_analog_input()
                self._line_task = self._new_task(TRIGGER_LINE_TASK_NAME)
                self._configure_trigger_line()
                if self._trigger.source == "daq_counter":
                    self._pulse_task = self._new_task(PULSE_TASK_NAME)
                    self._configure_camera_pulses()
                # Reserve the hardware and the routes now, so a wiring or routing conflict ends
                # the trial before any camera is armed rather than when the pulses start.
                commit = self._nidaqmx.constants.TaskMode.TASK_COMMIT
                for task in self._tasks():
                    task.control(commit)
        except BaseException:
            self._close_tasks(suppress_errors=True)
            raise

    def start(self) -> None:
        if self._analog_task is None:
            raise RuntimeError("start() before open()")
        if self._running:
            raise RuntimeError("the NI-DAQmx tasks are already running")
        self._next_sample_index = 0
        self._previous_edge_count = np.uint32(0)
        with self._driver_errors("starting the acquisition"):
            # The trigger line waits for the AI sample clock, so it must be armed before that
            # clock's first tick: started after it, it would miss the first samples.
            self._line_task.start()
            self._analog_task.start()
        self._running = True

    def read_block(self, timeout_s: float) -> DaqBlock | None:
        if not self._running:
            raise RuntimeError("read_block() before start()")
        if timeout_s < 0:
            raise ValueError(f"timeout_s must not be negative, got {timeout_s}")
        n_samples = self._config.block_samples
        deadline_ns = time.monotonic_ns() + round(timeout_s * 1e9)
        with self._driver_errors("reading samples"):
            # Wait for a whole block before reading: a DAQmx read that times out has already
            # consumed the samples it got, which would break the contiguity of the blocks.
            if not self._wait_for_samples(n_samples, deadline_ns):
                return None
            samples_read = self._analog_reader.read_many_sample(
                self._analog_buffer,
                number_of_samples_per_channel=n_samples,
                timeout=self._settings.read_timeout_s,
            )
            if samples_read != n_samples:
                raise DeviceError(f"NI-DAQmx returned {samples_read} of {n_samples} samples")
            self._read_line()
        t_host_ns = time.monotonic_ns()
        analog = np.ascontiguousarray(self._analog_buffer.T, dtype=np.float32)
        block = DaqBlock(
            first_sample_index=self._next_sample_index,
            analog=analog,
            trigger_line=self._line_levels(),
            t_host_ns=t_host_ns,
        )
        self._next_sample_index += n_samples
        return block

    def samples_due(self) -> int:
        """Samples the device has acquired that were not read yet (0 when not running)."""
        if not self._running:
            return 0
        with self._driver_errors("querying the input buffer"):
            return int(self._analog_task.in_stream.avail_samp_per_chan)

    def start_pulses(self, rate_hz: float) -> None:
        """Start the camera pulse train on the counter output (``trigger.source = "daq_counter"``).

        Called after :meth:`start`, so the trigger line records pulse 0.
        """
        if self._pulse_task is None:
            raise RuntimeError(
                "camera pulses come from the DAQ only with trigger.source = 'daq_counter'"
                if self._trigger.source != "daq_counter"
                else "start_pulses() before open()"
            )
        if not self._running:
            raise RuntimeError("start_pulses() before start(): pulse 0 would not be recorded")
        if self._pulses_running:
            raise RuntimeError("the camera pulse train is already running")
        if not 0 < rate_hz <= self._config.rate_hz / 2:
            raise ValueError(
                f"pulse rate {rate_hz} Hz cannot be recorded on a {self._config.rate_hz:g} Hz "
                "sample clock (at most half the sample rate)"
            )
        with self._driver_errors("starting the camera pulse train"):
            if rate_hz != self._pulse_rate_hz:
                self._pulse_channel.co_pulse_freq = rate_hz
                self._pulse_rate_hz = rate_hz
            self._pulse_task.start()
        self._pulses_running = True

    def stop_pulses(self) -> None:
        """Stop the camera pulse train; does nothing when it is not running."""
        if not self._pulses_running:
            return
        self._pulses_running = False
        with self._driver_errors("stopping the camera pulse train"):
            self._pulse_task.stop()

    def stop(self) -> None:
        """Stop the pulses, then the sample clock (analog input), then the trigger line."""
        stops: list[Callable[[], None]] = []
        if self._pulses_running:
            stops.append(self._pulse_task.stop)
        if self._running:
            stops += [self._analog_task.stop, self._line_task.stop]
        self._pulses_running = False
        self._running = False
        self._each_then_raise(stops, "stopping the acquisition")

    def close(self) -> None:
        """Stop and release every task; safe to call twice."""
        try:
            self.stop()
        finally:
            self._close_tasks(suppress_errors=False)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": "NI-DAQmx",
            "device": self._config.device,
            "rate_hz": self._actual_rate_hz or self._config.rate_hz,
            "channels": [channel.name for channel in self._config.channels],
            "buffer_samples": self.buffer_samples,
            "trigger_line_mode": self._settings.trigger_line_mode,
            "trigger_line": self._config.trigger_line.physical,
            "start_trigger_source": self._settings.start_trigger_source,
        }
        if self._trigger.source == "daq_counter":
            info["pulse_counter"] = self._settings.pulse_counter
            info["co_pulse_term"] = self._settings.co_pulse_term
        return info

    # --- configuration ---------------------------------------------------------------------------

    def _new_task(self, name: str) -> Any:
        errors = self._nidaqmx.errors
        try:
            return self._nidaqmx.Task(name)
        except (errors.DaqNotFoundError, errors.DaqNotSupportedError) as error:
            raise HardwareUnavailable(f"{DRIVER_MISSING} ({error})") from error

    def _configure_analog_input(self) -> None:
        constants = self._nidaqmx.constants
        task = self._analog_task
        for channel in self._config.channels:
            task.ai_channels.add_ai_voltage_chan(
                channel.physical,
                name_to_assign_to_channel=channel.name,
                terminal_config=self._terminal_configuration(channel),
                min_val=-channel.range_v,
                max_val=channel.range_v,
            )
        task.timing.cfg_samp_clk_timing(
            self._config.rate_hz,
            sample_mode=constants.AcquisitionType.CONTINUOUS,
            samps_per_chan=self.buffer_samples,
        )
        task.in_stream.input_buf_size = self.buffer_samples
        # DAQmx silently coerces the rate to its timebase divided by an integer; samples are
        # aligned to video by index, so a rate that is not the configured one must be an error.
        actual_rate_hz = float(task.timing.samp_clk_rate)
        if not math.isclose(actual_rate_hz, self._config.rate_hz, rel_tol=1e-9):
            raise ValueError(
                f"daq.rate_hz: {self._config.device} samples at {actual_rate_hz!r} Hz when asked "
                f"for {self._config.rate_hz!r} Hz; choose a rate its timebase divides exactly"
            )
        self._actual_rate_hz = actual_rate_hz
        if self._settings.start_trigger_source:
            edge = constants.Edge[self._settings.start_trigger_edge.upper()]
            task.triggers.start_trigger.cfg_dig_edge_start_trig(
                self._settings.start_trigger_source, trigger_edge=edge
            )
        self._analog_reader = self._nidaqmx.stream_readers.AnalogMultiChannelReader(task.in_stream)

    def _configure_trigger_line(self) -> None:
        constants = self._nidaqmx.constants
        readers = self._nidaqmx.stream_readers
        task = self._line_task
        line = self._config.trigger_line
        if self._settings.trigger_line_mode == "digital_input":
            task.di_channels.add_di_chan(
                line.physical,
                name_to_assign_to_lines=line.name,
                line_grouping=constants.LineGrouping.CHAN_PER_LINE,
            )
        else:
            channel = task.ci_channels.add_ci_count_edges_chan(
                self._settings.edge_counter,
                name_to_assign_to_channel=line.name,
                edge=constants.Edge.RISING,
                initial_count=0,
                count_direction=constants.CountDirection.COUNT_UP,
            )
            channel.ci_count_edges_term = line.physical
        task.timing.cfg_samp_clk_timing(
            self._config.rate_hz,
            source=self.sample_clock_terminal,
            sample_mode=constants.AcquisitionType.CONTINUOUS,
            samps_per_chan=self.buffer_samples,
        )
        task.in_stream.input_buf_size = self.buffer_samples
        if self._settings.trigger_line_mode == "digital_input":
            self._line_reader = readers.DigitalSingleChannelReader(task.in_stream)
            self._read_line = self._read_digital_line
        else:
            self._line_reader = readers.CounterReader(task.in_stream)
            self._read_line = self._read_edge_counts

    def _configure_camera_pulses(self) -> None:
        constants = self._nidaqmx.constants
        task = self._pulse_task
        self._pulse_channel = task.co_channels.add_co_pulse_chan_freq(
            self._settings.pulse_counter,
            name_to_assign_to_channel=PULSE_CHANNEL_NAME,
            idle_state=constants.Level.LOW,
            freq=self._trigger.rate_hz,
            duty_cycle=self._trigger.duty_cycle,
        )
        self._pulse_channel.co_pulse_term = self._settings.co_pulse_term
        task.timing.cfg_implicit_timing(sample_mode=constants.AcquisitionType.CONTINUOUS)

    def _terminal_configuration(self, channel: DaqChannelConfig) -> Any:
        by_kind = {
            "emg": self._settings.emg_terminal_config,
            "force": self._settings.force_terminal_config,
            "other": self._settings.other_terminal_config,
        }
        name = _TERMINAL_CONFIGURATIONS[by_kind[channel.kind]]
        return self._nidaqmx.constants.TerminalConfiguration[name]

    @property
    def sample_clock_terminal(self) -> str:
        """The AI sample clock as a terminal that other tasks on the device can be clocked by."""
        return f"/{self._config.device}/ai/SampleClock"

    # --- reading ---------------------------------------------------------------------------------

    def _wait_for_samples(self, n_samples: int, deadline_ns: int) -> bool:
        in_stream = self._analog_task.in_stream
        while True:
            available = int(in_stream.avail_samp_per_chan)
            if available >= n_samples:
                return True
            remaining_s = (deadline_ns - time.monotonic_ns()) * 1e-9
            if remaining_s <= 0:
                return False
            # Sleep about until the missing samples are due, never past the deadline.
            time.sleep(min(remaining_s, (n_samples - available) / self._config.rate_hz))

    def _read_line_unopened(self) -> None:
        raise RuntimeError("read before open()")

    def _read_digital_line(self) -> None:
        self._line_reader.read_many_sample_port_byte(
            self._line_buffer,
            number_of_samples_per_channel=self._config.block_samples,
            timeout=self._settings.read_timeout_s,
        )

    def _read_edge_counts(self) -> None:
        self._line_reader.read_many_sample_uint32(
            self._line_buffer,
            number_of_samples_per_channel=self._config.block_samples,
            timeout=self._settings.read_timeout_s,
        )

    def _line_levels(self) -> np.ndarray:
        """(block_samples,) uint8 0/1 levels of the trigger line for the block just read.

        A digital line comes back at its bit position in the port (line 3 reads 8), hence
        ``!= 0``. Edge counts become a line that is high for one sample at each counted edge.
        """
        if self._settings.trigger_line_mode == "digital_input":
            return (self._line_buffer != 0).view(np.uint8)
        # uint32 differences wrap like the counter does after 2**32 edges.
        increments = np.diff(self._line_buffer, prepend=self._previous_edge_count)
        self._previous_edge_count = self._line_buffer[-1]
        return (increments != 0).view(np.uint8)

    # --- errors and cleanup ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _driver_errors(self, action: str) -> Iterator[None]:
        """Turn nidaqmx's errors into the rig's, keeping NI's error code."""
        errors = self._nidaqmx.errors
        try:
            yield
        except (errors.DaqNotFoundError, errors.DaqNotSupportedError) as error:
            raise HardwareUnavailable(f"{DRIVER_MISSING} ({error})") from error
        except errors.DaqError as error:
            raise DeviceError(describe_daq_error(error, action), code=error.error_code) from error

    def _tasks(self) -> list[Any]:
        tasks = [self._analog_task, self._line_task, self._pulse_task]
        return [task for task in tasks if task is not None]

    def _close_tasks(self, suppress_errors: bool) -> None:
        # The pulses go first, so the cameras get no pulse the DAQ does not record.
        tasks = [self._pulse_task, self._analog_task, self._line_task]
        self._analog_task = self._line_task = self._pulse_task = None
        self._pulse_channel = self._analog_reader = self._line_reader = None
        self._running = self._pulses_running = False
        closes = [task.close for task in tasks if task is not None]
        if suppress_errors:
            for close in closes:
                with contextlib.suppress(Exception):
                    close()
            return
        self._each_then_raise(closes, "closing the tasks")

    def _each_then_raise(self, actions: list[Callable[[], None]], what: str) -> None:
        """Run every action even when one fails, then raise the first failure."""
        first_error: BaseException | None = None
        for action in actions:
            try:
                with self._driver_errors(what):
                    action()
            except Exception as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error


def check_nidaq_settings(
    config: DaqConfig, trigger: TriggerConfig, settings: NiDaqSettings
) -> None:
    """Raise ValueError, naming the config key, for settings the NI backend cannot run with."""
    if not config.channels:
        raise ValueError("daq.channels: at least one analog channel is required")
    for i, channel in enumerate(config.channels):
        if not channel.physical:
            raise ValueError(
                f"daq.channels[{i}].physical: required for the nidaqmx backend "
                f"(channel {channel.name!r}, e.g. '{config.device}/ai{i}')"
            )
    if not config.trigger_line.physical:
        example = (
            f"'{config.device}/port0/line0'"
            if settings.trigger_line_mode == "digital_input"
            else f"'/{config.device}/PFI8'"
        )
        raise ValueError(f"daq.trigger_line.physical: required for the nidaqmx backend ({example})")
    if settings.trigger_line_mode == "counter_edges":
        if not settings.edge_counter:
            raise ValueError(
                "daq.nidaqmx.edge_counter: required for trigger_line_mode 'counter_edges'"
            )
        if trigger.source == "daq_counter" and settings.edge_counter == settings.pulse_counter:
            raise ValueError(
                "daq.nidaqmx.edge_counter: must differ from pulse_counter "
                f"({settings.pulse_counter!r} generates the camera pulses)"
            )
    if trigger.source == "daq_counter":
        if not settings.pulse_counter:
            raise ValueError("daq.nidaqmx.pulse_counter: required for trigger.source 'daq_counter'")
        if not settings.co_pulse_term:
            raise ValueError("daq.nidaqmx.co_pulse_term: required for trigger.source 'daq_counter'")
    if trigger.rate_hz > config.rate_hz / 2:
        raise ValueError(
            f"trigger.rate_hz: {trigger.rate_hz} Hz cannot be recorded on a "
            f"{config.rate_hz:g} Hz sample clock (at most half the sample rate)"
        )


def describe_daq_error(error: Any, action: str) -> str:
    """A one-paragraph message for a DaqError: NI's code, what failed and, where known, why."""
    code = error.error_code
    first_line = next((line for line in str(error).splitlines() if line.strip()), "")
    message = f"NI-DAQmx error {code} while {action}: {first_line}"
    if code == ERROR_BUFFER_OVERRUN:
        message += (
            " [buffer overrun: the driver's input buffer filled before the DAQ process read it, "
            "so samples were lost; raise daq.nidaqmx.buffer_seconds or daq.block_samples, or "
            "find what stalls the DAQ process]"
        )
    return message


def _import_nidaqmx() -> Any:
    try:
        import nidaqmx
        import nidaqmx.constants
        import nidaqmx.errors
        import nidaqmx.stream_readers
        import nidaqmx.system
    except ImportError as error:
        raise HardwareUnavailable(
            f"the nidaqmx Python package cannot be imported ({error}); install the project's "
            "pinned dependencies, or set daq.backend = 'sim'"
        ) from error
    return nidaqmx


def list_devices() -> list[dict[str, str]]:
    """The NI devices the driver sees: name, product type, serial number.

    Raises HardwareUnavailable when the NI-DAQmx driver is not installed.
    """
    nidaqmx = _import_nidaqmx()
    try:
        system = nidaqmx.system.System.local()
        devices = list(system.devices)
    except (nidaqmx.errors.DaqNotFoundError, nidaqmx.errors.DaqNotSupportedError) as error:
        raise HardwareUnavailable(
            "NI-DAQmx driver not found: install NI-DAQmx (docs/daq.md) or set daq.backend = 'sim' "
            f"({error})"
        ) from None
    return [
        {
            "name": str(device.name),
            "product_type": str(device.product_type),
            "serial_number": f"{device.serial_num:X}" if device.serial_num else "",
        }
        for device in devices
    ]
