"""Smoke test of bench/rig_rate.py: one short simulated trial, and the JSON it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "rig_rate.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("rig_rate")
    json_path = folder / "rig_rate.json"
    trials_dir = folder / "trials"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--json",
            str(json_path),
            "--dir",
            str(trials_dir),
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "highest rate" in completed.stdout
    # Trial files are removed unless --keep is given.
    assert list(trials_dir.iterdir()) == []
    loaded: dict[str, Any] = json.loads(json_path.read_text())
    return loaded


def test_each_rate_reports_its_frame_accounting(results: dict[str, Any]) -> None:
    rows = results["rates"]
    assert [row["rate_hz"] for row in rows] == results["settings"]["rates_hz"]
    for row in rows:
        assert row["completed"], row["end_reason"]
        assert row["pulses_sent"] > 0
        assert row["frames_written"] > 0
        assert row["frames_written"] + row["frames_dropped"] == row["frames_expected"]
        assert row["frames_expected"] == row["pulses_sent"] * row["cameras"]
        assert row["dropped_by_pipeline"] + row["dropped_elsewhere"] == row["frames_dropped"]
        assert row["buffer_overflowed"] == (row["dropped_by_pipeline"] > 0)
        assert row["samples_per_pulse"] >= 2
        assert row["trial_wall_s"] > 0
        assert row["worker_cpu_s"] > 0
        assert row["lateness_max_ms"] >= row["lateness_end_p99_ms"] >= 0


def test_worker_cpu_is_sampled_per_role(results: dict[str, Any]) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("CPU sampling reads /proc")
    row = results["rates"][0]
    roles = row["cpu_cores_by_role"]
    assert roles is not None
    assert {"writer", "daq"} <= set(roles)
    assert sum(role.startswith("camera:") for role in roles) == row["cameras"]
    assert row["cpu_cores_total"] > 0


def test_highest_rates_come_from_the_rows(results: dict[str, Any]) -> None:
    clean = [row["rate_hz"] for row in results["rates"] if row["no_drops"]]
    assert results["highest_rate_without_drops_hz"] == (max(clean) if clean else None)
    kept_up = [row["rate_hz"] for row in results["rates"] if row["kept_up"]]
    assert results["highest_rate_kept_up_hz"] == (max(kept_up) if kept_up else None)
    assert results["benchmark"] == "rig_rate"
