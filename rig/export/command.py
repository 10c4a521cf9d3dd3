"""`rig export nwb|dlc FILE ...`: the command line of the exports (docs/export.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rig.export.dlc_tables import export_dlc
from rig.export.nwb_file import default_nwb_path, export_nwb
from rig.export.nwb_session import SEX_CODES, SessionMetadata
from rig.export.nwb_video import VIDEO_MODES
from rig.export.trial_contents import ExportError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` with its ``nwb`` and ``dlc`` subcommands to ``commands``; each sets
    ``handler``, a function of the parsed arguments that returns the exit code."""
    export = commands.add_parser(
        "export",
        help="write a trial in other tools' formats: NWB (nwb), DeepLabCut tables (dlc)",
        description="Write a trial file in other tools' formats (docs/export.md).",
    )
    export.set_defaults(handler=lambda _: _usage(export))
    formats = export.add_subparsers(metavar="FORMAT")

    nwb = formats.add_parser(
        "nwb",
        help="Neurodata Without Borders file (pynwb, ndx-pose)",
        description=(
            "Write the trial as an NWB file: session and subject, calibrated cameras, 2D and 3D "
            "poses, EMG and force, trigger pulses, frame times, jump events, and the videos."
        ),
    )
    nwb.add_argument("file", type=Path, help="the trial file (.h5)")
    nwb.add_argument("--output", type=Path, help="the NWB file (default: FILE with .nwb)")
    nwb.add_argument(
        "--videos",
        choices=VIDEO_MODES,
        default="reference",
        help="reference: lossless .mkv per camera beside the NWB file (default); store: frames "
        "inside the NWB file; none: no video",
    )
    nwb.add_argument("--overwrite", action="store_true", help="replace existing output files")
    nwb.add_argument(
        "--experimenter",
        action="append",
        default=[],
        metavar="NAME",
        help='who ran the session, "Last, First" (repeat for several)',
    )
    nwb.add_argument("--lab", help="the lab")
    nwb.add_argument("--institution", help="the institution")
    nwb.add_argument("--experiment-description", help="what the experiment is about")
    nwb.add_argument("--session-description", help="replaces the one composed from the trial")
    nwb.add_argument("--species", default="Mus musculus", help="default: Mus musculus")
    nwb.add_argument(
        "--sex", choices=SEX_CODES, default="U", help="the subject's sex (default U, unknown)"
    )
    nwb.add_argument(
        "--age",
        help="the subject's age, ISO 8601: P90D, or a range P60D/P90D (default: unknown)",
    )
    nwb.set_defaults(handler=run_export_nwb)

    dlc = formats.add_parser(
        "dlc",
        help="DeepLabCut pose tables (.h5 and .csv) per camera",
        description=(
            "Write each camera's 2D poses as DeepLabCut's tables, <trial id>_<camera><scorer>.h5 "
            "and .csv, which DeepLabCut and movement read."
        ),
    )
    dlc.add_argument("file", type=Path, help="the trial file (.h5)")
    dlc.add_argument("--output", type=Path, help="folder for the tables (default: FILE's folder)")
    dlc.add_argument("--scorer", help="the tables' scorer name (default: DLC_<model folder name>)")
    dlc.add_argument("--overwrite", action="store_true", help="replace existing tables")
    dlc.set_defaults(handler=run_export_dlc)


def run_export_nwb(args: argparse.Namespace) -> int:
    """`rig export nwb`: what was written and what to know on stdout, failures on stderr."""
    try:
        metadata = SessionMetadata(
            experimenters=tuple(args.experimenter),
            lab=args.lab,
            institution=args.institution,
            experiment_description=args.experiment_description,
            session_description=args.session_description,
            species=args.species,
            sex=args.sex,
            age=args.age,
        )
    except ValueError as error:
        print(f"rig export nwb: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = export_nwb(
            args.file,
            args.output or default_nwb_path(args.file),
            videos=args.videos,
            metadata=metadata,
            overwrite=args.overwrite,
        )
    except (ExportError, OSError) as error:
        print(f"rig export nwb: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {result.nwb_path}")
    for path in result.video_paths:
        print(f"wrote {path}")
    frames = ", ".join(f"{name} {count}" for name, count in result.frames_exported.items())
    print(
        f"  frames: {frames}; 3D poses: {result.pose3d_rows}; events: {result.event_count}",
    )
    for note in result.notes:
        print(f"  note: {note}")
    return EXIT_OK


def run_export_dlc(args: argparse.Namespace) -> int:
    """`rig export dlc`: the tables written on stdout, failures on stderr."""
    try:
        exports = export_dlc(args.file, args.output, scorer=args.scorer, overwrite=args.overwrite)
    except (ExportError, OSError, ValueError) as error:
        print(f"rig export dlc: {error}", file=sys.stderr)
        return EXIT_FAILED
    for export in exports:
        print(f"wrote {export.h5_path} and .csv ({export.frames} frames)")
    return EXIT_OK


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE
