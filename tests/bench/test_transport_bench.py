"""Smoke test of bench/transport.py: it runs end to end with tiny sizes and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY_ROOT / "bench" / "transport.py"
THROUGHPUT_METHODS = {
    "memcpy_1proc",
    "shm_memcpy",
    "pipe",
    "zmq_ipc",
    "zmq_tcp",
    "zmq_ipc_compressed",
}
LATENCY_METHODS = {"shm_memcpy", "zmq_ipc", "zmq_tcp", "zmq_ipc_compressed"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    json_path = tmp_path_factory.mktemp("bench") / "transport.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(json_path)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Throughput" in completed.stdout
    return json.loads(json_path.read_text())


def test_every_method_is_measured_with_positive_rates(results: dict[str, Any]) -> None:
    rows = results["throughput"]
    assert {row["method"] for row in rows} == THROUGHPUT_METHODS
    for row in rows:
        for key in ("frames_per_s", "gb_per_s", "ratio_to_shm_memcpy", "ratio_to_memcpy_1proc"):
            assert row[key] > 0, (row["method"], key)
        assert row["frames"] >= 2


def test_ratios_are_relative_to_the_memcpy_rows(results: dict[str, Any]) -> None:
    by_method = {row["method"]: row for row in results["throughput"]}
    assert by_method["shm_memcpy"]["ratio_to_shm_memcpy"] == pytest.approx(1.0)
    assert by_method["memcpy_1proc"]["ratio_to_memcpy_1proc"] == pytest.approx(1.0)
    zmq_ipc = by_method["zmq_ipc"]
    assert zmq_ipc["ratio_to_shm_memcpy"] == pytest.approx(
        zmq_ipc["frames_per_s"] / by_method["shm_memcpy"]["frames_per_s"]
    )


def test_compressed_transport_reports_the_cost_of_compression(results: dict[str, Any]) -> None:
    row = next(r for r in results["throughput"] if r["method"] == "zmq_ipc_compressed")
    for key in (
        "compression_ratio",
        "wire_gb_per_s",
        "encode_ms_per_frame",
        "encode_mb_per_s_per_core",
    ):
        assert row[key] > 0, key


def test_latency_percentiles_are_ordered(results: dict[str, Any]) -> None:
    rows = results["latency"]
    assert {row["method"] for row in rows} == LATENCY_METHODS
    for row in rows:
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"], row
        assert row["rate_hz"] > 0


def test_result_file_says_what_it_measured_on(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "transport"
    assert results["quick"] is True
    assert results["machine"]["logical_cores"] > 0
    assert results["settings"]["sizes"]
