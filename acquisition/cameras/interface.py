"""What every camera backend offers: open, arm for triggers, read frames, disarm, close."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CameraFrame:
    """One frame, already copied out of the device's buffer.

    ``frame_id`` counts trigger pulses the camera received since it was armed, from 0, so a gap
    shows a frame the camera lost; the rig takes ``trigger_index = frame_id``.
    ``t_device_ns`` is the camera's own clock (-1 where it has none).
    """

    image: np.ndarray  # (height, width) uint8
    frame_id: int
    t_device_ns: int
    t_host_ns: int
    # The frame already encoded as its HDF5 chunk (acquisition.frame_codec), when the camera has
    # it: a replay reads it from the trial file, and the camera process stores it as it is.
    chunk: bytes | None = None


class Camera(abc.ABC):
    """A hardware-triggered camera. ``close`` may be called more than once."""

    name: str

    @abc.abstractmethod
    def open(self) -> None:
        """Connect and configure; after this ``info`` is complete."""

    @abc.abstractmethod
    def arm(self) -> None:
        """Start acquisition, waiting for trigger pulses; the frame counter restarts at 0."""

    @abc.abstractmethod
    def read(self, timeout_s: float) -> CameraFrame | None:
        """The next frame, or None when none came within ``timeout_s``."""

    @abc.abstractmethod
    def disarm(self) -> None:
        """Stop acquisition."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""

    def info(self) -> dict[str, Any]:
        """Model, serial, settings actually applied; stored with the camera in the trial file."""
        return {}

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
