"""The exported folder is what dlclive expects, and dlclive's poses are the Keras model's."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acquisition.sim.skeleton import BODY_PARTS
from tracking.pose import PoseEstimator, read_model_folder
from tracking.training.backend import import_tensorflow
from tracking.training.dataset import EvaluationCondition, render_evaluation_frames
from tracking.training.evaluate import decode_pose
from tracking.training.export import (
    GRAPH_FILE_NAME,
    INPUT_NAME,
    LOCREF_OUTPUT_NAME,
    SCORE_OUTPUT_NAME,
    write_model_folder,
)
from tracking.training.network import NetworkConfig, build_network
from tracking.training.train import LOCREF_STDEV_PX, normalised_gray

SMALL_NETWORK = NetworkConfig(stem_channels=8, mid_channels=8, deep_channels=16, dilations=(1, 2))


def _random_model(network: NetworkConfig, seed: int) -> Any:
    """An untrained model with random weights and batch-norm statistics, so that folding the
    statistics into the convolutions is checked too."""
    import_tensorflow().keras.utils.set_random_seed(seed)
    model = build_network(network, len(BODY_PARTS))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name.endswith("_bn"):
            gamma, beta, mean, variance = weights
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0.0, 0.1, beta.shape),
                    rng.normal(0.0, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, variance.shape),
                ]
            )
        elif weights and layer.name.startswith("head"):
            layer.set_weights([rng.normal(0.0, 0.3, w.shape) for w in weights])
    return model


def _dlclive_graph_module() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dlclive.pose_estimation_tensorflow import graph

    return graph


def test_exported_graph_has_dlclives_layout(tmp_path: Path) -> None:
    model = _random_model(SMALL_NETWORK, 1)
    folder = write_model_folder(
        model, SMALL_NETWORK, BODY_PARTS, tmp_path / "model", locref_stdev=LOCREF_STDEV_PX
    )
    assert sorted(path.name for path in folder.iterdir()) == ["pose_cfg.yaml", GRAPH_FILE_NAME]
    info = read_model_folder(folder)
    assert info.body_parts == BODY_PARTS
    assert info.stride == 8.0
    graph_helpers = _dlclive_graph_module()
    graph = graph_helpers.finalize_graph(graph_helpers.read_graph(str(folder / GRAPH_FILE_NAME)))
    assert graph_helpers.get_input_tensor(graph) == f"DLC/{INPUT_NAME}:0"
    # dlclive reads [score map, locref] from the last two operations.
    assert graph_helpers.get_output_tensors(graph) == [
        f"DLC/{SCORE_OUTPUT_NAME}:0",
        f"DLC/{LOCREF_OUTPUT_NAME}:0",
    ]
    # Frozen: nothing to initialise, no variables.
    assert not [op for op in graph.get_operations() if "Variable" in op.type]


def test_dlclive_poses_equal_the_keras_models(tmp_path: Path) -> None:
    model = _random_model(SMALL_NETWORK, 2)
    folder = write_model_folder(
        model, SMALL_NETWORK, BODY_PARTS, tmp_path / "model", locref_stdev=LOCREF_STDEV_PX
    )
    frames = render_evaluation_frames(EvaluationCondition("export"), 1, seed_offset=11).images
    tf = import_tensorflow()
    with PoseEstimator(folder) as estimator:
        for frame in (frames[0], frames[2][:301, :403]):
            score_logits, locref = model(normalised_gray(frame[None]), training=False)
            expected = decode_pose(
                tf.sigmoid(score_logits).numpy()[0], locref.numpy()[0], 8, LOCREF_STDEV_PX
            )
            pose = estimator.estimate(frame)
            np.testing.assert_allclose(pose[:, :2], expected[:, :2], atol=1e-3)
            np.testing.assert_allclose(pose[:, 2], expected[:, 2], atol=1e-5)


def test_export_replaces_an_older_graph(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "snapshot-1000.pb").write_bytes(b"old")
    model = _random_model(SMALL_NETWORK, 3)
    write_model_folder(model, SMALL_NETWORK, BODY_PARTS, folder, locref_stdev=LOCREF_STDEV_PX)
    assert [path.name for path in folder.glob("*.pb")] == [GRAPH_FILE_NAME]


def test_export_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    model = _random_model(SMALL_NETWORK, 4)
    graphs = []
    for name in ("first", "second"):
        folder = write_model_folder(
            model, SMALL_NETWORK, BODY_PARTS, tmp_path / name, locref_stdev=LOCREF_STDEV_PX
        )
        graphs.append((folder / GRAPH_FILE_NAME).read_bytes())
        assert (folder / "pose_cfg.yaml").read_text(encoding="utf-8") == (
            (tmp_path / "first" / "pose_cfg.yaml").read_text(encoding="utf-8")
        )
    assert graphs[0] == graphs[1]
    # Canonical bytes (sorted protobuf maps), so another process writes the same file too.
    graph_def = import_tensorflow().compat.v1.GraphDef()
    graph_def.ParseFromString(graphs[0])
    assert graph_def.SerializeToString(deterministic=True) == graphs[0]


def test_network_config_is_validated() -> None:
    with pytest.raises(ValueError, match="deep_channels"):
        NetworkConfig(deep_channels=0)
    with pytest.raises(ValueError, match="dilations"):
        NetworkConfig(dilations=())
