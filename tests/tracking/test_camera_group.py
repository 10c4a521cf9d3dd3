"""Cameras and camera groups: projection, undistortion, anipose TOML round trips and errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from acquisition.sim.camera_model import twin_cameras
from tracking.camera_group import ANIPOSE_CAMERA_KEYS, Camera, CameraGroup, LensArrays

NAMES = ["cam_left", "cam_right", "cam_front", "cam_top"]

# The layout aniposelib's CameraGroup.dump writes (the `toml` package's style: trailing commas,
# a space inside brackets), with made-up numbers.
ANIPOSE_TEXT = """\
[cam_0]
name = "A"
size = [ 1440, 1080,]
matrix = [ [ 1852.4, 0.0, 719.5,], [ 0.0, 1852.4, 539.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.036, 0.0, 0.0, 0.0, 0.0,]
rotation = [ -0.0017, -0.0018, -0.0046,]
translation = [ 2.55, -2.77, -18.17,]

[cam_1]
name = "B"
size = [ 1440, 1080,]
matrix = [ [ 1935.9, 0.0, 719.5,], [ 0.0, 1935.9, 539.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.313, 0.0, 0.0, 0.0, 0.0,]
rotation = [ -0.2257, -2.982, 0.3874,]
translation = [ 117.37, 262.5, 1478.8,]

[metadata]
adjusted = true
error = 1.668
"""


@pytest.fixture
def twin_group() -> CameraGroup:
    document = {f"cam_{i}": c.to_anipose() for i, c in enumerate(twin_cameras(NAMES, 640, 480))}
    return CameraGroup.from_anipose(document)


def _points(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) points inside the twin's jump volume, mm."""
    return rng.uniform((-60.0, -10.0, 0.0), (160.0, 15.0, 90.0), (count, 3))


def test_projection_matches_the_twin_cameras(twin_group: CameraGroup) -> None:
    points = _points(np.random.default_rng(0), 50)
    expected = np.stack([camera.project(points) for camera in twin_cameras(NAMES, 640, 480)])
    projected = twin_group.project(points)
    assert projected.shape == (4, 50, 2)
    assert np.allclose(projected, expected, atol=1e-9)


def test_undistort_inverts_projection_to_normalized_coordinates(twin_group: CameraGroup) -> None:
    points = _points(np.random.default_rng(1), 40)
    for camera in twin_group:
        in_camera = points @ camera.rotation_matrix.T + camera.translation_mm
        expected = in_camera[:, :2] / in_camera[:, 2:3]
        normalized = camera.undistort(camera.project(points))
        assert np.max(np.abs(normalized - expected)) < 1e-12
        # The projection matrix [R|t] maps homogeneous world points to the same coordinates.
        homogeneous = np.hstack((points, np.ones((40, 1)))) @ camera.projection_matrix.T
        assert np.allclose(homogeneous[:, :2] / homogeneous[:, 2:3], expected, atol=1e-12)


def test_nan_rows_stay_nan(twin_group: CameraGroup) -> None:
    camera = twin_group["cam_top"]
    points = _points(np.random.default_rng(2), 3)
    points[1, 2] = np.nan
    pixels = camera.project(points)
    assert np.isnan(pixels[1]).all() and np.isfinite(pixels[[0, 2]]).all()
    pixels[2, 0] = np.nan
    normalized = camera.undistort(pixels)
    assert np.isnan(normalized[[1, 2]]).all() and np.isfinite(normalized[0]).all()


def test_position_and_baselines(twin_group: CameraGroup) -> None:
    twins = twin_cameras(NAMES, 640, 480)
    for camera, twin in zip(twin_group, twins, strict=True):
        assert np.allclose(camera.position_mm, twin.position_mm)
    baselines = twin_group.baselines_mm()
    assert len(baselines) == 6
    expected = np.linalg.norm(twins[0].position_mm - twins[3].position_mm)
    assert baselines[("cam_left", "cam_top")] == pytest.approx(expected)


def test_names_lookup_and_subset(twin_group: CameraGroup) -> None:
    assert twin_group.names == NAMES
    assert twin_group["cam_front"].name == "cam_front"
    assert twin_group.index("cam_top") == 3
    assert "cam_top" in twin_group and "cam_side" not in twin_group
    with pytest.raises(KeyError, match="cam_side"):
        twin_group["cam_side"]
    pair = twin_group.subset(["cam_top", "cam_left"])
    assert pair.names == ["cam_top", "cam_left"]
    assert pair["cam_top"] is twin_group["cam_top"]
    assert pair.projection_matrices.shape == (2, 3, 4)


def test_save_and_load_round_trip(twin_group: CameraGroup, tmp_path: Path) -> None:
    group = CameraGroup(twin_group.cameras, metadata={"adjusted": True, "error": np.float64(0.2)})
    path = tmp_path / "calibration.toml"
    group.save(path)
    document = tomllib.loads(path.read_text())
    assert sorted(document) == ["cam_0", "cam_1", "cam_2", "cam_3", "metadata"]
    assert set(document["cam_2"]) == set(ANIPOSE_CAMERA_KEYS)
    assert document["cam_2"]["size"] == [640, 480]
    loaded = CameraGroup.load(path)
    assert loaded.names == NAMES
    assert loaded.metadata == {"adjusted": True, "error": 0.2}
    for original, copy in zip(group, loaded, strict=True):
        assert (original.width, original.height) == (copy.width, copy.height)
        for attribute in ("matrix", "distortion", "rotation_vector", "translation_mm"):
            assert np.array_equal(getattr(original, attribute), getattr(copy, attribute))


def test_loads_a_file_in_aniposelib_layout(tmp_path: Path) -> None:
    path = tmp_path / "calibration.toml"
    path.write_text(ANIPOSE_TEXT)
    group = CameraGroup.load(path)
    assert group.names == ["A", "B"]
    assert group["B"].matrix[0, 0] == 1935.9
    assert group["B"].distortion[0] == -0.313
    assert (group["A"].width, group["A"].height) == (1440, 1080)
    assert group.metadata == {"adjusted": True, "error": 1.668}
    # What OpenCV makes of the same numbers.
    rotation, _ = cv2.Rodrigues(np.array([-0.2257, -2.982, 0.3874]))
    assert np.allclose(group["B"].rotation_matrix, rotation)


def test_camera_tables_are_ordered_by_number(twin_group: CameraGroup) -> None:
    camera = twin_group["cam_top"]
    document = {f"cam_{index}": {**camera.to_anipose(), "name": f"c{index}"} for index in range(12)}
    shuffled = dict(reversed(list(document.items())))
    assert CameraGroup.from_anipose(shuffled).names == [f"c{index}" for index in range(12)]


def test_short_distortion_lists_are_padded(twin_group: CameraGroup) -> None:
    entry = twin_group["cam_top"].to_anipose()
    entry["distortions"] = [-0.1, 0.02]
    camera = Camera.from_anipose(entry)
    assert camera.distortion.tolist() == [-0.1, 0.02, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("matrix = [ [ 1852.4, 0.0, 719.5,], [ 0.0, 1852.4, 539.5,],]", r"\[cam_0\].*'matrix'"),
        ('matrix = "eye"', r"\[cam_0\].*'matrix'"),
        ("distortions = [0, 0, 0, 0, 0, 0]", r"\[cam_0\].*'distortions'"),
        ("size = [1440]", r"\[cam_0\].*'size'"),
        ("size = [1440.5, 1080]", r"\[cam_0\].*'size'"),
        ("rotation = [0.0, 0.0, nan]", r"\[cam_0\].*'rotation'"),
        ("fisheye = true", r"\[cam_0\].*fisheye"),
    ],
)
def test_malformed_values_name_file_and_key(tmp_path: Path, edit: str, message: str) -> None:
    key = edit.split("=")[0].strip()
    lines = ANIPOSE_TEXT.splitlines()
    first_camera_end = lines.index("[cam_1]")
    replaced = False
    for index in range(first_camera_end):
        if lines[index].startswith(key + " "):
            lines[index] = edit
            replaced = True
    if not replaced:
        lines.insert(1, edit)
    path = tmp_path / "broken.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as caught:
        CameraGroup.load(path)
    assert str(path) in str(caught.value)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    path.write_text(ANIPOSE_TEXT.replace("translation = [ 117.37, 262.5, 1478.8,]\n", ""))
    with pytest.raises(ValueError, match=r"missing\.toml \[cam_1\]: missing key 'translation'"):
        CameraGroup.load(path)


def test_invalid_toml_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "garbage.toml"
    path.write_text("[cam_0\nname = ")
    with pytest.raises(ValueError, match=r"garbage\.toml: not valid TOML"):
        CameraGroup.load(path)
    path.write_text("[metadata]\nadjusted = false\n")
    with pytest.raises(ValueError, match="no camera tables"):
        CameraGroup.load(path)


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "twice.toml"
    path.write_text(ANIPOSE_TEXT.replace('name = "B"', 'name = "A"'))
    with pytest.raises(ValueError, match=r"twice\.toml: camera names must be unique.*'A'"):
        CameraGroup.load(path)


def test_camera_validation() -> None:
    good = {
        "name": "c",
        "width": 640,
        "height": 480,
        "matrix": np.array([[800.0, 0.0, 320.0], [0.0, 800.0, 240.0], [0.0, 0.0, 1.0]]),
        "distortion": np.zeros(5),
        "rotation_vector": np.zeros(3),
        "translation_mm": np.zeros(3),
    }
    Camera(**good)
    with pytest.raises(ValueError, match="focal"):
        Camera(**{**good, "matrix": np.diag([-800.0, 800.0, 1.0])})
    with pytest.raises(ValueError, match="width"):
        Camera(**{**good, "width": 0})
    with pytest.raises(ValueError, match=r"distortion must have shape \(5,\)"):
        Camera(**{**good, "distortion": np.zeros(4)})
    with pytest.raises(ValueError, match=r"points_mm must have shape \(N, 3\)"):
        Camera(**good).project(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one camera"):
        CameraGroup([])


def test_lens_arrays_match_opencv(twin_group: CameraGroup) -> None:
    """The numpy lens model used by batched code against cv2.projectPoints, for all cameras."""
    rng = np.random.default_rng(3)
    normalized = rng.uniform(-0.5, 0.5, (4, 25, 2))
    lens = LensArrays.for_cameras(twin_group.matrices, twin_group.distortions, (4, 1))
    u, v = lens.to_pixels(normalized[..., 0], normalized[..., 1])
    for index, camera in enumerate(twin_group):
        rays = np.hstack((normalized[index], np.ones((25, 1))))
        expected, _ = cv2.projectPoints(
            rays, np.zeros(3), np.zeros(3), camera.matrix, camera.distortion
        )
        assert np.allclose(np.column_stack((u[index], v[index])), expected.reshape(-1, 2))
