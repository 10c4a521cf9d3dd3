"""PoseEstimator: the committed twin model finds the parts; broken folders and frames are errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from acquisition.sim.skeleton import BODY_PARTS
from tracking.pose import PoseEstimator, PoseModelError, read_model_folder
from tracking.training.dataset import EvaluationCondition, render_evaluation_frames
from tracking.training.evaluate import accuracy_summary, estimate_all

REPO_ROOT = Path(__file__).resolve().parents[2]
TWIN_MODEL = REPO_ROOT / "tracking" / "models" / "twin"
# evaluation.json uses seed offset 0; these frames are rendered from seeds no one else uses.
TEST_SEED_OFFSET = 7


@pytest.fixture(scope="module")
def estimator() -> Iterator[PoseEstimator]:
    with PoseEstimator(TWIN_MODEL) as twin:
        yield twin


def _copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(TWIN_MODEL, folder)
    return folder


# --- the committed model -------------------------------------------------------------------------


def test_committed_model_folder_is_small_and_complete() -> None:
    info = read_model_folder(TWIN_MODEL)
    assert info.body_parts == BODY_PARTS
    assert info.stride == 8.0
    assert info.location_refinement
    assert info.graph_path.stat().st_size < 2_000_000
    assert len(list(TWIN_MODEL.glob("*.pb"))) == 1


def test_committed_model_finds_body_parts_on_held_out_frames(estimator: PoseEstimator) -> None:
    condition = EvaluationCondition("test", noise_dn=2.0, blur_px=0.0, brightness=1.0)
    data = render_evaluation_frames(condition, 8, seed_offset=TEST_SEED_OFFSET)
    poses, seconds = estimate_all(estimator, data.images)
    summary = accuracy_summary(poses, data, ("cam_left", "cam_right", "cam_front", "cam_top"))
    print(
        f"median {summary['median_error_px']:.2f} px, p95 {summary['p95_error_px']:.2f} px, "
        f"found {summary['found_share']:.3f}, estimate p50 {1e3 * np.median(seconds[1:]):.1f} ms"
    )
    assert poses.shape == (len(data), len(BODY_PARTS), 3)
    assert summary["median_error_px"] < 1.5
    assert summary["p95_error_px"] < 4.0
    assert summary["found_share"] > 0.95
    for camera, numbers in summary["per_camera"].items():
        assert numbers["median_error_px"] < 2.0, camera


def test_committed_model_finds_body_parts_in_dim_blurred_frames(estimator: PoseEstimator) -> None:
    condition = EvaluationCondition("dim", noise_dn=3.0, blur_px=1.0, brightness=0.5)
    data = render_evaluation_frames(condition, 4, seed_offset=TEST_SEED_OFFSET + 1)
    poses, _ = estimate_all(estimator, data.images)
    summary = accuracy_summary(poses, data, ("cam_left", "cam_right", "cam_front", "cam_top"))
    print(f"dim: median {summary['median_error_px']:.2f} px, found {summary['found_share']:.3f}")
    assert summary["median_error_px"] < 2.0
    assert summary["found_share"] > 0.9


def test_estimate_is_the_same_on_the_first_and_later_calls(estimator: PoseEstimator) -> None:
    frame = render_evaluation_frames(EvaluationCondition("one"), 1, seed_offset=3).images[0]
    first = estimator.estimate(frame)
    second = estimator.estimate(frame.copy())
    assert first.dtype == np.float32
    assert first.shape == (len(BODY_PARTS), 3)
    np.testing.assert_array_equal(first, second)
    assert np.all((first[:, 2] >= 0) & (first[:, 2] <= 1))


def test_estimate_takes_any_frame_size(estimator: PoseEstimator) -> None:
    frame = render_evaluation_frames(EvaluationCondition("one"), 1, seed_offset=4).images[0]
    pose = estimator.estimate(frame[:300, 100:500])
    assert pose.shape == (len(BODY_PARTS), 3)
    assert np.all((pose[:, 0] >= 0) & (pose[:, 0] < 400) & (pose[:, 1] >= 0) & (pose[:, 1] < 300))


def test_inference_time_per_frame(estimator: PoseEstimator) -> None:
    frame = render_evaluation_frames(EvaluationCondition("one"), 1, seed_offset=5).images[0]
    estimator.estimate(frame)
    times_ms = []
    for _ in range(30):
        started = time.perf_counter()
        estimator.estimate(frame)
        times_ms.append(1e3 * (time.perf_counter() - started))
    # Printed, not asserted: timing depends on the machine and its load.
    print(f"640x480: p50 {np.median(times_ms):.1f} ms, max {np.max(times_ms):.1f} ms")
    assert len(times_ms) == 30


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), dtype=np.uint8),
        np.zeros((480, 640), dtype=np.float32),
        np.zeros((480, 640), dtype=np.uint16),
        np.zeros((640,), dtype=np.uint8),
        np.zeros((4, 640), dtype=np.uint8),
    ],
    ids=["color", "float", "uint16", "1d", "too_small"],
)
def test_wrong_frames_are_value_errors(estimator: PoseEstimator, frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="frame"):
        estimator.estimate(frame)


def test_a_list_is_not_a_frame(estimator: PoseEstimator) -> None:
    with pytest.raises(ValueError, match="numpy array"):
        estimator.estimate([[0, 1], [2, 3]])  # type: ignore[arg-type]


def test_close_is_idempotent_and_final() -> None:
    twin = PoseEstimator(TWIN_MODEL, threads=1)
    twin.estimate(np.full((64, 64), 100, dtype=np.uint8))
    twin.close()
    twin.close()
    with pytest.raises(RuntimeError, match="closed"):
        twin.estimate(np.full((64, 64), 100, dtype=np.uint8))


def test_importing_the_module_does_not_load_dlclive() -> None:
    code = "import sys, tracking.pose; print('dlclive' in sys.modules, 'tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert result.stdout.split() == ["False", "False"]


# --- broken folders ---------------------------------------------------------------------------


def test_missing_folder_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(PoseModelError, match=f"{missing}.*does not exist"):
        PoseEstimator(missing)


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "model.pb"
    path.write_bytes(b"")
    with pytest.raises(PoseModelError, match="is not a folder"):
        PoseEstimator(path)


def test_folder_without_graph(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    next(folder.glob("*.pb")).unlink()
    with pytest.raises(PoseModelError, match=f"{folder} holds no frozen graph"):
        PoseEstimator(folder)


def test_folder_with_two_graphs(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    graph = next(folder.glob("*.pb"))
    shutil.copy(graph, folder / "another.pb")
    with pytest.raises(PoseModelError, match=f"{folder} holds 2 frozen graphs.*exactly one"):
        PoseEstimator(folder)


def test_folder_without_pose_config(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    (folder / "pose_cfg.yaml").unlink()
    with pytest.raises(PoseModelError, match=f"{folder} has no pose_cfg.yaml"):
        PoseEstimator(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stride: [8\n", "cannot be read as YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("stride: 8\nlocation_refinement: true\nlocref_stdev: 7.28\n", "all_joints_names"),
        (
            "all_joints_names: [a, a]\nstride: 8\nlocation_refinement: true\nlocref_stdev: 7.28\n",
            "repeats a name",
        ),
        (
            "all_joints_names: [a, b]\nnum_joints: 3\nstride: 8\nlocation_refinement: true\n",
            "'num_joints' is 3",
        ),
        ("all_joints_names: [a]\nstride: 0\nlocation_refinement: true\n", "'stride'"),
        ("all_joints_names: [a]\nstride: 8\n", "'location_refinement'"),
        ("all_joints_names: [a]\nstride: 8\nlocation_refinement: true\n", "'locref_stdev'"),
    ],
    ids=[
        "bad_yaml",
        "not_mapping",
        "no_names",
        "repeated_name",
        "num_joints",
        "stride",
        "refinement",
        "locref_stdev",
    ],
)
def test_malformed_pose_config(tmp_path: Path, text: str, message: str) -> None:
    folder = _copy_model(tmp_path)
    (folder / "pose_cfg.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PoseModelError, match=message) as caught:
        PoseEstimator(folder)
    assert str(folder) in str(caught.value)


def test_graph_that_is_not_a_graph(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    next(folder.glob("*.pb")).write_bytes(b"this is not a protobuf")
    with (
        PoseEstimator(folder) as broken,
        pytest.raises(PoseModelError, match=f"{folder}.*does not run"),
    ):
        broken.estimate(np.zeros((64, 64), dtype=np.uint8))


def test_config_naming_fewer_parts_than_the_graph_gives(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    config = (folder / "pose_cfg.yaml").read_text(encoding="utf-8")
    config = config.replace("- tail_base\n", "").replace("num_joints: 10", "num_joints: 9")
    (folder / "pose_cfg.yaml").write_text(config, encoding="utf-8")
    with PoseEstimator(folder) as mismatched:
        assert len(mismatched.body_parts) == 9
        with pytest.raises(PoseModelError, match="names 9 body parts"):
            mismatched.estimate(np.zeros((64, 64), dtype=np.uint8))


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        PoseEstimator(TWIN_MODEL, threads=0)
