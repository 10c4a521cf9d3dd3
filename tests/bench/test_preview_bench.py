"""Smoke test of bench/preview.py: one short trial without and one with the preview in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "preview.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("preview_bench")
    json_path = folder / "preview.json"
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
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "highest rate without a dropped frame" in completed.stdout
    assert "updates/s" in completed.stdout
    # Trial files are removed unless --keep is given.
    assert list(trials_dir.iterdir()) == []
    loaded: dict[str, Any] = json.loads(json_path.read_text())
    return loaded


def test_each_rate_runs_without_and_with_the_preview(results: dict[str, Any]) -> None:
    rows = results["rates"]
    rates = results["settings"]["rates_hz"]
    assert [(row["rate_hz"], row["preview"]) for row in rows] == [
        (rate, preview) for rate in rates for preview in (False, True)
    ]
    for row in rows:
        assert row["completed"], row["end_reason"]
        assert row["frames_written"] + row["frames_dropped"] == row["frames_expected"]
        assert row["frames_expected"] == row["pulses_sent"] * row["cameras"] > 0


def test_the_page_was_viewed_while_recording(results: dict[str, Any]) -> None:
    for row in results["rates"]:
        if not row["preview"]:
            assert "page_updates_per_s" not in row
            continue
        assert row["page_updates_per_s"] > 0
        assert row["page_frames_per_s_min"] >= 0
        assert row["cpu_cores_browser"] > 0
        if Path("/proc/self/stat").exists():
            assert row["cpu_cores_preview"] > 0
    print(
        f"page {results['page_updates_per_s_median']:.1f} updates/s, preview "
        f"{results['cpu_cores_preview_median']:.2f} cores, browser "
        f"{results['cpu_cores_browser_median']:.2f} cores"
    )


def test_the_summary_comes_from_the_rows(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "preview"
    for key, verdict in (
        ("highest_rate_without_drops_hz", "no_drops"),
        ("highest_rate_kept_up_hz", "kept_up"),
    ):
        for preview, name in ((False, "without_preview"), (True, "with_preview")):
            rates = [
                row["rate_hz"]
                for row in results["rates"]
                if row["preview"] == preview and row[verdict]
            ]
            assert results[key][name] == (max(rates) if rates else None)
    pair = results["highest_rate_without_drops_hz"]
    if pair["with_preview"] is not None and pair["without_preview"] is not None:
        assert results["ratio_without_drops"] == pytest.approx(
            pair["with_preview"] / pair["without_preview"]
        )
    else:
        assert results["ratio_without_drops"] is None
