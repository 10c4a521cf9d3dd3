"""The digital twin's DAQ: EMG and platform forces of the jumping mouse on a real-time sample clock.

Its sample clock is the twin's master clock. Camera trigger pulses come from
:class:`~acquisition.daq.pulses.SampleClockPulses` on the same clock, started either by the
DAQ process (``trigger.source = "daq_counter"``: the counter output) or by the twin trigger box's
firmware emulator (``"triggerbox"``), and are recorded on the trigger line like on the real rig.
"""

from __future__ import annotations

import time
from typing import Any

from acquisition.daq.interface import Daq, DaqBlock
from acquisition.daq.nidaq import ERROR_BUFFER_OVERRUN, describe_daq_error
from acquisition.daq.pulses import SampleClockPulses
from acquisition.errors import DeviceError
from acquisition.settings import DaqConfig, SimConfig, TriggerConfig
from acquisition.sim.signals import AnalogTwin
from acquisition.sim.skeleton import JumpModel

# What NI-DAQmx says on a buffer overrun (error -200279), so the twin's failure reads like one.
NI_OVERRUN_TEXT = (
    "The application is not able to keep up with the hardware acquisition. Increasing the buffer "
    "size, reading the data more frequently, or specifying a fixed number of samples to read "
    "instead of reading all available samples might correct the problem."
)


class _TwinDaqError(Exception):
    """Stands in for ``nidaqmx.errors.DaqError`` (a message and NI's ``error_code``)."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class SimulatedDaq(Daq):
    def __init__(self, config: DaqConfig, trigger: TriggerConfig, sim: SimConfig) -> None:
        self._config = config
        self.pulses = SampleClockPulses(
            config.rate_hz, trigger.duty_cycle, sample_clock=self._clock_sample
        )
        self._analog = AnalogTwin(
            JumpModel(sim.jump),
            [(channel.name, channel.kind) for channel in config.channels],
            config.rate_hz,
            sim.seed,
        )
        self._block_ns = config.block_samples * 1e9 / config.rate_hz
        self._start_ns: int | None = None
        self._next_sample = 0
        # Fault knob: the first sample the input buffer loses (None: it never overruns).
        overrun_after_s = sim.faults.daq_overrun_after_s
        self._overrun_sample = round(overrun_after_s * config.rate_hz) if overrun_after_s else None

    def open(self) -> None:
        pass

    def start(self) -> None:
        if self._start_ns is not None:
            raise RuntimeError("simulated DAQ already started")
        self._start_ns = time.monotonic_ns()

    def read_block(self, timeout_s: float) -> DaqBlock | None:
        if self._start_ns is None:
            raise RuntimeError("read_block() before start()")
        n = self._config.block_samples
        # A block is ready once the sample clock has produced its last sample (real time).
        ready_ns = self._start_ns + round((self._next_sample + n) * 1e9 / self._config.rate_hz)
        wait_s = (ready_ns - time.monotonic_ns()) * 1e-9
        if wait_s > timeout_s:
            time.sleep(timeout_s)
            return None
        if wait_s > 0:
            time.sleep(wait_s)
        first = self._next_sample
        if self._overrun_sample is not None and first + n > self._overrun_sample:
            # Like NI-DAQmx: every sample before the overrun was read; this read fails.
            error = _TwinDaqError(NI_OVERRUN_TEXT, ERROR_BUFFER_OVERRUN)
            raise DeviceError(describe_daq_error(error, "reading samples"), code=error.error_code)
        trigger_line = self.pulses.levels(first, n)
        analog = self._analog.samples(first, n, self.pulses.first_pulse_sample)
        self._next_sample += n
        return DaqBlock(
            first_sample_index=first,
            analog=analog,
            trigger_line=trigger_line,
            t_host_ns=time.monotonic_ns(),
        )

    def _clock_sample(self) -> int:
        """The sample the clock is at now (0 before start)."""
        if self._start_ns is None:
            return 0
        return int((time.monotonic_ns() - self._start_ns) * self._config.rate_hz / 1e9)

    def start_pulses(self, rate_hz: float) -> None:
        self.pulses.start(rate_hz)

    def stop_pulses(self) -> None:
        self.pulses.stop()

    def samples_due(self) -> int:
        """How many samples the clock has produced that were not read yet."""
        return self._clock_sample() - self._next_sample if self._start_ns is not None else 0

    def stop(self) -> None:
        self.pulses.stop()

    def close(self) -> None:
        self._start_ns = None

    def info(self) -> dict[str, Any]:
        return {
            "model": "jumprig twin DAQ",
            "rate_hz": self._config.rate_hz,
            "channels": [channel.name for channel in self._config.channels],
        }
