"""How a camera's own clock runs against the DAQ's sample clock, the rig's master clock.

Frames are aligned to the DAQ by trigger index, exactly, whatever the camera's clock does; the
camera's timestamps are a second opinion. Fitting them against the DAQ time of each frame's pulse
measures the camera clock's drift (in ppm) and how far single timestamps stray from that line
(the residual): a drift of tens of ppm is ordinary crystal tolerance, a large residual means
timestamps that jump or wrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockFit:
    """``drift_ppm``: how much faster the camera's clock runs than the DAQ's, in parts per
    million; ``residual_rms_ns``, ``residual_max_ns``: the timestamps' scatter about the fitted
    line. NaN when there is nothing to fit (fewer than 2 frames with a timestamp and a pulse)."""

    drift_ppm: float
    residual_rms_ns: float
    residual_max_ns: float
    frames: int


def fit_camera_clock(
    daq_sample_index: np.ndarray, t_device_ns: np.ndarray, daq_rate_hz: float
) -> ClockFit:
    """Fit (N,) camera timestamps ``t_device_ns`` against the (N,) DAQ sample indices of the
    frames' pulses; rows where either is -1 (unknown) are left out."""
    daq_sample_index = np.asarray(daq_sample_index, dtype=np.int64)
    t_device_ns = np.asarray(t_device_ns, dtype=np.int64)
    if daq_sample_index.shape != t_device_ns.shape or daq_sample_index.ndim != 1:
        raise ValueError(
            f"daq_sample_index {daq_sample_index.shape} and t_device_ns {t_device_ns.shape} "
            "must be (N,) arrays of one length"
        )
    if not daq_rate_hz > 0:
        raise ValueError(f"daq_rate_hz must be positive, got {daq_rate_hz}")
    known = (daq_sample_index >= 0) & (t_device_ns >= 0)
    if np.count_nonzero(known) < 2 or np.ptp(daq_sample_index[known]) == 0:
        return ClockFit(math.nan, math.nan, math.nan, int(np.count_nonzero(known)))
    # Relative to the first frame, in seconds, so float64 keeps sub-nanosecond resolution.
    daq_s = (daq_sample_index[known] - daq_sample_index[known][0]) / daq_rate_hz
    device_s = (t_device_ns[known] - t_device_ns[known][0]) * 1e-9
    slope, intercept = np.polyfit(daq_s, device_s, 1)
    residual_ns = (device_s - (slope * daq_s + intercept)) * 1e9
    return ClockFit(
        drift_ppm=float((slope - 1.0) * 1e6),
        residual_rms_ns=float(np.sqrt(np.mean(residual_ns**2))),
        residual_max_ns=float(np.max(np.abs(residual_ns))),
        frames=int(daq_s.size),
    )
