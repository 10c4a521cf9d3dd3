"""What every benchmark script shares: the machine description, tables, JSON results, frames.

Benchmarks are plain scripts (``.venv/bin/python bench/<name>.py``); this module sits beside them
and is imported by name, so the spawned child processes of a benchmark find it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_RESULTS_DIR = BENCH_DIR / "results"
REPOSITORY_ROOT = BENCH_DIR.parent
# Real videos that are never part of the repository: they sit beside it when present.
SHARED_DATA_DIR = REPOSITORY_ROOT.parent / "shared" / "data"
GB = 1e9
MB = 1e6
THREAD_COUNT_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Column:
    """One column of a printed table: the row key, its heading and how to format its value."""

    key: str
    heading: str
    fmt: str = ""


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH`` (default bench/results/<name>.json) and ``--quick``."""
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS_DIR / f"{name}.json",
        help=f"where to write the results (default: bench/results/{name}.json)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, a few seconds in all: checks that the benchmark runs, measures little",
    )


def use_single_threaded_compute() -> dict[str, str]:
    """Give processes spawned from now on one BLAS/OpenMP thread each, as the rig's workers have.

    ``rig.supervisor`` does the same for its workers. Without it, numpy's BLAS (used by the
    frame codec's fletcher32) wakes a second thread that busy-waits, doubling the CPU time of
    every frame on a small machine. Returns the settings in effect (a value set by the user wins).
    """
    for variable in THREAD_COUNT_VARIABLES:
        os.environ.setdefault(variable, "1")
    return {variable: os.environ[variable] for variable in THREAD_COUNT_VARIABLES}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; every result file carries it."""
    import h5py
    import zmq

    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable_cores = os.cpu_count() or 0
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "memory_gb": _memory_gb(),
        # Other work on the machine while measuring skews every figure: recorded, not hidden.
        "load_average_1min": load_average_1min(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "measured_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    print(f"\nresults written to {path}")


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    """Rows as an aligned text table; a missing or None value prints as '-'."""
    cells = [[_format(row.get(c.key), c.fmt) for c in columns] for row in rows]
    widths = [
        max([len(c.heading)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)
    ]
    print(f"\n{title}")
    print("  ".join(c.heading.rjust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
    sys.stdout.flush()


def print_machine(machine: dict[str, Any]) -> None:
    """One line saying what the numbers were measured on and how busy the machine was."""
    print(
        f"\nmeasured on {machine['usable_cores']} cores ({machine['cpu_model']}), "
        f"load average {machine['load_average_1min']} at the start, "
        f"{machine.get('load_average_1min_end')} at the end"
    )


def median_of(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(np.median(np.asarray(values, dtype=np.float64)))


def best_of_runs(
    runs: Sequence[dict[str, Any]], key: str, higher_is_better: bool = True
) -> dict[str, Any]:
    """The run whose ``key`` is the median of all runs (the upper median for an even count)."""
    if not runs:
        raise ValueError("no runs")
    ordered = sorted(runs, key=lambda run: run[key], reverse=not higher_is_better)
    return ordered[len(ordered) // 2]


def percentiles_us(latencies_ns: np.ndarray) -> dict[str, float]:
    """(N,) int64 latencies in ns -> p50, p99 and max in microseconds."""
    if latencies_ns.size == 0:
        raise ValueError("no latencies measured")
    values_us = latencies_ns.astype(np.float64) / 1e3
    return {
        "p50_us": float(np.percentile(values_us, 50)),
        "p99_us": float(np.percentile(values_us, 99)),
        "max_us": float(values_us.max()),
    }


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' (width x height, as cameras are specified) -> (height, width)."""
    try:
        width_text, height_text = text.lower().split("x")
        width, height = int(width_text), int(height_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def size_label(height: int, width: int) -> str:
    return f"{width}x{height}"


def synthetic_frames(count: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(count, height, width) uint8 frames of a simulated scene, and what made them.

    The digital twin's renderer draws them when it is importable; otherwise a stand-in with the
    statistics that matter for compression: a smooth lit background, a moving dark body and 2 DN
    of Gaussian sensor noise (the twin's default), which bounds any lossless coder.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rendered = _render_twin_frames(count, height, width, seed)
    if rendered is not None:
        return rendered, "digital twin (acquisition.sim.render.FrameRenderer, 2 DN noise)"
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    background = 70.0 + 50.0 * cols + 20.0 * rows  # (H, W) lighting gradient
    frames = np.empty((count, height, width), dtype=np.uint8)
    for index in range(count):
        centre_x = 0.2 + 0.6 * index / max(count - 1, 1)
        body = np.exp(-(((cols - centre_x) / 0.08) ** 2 + ((rows - 0.55) / 0.05) ** 2))
        noise = rng.standard_normal((height, width), dtype=np.float32) * 2.0
        scene = background - 55.0 * body + noise
        frames[index] = np.clip(np.rint(scene), 0, 255).astype(np.uint8)
    return frames, "gradient + moving body + 2 DN Gaussian noise"


def _render_twin_frames(count: int, height: int, width: int, seed: int) -> np.ndarray | None:
    """The twin's left camera filming its jump, ``count`` frames from crouch to landing."""
    try:
        from acquisition.sim.camera_model import twin_cameras
        from acquisition.sim.render import FrameRenderer
        from acquisition.sim.skeleton import JumpModel, JumpParameters
    except ImportError:
        return None
    jump = JumpParameters()
    camera = twin_cameras(["cam_left"], width, height, gap_mm=jump.gap_mm)[0]
    renderer = FrameRenderer(camera, noise_dn=2.0, seed=seed, gap_mm=jump.gap_mm)
    # Spread the frames over the movement, where frames differ most from one another.
    times_s = np.linspace(jump.crouch_onset_s, jump.crouch_onset_s + 0.8, count)
    points_mm = JumpModel(jump).points_mm(times_s)  # (count, 10, 3)
    frames = np.empty((count, height, width), dtype=np.uint8)
    for index in range(count):
        frames[index] = renderer.render(points_mm[index], trigger_index=index)
    return frames


def _format(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if fmt:
        return format(value, fmt)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average_1min() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _memory_gb() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_bytes = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * page_bytes / GB, 1)
