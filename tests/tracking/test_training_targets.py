"""Training targets decode back to their labels the way dlclive decodes a network's output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tracking.training.evaluate import decode_pose
from tracking.training.targets import grid_size, make_targets

STRIDE = 8
LOCREF_STDEV = 7.2801


def _random_labels(rng: np.random.Generator, batch: int, parts: int, size_px: int) -> np.ndarray:
    return rng.uniform(0.0, size_px - 1.0, (batch, parts, 2))


def test_grid_size_matches_same_padded_stride_two_steps() -> None:
    assert grid_size(480, 8) == 60
    assert grid_size(640, 8) == 80
    assert grid_size(129, 8) == 17  # 65, 33, 17
    assert grid_size(7, 8) == 1
    with pytest.raises(ValueError, match="power of 2"):
        grid_size(64, 6)


def test_positive_cells_are_the_disk_around_each_label() -> None:
    labels = np.array([[[37.0, 21.0], [90.0, 60.0]]])
    targets = make_targets(
        labels,
        np.array([[True, True]]),
        (16, 16),
        stride=STRIDE,
        positive_radius_px=12.0,
        locref_stdev=LOCREF_STDEV,
    )
    assert targets.score.shape == (1, 16, 16, 2)
    assert targets.locref.shape == (1, 16, 16, 4)
    rows, cols = np.nonzero(targets.score[0, :, :, 0])
    centres = np.stack((cols * STRIDE + 4.0, rows * STRIDE + 4.0), axis=-1)
    distances = np.linalg.norm(centres - labels[0, 0], axis=-1)
    assert np.all(distances <= 12.0)
    # Every cell centre within the radius is positive, none outside it.
    all_rows, all_cols = np.mgrid[0:16, 0:16]
    all_centres = np.stack((all_cols * STRIDE + 4.0, all_rows * STRIDE + 4.0), axis=-1)
    inside = np.linalg.norm(all_centres - labels[0, 0], axis=-1) <= 12.0
    np.testing.assert_array_equal(targets.score[0, :, :, 0] > 0, inside)
    np.testing.assert_array_equal(targets.locref_weight[0, :, :, 0], inside.astype(np.float32))
    np.testing.assert_array_equal(targets.locref_weight[0, :, :, 1], inside.astype(np.float32))


def test_targets_decode_to_the_labels_with_dlclives_own_decoder() -> None:
    # dlclive's import trips third-party deprecation warnings, which this suite makes errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dlclive.pose_estimation_tensorflow import pose as pose_module

    rng = np.random.default_rng(3)
    labels = _random_labels(rng, 4, 10, 128)
    targets = make_targets(
        labels,
        np.ones((4, 10), dtype=bool),
        (16, 16),
        stride=STRIDE,
        positive_radius_px=12.0,
        locref_stdev=LOCREF_STDEV,
    )
    for image in range(4):
        # dlclive's scaling step (extract_cnn_output) multiplies the raw locref by the stdev.
        locref = targets.locref[image].reshape(16, 16, -1, 2) * LOCREF_STDEV
        pose = pose_module.argmax_pose_predict(targets.score[image], locref, STRIDE)
        np.testing.assert_allclose(pose[:, :2], labels[image], atol=1e-4)
        ours = decode_pose(targets.score[image], targets.locref[image], STRIDE, LOCREF_STDEV)
        np.testing.assert_allclose(ours, pose, atol=1e-4)


def test_invisible_parts_have_no_target() -> None:
    labels = np.array([[[40.0, 40.0], [-1.0, -1.0]]])
    targets = make_targets(
        labels,
        np.array([[True, False]]),
        (8, 8),
        stride=STRIDE,
        positive_radius_px=12.0,
        locref_stdev=LOCREF_STDEV,
    )
    assert targets.score[..., 0].sum() > 0
    assert targets.score[..., 1].sum() == 0
    assert targets.locref_weight[..., 2:].sum() == 0


def test_nan_labels_of_hidden_parts_are_harmless() -> None:
    labels = np.array([[[np.nan, np.nan]]])
    targets = make_targets(
        labels,
        np.array([[False]]),
        (4, 4),
        stride=STRIDE,
        positive_radius_px=12.0,
        locref_stdev=LOCREF_STDEV,
    )
    assert np.all(np.isfinite(targets.locref))
    assert targets.score.sum() == 0


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels"):
        make_targets(
            np.zeros((2, 3)),
            np.ones((2, 3), dtype=bool),
            (4, 4),
            stride=STRIDE,
            positive_radius_px=12.0,
            locref_stdev=LOCREF_STDEV,
        )
    with pytest.raises(ValueError, match="visible"):
        make_targets(
            np.zeros((2, 3, 2)),
            np.ones((3, 2), dtype=bool),
            (4, 4),
            stride=STRIDE,
            positive_radius_px=12.0,
            locref_stdev=LOCREF_STDEV,
        )
