"""``rig calibrate``: calibrate the cameras from board images and write anipose's TOML."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` sub-command to the ``rig`` command's sub-parsers."""
    calibrate = commands.add_parser(
        "calibrate",
        help="calibrate the cameras from images of a ChArUco board or chessboard",
        description=(
            "Calibrate every camera's intrinsics and all cameras' poses from images of a "
            "calibration board, and write anipose's calibration TOML (lengths in mm). Image k "
            "of every camera, in file-name order, must show the same moment."
        ),
    )
    calibrate.add_argument(
        "--board",
        required=True,
        metavar="SPEC_OR_FILE",
        help=(
            "the board: 'charuco:COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY][:legacy]' "
            "(e.g. charuco:7x5:20:15:DICT_4X4_50), 'chessboard:COLSxROWS:SQUARE_MM' with inner "
            "corners (e.g. chessboard:9x6:30), or a .toml file with the same fields"
        ),
    )
    calibrate.add_argument(
        "--camera",
        action="append",
        required=True,
        metavar="NAME=IMAGES",
        help=(
            "a camera and its images: a folder, or a quoted glob such as 'calib/left*.png'; "
            "repeat for every camera (the first is the world frame unless --reference is given)"
        ),
    )
    calibrate.add_argument(
        "--output", required=True, type=Path, metavar="FILE.toml", help="calibration to write"
    )
    calibrate.add_argument("--reference", metavar="NAME", help="camera whose frame is the world")
    calibrate.add_argument(
        "--free-k3",
        action="store_true",
        help="also fit the sixth-order radial distortion k3 (wide-angle lenses)",
    )
    calibrate.add_argument(
        "--fixed-intrinsics",
        action="store_true",
        help="keep each camera's own intrinsics in the joint refinement (poses only)",
    )
    calibrate.add_argument(
        "--max-error-px",
        type=float,
        default=1.0,
        help="warn about cameras whose RMS reprojection error exceeds this (default 1 px)",
    )
    calibrate.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """The handler: returns the exit code (0 done, 1 calibration failed, 2 bad arguments)."""
    from tracking.calibration import CalibrationError, calibrate_image_folders, parse_board

    out: TextIO = sys.stdout
    try:
        board = parse_board(args.board)
        sources = _camera_sources(args.camera)
    except ValueError as error:
        print(f"rig calibrate: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not args.max_error_px > 0:
        print("rig calibrate: --max-error-px must be positive", file=sys.stderr)
        return EXIT_USAGE
    if args.reference is not None and args.reference not in sources:
        print(
            f"rig calibrate: --reference {args.reference} is not one of the cameras "
            f"{list(sources)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not args.output.parent.is_dir():
        print(f"rig calibrate: folder {args.output.parent} does not exist", file=sys.stderr)
        return EXIT_USAGE

    print(f"board: {board.describe()}", file=out)
    # The warnings are printed below with the results; keep the logger from repeating them.
    calibration_log = logging.getLogger("tracking.calibration")
    previous_level = calibration_log.level
    calibration_log.setLevel(logging.ERROR)
    try:
        result = calibrate_image_folders(
            board,
            sources,
            reference_camera=args.reference,
            fix_k3=not args.free_k3,
            refine_intrinsics=not args.fixed_intrinsics,
            max_error_px=args.max_error_px,
        )
    except CalibrationError as error:
        print(f"rig calibrate: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        calibration_log.setLevel(previous_level)

    for report in result.cameras:
        camera = result.group[report.name]
        fx, fy = camera.matrix[0, 0], camera.matrix[1, 1]
        cx, cy = camera.matrix[0, 2], camera.matrix[1, 2]
        joint = "" if math.isnan(report.joint_rms_px) else f", {report.joint_rms_px:.3f} px jointly"
        rejected = f" ({report.views_rejected} left out)" if report.views_rejected else ""
        print(
            f"{report.name}: board in {report.views_detected} of {report.images} images"
            f"{rejected}; reprojection error {report.intrinsic_rms_px:.3f} px alone{joint}; "
            f"f = {fx:.1f}, {fy:.1f} px, centre = ({cx:.1f}, {cy:.1f}) px, "
            f"k1 = {camera.distortion[0]:+.4f}",
            file=out,
        )
    for (first, second), count in result.shared_views.items():
        if count:
            print(f"images {first} and {second} share: {count}", file=out)
    for (first, second), baseline_mm in result.group.baselines_mm().items():
        print(f"baseline {first} - {second}: {baseline_mm:.2f} mm", file=out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        result.group.save(args.output)
    except OSError as error:
        print(f"rig calibrate: cannot write {args.output}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {args.output} (anipose calibration, mm)", file=out)
    return EXIT_OK


def _camera_sources(pairs: list[str]) -> dict[str, str]:
    """``NAME=IMAGES`` arguments -> {name: folder or glob}, in the order given."""
    sources: dict[str, str] = {}
    for pair in pairs:
        name, separator, images = pair.partition("=")
        name = name.strip()
        if not separator or not name or not images:
            raise ValueError(f"--camera {pair!r} must look like NAME=FOLDER or NAME='GLOB'")
        if name in sources:
            raise ValueError(f"camera {name!r} is given twice")
        sources[name] = images
    return sources
