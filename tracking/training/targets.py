"""DeepLabCut's training targets for labelled images: score-map disks and location refinement.

A score-map cell (row i, column j) stands for the image point
``(x, y) = (j * stride + stride / 2, i * stride + stride / 2)``, the point dlclive's
``argmax_pose_predict`` adds the refinement to. A cell is positive for a part when that point lies
within ``positive_radius_px`` of the part's label; positive cells also learn the offset from the
point to the label, divided by ``locref_stdev``, so that dlclive's decoding
``point + locref * locref_stdev`` lands on the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Targets:
    """Targets for a batch: B images, K parts, score map (h, w)."""

    score: np.ndarray  # (B, h, w, K) float32, 1 inside a part's disk, 0 elsewhere
    locref: np.ndarray  # (B, h, w, 2K) float32, (dx, dy) per part in units of locref_stdev
    locref_weight: np.ndarray  # (B, h, w, 2K) float32, 1 where locref is defined (the disks)


def grid_size(image_px: int, stride: int) -> int:
    """Score-map cells along an image side of ``image_px`` (SAME-padded stride-2 steps)."""
    cells = image_px
    steps = max(0, stride.bit_length() - 1)
    if 2**steps != stride:
        raise ValueError(f"stride must be a power of 2, got {stride}")
    for _ in range(steps):
        cells = -(-cells // 2)
    return cells


def make_targets(
    labels_px: np.ndarray,
    visible: np.ndarray,
    grid_shape: tuple[int, int],
    *,
    stride: int,
    positive_radius_px: float,
    locref_stdev: float,
) -> Targets:
    """Targets for labels (B, K, 2) x, y in pixels of images whose score map is ``grid_shape``
    (h, w); parts with ``visible`` (B, K) False get no positive cell and no refinement."""
    labels = np.asarray(labels_px, dtype=np.float64)
    if labels.ndim != 3 or labels.shape[2] != 2:
        raise ValueError(f"labels must have shape (B, K, 2), got {labels.shape}")
    shown = np.asarray(visible, dtype=bool)
    if shown.shape != labels.shape[:2]:
        raise ValueError(f"visible must have shape {labels.shape[:2]}, got {shown.shape}")
    if not positive_radius_px > 0 or not locref_stdev > 0:
        raise ValueError("positive_radius_px and locref_stdev must be positive")
    rows, cols = grid_shape
    centre_x = np.arange(cols) * stride + stride / 2.0  # (w,)
    centre_y = np.arange(rows) * stride + stride / 2.0  # (h,)
    # Offsets from every cell centre to every label: (B, K, h, w).
    dx = labels[:, :, 0, None, None] - centre_x[None, None, None, :]
    dy = labels[:, :, 1, None, None] - centre_y[None, None, :, None]
    dx = np.broadcast_to(dx, (*labels.shape[:2], rows, cols))
    dy = np.broadcast_to(dy, (*labels.shape[:2], rows, cols))
    with np.errstate(invalid="ignore"):
        inside = (dx * dx + dy * dy <= positive_radius_px**2) & shown[:, :, None, None]
    score = inside.astype(np.float32)  # (B, K, h, w)
    locref = np.zeros((*labels.shape[:2], rows, cols, 2), dtype=np.float32)
    locref[..., 0] = np.where(inside, dx / locref_stdev, 0.0)
    locref[..., 1] = np.where(inside, dy / locref_stdev, 0.0)
    weight = np.repeat(score[..., None], 2, axis=-1)
    batch = labels.shape[0]
    return Targets(
        score=np.ascontiguousarray(score.transpose(0, 2, 3, 1)),
        # (B, K, h, w, 2) -> (B, h, w, K, 2) -> (B, h, w, 2K): (dx_0, dy_0, dx_1, dy_1, ...).
        locref=np.ascontiguousarray(locref.transpose(0, 2, 3, 1, 4).reshape(batch, rows, cols, -1)),
        locref_weight=np.ascontiguousarray(
            weight.transpose(0, 2, 3, 1, 4).reshape(batch, rows, cols, -1)
        ),
    )
