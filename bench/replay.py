"""Replay benchmark: how fast a recorded trial replays through the whole pipeline at --speed max.

Run: ``.venv/bin/python bench/replay.py [--quick] [--json PATH] [--repeats N] [--no-inference]``

A trial of the digital twin is recorded once (tracking off, the recorder alone), then replayed
with ``rig.replay.run.replay_trial`` at ``--speed max``: every process of the rig (writer, one per
camera, the DAQ), real ZeroMQ sockets, a real trial file. Two ways:

- without inference (``tracking.enabled = false``): the recording path alone;
- with inference: tracking on (live pose on the newest frames, triangulation, jump detection),
  then the completion after the trial that infers every frame not inferred live, as ``rig run``
  and ``rig replay`` do.

The reference is the recording itself: replay frames/s and the multiple of real time, the
recorded time from the first trigger pulse to the last over the replay's time from its first
frame to its last (process start-up, the same for any trial length, is reported apart). The goal
without inference is 10x. Every replay is also compared with the recording (frames, samples):
a fast replay that is not identical does not count.
"""

from __future__ import annotations

import argparse
import math
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
from rig_rate import RecordingMonitor

from rig.config import DEFAULT_CONFIG_PATH, RigConfig, load_config
from rig.replay.compare import compare_trials
from rig.replay.pacing import ReplaySpeed
from rig.replay.run import ReplayResult, replay_trial
from rig.supervisor import Supervisor

NAME = "replay"
GOAL_WITHOUT_INFERENCE = 10.0
# Datasets the no-inference replay must reproduce bit for bit.
RECORDING_DATASETS = ("frames", "frame_id", "trigger_index", "daq_sample_index", "t_device_ns")


def recording_config(base: Path, cameras: int, height: int, width: int) -> RigConfig:
    """The base config with ``cameras`` cameras of the given size and tracking off."""
    config = load_config(base)
    names = [camera.name for camera in config.cameras]
    camera_tables = [
        {
            "name": names[index] if index < len(names) else f"cam{index}",
            "width": width,
            "height": height,
        }
        for index in range(cameras)
    ]
    return load_config(base, {"cameras": camera_tables, "tracking.enabled": False})


def record(config: RigConfig, duration_s: float, folder: Path) -> Path:
    started_s = time.monotonic()
    result = Supervisor(config).run_trial(subject="bench", duration_s=duration_s, output_dir=folder)
    if not result.completed:
        raise SystemExit(f"the recording failed: {result.end_reason}")
    print(f"  recorded {result.path.name} in {time.monotonic() - started_s:.1f} s", flush=True)
    return result.path


def replay_row(
    recording: Path, folder: Path, inference: bool, model: Path | None, usable_cores: int
) -> dict[str, Any]:
    """One replay at --speed max; its speed, backlog and identity with the recording, as a row."""
    monitor = RecordingMonitor()
    result = replay_trial(
        recording,
        output_dir=folder,
        speed=ReplaySpeed.parse("max"),
        tracking=inference,
        model=model if inference else None,
        on_status=monitor,
    )
    row = _row(result, inference)
    row["usable_cores"] = usable_cores
    comparison = compare_trials(recording, result.path)
    recorded_paths = [
        f"/cameras/{camera.name}/{column}"
        for camera in result.recorded.cameras
        for column in RECORDING_DATASETS
    ] + ["/daq/analog", "/daq/trigger_line", "/daq/trigger_sample_index"]
    row["recording_identical"] = all(
        comparison.row(path).status.value == "identical" for path in recorded_paths
    )
    cores = monitor.cores_by_role()
    if cores is not None and monitor.first is not None and monitor.last is not None:
        window_s = monitor.last[0] - monitor.first[0]
        cpu_s = sum(cores.values()) * window_s
        # CPU of every process of the rig while it replayed: what the replay costs, whatever
        # else the machine is doing. With all the machine's cores, the replay could go at most
        # this fast (the pace it reaches on a machine that does nothing else).
        row["cpu_s"] = cpu_s
        row["cpu_ms_per_frame"] = cpu_s / max(row["frames"], 1) * 1e3
        row["cpu_bound_pace"] = (
            row["usable_cores"] * row["recorded_s"] / cpu_s if cpu_s > 0 else None
        )
        row["cpu_cores_cameras"] = sum(v for k, v in cores.items() if k.startswith("camera:"))
        row["cpu_cores_writer"] = cores.get("writer")
        row["cpu_cores_daq"] = cores.get("daq")
        row["cpu_cores_pose"] = sum(v for k, v in cores.items() if k.startswith("pose:")) or None
        row["cpu_cores_total"] = sum(cores.values())
    result.path.unlink(missing_ok=True)
    return row


def _row(result: ReplayResult, inference: bool) -> dict[str, Any]:
    recorded = result.recorded
    frames = result.frames_written
    span_s = result.frame_span_s
    completion_s = result.completion_s
    end_to_end_s = (span_s or math.nan) + completion_s
    return {
        "inference": inference,
        "completed": result.trial.completed,
        "end_reason": result.trial.end_reason,
        "recorded_s": recorded.pulse_span_s,
        "frames": frames,
        "frames_recorded": recorded.frames,
        "frames_dropped": result.frames_dropped,
        "replay_span_s": span_s,
        "frames_per_s": result.frames_per_s,
        "pace": result.pace,
        "peak_backlog_frames": result.peak_backlog_frames,
        "peak_in_flight_frames": result.peak_in_flight_frames,
        "backlog_pauses": result.backlog_pauses,
        "wall_s": result.wall_s,
        # Process start-up and shutdown: what a replay costs on top of its frames.
        "overhead_s": result.wall_s - (span_s or 0.0),
        "completion_s": completion_s,
        "frames_inferred_offline": (
            sum(result.completion.frames_inferred_offline.values()) if result.completion else 0
        ),
        # With inference: every frame inferred, live or after the trial.
        "end_to_end_frames_per_s": frames / end_to_end_s if inference else None,
        "end_to_end_pace": recorded.pulse_span_s / end_to_end_s if inference else None,
    }


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    use_single_threaded_compute()
    quick: bool = arguments.quick
    cameras = arguments.cameras or (2 if quick else 4)
    height, width = (120, 160) if quick else (480, 640)
    duration_s = arguments.duration_s or (0.5 if quick else 3.0)
    repeats = arguments.repeats or (1 if quick else 3)
    config = recording_config(arguments.config, cameras, height, width)
    model = (
        Path(load_config(arguments.config).tracking.model) if not arguments.no_inference else None
    )
    folder = Path(tempfile.mkdtemp(prefix="jumprig-bench-replay-", dir=arguments.dir))
    rows: list[dict[str, Any]] = []
    try:
        recording = record(config, duration_s, folder / "recorded")
        modes = [False] if arguments.no_inference else [False, True]
        for inference in modes:
            for repeat in range(repeats):
                row = replay_row(
                    recording, folder / "replays", inference, model, machine["usable_cores"]
                )
                row["repeat"] = repeat
                rows.append(row)
                print(
                    f"  {'with' if inference else 'without'} inference, run {repeat + 1}: "
                    f"{row['frames_per_s'] or 0:.0f} frames/s, {row['pace'] or 0:.2f}x real time, "
                    f"{row['frames_dropped']} dropped, identical: {row['recording_identical']}",
                    flush=True,
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {}
    for inference in (False, True):
        runs = [row for row in rows if row["inference"] is inference and row["pace"]]
        if runs:
            key = "with_inference" if inference else "without_inference"
            summary[key] = {
                "frames_per_s_median": median_of([row["frames_per_s"] for row in runs]),
                "pace_median": median_of([row["pace"] for row in runs]),
                "wall_s_median": median_of([row["wall_s"] for row in runs]),
            }
            cpu_bound = [row["cpu_bound_pace"] for row in runs if row.get("cpu_bound_pace")]
            if cpu_bound:
                summary[key]["cpu_bound_pace_median"] = median_of(cpu_bound)
            if inference:
                summary[key]["end_to_end_pace_median"] = median_of(
                    [row["end_to_end_pace"] for row in runs]
                )
                summary[key]["end_to_end_frames_per_s_median"] = median_of(
                    [row["end_to_end_frames_per_s"] for row in runs]
                )
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
            "repeats": repeats,
            "goal_without_inference": GOAL_WITHOUT_INFERENCE,
        },
        "replays": rows,
        "summary": summary,
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    settings = results["settings"]
    print_table(
        f"Replay at --speed max of a {settings['duration_s']:g} s trial, {settings['cameras']} "
        f"cameras at {settings['size']}, {settings['rate_hz']:g} Hz",
        results["replays"],
        [
            Column("inference", "inference"),
            Column("frames", "frames"),
            Column("frames_dropped", "dropped"),
            Column("recording_identical", "identical"),
            Column("replay_span_s", "replay s", ".2f"),
            Column("frames_per_s", "frames/s", ".0f"),
            Column("pace", "x real time", ".2f"),
            Column("peak_in_flight_frames", "peak in flight"),
            Column("peak_backlog_frames", "peak backlog"),
            Column("backlog_pauses", "pauses"),
            Column("overhead_s", "start+stop s", ".1f"),
            Column("completion_s", "completion s", ".1f"),
            Column("end_to_end_pace", "x real time end to end", ".2f"),
            Column("cpu_cores_cameras", "cores cams", ".2f"),
            Column("cpu_cores_writer", "cores writer", ".2f"),
            Column("cpu_cores_pose", "cores pose", ".2f"),
            Column("cpu_ms_per_frame", "CPU ms/frame", ".2f"),
            Column("cpu_bound_pace", "x real time CPU-bound", ".2f"),
        ],
    )
    for row in results["replays"]:
        if not row["completed"]:
            print(f"  replay did not complete: {row['end_reason']}")
    goal = results["settings"]["goal_without_inference"]
    without = results["summary"].get("without_inference")
    if without:
        verdict = "meets" if without["pace_median"] >= goal else "misses"
        cpu_bound = without.get("cpu_bound_pace_median")
        print(
            f"without inference: {without['frames_per_s_median']:.0f} frames/s, "
            f"{without['pace_median']:.2f}x real time (median; {verdict} the {goal:g}x goal on "
            f"{results['machine']['usable_cores']} cores"
            + (f"; {cpu_bound:.2f}x if the replay had every core" if cpu_bound else "")
            + ")"
        )
    with_inference = results["summary"].get("with_inference")
    if with_inference:
        print(
            f"with inference: {with_inference['frames_per_s_median']:.0f} frames/s through the "
            f"live pipeline ({with_inference['pace_median']:.2f}x real time), "
            f"{with_inference['end_to_end_frames_per_s_median']:.0f} frames/s with every frame "
            f"inferred ({with_inference['end_to_end_pace_median']:.2f}x real time)"
        )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="base rig config (sim.toml)"
    )
    parser.add_argument("--cameras", type=int, default=None, help="default 4 (--quick 2)")
    parser.add_argument(
        "--duration-s", type=float, default=None, help="recorded trial (default 3; --quick 0.5)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="replays per mode (default 3)")
    parser.add_argument(
        "--no-inference", action="store_true", help="only the replay without inference"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the trial files (default: temp)"
    )
    arguments = parser.parse_args(argv)
    if arguments.cameras is not None and arguments.cameras < 1:
        parser.error("--cameras must be >= 1")
    if arguments.duration_s is not None and arguments.duration_s <= 0:
        parser.error("--duration-s must be positive")
    if arguments.repeats is not None and arguments.repeats < 1:
        parser.error("--repeats must be >= 1")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    results = run(arguments)
    print_results(results)
    write_json(results, arguments.json)


if __name__ == "__main__":
    main()
