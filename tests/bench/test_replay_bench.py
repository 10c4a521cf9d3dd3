"""Smoke test of bench/replay.py: one short recording replayed at --speed max, and its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "replay.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("replay_bench")
    json_path = folder / "replay.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--no-inference",
            "--json",
            str(json_path),
            "--dir",
            str(folder),
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    print(completed.stdout[-2000:])
    assert "without inference:" in completed.stdout
    # The recording and the replays are removed.
    assert [path.name for path in folder.iterdir()] == ["replay.json"]
    loaded: dict[str, Any] = json.loads(json_path.read_text())
    return loaded


@pytest.mark.timeout(180)
def test_every_replay_is_complete_and_identical(results: dict[str, Any]) -> None:
    rows = results["replays"]
    assert [row["inference"] for row in rows] == [False] * results["settings"]["repeats"]
    for row in rows:
        assert row["completed"], row["end_reason"]
        assert row["frames"] == row["frames_recorded"] > 0
        assert row["frames_dropped"] == 0
        assert row["recording_identical"] is True
        assert row["replay_span_s"] > 0
        assert row["frames_per_s"] == pytest.approx(row["frames"] / row["replay_span_s"])
        assert row["pace"] == pytest.approx(row["recorded_s"] / row["replay_span_s"])
        assert row["wall_s"] >= row["replay_span_s"]


@pytest.mark.timeout(180)
def test_summary_and_settings(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "replay"
    assert results["quick"] is True
    assert results["settings"]["goal_without_inference"] == 10.0
    summary = results["summary"]
    assert set(summary) == {"without_inference"}
    paces = [row["pace"] for row in results["replays"]]
    assert min(paces) <= summary["without_inference"]["pace_median"] <= max(paces)
    assert results["machine"]["usable_cores"] >= 1
