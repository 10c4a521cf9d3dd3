"""Batch scaling benchmark: ``rig batch`` over 1, 2 and 4 local Dask workers on the same trials.

Run: ``.venv/bin/python bench/batch_scaling.py [--quick] [--json PATH] [--trials N]
[--duration-s S] [--workers 1,2,4] [--tracking]``

Trials of the digital twin (the default rig: 4 cameras at 640x480, 200 Hz) are recorded once,
then re-analysed with ``rig.batch.command.run_batch`` (what ``rig batch`` runs) into a fresh
output folder for each number of local worker processes: trials per minute, and the speed-up
over one worker. The reference is one trial replayed alone with ``replay_trial`` at max speed,
in this process: what a trial costs with nothing else running, and so the most a batch on one
worker could do (60 s over that replay's wall time, trials per minute).

Tracking is off by default (the recordings are replayed as recorded, without pose inference):
with tracking, every 640x480 frame costs ~30 ms of TensorFlow after the trial on this CPU
(docs/replay.md), minutes per trial, and three batches of several trials would take an hour on
2 cores. Without it the benchmark measures what the batch itself adds and how replays share the
machine. ``--tracking`` replays with tracking on (the config's pose model) for a machine with
the time.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on the import path: the repository root goes before it,
# so the project's packages come from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import (
    Column,
    add_common_arguments,
    load_average_1min,
    machine_info,
    median_of,
    print_machine,
    print_table,
    size_label,
    use_single_threaded_compute,
    write_json,
)
from replay import record, recording_config

from rig.batch.command import run_batch
from rig.batch.jobs import ReplaySettings
from rig.config import DEFAULT_CONFIG_PATH
from rig.replay.run import MAX_SPEED, replay_trial

NAME = "batch_scaling"


def single_replay_row(
    trial: Path, folder: Path, settings: ReplaySettings, repeats: int
) -> dict[str, Any]:
    """One trial replayed alone, in this process, ``repeats`` times: the reference (median)."""
    load = load_average_1min()
    walls_s = []
    completed = True
    for _ in range(repeats):
        result = replay_trial(
            trial,
            output_dir=folder,
            speed=MAX_SPEED,
            model=Path(settings.model) if settings.model else None,
            tracking=settings.tracking,
        )
        walls_s.append(result.wall_s + result.completion_s)
        completed = completed and result.trial.completed
        shutil.rmtree(folder, ignore_errors=True)
    wall_s = median_of(walls_s)
    return {
        "what": "replay_trial alone",
        "workers": None,
        "trials": 1,
        "completed": completed,
        "wall_s": wall_s,
        "wall_s_runs": walls_s,
        "trials_per_min": 60.0 / wall_s,
        "trial_wall_s_median": wall_s,
        "load_average_1min_before": load,
    }


def batch_row(
    trials_folder: Path, count: int, workers: int, folder: Path, settings: ReplaySettings
) -> dict[str, Any]:
    """``count`` trials through run_batch on a local cluster of ``workers`` processes."""
    load = load_average_1min()
    printed = io.StringIO()
    started_s = time.monotonic()
    report = run_batch(
        [trials_folder], output=folder, settings=settings, workers=workers, out=printed
    )
    wall_s = time.monotonic() - started_s
    for line in printed.getvalue().splitlines():
        print(f"    {line}", flush=True)
    trial_walls = [outcome.wall_s for outcome in report.outcomes if outcome.status == "done"]
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "what": "rig batch",
        "workers": workers,
        "trials": count,
        "completed": report.count("done") == count,
        "replayed": report.count("done"),
        "failed": report.count("failed"),
        "jumps": report.jumps,
        "wall_s": wall_s,
        "trials_per_min": 60.0 * report.count("done") / wall_s,
        # One task: skip check, replay process start-up, the replay, the checks and the rename.
        "trial_wall_s_median": median_of(trial_walls) if trial_walls else None,
        "load_average_1min_before": load,
    }


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    use_single_threaded_compute()
    quick: bool = arguments.quick
    cameras = 2 if quick else 4
    height, width = (120, 160) if quick else (480, 640)
    duration_s = arguments.duration_s or (0.5 if quick else 2.0)
    count = arguments.trials or (2 if quick else 8)
    worker_counts = arguments.workers or ([1, 2] if quick else [1, 2, 4])
    config = recording_config(arguments.config, cameras, height, width)
    settings = ReplaySettings(tracking=True) if arguments.tracking else ReplaySettings()
    folder = Path(tempfile.mkdtemp(prefix="jumprig-bench-batch-", dir=arguments.dir))
    rows: list[dict[str, Any]] = []
    try:
        trials_folder = folder / "recorded"
        print(f"recording {count} trials of {duration_s:g} s ...", flush=True)
        trials = [record(config, duration_s, trials_folder) for _ in range(count)]
        repeats = arguments.alone_repeats or (1 if quick else 3)
        print(f"one trial replayed alone, {repeats} times ...", flush=True)
        rows.append(single_replay_row(trials[0], folder / "single", settings, repeats))
        print(f"  {', '.join(f'{wall:.1f}' for wall in rows[-1]['wall_s_runs'])} s", flush=True)
        for workers in worker_counts:
            print(f"rig batch of {count} trials on {workers} local workers ...", flush=True)
            output = folder / f"out{workers}"
            rows.append(batch_row(trials_folder, count, workers, output, settings))
            print(
                f"  {rows[-1]['wall_s']:.1f} s, {rows[-1]['trials_per_min']:.2f} trials/min",
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    batches = [row for row in rows if row["what"] == "rig batch"]
    one_worker = next((row for row in batches if row["workers"] == 1), None)
    single = rows[0]
    for row in rows:
        row["speed_up_vs_1_worker"] = (
            row["trials_per_min"] / one_worker["trials_per_min"]
            if one_worker and row["what"] == "rig batch"
            else None
        )
        row["vs_replay_alone"] = row["trials_per_min"] / single["trials_per_min"]
    best = max(batches, key=lambda row: row["trials_per_min"]) if batches else None
    return {
        "benchmark": NAME,
        "quick": quick,
        "machine": {**machine, "load_average_1min_end": load_average_1min()},
        "settings": {
            "config": str(arguments.config),
            "cameras": cameras,
            "size": size_label(height, width),
            "rate_hz": config.trigger.rate_hz,
            "duration_s": duration_s,
            "trials": count,
            "workers": worker_counts,
            "tracking": bool(arguments.tracking),
            "alone_repeats": len(rows[0]["wall_s_runs"]),
        },
        "rows": rows,
        "summary": {
            "replay_alone_trials_per_min": single["trials_per_min"],
            "best_workers": best["workers"] if best else None,
            "best_trials_per_min": best["trials_per_min"] if best else None,
            "best_speed_up_vs_1_worker": best["speed_up_vs_1_worker"] if best else None,
        },
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    settings = results["settings"]
    print_table(
        f"Batch re-analysis of {settings['trials']} trials of {settings['duration_s']:g} s, "
        f"{settings['cameras']} cameras at {settings['size']}, {settings['rate_hz']:g} Hz, "
        f"tracking {'on' if settings['tracking'] else 'off'}",
        results["rows"],
        [
            Column("what", "what"),
            Column("workers", "workers"),
            Column("trials", "trials"),
            Column("completed", "all done"),
            Column("wall_s", "wall s", ".1f"),
            Column("trials_per_min", "trials/min", ".2f"),
            Column("speed_up_vs_1_worker", "speed-up vs 1 worker", ".2f"),
            Column("vs_replay_alone", "vs replay alone", ".2f"),
            Column("trial_wall_s_median", "s per trial (median)", ".1f"),
            # The 1-minute load average carries the previous step's own processes over: only the
            # machine's value at the start tells what else ran.
            Column("load_average_1min_before", "load before", ".1f"),
        ],
    )
    summary = results["summary"]
    if summary["best_workers"] is not None:
        print(
            f"best: {summary['best_trials_per_min']:.2f} trials/min with "
            f"{summary['best_workers']} workers ({summary['best_speed_up_vs_1_worker']:.2f}x one "
            f"worker); one replay alone: {summary['replay_alone_trials_per_min']:.2f} trials/min"
        )
    for row in results["rows"]:
        if not row["completed"]:
            print(f"  not every trial finished: {row}")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="base rig config (sim.toml)"
    )
    parser.add_argument("--trials", type=int, default=None, help="trials (default 8; --quick 2)")
    parser.add_argument(
        "--duration-s", type=float, default=None, help="each trial (default 2; --quick 0.5)"
    )
    parser.add_argument(
        "--workers",
        type=_worker_counts,
        default=None,
        help="local worker counts, e.g. 1,2,4 (the default; --quick 1,2)",
    )
    parser.add_argument(
        "--alone-repeats",
        type=int,
        default=None,
        help="replays of one trial alone, the median is the reference (default 3; --quick 1)",
    )
    parser.add_argument(
        "--tracking", action="store_true", help="replay with tracking on (slow: see above)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the trial files (default: temp)"
    )
    arguments = parser.parse_args(argv)
    if arguments.trials is not None and arguments.trials < 1:
        parser.error("--trials must be >= 1")
    if arguments.duration_s is not None and arguments.duration_s <= 0:
        parser.error("--duration-s must be positive")
    if arguments.alone_repeats is not None and arguments.alone_repeats < 1:
        parser.error("--alone-repeats must be >= 1")
    return arguments


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"worker counts like 1,2,4, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    results = run(arguments)
    print_results(results)
    write_json(results, arguments.json)


if __name__ == "__main__":
    main()
