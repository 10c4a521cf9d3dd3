"""The last few seconds of the DAQ's channels, decimated for a screen.

Each bin keeps the minimum and the maximum of its samples, so an EMG burst shows at its full
height however far the trace is decimated (a plain subsample would alias it away).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Values go to the page with this many significant digits (of the window's largest value):
# finer than any screen shows, and short in JSON.
SIGNIFICANT_DIGITS = 4
MAX_DECIMALS = 12


class TraceWindow:
    """Min/max of each channel in bins of ``samples_per_bin`` samples, over the last ``n_bins``.

    Bins are numbered from sample 0 of the acquisition (bin b holds samples
    ``b * samples_per_bin .. (b + 1) * samples_per_bin - 1``), so blocks of any size line up.
    """

    def __init__(self, n_channels: int, samples_per_bin: int, n_bins: int) -> None:
        for name, value in (
            ("n_channels", n_channels),
            ("samples_per_bin", samples_per_bin),
            ("n_bins", n_bins),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.n_channels = n_channels
        self.samples_per_bin = samples_per_bin
        self.n_bins = n_bins
        self._low = np.full((n_bins, n_channels), np.nan, dtype=np.float32)  # ring (n_bins, C)
        self._high = np.full((n_bins, n_channels), np.nan, dtype=np.float32)
        self._last_bin = -1  # newest bin written, -1 before any
        self.end_sample = 0  # one past the newest sample seen
        # Counts the clears: a page's copy of the window from another generation is stale.
        self.generation = 0

    def clear(self) -> None:
        self._low.fill(np.nan)
        self._high.fill(np.nan)
        self._last_bin = -1
        self.end_sample = 0
        self.generation += 1

    @property
    def last_bin(self) -> int:
        return self._last_bin

    def add(self, first_sample_index: int, analog: np.ndarray) -> None:
        """Samples ``analog`` (n, n_channels) starting at ``first_sample_index``.

        A block that starts before the newest sample seen (the acquisition restarted) clears
        the window first.
        """
        if analog.ndim != 2 or analog.shape[1] != self.n_channels:
            raise ValueError(f"expected (n, {self.n_channels}) samples, got {analog.shape}")
        if first_sample_index < 0:
            raise ValueError(f"first_sample_index must be >= 0, got {first_sample_index}")
        n = analog.shape[0]
        if n == 0:
            return
        if first_sample_index < self.end_sample:
            self.clear()
        spb = self.samples_per_bin
        first_bin = first_sample_index // spb
        last_bin = (first_sample_index + n - 1) // spb
        # Offsets into the block where each bin starts.
        starts = np.maximum(np.arange(first_bin, last_bin + 1) * spb - first_sample_index, 0)
        low = np.minimum.reduceat(analog, starts, axis=0)
        high = np.maximum.reduceat(analog, starts, axis=0)
        previous_last_bin = self._last_bin
        self._advance_to(last_bin, first_bin)
        bins = np.arange(first_bin, last_bin + 1)
        # Only the last n_bins bins of a (long) block fit in the ring.
        keep = bins > last_bin - self.n_bins
        bins, low, high = bins[keep], low[keep], high[keep]
        rows = bins % self.n_bins
        # The first bin may already hold samples of the block before.
        old_low, old_high = self._low[rows[0]].copy(), self._high[rows[0]].copy()
        self._low[rows] = low
        self._high[rows] = high
        if bins[0] == previous_last_bin and np.all(np.isfinite(old_low)):
            self._low[rows[0]] = np.minimum(old_low, low[0])
            self._high[rows[0]] = np.maximum(old_high, high[0])
        self.end_sample = first_sample_index + n

    def _advance_to(self, last_bin: int, first_bin: int) -> None:
        """Blank the bins between the newest written and ``first_bin`` (samples never seen)."""
        if self._last_bin >= 0:
            for b in range(max(self._last_bin + 1, last_bin - self.n_bins + 1), first_bin):
                self._low[b % self.n_bins] = np.nan
                self._high[b % self.n_bins] = np.nan
        self._last_bin = max(self._last_bin, last_bin)

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), each (n_bins, n_channels) float32, oldest bin first; NaN where empty."""
        if self._last_bin < 0:
            empty = np.full((self.n_bins, self.n_channels), np.nan, dtype=np.float32)
            return empty, empty.copy()
        order = (np.arange(self._last_bin + 1, self._last_bin + 1 + self.n_bins)) % self.n_bins
        low, high = self._low[order], self._high[order]
        # Bins older than the first sample seen are in the ring as NaN already; bins numbered
        # below 0 (the window is longer than the acquisition so far) too.
        return low, high

    def since(self, from_bin: int, columns: Sequence[int]) -> dict[str, Any]:
        """Bins ``from_bin`` .. newest (at most the window) of ``columns``, for the page.

        A page keeps its own copy of the window and asks only for the bins it lacks, from the
        last one it has (that bin may have been partly filled). ``from_bin`` < 0 asks for the
        whole window. Returns ``first_bin``, ``last_bin`` and, per column, ``low`` and ``high``:
        lists of floats to 4 significant digits, None where a bin has no samples.
        """
        last = self._last_bin
        oldest = max(last - self.n_bins + 1, 0)
        first = oldest if from_bin < 0 else max(from_bin, oldest)
        channels: list[dict[str, list[float | None]]] = []
        if last < 0 or first > last:
            for _ in columns:
                channels.append({"low": [], "high": []})
            return {"first_bin": first, "last_bin": last, "channels": channels}
        rows = np.arange(first, last + 1) % self.n_bins
        for column in columns:
            digits = _decimals(self._low[:, column], self._high[:, column])
            channels.append(
                {
                    "low": _rounded(self._low[rows, column], digits),
                    "high": _rounded(self._high[rows, column], digits),
                }
            )
        return {"first_bin": first, "last_bin": last, "channels": channels}


def _decimals(low: np.ndarray, high: np.ndarray) -> int:
    """Decimal places that keep 4 significant digits of the largest value in the window."""
    seen = np.concatenate((low[np.isfinite(low)], high[np.isfinite(high)]))
    largest = float(np.abs(seen).max()) if seen.size else 0.0
    if not largest > 0 or not math.isfinite(largest):
        return SIGNIFICANT_DIGITS
    return min(MAX_DECIMALS, max(0, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(largest))))


def _rounded(values: np.ndarray, decimals: int) -> list[float | None]:
    """values (n,) rounded (short in JSON), None where not finite."""
    listed = np.round(values.astype(np.float64), decimals).tolist()
    return [value if math.isfinite(value) else None for value in listed]
