"""DeepLabCut tables: their layout, and movement's DeepLabCut loader reading them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from movement.io import load_poses

from acquisition.sim.skeleton import BODY_PARTS
from rig.export import ExportError, export_dlc, pose_table
from rig.export.dlc_tables import DLC_KEY, default_scorer, dlc_file_stem
from tests.rig.export.export_trials import TRIAL_ID, SmallTrial


def test_the_table_has_deeplabcuts_three_column_levels() -> None:
    points = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    table = pose_table(points, ["nose", "eye", "toe"], "DLC_net")
    assert list(table.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(table.columns[:4]) == [
        ("DLC_net", "nose", "x"),
        ("DLC_net", "nose", "y"),
        ("DLC_net", "nose", "likelihood"),
        ("DLC_net", "eye", "x"),
    ]
    assert table.loc[1, ("DLC_net", "toe", "likelihood")] == points[1, 2, 2]
    assert list(table.index) == [0, 1]


@pytest.mark.parametrize(
    ("points", "parts", "problem"),
    [
        (np.zeros((2, 3, 2)), ["a", "b", "c"], "shape"),
        (np.zeros((2, 3, 3)), ["a", "b"], "body part names"),
        (np.zeros((2, 2, 3)), ["a", "a"], "unique"),
    ],
)
def test_tables_that_do_not_fit_are_refused(
    points: np.ndarray, parts: list[str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        pose_table(points, parts, "DLC_net")


def test_scorer_names_follow_deeplabcuts_style() -> None:
    assert default_scorer("/models/twin") == "DLC_twin"
    assert default_scorer("/models/my model (v2)") == "DLC_my_model_v2_"
    assert default_scorer("") == "DLC_model"
    assert dlc_file_stem("t1", "cam_left", "DLC_twin") == "t1_cam_leftDLC_twin"


def test_every_camera_gets_an_h5_and_a_csv_that_movement_reads(
    small_trial: SmallTrial, tmp_path: Path
) -> None:
    exports = export_dlc(small_trial.path, tmp_path)
    assert [export.camera for export in exports] == ["cam_left", "cam_right"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{TRIAL_ID}_{camera}DLC_twin.{suffix}"
        for camera in ("cam_left", "cam_right")
        for suffix in ("h5", "csv")
    )
    for export in exports:
        expected = small_trial.pose2d[export.camera]  # (N, K, 3), row 3 NaN
        stored = pd.read_hdf(export.h5_path, key=DLC_KEY)
        assert stored.shape == (expected.shape[0], 3 * len(BODY_PARTS))
        # HDF5 keeps the numbers exactly; CSV is text, which pandas parses back to within
        # a few units in the last place.
        for path, tolerance in ((export.h5_path, 0.0), (export.csv_path, 1e-12)):
            dataset = load_poses.from_dlc_file(path)
            assert list(dataset.keypoints.values) == list(BODY_PARTS)
            # movement: position (time, space, keypoints, individuals).
            position = dataset.position.values[:, :, :, 0].transpose(0, 2, 1)
            confidence = dataset.confidence.values[:, :, 0]
            np.testing.assert_allclose(position, expected[:, :, :2], rtol=tolerance, atol=0)
            np.testing.assert_allclose(confidence, expected[:, :, 2], rtol=tolerance, atol=0)
            assert np.isnan(position[3]).all()


def test_a_given_scorer_and_overwriting(small_trial: SmallTrial, tmp_path: Path) -> None:
    export_dlc(small_trial.path, tmp_path, scorer="DLC_resnet50_jumpsJan1shuffle1_1000")
    h5_path = tmp_path / f"{TRIAL_ID}_cam_leftDLC_resnet50_jumpsJan1shuffle1_1000.h5"
    assert h5_path.exists()
    with pytest.raises(ExportError, match="exists"):
        export_dlc(small_trial.path, tmp_path, scorer="DLC_resnet50_jumpsJan1shuffle1_1000")
    export_dlc(
        small_trial.path, tmp_path, scorer="DLC_resnet50_jumpsJan1shuffle1_1000", overwrite=True
    )
    table = pd.read_hdf(h5_path, key=DLC_KEY)
    assert table.columns.get_level_values("scorer")[0] == "DLC_resnet50_jumpsJan1shuffle1_1000"


def test_a_trial_without_2d_poses_has_nothing_to_export(
    untracked_trial: SmallTrial, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="no 2D poses"):
        export_dlc(untracked_trial.path, tmp_path)
    assert list(tmp_path.iterdir()) == []
