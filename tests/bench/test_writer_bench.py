"""Smoke test of bench/writer.py: it runs end to end with tiny sizes and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "writer.py"
SHARED_DATA_DIR = REPOSITORY_ROOT.parent / "shared" / "data"
REAL_VIDEOS = {"dlc_openfield", "lightning_pose_mirror_mouse"}


def run_writer_bench(tmp_path: Path, *extra: str) -> dict[str, Any]:
    json_path = tmp_path / "writer.json"
    disk_dir = tmp_path / "disk"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--json",
            str(json_path),
            "--dir",
            str(disk_dir),
            *extra,
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # The benchmark cleans up after itself: no trial file or raw file is left on the disk.
    assert list(disk_dir.iterdir()) == []
    results: dict[str, Any] = json.loads(json_path.read_text())
    results["stdout"] = completed.stdout
    return results


def test_writer_and_raw_write_are_measured_side_by_side(tmp_path: Path) -> None:
    results = run_writer_bench(tmp_path)
    rows = {row["method"]: row for row in results["throughput"]}
    assert set(rows) == {"raw_write_fsync", "trialfile_writer"}
    for row in rows.values():
        for key in ("raw_mb_per_s", "frames_per_s", "on_disk_mb", "elapsed_s"):
            assert row[key] > 0, (row["method"], key)
        assert (
            row["frames"]
            == results["settings"]["cameras"] * results["settings"]["frames_per_camera"]
        )
    writer, raw = rows["trialfile_writer"], rows["raw_write_fsync"]
    assert writer["raw_mb"] == pytest.approx(raw["raw_mb"])
    assert raw["ratio_to_raw_write"] == pytest.approx(1.0)
    assert writer["ratio_to_raw_write"] == pytest.approx(
        writer["raw_mb_per_s"] / raw["raw_mb_per_s"]
    )
    assert results["benchmark"] == "writer"
    assert results["machine"]["logical_cores"] > 0


def test_compression_rows_have_positive_ratios_and_speeds(tmp_path: Path) -> None:
    results = run_writer_bench(tmp_path)
    rows = {row["source"]: row for row in results["compression"]}
    assert "twin" in rows
    for row in rows.values():
        for key in ("compression_ratio", "encode_ms_per_frame", "encode_mb_per_s_per_core"):
            assert row[key] > 0, (row["source"], key)
    skipped = {entry["source"] for entry in results["skipped"]}
    assert set(rows) | skipped == {"twin"} | REAL_VIDEOS
    if SHARED_DATA_DIR.is_dir():
        assert set(rows) >= REAL_VIDEOS, results["skipped"]


def test_absent_real_data_is_skipped_with_a_reason(tmp_path: Path) -> None:
    absent = tmp_path / "no_such_data"
    results = run_writer_bench(tmp_path, "--data-dir", str(absent))
    assert [row["source"] for row in results["compression"]] == ["twin"]
    assert {entry["source"] for entry in results["skipped"]} == REAL_VIDEOS
    for entry in results["skipped"]:
        assert str(absent) in entry["reason"]
        assert f"skipped {entry['source']}" in results["stdout"]


def test_writer_can_store_real_video_frames(tmp_path: Path) -> None:
    if not (SHARED_DATA_DIR / "lightning_pose_mirror_mouse").is_dir():
        pytest.skip(f"real videos absent: {SHARED_DATA_DIR}")
    results = run_writer_bench(tmp_path, "--frames-from", "lightning_pose_mirror_mouse")
    assert results["settings"]["size"] == "396x406"
    assert results["settings"]["frames_source"].startswith("lightning_pose_mirror_mouse")
    writer = next(r for r in results["throughput"] if r["method"] == "trialfile_writer")
    # Real video compresses: the file holds fewer bytes than the raw frames.
    assert 0 < writer["on_disk_mb"] < writer["raw_mb"]
