"""bench/online_tracking.py: its pieces without TensorFlow, and (slow) the whole --quick run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from acquisition.sim.skeleton import BODY_PARTS

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "online_tracking.py"
STAGES = {
    "1 bare_get_pose",
    "2 pose_estimator",
    "3 pose_process",
    "4 triangulate_robust",
    "4 triangulate",
    "5 frame_to_3d shared",
}


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The script as a module (it finds ``benchlib`` beside it); the import path is restored."""
    name = "bench_tracking_under_test"
    saved_path = list(sys.path)
    sys.path.append(str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
    yield module
    del sys.modules[name]


def test_switched_observations_swap_limbs_in_one_camera(bench: ModuleType) -> None:
    group = bench.twin_camera_group(bench.CAMERAS, 120, 160)
    points_mm = bench.jump_points_mm(200)
    observations, switched = bench.switched_observations(group, points_mm, seed=3)
    assert observations.shape == (200, 4, len(BODY_PARTS), 2)
    assert 0.1 < switched.mean() < 0.3
    exact = group.project(points_mm.reshape(-1, 3)).reshape(4, 200, len(BODY_PARTS), 2)
    error_px = np.linalg.norm(observations - exact.transpose(1, 0, 2, 3), axis=3)  # (M, C, K)
    forepaw, toe = BODY_PARTS.index("forepaw"), BODY_PARTS.index("toe")
    nose = BODY_PARTS.index("nose")
    # Clean indices: noise only. Switched ones: exactly one camera's forepaw is far off.
    assert np.all(error_px[~switched] < 6 * bench.POINT_NOISE_PX)
    assert np.all((error_px[switched][:, :, forepaw] > 10).sum(axis=1) == 1)
    assert np.all(error_px[:, :, nose] < 6 * bench.POINT_NOISE_PX)
    # The wrong camera sees the toe where the forepaw is.
    index = int(np.flatnonzero(switched)[0])
    camera = int(np.argmax(error_px[index, :, forepaw]))
    assert np.linalg.norm(observations[index, camera, forepaw] - exact[camera, index, toe]) < 3


def test_triangulation_stage_times_both_methods(bench: ModuleType) -> None:
    group = bench.twin_camera_group(bench.CAMERAS, 480, 640)
    result = bench.measure_triangulation(group, bench.jump_points_mm(60), seed=1)
    robust, plain = result["triangulate_robust"], result["triangulate"]
    print(f"robust p50 {robust['p50_us']:.0f} us, plain p50 {plain['p50_us']:.0f} us")
    for row in (robust, plain):
        assert row["trigger_indices"] == 60
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert result["switched_indices"] > 0
    # The robust method rejects the switched camera; the plain one is pulled off by it.
    assert robust["median_error_mm_switched"] < 1.0
    assert plain["median_error_mm_switched"] > 2 * robust["median_error_mm_switched"]


def test_arguments_are_checked(bench: ModuleType) -> None:
    assert bench.parse_arguments(["--layouts", "per_camera"]).layouts == ["per_camera"]
    for bad in (["--layouts", "all"], ["--frames", "1"], ["--pose-rate-hz", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_arguments(bad)


# --- the whole run ---------------------------------------------------------------------------


def _positive_numbers(numbers: dict[str, Any], where: str) -> None:
    for key in ("p50_us", "p99_us", "mean_us", "max_us"):
        value = numbers[key]
        assert math.isfinite(value) and value > 0, (where, key, value)
    assert numbers["p50_us"] <= numbers["p99_us"] <= numbers["max_us"], where


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    json_path = tmp_path_factory.mktemp("bench") / "tracking.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(json_path)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "bare_get_pose" in completed.stdout
    return json.loads(json_path.read_text())


@pytest.mark.slow
def test_every_stage_is_measured(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "tracking"
    assert results["quick"] is True
    assert results["machine"]["logical_cores"] > 0
    inference = results["inference"]
    for name in ("bare_get_pose", "pose_estimator"):
        _positive_numbers(inference[name], name)
        assert inference[name]["frames_per_s"] > 0
    # The wrapper and the bare call compute the same pose.
    assert inference["largest_pose_difference"] < 1e-3
    pose = results["pose_process"]
    _positive_numbers(pose, "pose_process")
    for part in ("inference", "frame_in", "pose_out"):
        _positive_numbers(pose[part], f"pose_process {part}")
    assert math.isfinite(pose["overhead"]["p99_us"])
    assert pose["frames"] >= 2 and pose["frames_per_s"] > 0
    for name in ("triangulate_robust", "triangulate"):
        _positive_numbers(results["triangulation"][name], name)
    (frame_to_3d,) = results["frame_to_3d"]
    assert frame_to_3d["layout"] == "shared"
    _positive_numbers(frame_to_3d, "frame_to_3d")
    assert frame_to_3d["trigger_indices"] >= 2 and frame_to_3d["frames_per_s"] > 0
    # The 3D records are those of the frames sent: the twin's truth, to about a millimetre.
    assert frame_to_3d["median_error_mm"] < 5.0


@pytest.mark.slow
def test_summary_puts_every_stage_beside_bare_get_pose(results: dict[str, Any]) -> None:
    rows = {row["stage"]: row for row in results["summary"]}
    assert set(rows) == STAGES
    assert rows["1 bare_get_pose"]["p50_vs_bare"] == pytest.approx(1.0)
    bare_p99_us = results["inference"]["bare_get_pose"]["p99_us"]
    assert rows["3 pose_process"]["p99_vs_bare"] == pytest.approx(
        results["pose_process"]["p99_us"] / bare_p99_us
    )
    goal = results["goal"]
    assert goal["limit_us"] == 1000.0
    assert goal["met"] == (goal["overhead_p99_us"] <= goal["limit_us"])
