#!/usr/bin/env python3
"""Make the digital twin's DeepLabCut-Live pose model: render, train, export, evaluate.

Renders labelled frames of the twin mouse from all four twin cameras, trains a small stride-8
network on CPU with a fixed seed, exports it as a DeepLabCut-Live model folder (``pose_cfg.yaml``
and one frozen ``.pb``) and evaluates it through dlclive on held-out rendered frames, writing the
numbers to ``evaluation.json`` in the folder. See docs/pose-model.md.

Usage: ``python scripts/train_twin_model.py [--output DIR] [--quick] [--seed N] [--threads N]``.
The default output is ``tracking/models/twin``, the model the rig ships. ``--quick`` makes a
tiny model in about a minute, to check the whole path. Exit status 0 on success; 1 when the
evaluated model misses the accuracy it is held to (full recipe only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "tracking" / "models" / "twin"
# The shipped model must reach these on the nominal held-out frames, or the script says so.
REQUIRED_MEDIAN_ERROR_PX = 2.0
REQUIRED_FOUND_SHARE = 0.95


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="model folder")
    parser.add_argument("--quick", action="store_true", help="a tiny model in about a minute")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and batches")
    parser.add_argument(
        "--threads", type=int, default=None, help="TensorFlow threads for the evaluation"
    )
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        # Run from a checkout that is not installed: the packages sit beside this folder.
        sys.path.insert(0, str(REPO_ROOT))
    from tracking.training.recipe import FULL_RECIPE, QUICK_RECIPE, build_twin_model

    recipe = QUICK_RECIPE if args.quick else FULL_RECIPE
    record = build_twin_model(
        recipe,
        args.output,
        seed=args.seed,
        threads=args.threads,
        progress=lambda message: print(message, flush=True),
    )
    nominal = record["evaluation"]["conditions"]["nominal"]
    timing = record["evaluation"].get("inference_ms_640x480", {})
    print(
        f"{args.output}: median {nominal['median_error_px']:.2f} px, "
        f"p95 {nominal['p95_error_px']:.2f} px, found {100 * nominal['found_share']:.1f}% "
        f"(nominal held-out frames); inference p50 {timing.get('p50', float('nan')):.1f} ms, "
        f"p99 {timing.get('p99', float('nan')):.1f} ms per 640x480 frame; "
        f"training {record['training']['training_s']:.0f} s"
    )
    if recipe is FULL_RECIPE and (
        nominal["median_error_px"] > REQUIRED_MEDIAN_ERROR_PX
        or nominal["found_share"] < REQUIRED_FOUND_SHARE
    ):
        print(
            f"the model misses its bounds: median error <= {REQUIRED_MEDIAN_ERROR_PX} px and "
            f"found share >= {REQUIRED_FOUND_SHARE}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
