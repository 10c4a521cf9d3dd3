"""A pulse train on the DAQ's sample clock: a counter output, or the twin trigger box's crystal."""

from __future__ import annotations

import math
import threading

import numpy as np


class SampleClockPulses:
    """Camera trigger pulses placed exactly on samples: pulse k starts at sample
    ``s0 + round(k * daq_rate_hz / rate_hz)``, where ``s0`` is the first sample generated after
    :meth:`start`. High for ``duty_cycle`` of the period (at least one sample).

    ``start``, ``stop`` and ``count`` may be called from another thread (the trigger box
    emulator's); :meth:`levels` is called by the DAQ as it produces each block of samples.
    """

    def __init__(self, daq_rate_hz: float, duty_cycle: float = 0.5) -> None:
        if daq_rate_hz <= 0:
            raise ValueError(f"daq_rate_hz must be positive, got {daq_rate_hz}")
        self.daq_rate_hz = daq_rate_hz
        self.duty_cycle = duty_cycle
        self._lock = threading.Lock()
        self._requested_rate_hz: float | None = None
        self._stop_requested = False
        self._rate_hz = 0.0
        self._first_pulse_sample: int | None = None
        self._running = False
        self._count = 0

    def start(self, rate_hz: float) -> None:
        if not 0 < rate_hz <= self.daq_rate_hz / 2:
            raise ValueError(
                f"pulse rate {rate_hz} Hz impossible on a {self.daq_rate_hz} Hz sample clock"
            )
        with self._lock:
            if self._running or self._requested_rate_hz is not None:
                raise RuntimeError("pulse train already started")
            if self._first_pulse_sample is not None:
                raise RuntimeError("pulse train already ran; make a new one per trial")
            self._requested_rate_hz = rate_hz

    def stop(self) -> None:
        with self._lock:
            self._requested_rate_hz = None
            self._stop_requested = True

    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def first_pulse_sample(self) -> int | None:
        """Sample index of pulse 0, once the train has started."""
        with self._lock:
            return self._first_pulse_sample

    def levels(self, first_sample_index: int, n_samples: int) -> np.ndarray:
        """(n_samples,) uint8 levels of the pulse line for this block; counts the pulses in it."""
        line = np.zeros(n_samples, dtype=np.uint8)
        with self._lock:
            if self._stop_requested:
                self._running = False
                self._stop_requested = False
            if self._requested_rate_hz is not None:
                self._rate_hz = self._requested_rate_hz
                self._requested_rate_hz = None
                self._first_pulse_sample = first_sample_index
                self._running = True
            if not self._running or self._first_pulse_sample is None:
                return line
            period = self.daq_rate_hz / self._rate_hz
            high_samples = max(1, round(self.duty_cycle * period))
            s0 = self._first_pulse_sample
            # Pulses that start in this block, and the one before it that may still be high.
            k_first = max(0, math.floor((first_sample_index - s0) / period) - 1)
            k_last = math.ceil((first_sample_index + n_samples - s0) / period)
            for k in range(k_first, k_last + 1):
                start = s0 + round(k * period)
                if start >= first_sample_index + n_samples:
                    break
                lo = max(start, first_sample_index) - first_sample_index
                hi = min(start + high_samples, first_sample_index + n_samples) - first_sample_index
                if hi > lo:
                    line[lo:hi] = 1
                if start >= first_sample_index:
                    self._count += 1
            return line
