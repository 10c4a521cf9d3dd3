"""A pulse train on the DAQ's sample clock: a counter output, or the twin trigger box's crystal."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np


class SampleClockPulses:
    """Camera trigger pulses placed exactly on samples: pulse k starts at sample
    ``s0 + round(k * daq_rate_hz / rate_hz)``; high for ``duty_cycle`` of the period (at least
    one sample).

    ``start`` and ``stop`` take effect at the sample the clock is at when they are called
    (``sample_clock()``), never before a sample already produced; without a ``sample_clock``, at
    the next block produced. So a DAQ that produces its blocks late (a loaded machine) still gets
    the pulses that a real box would have sent between start and stop.

    ``start``, ``stop`` and ``count`` may be called from another thread (the trigger box
    emulator's); :meth:`levels` is called by the DAQ as it produces each block of samples.
    """

    def __init__(
        self,
        daq_rate_hz: float,
        duty_cycle: float = 0.5,
        sample_clock: Callable[[], int] | None = None,
    ) -> None:
        if daq_rate_hz <= 0:
            raise ValueError(f"daq_rate_hz must be positive, got {daq_rate_hz}")
        self.daq_rate_hz = daq_rate_hz
        self.duty_cycle = duty_cycle
        self._sample_clock = sample_clock
        self._lock = threading.Lock()
        self._produced = 0  # samples already produced by levels()
        self._rate_hz = 0.0
        self._first_pulse_sample: int | None = None
        self._stop_sample: int | None = None

    def start(self, rate_hz: float) -> None:
        if not 0 < rate_hz <= self.daq_rate_hz / 2:
            raise ValueError(
                f"pulse rate {rate_hz} Hz impossible on a {self.daq_rate_hz} Hz sample clock"
            )
        with self._lock:
            if self._first_pulse_sample is not None:
                raise RuntimeError("pulse train already started; make a new one per trial")
            self._rate_hz = rate_hz
            self._first_pulse_sample = self._now()

    def stop(self) -> None:
        with self._lock:
            if self._first_pulse_sample is not None and self._stop_sample is None:
                self._stop_sample = max(self._now(), self._first_pulse_sample)

    def count(self) -> int:
        """Pulses sent so far; after :meth:`stop`, every pulse the train sent."""
        with self._lock:
            if self._first_pulse_sample is None:
                return 0
            end = self._produced if self._stop_sample is None else self._stop_sample
            return self._pulses_before(end)

    @property
    def first_pulse_sample(self) -> int | None:
        """Sample index of pulse 0, once the train has started."""
        with self._lock:
            return self._first_pulse_sample

    def levels(self, first_sample_index: int, n_samples: int) -> np.ndarray:
        """(n_samples,) uint8 levels of the pulse line for this block of samples."""
        line = np.zeros(n_samples, dtype=np.uint8)
        with self._lock:
            self._produced = max(self._produced, first_sample_index + n_samples)
            s0 = self._first_pulse_sample
            if s0 is None:
                return line
            period = self.daq_rate_hz / self._rate_hz
            high_samples = max(1, round(self.duty_cycle * period))
            end = first_sample_index + n_samples
            if self._stop_sample is not None:
                end = min(end, self._stop_sample)
            # Pulses that start in this block, and the one before it that may still be high.
            k_first = max(0, math.floor((first_sample_index - s0) / period) - 1)
            for k in range(k_first, self._pulses_before(end)):
                start = s0 + round(k * period)
                lo = max(start, first_sample_index) - first_sample_index
                hi = min(start + high_samples, first_sample_index + n_samples) - first_sample_index
                if hi > lo:
                    line[lo:hi] = 1
            return line

    def _pulses_before(self, sample: int) -> int:
        """How many pulses start before ``sample`` (caller holds the lock; train started)."""
        s0 = self._first_pulse_sample
        if s0 is None or sample <= s0:
            return 0
        period = self.daq_rate_hz / self._rate_hz
        k = math.ceil((sample - s0) / period)
        # round() may move a pulse across the boundary: settle it exactly.
        while k > 0 and s0 + round((k - 1) * period) >= sample:
            k -= 1
        while s0 + round(k * period) < sample:
            k += 1
        return k

    def _now(self) -> int:
        """The sample a start or stop takes effect at (caller holds the lock)."""
        clock = self._sample_clock() if self._sample_clock is not None else 0
        return max(clock, self._produced)
