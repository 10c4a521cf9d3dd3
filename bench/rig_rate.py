"""Recorder benchmark: the highest camera rate the whole simulated rig records without a drop.

Run: ``.venv/bin/python bench/rig_rate.py [--quick] [--json PATH] [--rates 100,200,...]``

Each rate is one real trial of the digital twin through ``rig.supervisor.Supervisor.run_trial``:
every process of the rig (writer, one per camera, the DAQ with its trigger box), real ZeroMQ
sockets and a real trial file, with ``trigger.rate_hz`` set to the rate. The frame accounting the
writer returns (``TrialResult.writer_summary["accounting"]``) says per camera how many frames
were written and dropped, and which drops happened because a camera process's bounded buffer was
full (``dropped_by_pipeline``: the writer fell behind). While the trial records, the CPU time of
every worker is sampled from ``/proc`` to show where the cores go. The reference is the machine
itself: the cores it has, and the rate the design asks for (500 frames/s per camera).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from benchlib import (
    Column,
    add_common_arguments,
    load_average_1min,
    machine_info,
    parse_size,
    print_machine,
    print_table,
    size_label,
    use_single_threaded_compute,
    write_json,
)

from rig.config import DEFAULT_CONFIG_PATH, RigConfig, load_config
from rig.supervisor import StatusSnapshot, Supervisor, TrialState
from rig.trialfile import layout

NAME = "rig_rate"
# Rates whose pulse period is a whole number of samples of the default 10 kHz DAQ clock.
DEFAULT_RATES_HZ = (50.0, 100.0, 200.0, 250.0, 400.0, 500.0)
QUICK_RATES_HZ = (100.0,)
DESIGN_RATE_HZ = 500.0
MIN_SAMPLES_PER_PULSE = 2
# Jitter of a recorder that keeps up is a few ms; a backlog absorbed by queues grows far beyond.
DEFAULT_LATE_LIMIT_MS = 100.0
_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class RecordingMonitor:
    """Fed the supervisor's status snapshots: samples worker CPU time and camera buffer fill.

    CPU is compared between the first and the last snapshot taken while the trial is RUNNING,
    so process start-up and shutdown are left out.
    """

    first: tuple[float, dict[str, float]] | None = None
    last: tuple[float, dict[str, float]] | None = None
    peak_buffered_frames: int = 0
    snapshots: int = 0
    roles_seen: set[str] = field(default_factory=set)

    def __call__(self, snapshot: StatusSnapshot) -> None:
        if snapshot.state != TrialState.RUNNING:
            return
        self.snapshots += 1
        if snapshot.buffered:
            self.peak_buffered_frames = max(
                self.peak_buffered_frames, max(snapshot.buffered.values())
            )
        sample = worker_cpu_seconds()
        if sample is None:
            return
        now_s = time.monotonic()
        self.roles_seen.update(sample)
        if self.first is None:
            self.first = (now_s, sample)
        self.last = (now_s, sample)

    def cores_by_role(self) -> dict[str, float] | None:
        """CPU cores busy on average per role while recording (1.0 = one core all the time)."""
        if self.first is None or self.last is None or self.last[0] - self.first[0] <= 0:
            return None
        (start_s, start), (end_s, end) = self.first, self.last
        cores = {
            role: (end[role] - start[role]) / (end_s - start_s) for role in start if role in end
        }
        return dict(sorted(cores.items()))


def worker_cpu_seconds() -> dict[str, float] | None:
    """CPU seconds (user + system) of this process and of each live child, by process name.

    The supervisor names its workers by role ("writer", "camera:cam_left", "daq"). None where
    ``/proc`` is not available.
    """
    times = {"supervisor": time.process_time()}
    for child in multiprocessing.active_children():
        if child.pid is None:
            continue
        seconds = _proc_cpu_seconds(child.pid)
        if seconds is None:
            return None
        times[child.name] = seconds
    return times


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / _CLOCK_TICKS_PER_S


def frame_lateness_ms(path: Path, camera_names: list[str], rate_hz: float) -> dict[str, float]:
    """How late the cameras delivered frames against the pulse schedule, from the trial file.

    Frame k of a camera is due k pulse periods after the schedule's origin, taken as the frame
    that came earliest relative to its pulse. A recorder that keeps up shows a few ms of jitter
    (after a start-up transient: the first frames of a trial come late and are caught up); one
    that falls behind, and drops nothing only because queues absorb the backlog, is later and
    later as the trial goes on. So the verdict uses the last quarter of the frames
    (``lateness_end_p99_ms``); ``lateness_max_ms`` includes the start. Worst camera of each.
    """
    worst = {"lateness_end_p99_ms": 0.0, "lateness_max_ms": 0.0}
    with h5py.File(path, "r") as h5file:
        for name in camera_names:
            t_host_ns = h5file[layout.camera_dataset(name, layout.T_HOST_NS)][:]
            trigger_index = h5file[layout.camera_dataset(name, layout.TRIGGER_INDEX)][:]
            if t_host_ns.size == 0:
                continue
            offset_ns = t_host_ns - trigger_index * (1e9 / rate_hz)  # (N,) float64
            lateness_ms = (offset_ns - offset_ns.min()) / 1e6
            end = lateness_ms[len(lateness_ms) * 3 // 4 :]
            worst["lateness_end_p99_ms"] = max(
                worst["lateness_end_p99_ms"], float(np.percentile(end, 99))
            )
            worst["lateness_max_ms"] = max(worst["lateness_max_ms"], float(lateness_ms.max()))
    return worst


def trial_config(
    base_config: Path, rate_hz: float, cameras: int, height: int, width: int
) -> RigConfig:
    """The base config with the rate, and ``cameras`` cameras of the given size."""
    base = load_config(base_config)
    camera_tables = []
    for index in range(cameras):
        # Cameras beyond the config's own copy the last one's settings under a new name.
        template = base.cameras[min(index, len(base.cameras) - 1)]
        camera_tables.append(
            {
                "name": template.name if index < len(base.cameras) else f"cam{index}",
                "width": width,
                "height": height,
                "max_buffered_frames": template.max_buffered_frames,
            }
        )
    # The recorder alone: tracking (its own benchmark) would share the same cores.
    return load_config(
        base_config,
        {"trigger.rate_hz": rate_hz, "cameras": camera_tables, "tracking.enabled": False},
    )


def record_at(
    config: RigConfig, duration_s: float, folder: Path, keep_files: bool, late_limit_ms: float
) -> dict[str, Any]:
    """One trial at ``config.trigger.rate_hz``; its frame accounting and CPU use, as one row."""
    monitor = RecordingMonitor()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_s = time.monotonic()
    result = Supervisor(config).run_trial(
        subject="bench", duration_s=duration_s, output_dir=folder, on_status=monitor
    )
    wall_s = time.monotonic() - started_s
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    accounts = result.writer_summary.get("accounting", [])
    pulses_sent = int(result.writer_summary.get("pulses_sent", 0))
    frames_written = sum(int(account["frames_written"]) for account in accounts)
    frames_dropped = sum(int(account["frames_dropped"]) for account in accounts)
    dropped_by_pipeline = sum(len(account["dropped_by_pipeline"]) for account in accounts)
    file_bytes = result.path.stat().st_size if result.path.exists() else 0
    lateness = (
        frame_lateness_ms(result.path, list(config.camera_names), config.trigger.rate_hz)
        if result.path.exists() and result.completed
        else {}
    )
    if not keep_files:
        result.path.unlink(missing_ok=True)
    cores = monitor.cores_by_role()
    row: dict[str, Any] = {
        "rate_hz": config.trigger.rate_hz,
        "samples_per_pulse": config.samples_per_pulse,
        "cameras": len(config.cameras),
        "size": size_label(config.cameras[0].height, config.cameras[0].width),
        "duration_s": duration_s,
        "completed": result.completed,
        "end_reason": result.end_reason,
        "pulses_sent": pulses_sent,
        "frames_expected": pulses_sent * len(config.cameras),
        "frames_written": frames_written,
        "frames_dropped": frames_dropped,
        "dropped_by_pipeline": dropped_by_pipeline,
        "dropped_elsewhere": frames_dropped - dropped_by_pipeline,
        "buffer_overflowed": dropped_by_pipeline > 0,
        "peak_buffered_frames": monitor.peak_buffered_frames,
        "max_buffered_frames": max(camera.max_buffered_frames for camera in config.cameras),
        "accounting_balanced": bool(accounts) and all(a["balanced"] for a in accounts),
        "problems": list(result.writer_summary.get("problems", [])),
        **lateness,
        "file_mb": file_bytes / 1e6,
        "trial_wall_s": wall_s,
        # From the end of recording to the file being closed: grows when queues hold a backlog.
        "stop_s": time.monotonic() - monitor.last[0] if monitor.last else None,
        "worker_cpu_s": (children_after.ru_utime + children_after.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        "cpu_cores_by_role": cores,
    }
    if cores is not None:
        row["cpu_cores_cameras"] = sum(v for k, v in cores.items() if k.startswith("camera:"))
        row["cpu_cores_writer"] = cores.get("writer")
        row["cpu_cores_daq"] = cores.get("daq")
        row["cpu_cores_total"] = sum(cores.values())
    row["no_drops"] = (
        result.completed and frames_dropped == 0 and row["accounting_balanced"] and pulses_sent > 0
    )
    row["kept_up"] = row["no_drops"] and row.get("lateness_end_p99_ms", math.inf) <= late_limit_ms
    return row


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()  # before the load of the benchmark itself
    use_single_threaded_compute()
    quick: bool = arguments.quick
    rates_hz: tuple[float, ...] = arguments.rates or (QUICK_RATES_HZ if quick else DEFAULT_RATES_HZ)
    cameras = arguments.cameras or (2 if quick else 4)
    height, width = arguments.size or ((120, 160) if quick else (480, 640))
    duration_s = arguments.duration_s or (0.5 if quick else 3.0)
    configs = [
        trial_config(arguments.config, rate_hz, cameras, height, width) for rate_hz in rates_hz
    ]
    for config in configs:
        if config.samples_per_pulse < MIN_SAMPLES_PER_PULSE:
            raise SystemExit(
                f"rate {config.trigger.rate_hz:g} Hz leaves {config.samples_per_pulse:g} DAQ "
                f"samples per pulse; at least {MIN_SAMPLES_PER_PULSE} are needed"
            )
    parent: Path = arguments.dir if arguments.dir is not None else Path.cwd()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="jumprig-bench-rig-", dir=parent))
    rows = []
    try:
        for config in configs:
            row = record_at(config, duration_s, folder, arguments.keep, arguments.late_limit_ms)
            rows.append(row)
            print(
                f"  {row['rate_hz']:>6.0f} Hz: {row['frames_written']} written, "
                f"{row['frames_dropped']} dropped ({row['dropped_by_pipeline']} by full buffers), "
                f"{row['end_reason']}",
                flush=True,
            )
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)
    clean_rates = [row["rate_hz"] for row in rows if row["no_drops"]]
    real_time_rates = [row["rate_hz"] for row in rows if row["kept_up"]]
    return {
        "benchmark": NAME,
        "quick": quick,
        "machine": {**machine, "load_average_1min_end": load_average_1min()},
        "settings": {
            "config": str(arguments.config),
            "rates_hz": list(rates_hz),
            "cameras": cameras,
            "size": size_label(height, width),
            "duration_s": duration_s,
            "design_rate_hz": DESIGN_RATE_HZ,
            "late_limit_ms": arguments.late_limit_ms,
            "trials_kept_in": str(folder) if arguments.keep else None,
        },
        "rates": rows,
        "highest_rate_without_drops_hz": max(clean_rates) if clean_rates else None,
        "highest_rate_kept_up_hz": max(real_time_rates) if real_time_rates else None,
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    settings = results["settings"]
    print_table(
        f"Whole recorder, {settings['cameras']} cameras at {settings['size']}, "
        f"{settings['duration_s']:g} s per trial",
        results["rates"],
        [
            Column("rate_hz", "rate Hz", ".0f"),
            Column("pulses_sent", "pulses"),
            Column("frames_written", "written"),
            Column("frames_dropped", "dropped"),
            Column("dropped_by_pipeline", "by full buffer"),
            Column("peak_buffered_frames", "peak buffered"),
            Column("lateness_end_p99_ms", "late end ms", ".0f"),
            Column("lateness_max_ms", "late max ms", ".0f"),
            Column("stop_s", "stop s", ".1f"),
            Column("cpu_cores_cameras", "cores cams", ".2f"),
            Column("cpu_cores_writer", "cores writer", ".2f"),
            Column("cpu_cores_daq", "cores daq", ".2f"),
            Column("cpu_cores_total", "cores total", ".2f"),
            Column("no_drops", "no drops"),
            Column("kept_up", "kept up"),
        ],
    )
    for row in results["rates"]:
        if row["problems"] or not row["completed"]:
            print(f"  {row['rate_hz']:.0f} Hz: {row['end_reason']}; {row['problems']}")
    cores = results["machine"]["usable_cores"]
    for key, what in (
        ("highest_rate_without_drops_hz", "without a dropped frame"),
        ("highest_rate_kept_up_hz", "kept up in real time (and no drops)"),
    ):
        highest = results[key]
        rate = "none of the rates" if highest is None else f"{highest:.0f} Hz"
        print(f"highest rate {what}: {rate} ({cores} cores)")


def _parse_rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be numbers, got {text!r}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive, got {text!r}")
    return tuple(sorted(rates))


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="base rig config (sim.toml)"
    )
    parser.add_argument(
        "--rates",
        type=_parse_rates,
        default=None,
        help="trigger rates in Hz, comma separated (default 50,100,200,250,400,500; --quick 100)",
    )
    parser.add_argument("--cameras", type=int, default=None, help="default 4 (--quick 2)")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="WIDTHxHEIGHT (default 640x480)"
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="per trial (default 3; --quick 0.5)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder for the trial files (a temporary folder inside it; default: current dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the trial files")
    parser.add_argument(
        "--late-limit-ms",
        type=float,
        default=DEFAULT_LATE_LIMIT_MS,
        help="a rate is kept up when the last quarter of the frames came no later than this "
        "after their pulses' schedule (p99)",
    )
    arguments = parser.parse_args(argv)
    if arguments.cameras is not None and arguments.cameras < 1:
        parser.error("--cameras must be >= 1")
    if arguments.duration_s is not None and arguments.duration_s <= 0:
        parser.error("--duration-s must be positive")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    results = run(arguments)
    print_results(results)
    write_json(results, arguments.json)


if __name__ == "__main__":
    main()
