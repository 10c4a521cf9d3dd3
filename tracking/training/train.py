"""Seeded training of the twin's pose network on labelled crops (CPU, TensorFlow/Keras).

Losses are DeepLabCut's: sigmoid cross-entropy of the score map against the part disks, and a
Huber loss of the location refinement inside the disks. Every random choice comes from the seed
(weights through ``keras.utils.set_random_seed``, batches and augmentation through numpy), and
TensorFlow's deterministic ops are switched on, so the same seed gives the same weights on the
same machine and TensorFlow build.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acquisition.sim.skeleton import BODY_PARTS
from tracking.training.backend import import_keras, import_tensorflow
from tracking.training.dataset import LabelledImages
from tracking.training.network import (
    GRAY_MEAN,
    GRAY_SCALE,
    STRIDE,
    NetworkConfig,
    build_network,
)
from tracking.training.targets import grid_size, make_targets

# DeepLabCut's default: refinement targets are offsets in units of this many pixels.
LOCREF_STDEV_PX = 7.2801


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights besides the data."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    # Cells whose centre is this close to a label are positive (DeepLabCut's pos_dist_thresh).
    positive_radius_px: float = 12.0
    locref_loss_weight: float = 1.0
    # Positive cells are few (a disk per part); weighting them speeds up finding the peaks.
    positive_weight: float = 5.0
    # Per-image brightness gain and offset drawn uniformly within these bounds.
    gain_range: tuple[float, float] = (0.8, 1.2)
    offset_range_dn: tuple[float, float] = (-12.0, 12.0)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{name} must be a positive integer, got {value!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainingConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("learning_rate", "positive_radius_px", "positive_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainingConfig.{name} must be positive")
        if self.locref_loss_weight < 0:
            raise ValueError("TrainingConfig.locref_loss_weight must be >= 0")


@dataclass
class TrainedNetwork:
    """The trained Keras model and how training went."""

    model: Any  # keras.Model, see tracking.training.network.build_network
    config: TrainingConfig
    training_s: float
    # (step, total loss, score loss, locref loss) every ``log_every`` steps.
    history: list[tuple[int, float, float, float]]


def learning_rate_at(step: int, config: TrainingConfig) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.learning_rate * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def normalised_gray(images: np.ndarray) -> np.ndarray:
    """uint8 images (B, H, W) -> float32 (B, H, W, 1) as the exported graph normalises them."""
    return ((images.astype(np.float32) - GRAY_MEAN) / GRAY_SCALE)[..., None]


class _Batches:
    """Seeded batches: images (B, H, W, 1) normalised and augmented, and their targets."""

    def __init__(self, data: LabelledImages, config: TrainingConfig) -> None:
        if len(data) < 1:
            raise ValueError("no training images")
        self.data = data
        self.config = config
        self.rng = np.random.default_rng([config.seed, 0x62617463])
        height, width = data.images.shape[1:]
        self.grid_shape = (grid_size(height, STRIDE), grid_size(width, STRIDE))

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        config = self.config
        chosen = self.rng.integers(0, len(self.data), config.batch_size)
        images = self.data.images[chosen].astype(np.float32)
        gain = self.rng.uniform(*config.gain_range, (config.batch_size, 1, 1))
        offset = self.rng.uniform(*config.offset_range_dn, (config.batch_size, 1, 1))
        images = np.clip(images * gain + offset, 0.0, 255.0)
        gray = ((images - GRAY_MEAN) / GRAY_SCALE).astype(np.float32)[..., None]
        targets = make_targets(
            self.data.labels_px[chosen],
            self.data.visible[chosen],
            self.grid_shape,
            stride=STRIDE,
            positive_radius_px=config.positive_radius_px,
            locref_stdev=LOCREF_STDEV_PX,
        )
        return gray, targets.score, targets.locref, targets.locref_weight


def configure_determinism(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TensorFlow's ops deterministic."""
    tf = import_tensorflow()

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_network(
    data: LabelledImages,
    config: TrainingConfig,
    *,
    log_every: int = 100,
    progress: Callable[[str], None] | None = None,
) -> TrainedNetwork:
    """Train a new network on ``data`` (crops with labels) for ``config.steps`` steps."""
    tf = import_tensorflow()
    keras = import_keras()

    configure_determinism(config.seed)
    model = build_network(config.network, len(BODY_PARTS))
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    batches = _Batches(data, config)
    locref_weight = tf.constant(config.locref_loss_weight, tf.float32)
    positive_weight = tf.constant(config.positive_weight, tf.float32)

    @tf.function(reduce_retracing=True)
    def train_step(gray: Any, score: Any, locref: Any, weight: Any) -> tuple[Any, Any, Any]:
        """One optimiser step on a batch: images (B, H, W, 1), score targets (B, h, w, K),
        locref targets and weights (B, h, w, 2K); returns the total, score and locref losses."""
        with tf.GradientTape() as tape:
            score_logits, locref_pred = model(gray, training=True)
            score_loss = tf.reduce_mean(
                tf.nn.weighted_cross_entropy_with_logits(
                    labels=score, logits=score_logits, pos_weight=positive_weight
                )
            )
            error = tf.abs(locref_pred - locref)
            huber = tf.where(error < 1.0, 0.5 * error * error, error - 0.5)
            locref_loss = tf.reduce_sum(huber * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
            total = score_loss + locref_weight * locref_loss
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return total, score_loss, locref_loss

    history: list[tuple[int, float, float, float]] = []
    started = time.perf_counter()
    running = np.zeros(3)
    for step in range(config.steps):
        optimizer.learning_rate.assign(learning_rate_at(step, config))
        losses = train_step(*batches.next())
        running += np.array([float(value) for value in losses])
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            count = (step % log_every) + 1
            mean = running / count
            running[:] = 0.0
            history.append((step + 1, float(mean[0]), float(mean[1]), float(mean[2])))
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(
                    f"step {step + 1}/{config.steps}: loss {mean[0]:.4f} (score {mean[1]:.4f}, "
                    f"locref {mean[2]:.4f}), {elapsed:.0f} s"
                )
    return TrainedNetwork(model, config, time.perf_counter() - started, history)
