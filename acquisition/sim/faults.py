"""The twin's fault knobs that must be reproducible after the fact (its ground truth)."""

from __future__ import annotations

import hashlib

import numpy as np

from acquisition.settings import CameraFaultConfig


def camera_drops_pulse(
    faults: CameraFaultConfig, seed: int, camera: str, trigger_index: int
) -> bool:
    """Whether the twin's camera ``camera`` loses the frame of pulse ``trigger_index``.

    A pure function of its arguments, so the camera process decides live and the writer
    recomputes the same list as ground truth.
    """
    if trigger_index in faults.drop_trigger_indices:
        return True
    if faults.drop_probability <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{camera}:{trigger_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < faults.drop_probability


def dropped_trigger_indices(
    faults: CameraFaultConfig, seed: int, camera: str, pulses_sent: int
) -> np.ndarray:
    """(D,) int64: every trigger index below ``pulses_sent`` that the camera drops."""
    return np.array(
        [k for k in range(pulses_sent) if camera_drops_pulse(faults, seed, camera, k)],
        dtype=np.int64,
    )
