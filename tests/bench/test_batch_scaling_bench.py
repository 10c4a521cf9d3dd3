"""Smoke test of bench/batch_scaling.py: two short recordings, one replay alone, the batch on 1 and
2 local workers, and the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "batch_scaling.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("batch_scaling_bench")
    json_path = folder / "batch_scaling.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(json_path), "--dir", str(folder)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    print(completed.stdout[-3000:])
    assert "best: " in completed.stdout
    # The recordings and every output are removed.
    assert [path.name for path in folder.iterdir()] == ["batch_scaling.json"]
    loaded: dict[str, Any] = json.loads(json_path.read_text())
    return loaded


@pytest.mark.timeout(180)
def test_every_batch_finishes_every_trial(results: dict[str, Any]) -> None:
    settings = results["settings"]
    assert settings["workers"] == [1, 2]
    assert settings["tracking"] is False
    single, *batches = results["rows"]
    assert single["what"] == "replay_trial alone"
    assert single["completed"] is True
    assert single["trials_per_min"] == pytest.approx(60.0 / single["wall_s"])
    assert settings["alone_repeats"] == len(single["wall_s_runs"]) == 1
    assert single["wall_s"] == single["wall_s_runs"][0]
    assert [row["workers"] for row in batches] == [1, 2]
    for row in batches:
        assert row["what"] == "rig batch"
        assert row["completed"] is True
        assert row["replayed"] == row["trials"] == settings["trials"]
        assert row["failed"] == 0
        assert row["trials_per_min"] == pytest.approx(60.0 * row["trials"] / row["wall_s"])
        assert row["vs_replay_alone"] == pytest.approx(
            row["trials_per_min"] / single["trials_per_min"]
        )
    assert batches[0]["speed_up_vs_1_worker"] == pytest.approx(1.0)
    assert batches[1]["speed_up_vs_1_worker"] == pytest.approx(
        batches[1]["trials_per_min"] / batches[0]["trials_per_min"]
    )


@pytest.mark.timeout(180)
def test_summary_and_machine(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "batch_scaling"
    assert results["quick"] is True
    summary = results["summary"]
    best = max(results["rows"][1:], key=lambda row: row["trials_per_min"])
    assert summary["best_workers"] == best["workers"]
    assert summary["best_trials_per_min"] == best["trials_per_min"]
    assert summary["replay_alone_trials_per_min"] == results["rows"][0]["trials_per_min"]
    machine = results["machine"]
    assert machine["usable_cores"] >= 1
    assert "load_average_1min" in machine and "load_average_1min_end" in machine
