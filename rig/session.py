"""A session at the rig console: one or more trials in a row, one file each, and a summary.

``rig run`` is a session of one trial; ``rig run --trials N --inter-trial-s S`` runs N with a
pause between them. Ctrl-C (or SIGTERM) ends the current trial cleanly, keeps its file, and
ends the session; during a pause it just ends the session. With a live preview, the preview
process serves the whole session, so a browser left open follows trial after trial.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rig.config import RigConfig

EXIT_OK = 0
EXIT_TRIAL_FAILED = 1
EXIT_ACCOUNTING = 3


@dataclass(frozen=True)
class TrialOutcome:
    """One trial of the session as its summary table shows it."""

    trial_id: str
    path: Path
    end_reason: str
    completed: bool
    balanced: bool
    frames: int
    dropped: int
    jump: dict[str, Any] | None

    @property
    def exit_code(self) -> int:
        if not self.completed:
            return EXIT_TRIAL_FAILED
        return EXIT_OK if self.balanced else EXIT_ACCOUNTING


@dataclass(frozen=True)
class PreviewOptions:
    host: str = "127.0.0.1"
    port: int = 8050


def run_session(
    config: RigConfig,
    *,
    trials: int,
    inter_trial_s: float,
    stream: TextIO,
    preview: PreviewOptions | None = None,
) -> int:
    """Run up to ``trials`` trials; returns the worst exit code among them (0: all fine)."""
    outcomes: list[TrialOutcome] = []
    with contextlib.ExitStack() as resources:
        monitor_endpoint = ""
        if preview is not None:
            from rig.preview import PreviewError

            try:
                monitor_endpoint = resources.enter_context(_preview_server(config, preview, stream))
            except PreviewError as error:
                stream.write(f"rig: the live preview cannot start: {error}\n")
                return EXIT_TRIAL_FAILED
        from rig.supervisor import Supervisor, TrialNotStarted

        supervisor = Supervisor(config, monitor_endpoint=monitor_endpoint)
        for number in range(trials):
            if trials > 1:
                stream.write(f"\n=== trial {number + 1} of {trials} ===\n")
            try:
                outcome = _run_one(supervisor, config, stream)
            except (OSError, TrialNotStarted) as error:  # not enough disk, a worker host missing
                stream.write(f"rig: cannot start the trial: {error}\n")
                break
            outcomes.append(outcome)
            if "stopped by the operator" in outcome.end_reason:
                break
            if number + 1 < trials and not _pause(inter_trial_s, stream):
                break
    if trials > 1:
        print_session_summary(outcomes, trials, stream)
    return max((outcome.exit_code for outcome in outcomes), default=EXIT_TRIAL_FAILED)


def _run_one(supervisor: Any, config: RigConfig, stream: TextIO) -> TrialOutcome:
    from rig.console import StatusPrinter, print_trial_summary

    printer = StatusPrinter(stream)
    result = supervisor.run_trial(on_status=printer)
    printer.finish()
    balanced = print_trial_summary(result, stream)
    jump: dict[str, Any] | None = None
    tracking = config.tracking
    end_reason = result.end_reason
    written_here = result.path.exists()
    if not written_here and result.writer_summary:
        # A writer on another host (rig worker) wrote the file there.
        stream.write(
            f"\nthe file is on the writer's host; complete its tracking there with "
            f"`rig track {result.path}`\n"
        )
    if (
        tracking.enabled
        and tracking.complete_after_trial
        and result.writer_summary
        and written_here
    ):
        try:
            jump = complete_and_report(result.path, config, stream)
        except KeyboardInterrupt:
            stream.write(
                f"\ntracking completion stopped by the operator; the recording is intact: "
                f"run `rig track {result.path}` to complete it\n"
            )
            end_reason = f"{end_reason}; stopped by the operator during tracking completion"
    accounting = result.writer_summary.get("accounting", [])
    return TrialOutcome(
        trial_id=result.trial_id,
        path=result.path,
        end_reason=end_reason,
        completed=result.completed,
        balanced=balanced,
        frames=sum(int(a["frames_written"]) for a in accounting),
        dropped=sum(int(a["frames_dropped"]) for a in accounting),
        jump=jump,
    )


def complete_and_report(path: Path, config: RigConfig, stream: TextIO) -> dict[str, Any] | None:
    """Complete a trial's tracking offline and print its report; returns the last jump's
    numbers (None without a jump)."""
    from rig.complete_tracking import complete_tracking
    from rig.console import print_tracking_report
    from rig.tracking_report import tracking_report

    stream.write("\ncompleting the tracking (frames not inferred live, 3D, jumps) ...\n")
    stream.flush()

    def progress(line: str) -> None:
        stream.write(f"  {line}\n")
        stream.flush()

    summary = complete_tracking(path, config.tracking, on_progress=progress)
    stream.write(
        f"  inferred offline: {summary.frames_inferred_offline}; "
        f"{summary.trigger_indices_triangulated} trigger indices in 3D; {summary.events} events\n"
    )
    report = tracking_report(path)
    print_tracking_report(report, stream)
    jump = report.get("last_jump")
    return dict(jump) if jump else None


def _pause(seconds: float, stream: TextIO) -> bool:
    """Wait between trials; False if the operator ended the session (Ctrl-C) meanwhile."""
    stream.write(f"\nnext trial in {seconds:g} s (Ctrl-C ends the session)\n")
    stream.flush()
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        stream.write("session ended by the operator between trials\n")
        return False
    return True


def print_session_summary(outcomes: list[TrialOutcome], planned: int, stream: TextIO) -> None:
    write = stream.write
    write(f"\nsession: {len(outcomes)} of {planned} trials run\n")
    write(
        f"  {'trial':<32} {'frames':>8} {'dropped':>8} {'height mm':>10} {'flight ms':>10}  end\n"
    )
    for outcome in outcomes:
        jump = outcome.jump or {}
        height = jump.get("jump_height_mm")
        flight = jump.get("flight_time_s")
        write(
            f"  {outcome.trial_id:<32} {outcome.frames:>8} {outcome.dropped:>8} "
            f"{_number(height, 1.0):>10} {_number(flight, 1e3):>10}  {outcome.end_reason}\n"
        )
    failed = [o.trial_id for o in outcomes if o.exit_code != EXIT_OK]
    verdict = f"  {len(outcomes) - len(failed)} trials fine"
    write(verdict + (f"; check {', '.join(failed)}\n" if failed else "\n"))


def _number(value: Any, scale: float) -> str:
    if value is None or value != value:
        return "-"
    return f"{float(value) * scale:.1f}"


@contextlib.contextmanager
def _preview_server(config: RigConfig, preview: PreviewOptions, stream: TextIO) -> Iterator[str]:
    """The preview server, running for as long as the session; yields the monitor endpoint the
    trials publish to."""
    from rig.preview import PreviewServer

    with tempfile.TemporaryDirectory(prefix="jumprig-preview-") as folder:
        # Workers on other hosts reach the preview only through a configured tcp:// endpoint.
        endpoint = config.endpoints.monitor or f"ipc://{folder}/monitor"
        server = PreviewServer(config, endpoint, host=preview.host, port=preview.port)
        server.start()
        try:
            stream.write(f"live preview: {server.url}\n")
            stream.flush()
            yield server.monitor_endpoint
        finally:
            server.stop()
