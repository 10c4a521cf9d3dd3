"""Accuracy and speed of an exported model folder, measured through dlclive itself.

Accuracy is measured on held-out rendered frames (``dataset.render_evaluation_frames``) from every
camera: the 2D error of each body part in pixels (median and 95th percentile, overall and per
camera) and the share of parts found, that is with likelihood above 0.5. Background frames (the
empty scene, no mouse) give the share of parts reported where there is none. Speed is the time
of one ``PoseEstimator.estimate`` call on a 640x480 frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.sim.camera_model import twin_cameras
from acquisition.sim.render import FrameRenderer
from tracking.pose import PoseEstimator
from tracking.training.dataset import (
    CAMERA_NAMES,
    EVALUATION_CONDITIONS,
    EVALUATION_SEED_BASE,
    FRAME_HEIGHT_PX,
    FRAME_WIDTH_PX,
    EvaluationCondition,
    LabelledImages,
    render_evaluation_frames,
)

FOUND_LIKELIHOOD = 0.5


def decode_pose(
    score: np.ndarray, locref: np.ndarray, stride: float, locref_stdev: float
) -> np.ndarray:
    """dlclive's ``argmax_pose_predict``, vectorised: score map (h, w, K) and refinement
    (h, w, 2K) -> pose (K, 3) x, y, likelihood."""
    rows, cols, parts = score.shape
    flat = score.reshape(-1, parts)
    best = flat.argmax(axis=0)
    row, col = np.unravel_index(best, (rows, cols))
    offsets = locref.reshape(rows, cols, parts, 2)[row, col, np.arange(parts)] * locref_stdev
    x = col * stride + 0.5 * stride + offsets[:, 0]
    y = row * stride + 0.5 * stride + offsets[:, 1]
    return np.stack((x, y, flat[best, np.arange(parts)]), axis=-1)


def pose_errors_px(poses: np.ndarray, data: LabelledImages) -> np.ndarray:
    """Euclidean errors (N, K) of poses (N, K, 3) against the labels; NaN where not visible."""
    errors = np.linalg.norm(poses[..., :2] - data.labels_px, axis=-1)
    return np.where(data.visible, errors, np.nan)


def accuracy_summary(
    poses: np.ndarray, data: LabelledImages, camera_names: Sequence[str]
) -> dict[str, Any]:
    """Median and 95th percentile error (px) and found share, overall and per camera."""

    def summary(rows: np.ndarray) -> dict[str, float]:
        errors = pose_errors_px(poses[rows], _subset(data, rows))
        shown = data.visible[rows]
        found = poses[rows, :, 2] > FOUND_LIKELIHOOD
        values = errors[shown]
        return {
            "median_error_px": float(np.median(values)),
            "p95_error_px": float(np.percentile(values, 95)),
            "max_error_px": float(np.max(values)),
            "found_share": float(found[shown].mean()),
            "parts": int(shown.sum()),
        }

    everything = np.arange(len(data))
    result: dict[str, Any] = summary(everything)
    result["per_camera"] = {
        name: summary(np.flatnonzero(data.camera_index == index))
        for index, name in enumerate(camera_names)
    }
    return result


def _subset(data: LabelledImages, rows: np.ndarray) -> LabelledImages:
    return LabelledImages(
        data.images[rows], data.labels_px[rows], data.visible[rows], data.camera_index[rows]
    )


def estimate_all(estimator: PoseEstimator, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses (N, K, 3) of images (N, H, W) and the seconds (N,) each estimate took."""
    poses = np.zeros((images.shape[0], len(estimator.body_parts), 3), dtype=np.float32)
    seconds = np.zeros(images.shape[0])
    for index, image in enumerate(images):
        started = time.perf_counter()
        poses[index] = estimator.estimate(image)
        seconds[index] = time.perf_counter() - started
    return poses, seconds


def background_frames(camera_names: Sequence[str] = CAMERA_NAMES) -> np.ndarray:
    """(C, 480, 640) uint8: the empty scene of every camera, held-out seed, no mouse."""
    cameras = twin_cameras(list(camera_names), FRAME_WIDTH_PX, FRAME_HEIGHT_PX)
    return np.stack(
        [
            np.asarray(FrameRenderer(camera, seed=EVALUATION_SEED_BASE).background)
            for camera in cameras
        ]
    )


def evaluate_model_folder(
    model_dir: Path | str,
    *,
    frames_per_camera: int = 40,
    conditions: Sequence[EvaluationCondition] = EVALUATION_CONDITIONS,
    timing_frames: int = 200,
    camera_names: Sequence[str] = CAMERA_NAMES,
    threads: int | None = None,
) -> dict[str, Any]:
    """Accuracy per evaluation condition, false detections on empty frames and the inference
    time per 640x480 frame, of the model folder, all through ``PoseEstimator`` (dlclive)."""
    results: dict[str, Any] = {"frames_per_camera": frames_per_camera, "conditions": {}}
    with PoseEstimator(model_dir, threads=threads) as estimator:
        first: LabelledImages | None = None
        for condition in conditions:
            data = render_evaluation_frames(condition, frames_per_camera, camera_names=camera_names)
            if first is None:
                first = data
            poses, _ = estimate_all(estimator, data.images)
            results["conditions"][condition.name] = {
                "noise_dn": condition.noise_dn,
                "blur_px": condition.blur_px,
                "brightness": condition.brightness,
                **accuracy_summary(poses, data, camera_names),
            }
        empty = background_frames(camera_names)
        empty_poses, _ = estimate_all(estimator, empty)
        results["empty_frames"] = {
            "frames": int(empty.shape[0]),
            "false_found_share": float((empty_poses[..., 2] > FOUND_LIKELIHOOD).mean()),
            "max_likelihood": float(empty_poses[..., 2].max()),
        }
        if first is not None and timing_frames > 0:
            chosen = np.arange(timing_frames) % len(first)
            _, seconds = estimate_all(estimator, first.images[chosen])
            milliseconds = seconds * 1e3
            results["inference_ms_640x480"] = {
                "p50": float(np.percentile(milliseconds, 50)),
                "p99": float(np.percentile(milliseconds, 99)),
                "mean": float(milliseconds.mean()),
                "frames": int(timing_frames),
                "threads": threads,
            }
    return results
