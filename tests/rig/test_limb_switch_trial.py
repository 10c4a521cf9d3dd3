"""Limb switching (the poster's first problem) through a whole tracked trial.

The twin's top camera sees the limbs swapped on a share of the pulses, so its labels land on the
wrong limb there. The triangulation must notice that camera disagreeing and leave it out, keeping
the 3D error within the bound of a clean trial.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition.sim.faults import SWAPPED_LIMB_PARTS
from rig.calibration_record import group_from_attribute
from tests.rig.trial_configs import rig, tracked_config_with
from tracking.triangulation import triangulate

FAULTY_CAMERA = "cam_top"
SWAP_PROBABILITY = 0.3


@pytest.fixture(scope="module")
def switched_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("limbs")
    fault = f"[sim.faults.cameras.{FAULTY_CAMERA}]\nswap_limbs_probability = {SWAP_PROBABILITY}\n"
    config = tracked_config_with(folder, fault)
    result = rig(
        "run",
        "--config",
        str(config),
        "--duration-s",
        "2.6",
        "--output",
        str(folder),
        timeout_s=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = folder.glob("*.h5")
    return path


@pytest.mark.timeout(600)
def test_outlier_rejection_keeps_the_3d_error_within_bound(switched_trial: Path) -> None:
    with h5py.File(switched_trial, "r") as f:
        parts = [str(part) for part in f["sim/truth"].attrs["body_parts"]]
        cameras = list(f["cameras"].keys())
        swapped = f[f"sim/limbs_swapped/{FAULTY_CAMERA}"][:]
        truth = f["sim/truth/points"][:].astype(np.float64)
        points = f["pose3d/points"][:]
        used = f["pose3d/cameras_used"][:]
        assert np.array_equal(f["pose3d/trigger_index"][:], np.arange(truth.shape[0]))
        poses = {camera: f[f"pose2d/{camera}"][:].astype(np.float64) for camera in cameras}
        group = group_from_attribute(str(f["calibration"].attrs["anipose_toml"]), "test")
    limbs = [parts.index(name) for name in SWAPPED_LIMB_PARTS]
    top = group.names.index(FAULTY_CAMERA)
    assert 0.2 < swapped.size / truth.shape[0] < 0.4

    # The fault bites: on swapped pulses the top camera labels the limbs far from the truth.
    projected = group[FAULTY_CAMERA].project(truth[swapped][:, limbs].reshape(-1, 3))
    labelled = poses[FAULTY_CAMERA][swapped][:, limbs, :2].reshape(-1, 2)
    label_error_px = np.linalg.norm(labelled - projected, axis=-1)
    print(f"top camera's limb labels on swapped pulses: median {np.median(label_error_px):.1f} px")
    assert np.median(label_error_px) > 10.0

    # Plain triangulation from every camera is pulled off by the switched labels...
    views = np.stack([poses[name][swapped][:, limbs, :2].reshape(-1, 2) for name in group.names])
    naive = triangulate(group, views)
    naive_error = np.linalg.norm(naive - truth[swapped][:, limbs].reshape(-1, 3), axis=-1)
    # ...the rig's robust triangulation leaves the top camera out there, and stays accurate.
    error = np.linalg.norm(points - truth, axis=-1)
    seen = used.sum(axis=-1) >= 2
    robust_error = error[swapped][:, limbs][seen[swapped][:, limbs]]
    print(
        f"limbs on swapped pulses: naive median {np.median(naive_error):.2f} mm, "
        f"robust median {np.median(robust_error):.2f} mm; whole trial median "
        f"{np.median(error[seen]):.2f} mm, p95 {np.percentile(error[seen], 95):.2f} mm"
    )
    assert np.median(naive_error) > 2.0 * np.median(robust_error)
    assert np.median(robust_error) <= 2.0
    assert np.median(error[seen]) <= 2.0
    left_out = ~used[swapped][:, limbs, top]
    assert left_out.mean() > 0.8
    # Where the camera saw the limbs right, it is used.
    clean = np.setdiff1d(np.arange(truth.shape[0]), swapped)
    assert used[clean][:, limbs, top].mean() > 0.9
