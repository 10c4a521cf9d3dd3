"""A fake NI-DAQmx driver layer under nidaqmx's real Python API.

nidaqmx reaches NI's C library through an interpreter, a subclass of
``nidaqmx._base_interpreter.BaseInterpreter`` with one abstract method per DAQmx function (~380).
``nidaqmx.utils._select_interpreter`` builds ``nidaqmx._library_interpreter.LibraryInterpreter()``
for every task; :func:`install_fake_driver` replaces that class with one made here, so ``Task``,
the channel collections, timing, triggers, ``in_stream`` and the stream readers all run unchanged.

Every abstract method is filled generically: it records ``(name, args)`` and answers a plausible
default. The few the rig's backend reaches are implemented for real: tasks, channels, timing,
start/stop/clear, and reads that fill the caller's buffer with deterministic samples (see
:func:`analog_value`) and a trigger line carrying a pulse train whose period follows the counter
output's configured frequency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from nidaqmx import _library_interpreter
from nidaqmx._base_interpreter import BaseInterpreter
from nidaqmx.errors import DaqError, DaqReadError

# DAQmx attribute ids that the backend's calls reach (from nidaqmx's own property code).
ATTR_TASK_NAME = 0x1276
ATTR_AVAIL_SAMP_PER_CHAN = 0x1223
ATTR_NUM_CHANS = 0x217B
ATTR_DI_NUM_BOOLEANS_PER_CHAN = 0x217C
ATTR_INPUT_BUF_SIZE = 0x186C
ATTR_SAMP_CLK_RATE = 0x1344
ATTR_CO_PULSE_FREQ = 0x1178
ERROR_TIMEOUT = -200284
ERROR_NOT_RUNNING = -200473
ERROR_DUPLICATE_TASK = -200089
ERROR_MIXED_CHANNEL_TYPES = -200559
GROUP_BY_CHANNEL = 0

# Calls nidaqmx makes on its own after creating a task or a channel (its name, the channel's
# name); they say nothing about the backend's configuration.
NIDAQMX_BOOKKEEPING = frozenset({"get_task_attribute_string", "internal_get_last_created_chan"})


def analog_value(channel_index: int, sample_index: np.ndarray) -> np.ndarray:
    """The fake device's analog samples: exact in float32 for the sample counts tests use."""
    return channel_index * 100_000.0 + sample_index.astype(np.float64)


@dataclass
class PulseTrain:
    """Pulse k starts on sample ``first_sample + round(k * period_samples)`` and is high for
    ``high_samples``; pulses that would start at or after ``stop_sample`` never come."""

    first_sample: int
    period_samples: float
    high_samples: int
    stop_sample: int | None = None

    def starts(self, until_sample: int) -> np.ndarray:
        """(P,) int64 start samples of the pulses that start before ``until_sample``."""
        end = until_sample if self.stop_sample is None else min(until_sample, self.stop_sample)
        count = max(0, int(np.ceil((end - self.first_sample) / self.period_samples)) + 1)
        starts = self.first_sample + np.round(np.arange(count) * self.period_samples)
        return starts.astype(np.int64)[starts < end]

    def levels(self, samples: np.ndarray) -> np.ndarray:
        """(n,) uint8 levels of the line at the given sample indices."""
        starts = self.starts(int(samples.max()) + 1)
        if starts.size == 0:
            return np.zeros(samples.size, dtype=np.uint8)
        pulse = np.searchsorted(starts, samples, side="right") - 1
        since_start = samples - starts[np.maximum(pulse, 0)]
        return ((pulse >= 0) & (since_start < self.high_samples)).astype(np.uint8)

    def counts(self, samples: np.ndarray) -> np.ndarray:
        """(n,) uint32 rising edges counted up to and including each sample."""
        starts = self.starts(int(samples.max()) + 1)
        return np.searchsorted(starts, samples, side="right").astype(np.uint32)


@dataclass
class FakeTask:
    name: str
    kind: str = ""  # "ai", "di", "ci" or "co", set by its first channel
    channels: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rate_hz: float = 0.0
    clock_source: str = ""
    buffer_samples: int = 0
    co_freq_hz: float = 0.0
    co_duty_cycle: float = 0.5
    started: bool = False
    # The device sample this task's sample 0 is: a follower started after the AI task missed
    # the samples the AI took meanwhile.
    sample_offset: int = 0
    read_position: int = 0


class FakeDriver:
    """What the fake driver knows; shared by every interpreter nidaqmx creates while installed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.tasks: dict[str, FakeTask] = {}
        # Samples the device has acquired since the AI task started; None: always a block ahead.
        self.acquired_samples_limit: int | None = None
        # The next analog read raises a DaqReadError with this code (e.g. -200279, overrun).
        self.next_read_error_code: int | None = None
        # A trigger box's pulses, present on the line whatever the DAQ does.
        self.external_pulses: PulseTrain | None = None
        # The counter output's pulses; its first pulse comes this many samples after the AI
        # sample that was current when the pulse task started.
        self.counter_pulses: PulseTrain | None = None
        self.pulse_start_delay_samples = 3
        # Samples the AI has taken when a late follower starts.
        self.late_follower_offset_samples = 17
        self.last_created_channel = ""
        # Every array the caller handed to a read, per task (kept alive, so identity means reuse).
        self.read_arrays: dict[str, list[np.ndarray]] = {}
        # Driver functions that fail when called: name -> DAQmx error code.
        self.failing_calls: dict[str, int] = {}

    def configuration_calls(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every call except nidaqmx's own bookkeeping queries."""
        return [call for call in self.calls if call[0] not in NIDAQMX_BOOKKEEPING]

    def task(self, kind: str) -> FakeTask:
        """The one live task of ``kind``."""
        matching = [task for task in self.tasks.values() if task.kind == kind]
        if len(matching) != 1:
            raise LookupError(f"{len(matching)} tasks of kind {kind!r}")
        return matching[0]

    def analog_task(self) -> FakeTask | None:
        return next((task for task in self.tasks.values() if task.kind == "ai"), None)

    def pulses(self) -> PulseTrain | None:
        return self.counter_pulses or self.external_pulses


def _error(message: str, code: int, task: str = "") -> DaqError:
    return DaqError(message, code, task_name=task)


class _FakeInterpreterBase(BaseInterpreter):
    """The methods the backend reaches, implemented; the rest are filled by :func:`_generic`."""

    driver: FakeDriver

    def _record(self, name: str, *args: Any) -> None:
        self.driver.calls.append((name, args))
        code = self.driver.failing_calls.get(name)
        if code is not None:
            raise _error(f"{name} failed (fake driver)", code)

    def _task(self, handle: str) -> FakeTask:
        try:
            return self.driver.tasks[handle]
        except KeyError:
            raise _error(f"task {handle!r} does not exist", -200088) from None

    def _add_channel(self, handle: str, kind: str, name: str) -> None:
        task = self._task(handle)
        if task.kind and task.kind != kind:
            raise _error(
                f"cannot add a {kind} channel to a {task.kind} task", ERROR_MIXED_CHANNEL_TYPES
            )
        task.kind = kind
        task.channels.append(name)
        self.driver.last_created_channel = name

    # --- tasks and channels ----------------------------------------------------------------------

    def create_task(self, session_name: str) -> tuple[str, bool]:
        self._record("create_task", session_name)
        if session_name in self.driver.tasks:
            raise _error(f"a task named {session_name!r} exists", ERROR_DUPLICATE_TASK)
        self.driver.tasks[session_name] = FakeTask(session_name)
        return session_name, True

    def get_task_attribute_string(self, task: str, attribute: int) -> str:
        self._record("get_task_attribute_string", task, attribute)
        return task if attribute == ATTR_TASK_NAME else ""

    def internal_get_last_created_chan(self) -> str:
        self._record("internal_get_last_created_chan")
        return self.driver.last_created_channel

    def create_ai_voltage_chan(
        self, task: str, physical_channel: str, name: str, *args: Any
    ) -> None:
        self._record("create_ai_voltage_chan", task, physical_channel, name, *args)
        self._add_channel(task, "ai", name or physical_channel)

    def create_di_chan(self, task: str, lines: str, name: str, line_grouping: int) -> None:
        self._record("create_di_chan", task, lines, name, line_grouping)
        self._add_channel(task, "di", name or lines)
        self._task(task).lines.append(lines)

    def create_ci_count_edges_chan(self, task: str, counter: str, name: str, *args: Any) -> None:
        self._record("create_ci_count_edges_chan", task, counter, name, *args)
        self._add_channel(task, "ci", name or counter)

    def create_co_pulse_chan_freq(
        self,
        task: str,
        counter: str,
        name: str,
        units: int,
        idle_state: int,
        initial_delay: float,
        freq: float,
        duty_cycle: float,
    ) -> None:
        self._record(
            "create_co_pulse_chan_freq",
            task, counter, name, units, idle_state, initial_delay, freq, duty_cycle,
        )  # fmt: skip
        self._add_channel(task, "co", name or counter)
        self._task(task).co_freq_hz = freq
        self._task(task).co_duty_cycle = duty_cycle

    def set_chan_attribute_double(
        self, task: str, channel: str, attribute: int, value: float
    ) -> None:
        self._record("set_chan_attribute_double", task, channel, attribute, value)
        if attribute == ATTR_CO_PULSE_FREQ:
            self._task(task).co_freq_hz = value

    # --- timing and buffers ----------------------------------------------------------------------

    def cfg_samp_clk_timing(
        self,
        task: str,
        rate: float,
        source: str,
        active_edge: int,
        sample_mode: int,
        samps_per_chan: int,
    ) -> None:
        self._record(
            "cfg_samp_clk_timing", task, rate, source, active_edge, sample_mode, samps_per_chan
        )
        self._task(task).rate_hz = rate
        self._task(task).clock_source = source

    def get_timing_attribute_double(self, task: str, attribute: int) -> float:
        self._record("get_timing_attribute_double", task, attribute)
        return self._task(task).rate_hz if attribute == ATTR_SAMP_CLK_RATE else 0.0

    def set_buffer_attribute_uint32(self, task: str, attribute: int, value: int) -> None:
        self._record("set_buffer_attribute_uint32", task, attribute, value)
        if attribute == ATTR_INPUT_BUF_SIZE:
            self._task(task).buffer_samples = value

    def get_read_attribute_uint32(self, task: str, attribute: int) -> int:
        self._record("get_read_attribute_uint32", task, attribute)
        fake_task = self._task(task)
        if attribute == ATTR_NUM_CHANS:
            return len(fake_task.channels)
        if attribute == ATTR_DI_NUM_BOOLEANS_PER_CHAN:
            return 1
        if attribute == ATTR_AVAIL_SAMP_PER_CHAN:
            return self._available(fake_task)
        return 0

    def _acquired(self, task: FakeTask) -> int:
        """Samples of ``task`` the device has acquired (in the task's own sample numbering)."""
        if not task.started:
            return 0
        limit = self.driver.acquired_samples_limit
        if limit is None:
            return task.read_position + max(task.buffer_samples, 1)
        return max(0, limit - task.sample_offset)

    def _available(self, task: FakeTask) -> int:
        return max(0, self._acquired(task) - task.read_position)

    # --- running ---------------------------------------------------------------------------------

    def task_control(self, task: str, action: int) -> None:
        self._record("task_control", task, action)
        self._task(task)

    def start_task(self, task: str) -> None:
        self._record("start_task", task)
        fake_task = self._task(task)
        analog = self.driver.analog_task()
        if fake_task.kind in ("di", "ci") and analog is not None and analog.started:
            fake_task.sample_offset = self.driver.late_follower_offset_samples
        if fake_task.kind == "co":
            if analog is None or not analog.started:
                raise _error("the fake device pulses only while its AI clock runs", -200000)
            period = analog.rate_hz / fake_task.co_freq_hz
            self.driver.counter_pulses = PulseTrain(
                first_sample=analog.read_position + self.driver.pulse_start_delay_samples,
                period_samples=period,
                high_samples=max(1, round(fake_task.co_duty_cycle * period)),
            )
        fake_task.started = True

    def stop_task(self, task: str) -> None:
        self._record("stop_task", task)
        fake_task = self._task(task)
        fake_task.started = False
        analog = self.driver.analog_task()
        if fake_task.kind == "co" and self.driver.counter_pulses is not None and analog is not None:
            self.driver.counter_pulses.stop_sample = analog.read_position

    def clear_task(self, task: str) -> None:
        self._record("clear_task", task)
        self._task(task)
        del self.driver.tasks[task]

    # --- reading ---------------------------------------------------------------------------------

    def _samples_to_read(
        self, handle: str, kind: str, n_samples: int, fill_mode: int
    ) -> np.ndarray:
        """(n,) int64 device sample indices of the next read; advances the read position."""
        task = self._task(handle)
        if task.kind != kind:
            raise _error(f"{kind} read on a {task.kind} task", -200525, handle)
        if not task.started:
            # The real driver would start the task implicitly: a backend bug the fake refuses.
            raise _error("read from a task that was not started", ERROR_NOT_RUNNING, handle)
        if fill_mode != GROUP_BY_CHANNEL:
            raise _error("the fake driver fills by channel only", -200000, handle)
        available = self._available(task)
        if available < n_samples:
            # Like DAQmx: the samples that came before the timeout are consumed.
            task.read_position += available
            raise DaqReadError(
                "Wait Until Done did not indicate all samples", ERROR_TIMEOUT, available
            )
        first = task.read_position
        task.read_position += n_samples
        return np.arange(first, first + n_samples, dtype=np.int64) + task.sample_offset

    def read_analog_f64(
        self,
        task: str,
        num_samps_per_chan: int,
        timeout: float,
        fill_mode: int,
        read_array: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        self._record(
            "read_analog_f64", task, num_samps_per_chan, timeout, fill_mode, read_array.shape
        )
        self.driver.read_arrays.setdefault(task, []).append(read_array)
        code = self.driver.next_read_error_code
        if code is not None:
            self.driver.next_read_error_code = None
            raise DaqReadError(
                "The application is not able to keep up with the hardware acquisition.\n"
                "Increasing the buffer size, reading the data more frequently, or specifying a "
                "fixed number of samples to read instead of reading all available samples might "
                "correct the problem.",
                code,
                0,
            )
        samples = self._samples_to_read(task, "ai", num_samps_per_chan, fill_mode)
        for channel_index in range(read_array.shape[0]):
            read_array[channel_index, :] = analog_value(channel_index, samples)
        return read_array, num_samps_per_chan

    def read_digital_u8(
        self,
        task: str,
        num_samps_per_chan: int,
        timeout: float,
        fill_mode: int,
        read_array: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        self._record(
            "read_digital_u8", task, num_samps_per_chan, timeout, fill_mode, read_array.shape
        )
        self.driver.read_arrays.setdefault(task, []).append(read_array)
        samples = self._samples_to_read(task, "di", num_samps_per_chan, fill_mode)
        # A line reads back at its bit position in the port, as DAQmx does (line3 -> 8).
        match = re.search(r"line(\d+)$", self._task(task).lines[0])
        bit = int(match.group(1)) if match else 0
        pulses = self.driver.pulses()
        levels = pulses.levels(samples) if pulses else np.zeros(samples.size, np.uint8)
        read_array[:] = levels << bit
        return read_array, num_samps_per_chan

    def read_counter_u32_ex(
        self,
        task: str,
        num_samps_per_chan: int,
        timeout: float,
        fill_mode: int,
        read_array: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        self._record(
            "read_counter_u32_ex", task, num_samps_per_chan, timeout, fill_mode, read_array.shape
        )
        self.driver.read_arrays.setdefault(task, []).append(read_array)
        samples = self._samples_to_read(task, "ci", num_samps_per_chan, fill_mode)
        pulses = self.driver.pulses()
        read_array[:] = pulses.counts(samples) if pulses else 0
        return read_array, num_samps_per_chan

    # --- the rest --------------------------------------------------------------------------------

    def hash_task_handle(self, task_handle: str) -> int:
        return hash(task_handle)

    @property
    def driver_version(self) -> tuple[int, int, int]:
        return (24, 5, 0)


def _generic(name: str) -> Any:
    """A stand-in for one DAQmx function: records the call, answers a plausible default."""

    def method(self: _FakeInterpreterBase, *args: Any) -> Any:
        self._record(name, *args)
        if name.startswith("get_"):
            if "string" in name:
                return ""
            if "bool" in name:
                return False
            if "double" in name or "f64" in name:
                return 0.0
            if re.search(r"u?int\d+$", name):
                return 0
        return None

    method.__name__ = name
    return method


def make_fake_interpreter_class(driver: FakeDriver) -> type[BaseInterpreter]:
    """A concrete BaseInterpreter bound to ``driver``: every abstract method has a body."""
    namespace: dict[str, Any] = {"driver": driver}
    for name in sorted(BaseInterpreter.__abstractmethods__):
        if name not in vars(_FakeInterpreterBase):
            namespace[name] = _generic(name)
    cls = type("FakeInterpreter", (_FakeInterpreterBase,), namespace)
    if cls.__abstractmethods__:  # type: ignore[attr-defined]
        raise TypeError(f"methods left abstract: {sorted(cls.__abstractmethods__)}")  # type: ignore[attr-defined]
    return cls


def install_fake_driver(monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    """Make every nidaqmx task created from now on (in this test) talk to a new fake driver."""
    driver = FakeDriver()
    monkeypatch.setattr(
        _library_interpreter, "LibraryInterpreter", make_fake_interpreter_class(driver)
    )
    return driver
