"""The ``rig`` command: run trials from the rig console and look into trial files."""

from __future__ import annotations

import argparse
import json
import os
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
    try:
        return int(handler(args))
    except BrokenPipeError:
        # Output piped into a reader that stopped early (`rig inspect FILE | head`): not an error
        # of the command; point stdout at nothing so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rig", description="Acquisition and online tracking for the mouse jumping rig."
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser(
        "run", help="record a trial, or a session of trials (default: the simulated rig)"
    )
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="rig TOML config")
    run.add_argument("--subject", help="subject id (default: trial.subject of the config)")
    run.add_argument("--duration-s", type=float, help="trial length in seconds")
    run.add_argument("--output", type=Path, help="folder for the trial files")
    run.add_argument(
        "--trials", type=_positive_int, default=1, help="trials in this session (default 1)"
    )
    run.add_argument(
        "--inter-trial-s",
        type=_non_negative_float,
        default=5.0,
        help="pause between the trials of a session, in seconds (default 5)",
    )
    run.add_argument(
        "--preview", action="store_true", help="serve the live preview page on localhost"
    )
    run.add_argument(
        "--preview-port", type=int, default=8050, help="port of the live preview (default 8050)"
    )
    run.set_defaults(handler=_run)

    worker = commands.add_parser(
        "worker",
        help="run one role of the rig's trials on this host, for the console on another "
        "(docs/multi-host.md)",
    )
    worker.add_argument("--config", type=Path, required=True, help="the rig's TOML config")
    worker.add_argument(
        "--role",
        required=True,
        help="writer, camera:NAME, pose:NAME[+NAME...] or triangulator (one of remote.roles)",
    )
    worker.add_argument(
        "--trials",
        type=_positive_int,
        help="end after this many trials (default: run until Ctrl-C or SIGTERM)",
    )
    worker.set_defaults(handler=_worker)

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

    report = commands.add_parser(
        "report",
        help="plots of a trial as PNG files: force and EMG around take-off, 3D trajectories and "
        "speed, frame accounting, the jump's numbers",
    )
    report.add_argument("file", type=Path)
    report.add_argument(
        "--output", type=Path, help="folder for the PNGs (default: <trial_id>_report beside it)"
    )
    report.set_defaults(handler=_report)

    from rig.recover import add_recover_arguments
    from rig.replay.command import add_replay_arguments

    replay = commands.add_parser(
        "replay",
        help="play a recorded trial through the live pipeline with simulated hardware reading "
        "the file (new model or calibration, debugging, --compare)",
    )
    add_replay_arguments(replay)
    replay.set_defaults(handler=_replay)

    from rig.batch.command import add_batch_arguments

    batch = commands.add_parser(
        "batch",
        help="replay many recorded trials at full speed on Dask (a local cluster or "
        "--scheduler), skipping those already done, and tabulate every jump",
    )
    add_batch_arguments(batch)
    batch.set_defaults(handler=_batch)

    recover = commands.add_parser(
        "recover",
        help="say what a trial file that was not closed holds, and mark it incomplete",
    )
    add_recover_arguments(recover)
    recover.set_defaults(handler=_recover)

    from rig.export.command import add_export_parser

    add_export_parser(commands)

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

    from rig.devices import preflight_problems
    from rig.session import PreviewOptions, run_session

    problems = preflight_problems(config)
    if problems:
        print(f"rig: cannot start the trial with {args.config}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    # SIGTERM (a session manager, `kill`) ends the trial like Ctrl-C: stopped in order, file kept.
    signal.signal(signal.SIGTERM, _interrupt)
    return run_session(
        config,
        trials=args.trials,
        inter_trial_s=args.inter_trial_s,
        stream=sys.stdout,
        preview=PreviewOptions(port=args.preview_port) if args.preview else None,
    )


def _worker(args: argparse.Namespace) -> int:
    config = _load(args.config, {})
    if config is None:
        return EXIT_USAGE
    from rig.remote.agent import worker_main

    try:
        return worker_main(config, args.role, sys.stdout, trials=args.trials)
    except ConfigError as error:
        print(f"rig: config error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
    from rig.session import complete_and_report

    complete_and_report(args.file, config, sys.stdout)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from rig.report import report_main

    return report_main(args.file, args.output, sys.stdout, sys.stderr)


def _replay(args: argparse.Namespace) -> int:
    from rig.replay.command import replay_main

    # SIGTERM ends a replay like Ctrl-C, as it ends a trial.
    signal.signal(signal.SIGTERM, _interrupt)
    return replay_main(args)


def _batch(args: argparse.Namespace) -> int:
    from rig.batch.command import batch_main

    # SIGTERM ends a batch like Ctrl-C: the finished trials are kept, the rest resumes later.
    signal.signal(signal.SIGTERM, _interrupt)
    return batch_main(args)


def _recover(args: argparse.Namespace) -> int:
    from rig.recover import recover_command

    return recover_command(args, sys.stdout, sys.stderr)


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
