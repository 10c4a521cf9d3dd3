"""Frame accounting: for every camera, pulses sent = frames written + frames dropped.

A pulse is a rising edge recorded on the DAQ's trigger line; pulse k is frame k of every camera.
Every pulse without a frame in the file is a dropped frame, whoever lost it (the camera, the
trigger wire, the camera process's full buffer); the file lists the trigger indices of them all.
Anything that breaks the identity (a frame of a pulse that was never recorded, a trigger index
written twice, messages lost in transport) is a problem, reported loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraAccounting:
    camera: str
    pulses_sent: int
    frames_written: int
    dropped_trigger_indices: np.ndarray  # (D,) int64, sorted
    # Trigger indices the camera process dropped itself because the writer fell behind.
    dropped_by_pipeline: tuple[int, ...]
    problems: tuple[str, ...]

    @property
    def frames_dropped(self) -> int:
        return int(self.dropped_trigger_indices.size)

    @property
    def balanced(self) -> bool:
        return self.pulses_sent == self.frames_written + self.frames_dropped and not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera,
            "pulses_sent": self.pulses_sent,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "dropped_trigger_indices": self.dropped_trigger_indices.tolist(),
            "dropped_by_pipeline": list(self.dropped_by_pipeline),
            "balanced": self.balanced,
            "problems": list(self.problems),
        }


def account_camera(
    camera: str,
    trigger_indices: np.ndarray,
    pulses_sent: int,
    dropped_by_pipeline: Sequence[int] = (),
    messages_lost: int = 0,
) -> CameraAccounting:
    """Account for one camera from the trigger indices of the frames written, in file order."""
    trigger_indices = np.asarray(trigger_indices, dtype=np.int64)
    problems: list[str] = []
    if messages_lost:
        problems.append(f"{messages_lost} frame messages lost between camera and writer")
    if trigger_indices.size and np.any(np.diff(trigger_indices) <= 0):
        repeated = np.unique(trigger_indices[1:][np.diff(trigger_indices) <= 0])
        problems.append(f"trigger indices not strictly increasing (at {repeated[:10].tolist()})")
    beyond = trigger_indices[(trigger_indices < 0) | (trigger_indices >= pulses_sent)]
    if beyond.size:
        problems.append(
            f"{beyond.size} frames belong to no recorded pulse "
            f"(trigger indices {beyond[:10].tolist()}; {pulses_sent} pulses recorded)"
        )
    written = np.zeros(pulses_sent, dtype=bool)
    in_range = trigger_indices[(trigger_indices >= 0) & (trigger_indices < pulses_sent)]
    written[in_range] = True
    dropped = np.flatnonzero(~written).astype(np.int64)
    reported_but_written = sorted(set(dropped_by_pipeline) & set(in_range.tolist()))
    if reported_but_written:
        problems.append(f"frames reported dropped were written: {reported_but_written[:10]}")
    return CameraAccounting(
        camera=camera,
        pulses_sent=pulses_sent,
        frames_written=int(trigger_indices.size),
        dropped_trigger_indices=dropped,
        dropped_by_pipeline=tuple(sorted(dropped_by_pipeline)),
        problems=tuple(problems),
    )
