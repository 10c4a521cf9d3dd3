"""Times in seconds on the DAQ's sample clock, the session's master clock.

An export's time 0 is DAQ sample 0, so a sample ``s`` is at ``s / rate_hz`` seconds. A frame or
a 3D pose belongs to a trigger pulse, and pulse ``p`` was recorded at sample
``trigger_sample_index[p]``. A pulse that was never recorded (the DAQ stopped first) gets a time
estimated from a straight line through the recorded pulses, and is marked as estimated; a row
whose pulse is unknown (trigger index -1) has no time (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RowTimes:
    """Times of rows (frames, poses): (R,) float64 s, NaN where unknown; (R,) bool estimated."""

    times_s: np.ndarray
    estimated: np.ndarray

    @property
    def known(self) -> np.ndarray:
        """(R,) bool: rows that have a time."""
        return np.isfinite(self.times_s)


def sample_times_s(daq_sample_index: np.ndarray, rate_hz: float) -> np.ndarray:
    """DAQ sample indices (R,) -> seconds (R,) float64; NaN where the index is negative."""
    _check_rate(rate_hz)
    samples = np.asarray(daq_sample_index, dtype=np.int64)
    return np.where(samples >= 0, samples / rate_hz, np.nan)


def pulse_times(
    trigger_index: np.ndarray, trigger_sample_index: np.ndarray, rate_hz: float
) -> RowTimes:
    """Times of trigger pulses ``trigger_index`` (R,) int64, given every recorded pulse's sample
    ``trigger_sample_index`` (P,) int64."""
    _check_rate(rate_hz)
    indices = np.asarray(trigger_index, dtype=np.int64)
    pulses = np.asarray(trigger_sample_index, dtype=np.int64)
    if indices.ndim != 1 or pulses.ndim != 1:
        raise ValueError(
            f"trigger_index and trigger_sample_index must be 1-D, got {indices.shape} and "
            f"{pulses.shape}"
        )
    samples = np.full(indices.shape, np.nan)
    recorded = (indices >= 0) & (indices < pulses.size)
    samples[recorded] = pulses[indices[recorded]]
    estimated = (indices >= 0) & ~recorded
    if np.any(estimated):
        if pulses.size >= 2:
            slope, intercept = np.polyfit(np.arange(pulses.size, dtype=np.float64), pulses, 1)
            samples[estimated] = intercept + slope * indices[estimated]
        else:
            estimated[:] = False
    return RowTimes(times_s=samples / rate_hz, estimated=estimated)


def frame_times(
    trigger_index: np.ndarray,
    daq_sample_index: np.ndarray,
    trigger_sample_index: np.ndarray,
    rate_hz: float,
) -> RowTimes:
    """Times of a camera's frames (N,): the recorded sample of the frame's pulse where the file
    has it (``daq_sample_index`` >= 0), else the pulse's time from :func:`pulse_times`."""
    by_pulse = pulse_times(trigger_index, trigger_sample_index, rate_hz)
    samples = np.asarray(daq_sample_index, dtype=np.int64)
    if samples.shape != by_pulse.times_s.shape:
        raise ValueError(
            f"daq_sample_index {samples.shape} and trigger_index {by_pulse.times_s.shape} "
            "must have the same shape"
        )
    recorded = samples >= 0
    times_s = np.where(recorded, samples / rate_hz, by_pulse.times_s)
    return RowTimes(times_s=times_s, estimated=~recorded & by_pulse.estimated)


def _check_rate(rate_hz: float) -> None:
    if not (np.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz}")


def regular_timing(times_s: np.ndarray, rate_hz: float) -> tuple[float, float] | None:
    """(starting time s, rate Hz) when ``times_s`` (R,) fall on DAQ samples with one constant
    step, as the frames of a trial without drops do; else None (timestamps are needed)."""
    _check_rate(rate_hz)
    times = np.asarray(times_s, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)):
        return None
    samples = times * rate_hz
    whole = np.rint(samples)
    if np.any(np.abs(samples - whole) > 1e-6):
        return None
    steps = np.diff(whole)
    if steps[0] <= 0 or np.any(steps != steps[0]):
        return None
    return float(times[0]), float(rate_hz / steps[0])
