"""The ``rig`` command: run trials from the rig console and look into trial files."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rig.config import DEFAULT_CONFIG_PATH, ConfigError, RigConfig, load_config

EXIT_OK = 0
EXIT_TRIAL_FAILED = 1
EXIT_USAGE = 2
EXIT_ACCOUNTING = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    handler: Any = args.handler
    return int(handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rig", description="Acquisition and online tracking for the mouse jumping rig."
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser("run", help="record one trial (default: the simulated rig)")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="rig TOML config")
    run.add_argument("--subject", help="subject id (default: trial.subject of the config)")
    run.add_argument("--duration-s", type=float, help="trial length in seconds")
    run.add_argument("--output", type=Path, help="folder for the trial file")
    run.set_defaults(handler=_run)

    devices = commands.add_parser(
        "devices", help="list the cameras, DAQ and serial ports the config would use"
    )
    devices.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="rig TOML config")
    devices.set_defaults(handler=_devices)

    track = commands.add_parser(
        "track",
        help="infer every frame not inferred live, triangulate, detect jumps (rewrites the file's "
        "/pose2d, /pose3d and /events)",
    )
    track.add_argument("file", type=Path)
    track.add_argument(
        "--config", type=Path, help="rig config for the tracking settings (default: the file's own)"
    )
    track.set_defaults(handler=_track)

    from rig.calibrate_command import register as register_calibrate

    register_calibrate(commands)

    inspect = commands.add_parser("inspect", help="summarize a trial file")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(handler=_inspect)
    return parser


def _load(path: Path, overrides: dict[str, Any]) -> RigConfig | None:
    try:
        return load_config(path, overrides)
    except ConfigError as error:
        print(f"rig: config error: {error}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.duration_s is not None:
        overrides["trial.duration_s"] = args.duration_s
    if args.subject is not None:
        overrides["trial.subject"] = args.subject
    if args.output is not None:
        overrides["trial.output_dir"] = str(args.output)
    config = _load(args.config, overrides)
    if config is None:
        return EXIT_USAGE

    from rig.console import StatusPrinter, print_trial_summary
    from rig.devices import preflight_problems
    from rig.supervisor import Supervisor

    problems = preflight_problems(config)
    if problems:
        print(f"rig: cannot start the trial with {args.config}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    printer = StatusPrinter(sys.stdout)
    # SIGTERM (a session manager, `kill`) ends the trial like Ctrl-C: stopped in order, file kept.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = Supervisor(config).run_trial(on_status=printer)
    except OSError as error:
        print(f"rig: cannot start the trial: {error}", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    printer.finish()
    balanced = print_trial_summary(result, sys.stdout)
    tracking = config.tracking
    if tracking.enabled and tracking.complete_after_trial and result.writer_summary:
        _complete_and_report(result.path, config)
    if not result.completed:
        return EXIT_TRIAL_FAILED
    return EXIT_OK if balanced else EXIT_ACCOUNTING


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _complete_and_report(path: Path, config: RigConfig) -> None:
    from rig.complete_tracking import complete_tracking
    from rig.console import print_tracking_report
    from rig.tracking_report import tracking_report

    print("\ncompleting the tracking (frames not inferred live, 3D, jumps) ...", flush=True)
    summary = complete_tracking(path, config.tracking, on_progress=lambda line: print(f"  {line}"))
    print(
        f"  inferred offline: {summary.frames_inferred_offline}; "
        f"{summary.trigger_indices_triangulated} trigger indices in 3D; {summary.events} events"
    )
    print_tracking_report(tracking_report(path), sys.stdout)


def _track(args: argparse.Namespace) -> int:
    from rig.trialfile.reader import TrialFileError, open_trial

    try:
        with open_trial(args.file) as trial:
            stored_config = str(trial.attrs.get("config", ""))
    except TrialFileError as error:
        print(f"rig: {error}", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    if args.config is not None:
        config = _load(args.config, {})
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            stored = Path(folder) / "config.toml"
            stored.write_text(stored_config)
            config = _load(stored, {"tracking.enabled": True})
    if config is None:
        return EXIT_USAGE
    _complete_and_report(args.file, config)
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    config = _load(args.config, {})
    if config is None:
        return EXIT_USAGE
    from rig.devices import print_survey, survey

    reports = survey(config)
    print_survey(reports, sys.stdout)
    return EXIT_TRIAL_FAILED if any(report.missing for report in reports) else EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    from rig.console import print_file_summary
    from rig.trialfile.reader import TrialFileError, open_trial

    try:
        with open_trial(args.file) as trial:
            summary = trial.summary()
    except TrialFileError as error:
        print(f"rig: {error}", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    from rig.tracking_report import tracking_report

    tracking = tracking_report(args.file)
    if tracking:
        summary["tracking"] = tracking
    if args.json:
        json.dump(summary, sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
    else:
        print_file_summary(summary, sys.stdout)
    return EXIT_OK


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
