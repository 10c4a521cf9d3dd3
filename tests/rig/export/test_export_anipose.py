"""The calibration TOML the rig writes (`rig calibrate` saves it with CameraGroup.save) in
aniposelib itself: it loads, and projects 3D points to the same pixels as the rig's cameras.

aniposelib declares opencv-contrib-python, which must not sit beside the rig's
opencv-python-headless, so it is installed without its dependencies
(`pip install --no-deps aniposelib==0.7.2`; its own dependencies are in the dev extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquisition.sim.camera_model import twin_cameras
from tracking.camera_group import Camera, CameraGroup

anipose = pytest.importorskip(
    "aniposelib.cameras", reason="aniposelib: pip install --no-deps aniposelib==0.7.2"
)

NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]
# Sub-micropixel: both sides run OpenCV's projectPoints on the same numbers.
PIXEL_TOLERANCE = 1e-6


def twin_group() -> CameraGroup:
    """The default rig's calibration: the digital twin's four cameras."""
    document: dict[str, object] = {
        f"cam_{index}": model.to_anipose()
        for index, model in enumerate(twin_cameras(NAMES, 640, 480))
    }
    document["metadata"] = {"source": "digital twin (exact)", "units": "mm"}
    return CameraGroup.from_anipose(document)


def lens_group() -> CameraGroup:
    """Two cameras using every distortion coefficient, off-centre principal points and
    non-square pixels, as a real calibration gives."""
    rotation = np.array([0.1, -0.2, 0.05])
    return CameraGroup(
        [
            Camera(
                name="side",
                width=1280,
                height=1024,
                matrix=np.array([[1510.0, 0.0, 650.5], [0.0, 1495.0, 498.25], [0.0, 0.0, 1.0]]),
                distortion=np.array([-0.21, 0.13, 0.0012, -0.0007, -0.04]),
                rotation_vector=rotation,
                translation_mm=np.array([12.0, -8.0, 420.0]),
            ),
            Camera(
                name="top",
                width=1280,
                height=1024,
                matrix=np.array([[1620.0, 0.0, 631.0], [0.0, 1633.0, 520.0], [0.0, 0.0, 1.0]]),
                distortion=np.array([0.05, -0.11, -0.0009, 0.0015, 0.02]),
                rotation_vector=np.array([1.2, 0.3, -0.1]),
                translation_mm=np.array([-30.0, 25.0, 390.0]),
            ),
        ],
        {"board": "charuco:7x5:20:15:DICT_4X4_50"},
    )


def points_in_view(count: int, seed: int) -> np.ndarray:
    """(count, 3) mm around the jump: x along it, y lateral, z up."""
    rng = np.random.default_rng(seed)
    return rng.uniform((-60.0, -20.0, -5.0), (140.0, 20.0, 60.0), (count, 3))


def assert_same_projections(ours: CameraGroup, theirs: object, points_mm: np.ndarray) -> None:
    expected = ours.project(points_mm)  # (C, N, 2)
    projected = np.asarray(theirs.project(points_mm))  # type: ignore[attr-defined]
    projected = projected.reshape(expected.shape)
    difference = np.abs(projected - expected)
    print(f"largest difference aniposelib vs rig: {difference.max():.3g} px")
    assert difference.max() < PIXEL_TOLERANCE


@pytest.mark.parametrize("make_group", [twin_group, lens_group], ids=["twin", "lens"])
def test_the_rigs_calibration_loads_in_aniposelib_and_projects_alike(
    make_group: object, tmp_path: Path
) -> None:
    group: CameraGroup = make_group()  # type: ignore[operator]
    path = tmp_path / "calibration.toml"
    group.save(path)
    loaded = anipose.CameraGroup.load(str(path))
    assert loaded.get_names() == group.names
    for camera, theirs in zip(group, loaded.cameras, strict=True):
        assert tuple(theirs.get_size()) == (camera.width, camera.height)
        np.testing.assert_array_equal(theirs.get_camera_matrix(), camera.matrix)
        np.testing.assert_array_equal(theirs.get_distortions(), camera.distortion)
    assert_same_projections(group, loaded, points_in_view(500, seed=3))


def test_aniposelibs_own_file_loads_in_the_rig_and_projects_alike(tmp_path: Path) -> None:
    source = lens_group()
    theirs = anipose.CameraGroup.load(_saved(source, tmp_path / "rig.toml"))
    path = tmp_path / "anipose.toml"
    theirs.dump(str(path))
    ours = CameraGroup.load(path)
    assert ours.names == source.names
    assert_same_projections(ours, theirs, points_in_view(200, seed=4))


def _saved(group: CameraGroup, path: Path) -> str:
    group.save(path)
    return str(path)
