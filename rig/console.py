"""What the rig console prints: a live status line while a trial runs, summaries after."""

from __future__ import annotations

import time
from typing import Any, TextIO

from rig.supervisor import StatusSnapshot, TrialResult
from tracking.jump_detection import EMG_ONSET_PREFIX

# Without a terminal (a log file, CI), print a status line this often instead of redrawing.
PLAIN_STATUS_INTERVAL_S = 1.0


class StatusPrinter:
    """Callable for ``Supervisor.run_trial(on_status=...)``: one redrawn line on a terminal, and
    a line of its own for every jump the live detector reports."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.is_tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_plain_s = 0.0
        self._drawn = False
        self._jumps_shown = 0

    def __call__(self, status: StatusSnapshot) -> None:
        if status.jumps < self._jumps_shown:  # a new trial
            self._jumps_shown = 0
        if status.jumps > self._jumps_shown and status.last_jump:
            self._jumps_shown = status.jumps
            self._write_line(f"JUMP {status.jumps}: {format_jump(status.last_jump)}")
        cameras = "  ".join(
            f"{name} {frames}"
            + (f" ({status.dropped[name]} dropped)" if status.dropped[name] else "")
            for name, frames in status.frames.items()
        )
        phase = f" | {status.phase}" if status.phase else ""
        # The writer's share, short: the fewest frames it holds of any camera.
        recorded = (
            f" | writer {min(status.recorded_frames.values())} frames, "
            f"{status.recorded_samples} samples"
            if status.recorded_frames
            else ""
        )
        line = (
            f"{status.state.value:8s} {status.elapsed_s:6.1f} s | frames: {cameras} | "
            f"DAQ {status.daq_samples} samples, {status.pulses} pulses{recorded}{phase}"
        )
        if self.is_tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_plain_s >= PLAIN_STATUS_INTERVAL_S:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_plain_s = time.monotonic()

    def _write_line(self, text: str) -> None:
        """A line that stays, above the redrawn status line."""
        self.stream.write(("\r\033[K" if self._drawn else "") + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# What the console shows of a jump, in this order: (value name, label, scale, unit).
JUMP_FIELDS: tuple[tuple[str, str, float, str], ...] = (
    ("takeoff_s", "take-off at", 1.0, "s"),
    ("flight_time_s", "flight", 1e3, "ms"),
    ("jump_height_mm", "height", 1.0, "mm"),
    ("jump_distance_mm", "distance", 1.0, "mm"),
    ("takeoff_speed_mm_per_s", "take-off speed", 1.0, "mm/s"),
    ("peak_push_off_force_n", "peak force", 1.0, "N"),
)


def format_jump(values: dict[str, float | None]) -> str:
    """One line with a jump's numbers (those the detector could measure)."""
    parts = []
    for key, label, scale, unit in JUMP_FIELDS:
        value = values.get(key)
        if value is not None and value == value:
            parts.append(f"{label} {value * scale:.4g} {unit}")
    onsets = [
        f"{key.rsplit('/', 1)[-1]} {value * 1e3:+.0f} ms"
        for key, value in values.items()
        if key.startswith(EMG_ONSET_PREFIX) and value is not None and value == value
    ]
    if onsets:
        parts.append("EMG onset vs take-off: " + ", ".join(onsets))
    return ", ".join(parts) or "(no numbers)"


def print_trial_summary(result: TrialResult, stream: TextIO) -> bool:
    """Print the end-of-trial summary; returns whether every camera's accounting balanced."""
    summary = result.writer_summary
    write = stream.write
    write(f"\ntrial {result.trial_id}: {result.end_reason}\n")
    write(f"  file: {result.path}\n")
    if not summary:
        write("  the writer did not finish: the file holds what was last flushed\n")
        write("  (open it with `rig inspect` to see what it holds)\n")
        return False
    daq_rate = summary.get("daq_rate_hz")
    write(f"  DAQ: {summary['daq_samples']} samples")
    write(f" ({summary['daq_samples'] / daq_rate:.2f} s)" if daq_rate else "")
    write(f", {summary['pulses_sent']} trigger pulses recorded\n")
    write(f"  {'camera':<12} {'pulses':>8} {'written':>8} {'dropped':>8}  accounting\n")
    for account in summary["accounting"]:
        dropped = account["dropped_trigger_indices"]
        shown = ", ".join(str(i) for i in dropped[:8]) + (", ..." if len(dropped) > 8 else "")
        verdict = "ok" if account["balanced"] else "MISMATCH"
        write(
            f"  {account['camera']:<12} {account['pulses_sent']:>8} {account['frames_written']:>8} "
            f"{account['frames_dropped']:>8}  {verdict}"
            + (f"  dropped trigger indices: {shown}" if dropped else "")
            + "\n"
        )
    problems = summary.get("problems", [])
    unbalanced = [a["camera"] for a in summary["accounting"] if not a["balanced"]]
    if problems or unbalanced:
        write("\n  !!! FRAME ACCOUNTING MISMATCH !!!\n")
        for problem in problems:
            write(f"  !!! {problem}\n")
        if unbalanced:
            write(f"  !!! pulses != written + dropped for {', '.join(unbalanced)}\n")
        return False
    return True


def print_file_summary(summary: dict[str, Any], stream: TextIO) -> None:
    """Human-readable form of ``TrialFile.summary()``."""
    write = stream.write
    for key, value in summary.items():
        if isinstance(value, dict):
            write(f"{key}:\n")
            for inner_key, inner_value in value.items():
                if isinstance(inner_value, dict):
                    write(f"  {inner_key}:\n")
                    for k, v in inner_value.items():
                        write(f"    {k}: {_short(v)}\n")
                else:
                    write(f"  {inner_key}: {_short(inner_value)}\n")
        else:
            write(f"{key}: {_short(value)}\n")


def _short(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) > 12:
        return "[" + ", ".join(str(v) for v in value[:12]) + f", ... ({len(value)} in all)]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_tracking_report(report: dict[str, Any], stream: TextIO) -> None:
    """The tracking part of a trial's summary: poses, 3D error against truth, the jump."""
    write = stream.write
    for camera, poses in report.get("pose2d", {}).items():
        write(
            f"  2D {camera}: {poses['frames']} frames, {poses['inferred_live']} inferred live, "
            f"median likelihood {_short(poses['median_likelihood'])}\n"
        )
    pose3d = report.get("pose3d")
    if pose3d:
        write(
            f"  3D: {pose3d['points_triangulated']} points over {pose3d['trigger_indices']} "
            f"trigger indices, median reprojection error "
            f"{_short(pose3d['median_reprojection_error_px'])} px\n"
        )
        truth = pose3d.get("error_vs_truth_mm")
        if truth:
            write(
                f"  3D error against the twin's truth: median {_short(truth['median'])} mm, "
                f"p95 {_short(truth['p95'])} mm ({truth['points']} points)\n"
            )
    jump = report.get("last_jump")
    if jump:
        shown = (
            "takeoff_s",
            "landing_s",
            "flight_time_s",
            "jump_height_mm",
            "jump_distance_mm",
            "takeoff_speed_mm_per_s",
            "peak_push_off_force_n",
        )
        write("  jump: " + ", ".join(f"{k} {_short(jump[k])}" for k in shown if k in jump) + "\n")
    versus = report.get("last_jump_vs_truth")
    if versus:
        write(
            "  jump minus truth: " + ", ".join(f"{k} {_short(v)}" for k, v in versus.items()) + "\n"
        )
