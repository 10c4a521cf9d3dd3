"""The twin's fault knobs that must be reproducible after the fact (its ground truth)."""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from acquisition.settings import CameraFaultConfig

# The parts a swapped-limb frame shows on the mouse's other side: the fore and hind limbs.
SWAPPED_LIMB_PARTS: tuple[str, ...] = ("forepaw", "hip", "knee", "ankle", "mtp", "toe")


def camera_drops_pulse(
    faults: CameraFaultConfig, seed: int, camera: str, trigger_index: int
) -> bool:
    """Whether the twin's camera ``camera`` loses the frame of pulse ``trigger_index``.

    A pure function of its arguments, so the camera process decides live and the writer
    recomputes the same list as ground truth.
    """
    if trigger_index in faults.drop_trigger_indices:
        return True
    return _chance(f"{seed}:{camera}:{trigger_index}", faults.drop_probability)


FetchFault = Literal["timeout", "error"]


def camera_fetch_fault(
    faults: CameraFaultConfig, seed: int, camera: str, trigger_index: int
) -> FetchFault | None:
    """How the fetch of pulse ``trigger_index``'s frame fails on the twin's camera ``camera``,
    if it does: ``"timeout"`` (no frame comes) or ``"error"`` (an unreadable buffer).

    Decided only for pulses the camera does not drop (see :func:`camera_drops_pulse`), and a
    pure function of its arguments like it, so a test can list the failures afterwards.
    """
    if _chance(f"timeout:{seed}:{camera}:{trigger_index}", faults.fetch_timeout_probability):
        return "timeout"
    if _chance(f"error:{seed}:{camera}:{trigger_index}", faults.fetch_error_probability):
        return "error"
    return None


def fetch_failed_trigger_indices(
    faults: CameraFaultConfig, seed: int, camera: str, pulses_sent: int
) -> np.ndarray:
    """(F,) int64: every trigger index below ``pulses_sent`` whose frame a failed fetch lost
    (dropped pulses excluded: their frame never reached a fetch)."""
    return np.array(
        [
            k
            for k in range(pulses_sent)
            if not camera_drops_pulse(faults, seed, camera, k)
            and camera_fetch_fault(faults, seed, camera, k) is not None
        ],
        dtype=np.int64,
    )


def camera_swaps_limbs(
    faults: CameraFaultConfig, seed: int, camera: str, trigger_index: int
) -> bool:
    """Whether the twin's camera ``camera`` sees the limbs swapped at pulse ``trigger_index``
    (a pure function of its arguments, like :func:`camera_drops_pulse`)."""
    if trigger_index in faults.swap_limbs_trigger_indices:
        return True
    return _chance(f"limbs:{seed}:{camera}:{trigger_index}", faults.swap_limbs_probability)


def limb_swapped_trigger_indices(
    faults: CameraFaultConfig, seed: int, camera: str, pulses_sent: int
) -> np.ndarray:
    """(S,) int64: every trigger index below ``pulses_sent`` where the camera swaps limbs."""
    return np.array(
        [k for k in range(pulses_sent) if camera_swaps_limbs(faults, seed, camera, k)],
        dtype=np.int64,
    )


def swap_left_right_limbs(points_mm: np.ndarray, body_parts: tuple[str, ...]) -> np.ndarray:
    """(K, 3) points with the limbs mirrored to the mouse's other side: the labelled (left)
    limbs replaced by where the right ones are, across the body's midline plane (the vertical
    plane through the nose and the tail base)."""
    rows = {name: i for i, name in enumerate(body_parts)}
    nose, tail = points_mm[rows["nose"]], points_mm[rows["tail_base"]]
    axis = nose[:2] - tail[:2]
    length = float(np.hypot(axis[0], axis[1]))
    if length == 0.0:
        return points_mm.copy()
    # Unit normal of the midline plane, horizontal: the mouse's left.
    left = np.array([-axis[1], axis[0], 0.0]) / length
    swapped = points_mm.copy()
    for name in SWAPPED_LIMB_PARTS:
        i = rows[name]
        side = float(np.dot(points_mm[i] - tail, left))
        swapped[i] = points_mm[i] - 2.0 * side * left
    return swapped


def _chance(key: str, probability: float) -> bool:
    """True with ``probability``, decided by a hash of ``key`` (reproducible, no state)."""
    if probability <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < probability


def dropped_trigger_indices(
    faults: CameraFaultConfig, seed: int, camera: str, pulses_sent: int
) -> np.ndarray:
    """(D,) int64: every trigger index below ``pulses_sent`` that the camera drops."""
    return np.array(
        [k for k in range(pulses_sent) if camera_drops_pulse(faults, seed, camera, k)],
        dtype=np.int64,
    )
