"""What every DAQ backend offers: analog input on a sample clock plus the recorded trigger line."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DaqBlock:
    """Consecutive samples from the DAQ's sample clock, the rig's master clock.

    ``first_sample_index`` counts samples since acquisition started; blocks are contiguous.
    """

    first_sample_index: int
    analog: np.ndarray  # (n_samples, n_channels) float32, in each channel's units
    trigger_line: np.ndarray  # (n_samples,) uint8, the camera trigger line, 0 or 1
    t_host_ns: int  # host time when the block was read

    @property
    def n_samples(self) -> int:
        return int(self.analog.shape[0])


class Daq(abc.ABC):
    """A DAQ with a sample clock. ``close`` may be called more than once."""

    @abc.abstractmethod
    def open(self) -> None:
        """Create and configure the tasks (channels, clocks, triggers); nothing runs yet."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the sample clock (followers first, the analog input last)."""

    @abc.abstractmethod
    def read_block(self, timeout_s: float) -> DaqBlock | None:
        """The next block of samples, or None when it did not arrive within ``timeout_s``."""

    @abc.abstractmethod
    def samples_due(self) -> int:
        """Samples the clock has produced that were not read yet (what is left to drain)."""

    def start_pulses(self, rate_hz: float) -> None:
        """Start the camera pulse train on a counter output of this DAQ."""
        raise NotImplementedError(f"{type(self).__name__} has no counter-output pulse train")

    def stop_pulses(self) -> None:  # noqa: B027 (optional: only DAQs with a counter output)
        """Stop the counter-output pulse train (nothing when none runs)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the sample clock."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the tasks; safe to call twice."""

    def info(self) -> dict[str, Any]:
        return {}

    def __enter__(self) -> Daq:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def rising_edges(
    trigger_line: np.ndarray, first_sample_index: int, previous_level: int
) -> np.ndarray:
    """Sample indices (int64) where ``trigger_line`` goes from 0 to 1.

    ``previous_level`` is the last sample of the block before, so an edge on a block boundary is
    found exactly once.
    """
    levels = np.concatenate(([previous_level], trigger_line.astype(np.int8)))
    return np.flatnonzero(np.diff(levels) > 0).astype(np.int64) + first_sample_index


def block_record_dtype(n_channels: int) -> np.dtype:
    """The dtype of one sample on the wire: every analog channel plus the trigger line level."""
    return np.dtype([("analog", "<f4", (n_channels,)), ("trigger_line", "u1")])


def pack_block(block: DaqBlock) -> np.ndarray:
    """(n,) records of :func:`block_record_dtype`, one contiguous buffer to send in one message."""
    records = np.empty(block.n_samples, dtype=block_record_dtype(block.analog.shape[1]))
    records["analog"] = block.analog
    records["trigger_line"] = block.trigger_line
    return records


def unpack_block(payload: bytes | memoryview, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`pack_block`: (analog (n, C) float32, trigger_line (n,) uint8)."""
    records = np.frombuffer(payload, dtype=block_record_dtype(n_channels))
    return np.ascontiguousarray(records["analog"]), np.ascontiguousarray(records["trigger_line"])
