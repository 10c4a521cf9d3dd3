"""The twin's pose network: a small fully convolutional net with DeepLabCut's two heads.

Input: gray images (B, H, W, 1), already normalised as ``(gray - GRAY_MEAN) / GRAY_SCALE``.
Output at stride 8: score-map logits (B, ceil(H/8), ceil(W/8), K) and location refinement
(B, ceil(H/8), ceil(W/8), 2K), channels ``(dx_0, dy_0, dx_1, dy_1, ...)`` in units of
``locref_stdev`` pixels, as DeepLabCut's "base" model lays them out.

The body is a stem convolution and depthwise-separable blocks, each followed by batch
normalisation and ReLU; the stride-8 blocks are dilated and residual, so the receptive field
(about 260 px) spans the whole mouse while the net stays cheap enough for a frame in milliseconds.
``blocks`` is the single description of the architecture: training builds Keras layers from it
and the export rebuilds the same operations from it with the trained weights as constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracking.training.backend import import_keras

# Normalisation of 8-bit gray levels, done inside the exported graph.
GRAY_MEAN = 128.0
GRAY_SCALE = 64.0
STRIDE = 8
BATCH_NORM_EPSILON = 1e-3


@dataclass(frozen=True)
class NetworkConfig:
    """Widths of the net. The defaults are the shipped twin model; ``--quick`` uses fewer."""

    stem_channels: int = 16
    mid_channels: int = 32
    deep_channels: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        for name in ("stem_channels", "mid_channels", "deep_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NetworkConfig.{name} must be a positive integer, got {value!r}")
        if not self.dilations or any(not isinstance(d, int) or d < 1 for d in self.dilations):
            raise ValueError(f"NetworkConfig.dilations must be positive integers: {self.dilations}")


@dataclass(frozen=True)
class BlockSpec:
    """One convolution block: a full 3x3 convolution (``separable=False``) or a depthwise 3x3
    followed by a pointwise 1x1; then batch norm and ReLU; ``residual`` adds the block's input."""

    name: str
    out_channels: int
    stride: int
    dilation: int
    separable: bool
    residual: bool


def blocks(config: NetworkConfig) -> list[BlockSpec]:
    """The body of the net, input to output; three stride-2 steps make stride 8."""
    specs = [
        BlockSpec("stem", config.stem_channels, 2, 1, separable=False, residual=False),
        BlockSpec("down4", config.mid_channels, 2, 1, separable=True, residual=False),
        BlockSpec("mid", config.mid_channels, 1, 1, separable=True, residual=True),
        BlockSpec("down8", config.deep_channels, 2, 1, separable=True, residual=False),
    ]
    specs += [
        BlockSpec(f"context{i}_d{d}", config.deep_channels, 1, d, separable=True, residual=True)
        for i, d in enumerate(config.dilations)
    ]
    return specs


SCORE_HEAD = "head_score"
LOCREF_HEAD = "head_locref"


def build_network(config: NetworkConfig, num_parts: int) -> Any:
    """The Keras model: gray (B, H, W, 1) normalised -> [score logits (B, h, w, K),
    locref (B, h, w, 2K)]. Layer names follow ``blocks`` so the export can find the weights."""
    if num_parts < 1:
        raise ValueError(f"num_parts must be >= 1, got {num_parts}")
    keras = import_keras()
    layers = keras.layers

    gray = keras.Input((None, None, 1), name="gray")
    features = gray
    for spec in blocks(config):
        block_input = features
        if spec.separable:
            features = layers.DepthwiseConv2D(
                3,
                strides=spec.stride,
                dilation_rate=spec.dilation,
                padding="same",
                use_bias=False,
                name=f"{spec.name}_dw",
            )(features)
            features = layers.Conv2D(spec.out_channels, 1, use_bias=False, name=f"{spec.name}_pw")(
                features
            )
        else:
            features = layers.Conv2D(
                spec.out_channels,
                3,
                strides=spec.stride,
                dilation_rate=spec.dilation,
                padding="same",
                use_bias=False,
                name=f"{spec.name}_conv",
            )(features)
        features = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{spec.name}_bn")(
            features
        )
        features = layers.ReLU(name=f"{spec.name}_relu")(features)
        if spec.residual:
            features = layers.Add(name=f"{spec.name}_add")([block_input, features])
    # A negative bias starts every score near 0, where almost every cell belongs: training then
    # spends its first steps on finding parts rather than on unlearning false positives.
    score_logits = layers.Conv2D(
        num_parts,
        1,
        bias_initializer=keras.initializers.Constant(-4.0),
        name=SCORE_HEAD,
    )(features)
    locref = layers.Conv2D(2 * num_parts, 1, kernel_initializer="zeros", name=LOCREF_HEAD)(features)
    return keras.Model(gray, [score_logits, locref], name="twin_pose_net")
