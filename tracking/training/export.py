"""Export a trained network as a DeepLabCut-Live TensorFlow model folder.

The folder holds ``pose_cfg.yaml`` and one frozen TensorFlow 1 graph, laid out the way dlclive
1.1.0 reads it (``dlclive/pose_estimation_tensorflow``):

- the graph's first operation is the input: ``Placeholder``, float32 (1, H, W, 3); dlclive feeds
  the frame as RGB uint8 (a gray frame as three equal channels), TensorFlow casts it;
- its last operation is the score map ``pose/part_pred/block4/Sigmoid`` (1, h, w, K) and the one
  before it the location refinement ``pose/locref_pred/block4/BiasAdd`` (1, h, w, 2K), as dlclive
  takes ``[ops[-1], ops[-2]]`` as ``[score map, locref]``;
- ``pose_cfg.yaml`` gives ``stride``, ``location_refinement`` and ``locref_stdev``, which dlclive's
  ``argmax_pose_predict`` uses to turn them into (x, y, likelihood).

The graph averages the three channels back to gray, so channel order (RGB or BGR) does not
matter, and normalises as training did. Batch normalisation is folded into the convolutions and
every weight is a constant: the graph is frozen by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tracking.pose import POSE_CONFIG_NAME
from tracking.training.backend import import_tensorflow
from tracking.training.network import (
    BATCH_NORM_EPSILON,
    GRAY_MEAN,
    GRAY_SCALE,
    LOCREF_HEAD,
    SCORE_HEAD,
    STRIDE,
    NetworkConfig,
    blocks,
)

GRAPH_FILE_NAME = "twin_pose_net.pb"
INPUT_NAME = "Placeholder"
LOCREF_OUTPUT_NAME = "pose/locref_pred/block4/BiasAdd"
SCORE_OUTPUT_NAME = "pose/part_pred/block4/Sigmoid"


def _layer_weights(model: Any) -> dict[str, list[np.ndarray]]:
    """Every layer's weights by layer name, read eagerly (before any graph is built)."""
    return {
        layer.name: [np.asarray(value, dtype=np.float32) for value in layer.get_weights()]
        for layer in model.layers
    }


def _folded(kernel: np.ndarray, batch_norm: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free convolution kernel (..., C_out) followed by batch norm (gamma, beta, moving
    mean, moving variance), as one kernel and bias (C_out,)."""
    gamma, beta, mean, variance = batch_norm
    scale = gamma / np.sqrt(variance + BATCH_NORM_EPSILON)
    return (kernel * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)


def frozen_graph_def(model: Any, network: NetworkConfig) -> Any:
    """The trained Keras model as a frozen tf.compat.v1 GraphDef in dlclive's layout."""
    tf = import_tensorflow()

    v1 = tf.compat.v1
    weights = _layer_weights(model)
    graph = tf.Graph()
    with graph.as_default():
        # Created first, so that it is the graph's first operation.
        image = v1.placeholder(tf.float32, (None, None, None, 3), name=INPUT_NAME)
        with tf.name_scope("preprocess"):
            gray = tf.reduce_mean(image, axis=3, keepdims=True)
            features = (gray - GRAY_MEAN) * (1.0 / GRAY_SCALE)
        for spec in blocks(network):
            with tf.name_scope(spec.name):
                block_input = features
                batch_norm = weights[f"{spec.name}_bn"]
                if spec.separable:
                    (depthwise,) = weights[f"{spec.name}_dw"]
                    (pointwise,) = weights[f"{spec.name}_pw"]
                    kernel, bias = _folded(pointwise, batch_norm)
                    features = tf.nn.depthwise_conv2d(
                        features,
                        tf.constant(depthwise, name="depthwise_kernel"),
                        strides=(1, spec.stride, spec.stride, 1),
                        padding="SAME",
                        dilations=(spec.dilation, spec.dilation),
                    )
                    features = tf.nn.conv2d(
                        features, tf.constant(kernel, name="pointwise_kernel"), 1, "VALID"
                    )
                else:
                    (full,) = weights[f"{spec.name}_conv"]
                    kernel, bias = _folded(full, batch_norm)
                    features = tf.nn.conv2d(
                        features,
                        tf.constant(kernel, name="kernel"),
                        spec.stride,
                        "SAME",
                        dilations=spec.dilation,
                    )
                features = tf.nn.relu(tf.nn.bias_add(features, tf.constant(bias, name="bias")))
                if spec.residual:
                    features = block_input + features
        score_kernel, score_bias = weights[SCORE_HEAD]
        locref_kernel, locref_bias = weights[LOCREF_HEAD]
        # Heads in this order so that the locref is the second-to-last operation and the score
        # map the last: the order dlclive reads them in.
        with tf.name_scope("pose/part_pred/block4"):
            score_logits = tf.nn.bias_add(
                tf.nn.conv2d(features, tf.constant(score_kernel, name="weights"), 1, "VALID"),
                tf.constant(score_bias, name="biases"),
            )
        with tf.name_scope("pose/locref_pred/block4"):
            locref_convolution = tf.nn.conv2d(
                features, tf.constant(locref_kernel, name="weights"), 1, "VALID"
            )
            locref_biases = tf.constant(locref_bias, name="biases")
        tf.nn.bias_add(locref_convolution, locref_biases, name=LOCREF_OUTPUT_NAME)
        tf.sigmoid(score_logits, name=SCORE_OUTPUT_NAME)
    graph_def = graph.as_graph_def()
    names = [node.name for node in graph_def.node]
    if names[0] != INPUT_NAME or names[-2:] != [LOCREF_OUTPUT_NAME, SCORE_OUTPUT_NAME]:
        raise RuntimeError(
            f"unexpected operation order in the exported graph: {names[:1]}, {names[-2:]}"
        )
    return graph_def


def pose_config(
    body_parts: Sequence[str], locref_stdev: float, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The pose_cfg.yaml of an exported model: the keys dlclive reads and DeepLabCut writes."""
    config: dict[str, Any] = {
        "all_joints": [[index] for index in range(len(body_parts))],
        "all_joints_names": list(body_parts),
        "num_joints": len(body_parts),
        "dataset_type": "default",
        "net_type": "twin_tiny",
        "stride": STRIDE,
        "location_refinement": True,
        "locref_stdev": float(locref_stdev),
        "locref_huber_loss": True,
        "global_scale": 1.0,
        "batch_size": 1,
    }
    if extra:
        config.update(extra)
    return config


def write_model_folder(
    model: Any,
    network: NetworkConfig,
    body_parts: Sequence[str],
    output_dir: Path | str,
    *,
    locref_stdev: float,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``pose_cfg.yaml`` and the frozen graph into ``output_dir`` (created if missing),
    replacing an earlier export there. Returns the folder."""
    import ruamel.yaml

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.pb"):
        # A folder must hold exactly one graph; an older export's would be ambiguous.
        stale.unlink()
    graph_def = frozen_graph_def(model, network)
    # Deterministic: protobuf maps (node attributes) otherwise serialise in any order, and the
    # same weights would give different bytes and SHA-256 from run to run.
    (folder / GRAPH_FILE_NAME).write_bytes(graph_def.SerializeToString(deterministic=True))
    config = pose_config(body_parts, locref_stdev, extra_config)
    yaml = ruamel.yaml.YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with (folder / POSE_CONFIG_NAME).open("w", encoding="utf-8") as stream:
        yaml.dump(config, stream)
    return folder
