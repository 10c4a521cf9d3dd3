"""``rig replay FILE``: replay a recorded trial through the live pipeline; ``--compare`` checks it.

Exit codes: 0 the replay ran (and, with ``--compare``, reproduced the original); 1 the replay did
not complete, or ``--compare`` found a difference; 2 the file or the arguments cannot be used
(a damaged, truncated or foreign file, a newer schema, a config that cannot be replayed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rig.replay import DEFAULT_OUTPUT_FOLDER, OPEN_TIMEOUT_S

if TYPE_CHECKING:
    from rig.replay.pacing import ReplaySpeed
    from rig.replay.run import ReplayResult

# The modules that do the work (HDF5, the supervisor) are imported when a replay runs, so that
# building the `rig` command's parser stays quick.

EXIT_OK = 0
EXIT_FAILED = 1  # the replay did not complete, or the comparison found differences
EXIT_BAD_INPUT = 2


class ReplayArgumentError(ValueError):
    """Arguments of ``rig replay`` that cannot go together or hold a bad value."""


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``rig replay``; the parser dispatches to :func:`replay_main`."""
    parser.add_argument("file", type=Path, help="the trial file to replay")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"folder for the replay's trial file (default: {DEFAULT_OUTPUT_FOLDER}/ beside FILE)",
    )
    parser.add_argument(
        "--speed",
        default="max",
        help="realtime, max (default) or a factor of the recorded pace such as 2 or 0.5",
    )
    parser.add_argument("--model", type=Path, help="pose model folder instead of the recorded one")
    parser.add_argument(
        "--calibration", type=Path, help="anipose calibration TOML instead of the recorded one"
    )
    parser.add_argument(
        "--no-tracking",
        action="store_true",
        help="replay the recording only: no pose, 3D or jump detection",
    )
    parser.add_argument(
        "--compare",
        nargs="?",
        const="",
        default=None,
        metavar="REPLAY_FILE",
        help="compare FILE with its replay, dataset by dataset (exit 1 on any difference); "
        "with REPLAY_FILE, compare FILE with that file and replay nothing",
    )
    parser.add_argument(
        "--hosts",
        type=Path,
        metavar="RIG_TOML",
        help="run roles of the replay on other hosts: the [endpoints] and [remote] tables of "
        "this rig config, served by their `rig worker`s (docs/multi-host.md)",
    )
    parser.add_argument(
        "--open-timeout-s",
        type=float,
        default=OPEN_TIMEOUT_S,
        help=f"give up on a file that cannot be read within this time (default {OPEN_TIMEOUT_S:g})",
    )


def replay_main(args: argparse.Namespace) -> int:
    """Run ``rig replay`` with parsed arguments; returns the exit code."""
    from rig.replay.config import ReplayConfigError
    from rig.replay.pacing import ReplaySpeed, SpeedError
    from rig.trialfile.reader import TrialFileError

    out = sys.stdout
    try:
        speed = ReplaySpeed.parse(args.speed)
        if not args.open_timeout_s > 0:
            raise ReplayArgumentError(
                f"--open-timeout-s must be positive, got {args.open_timeout_s}"
            )
        if args.no_tracking and (args.model is not None or args.calibration is not None):
            raise ReplayArgumentError("--no-tracking cannot go with --model or --calibration")
        if args.compare:
            return _compare(args.file, Path(args.compare), args.open_timeout_s, out)
        result = _replay(args, speed, out)
    except (TrialFileError, ReplayConfigError, SpeedError, ReplayArgumentError) as error:
        print(f"rig replay: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"rig replay: cannot replay {args.file}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Outside a trial (checking the file, comparing); a trial ends itself in order.
        print("rig replay: interrupted", file=sys.stderr)
        return EXIT_FAILED
    if not result.trial.completed:
        return EXIT_FAILED
    if args.compare is not None:
        try:
            return _compare(args.file, result.path, args.open_timeout_s, out)
        except TrialFileError as error:
            print(f"rig replay: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return EXIT_OK


def _replay(args: argparse.Namespace, speed: ReplaySpeed, out: TextIO) -> ReplayResult:
    from rig.console import StatusPrinter, print_trial_summary
    from rig.replay.run import replay_trial

    printer = StatusPrinter(out)
    print(f"replaying {args.file} at {speed.label} speed ...", file=out, flush=True)
    result = replay_trial(
        args.file,
        output_dir=args.output,
        speed=speed,
        model=args.model,
        calibration=args.calibration,
        tracking=False if args.no_tracking else None,
        on_status=printer,
        on_progress=lambda line: print(f"  {line}", file=out, flush=True),
        open_timeout_s=args.open_timeout_s,
        hosts=args.hosts,
    )
    printer.finish()
    print_trial_summary(result.trial, out)
    print_replay_summary(result, out)
    return result


def print_replay_summary(result: ReplayResult, out: TextIO) -> None:
    recorded = result.recorded
    frames = recorded.frames
    out.write(
        f"\nreplay of {recorded.path} (trial {recorded.trial_id}, {recorded.duration_s:.2f} s, "
        f"{frames} frames) at {result.speed.label} speed\n"
    )
    out.write(f"  replay file: {result.path}\n")
    if result.pace is not None and result.frames_per_s is not None and result.frame_span_s:
        out.write(
            f"  {result.frames_written} frames replayed in {result.frame_span_s:.2f} s from the "
            f"first to the last: {result.frames_per_s:.0f} frames/s, {result.pace:.2f}x the "
            "recorded pace\n"
        )
    out.write(
        f"  {result.wall_s:.1f} s in all; at most {result.peak_in_flight_frames} frames of a "
        f"camera on their way to the writer, {result.peak_backlog_frames} buffered "
        f"({result.backlog_pauses} pauses); {result.frames_dropped} frames dropped by the replay\n"
    )
    config = result.config.tracking
    if config.enabled:
        out.write(f"  model: {config.model}\n  calibration: {config.calibration}\n")
    if result.completion is not None:
        completion = result.completion
        out.write(
            f"  tracking completed in {result.completion_s:.1f} s: inferred offline "
            f"{sum(completion.frames_inferred_offline.values())} frames, "
            f"{completion.trigger_indices_triangulated} trigger indices in 3D, "
            f"{completion.events} events\n"
        )


def _compare(original: Path, replay: Path, timeout_s: float, out: TextIO) -> int:
    from rig.replay.compare import compare_trials, print_comparison

    comparison = compare_trials(original, replay, timeout_s)
    print_comparison(comparison, out)
    return EXIT_OK if comparison.identical else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rig replay", description="Replay a recorded trial through the live pipeline."
    )
    add_replay_arguments(parser)
    return replay_main(parser.parse_args(argv))
