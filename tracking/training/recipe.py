"""The twin model's recipe, end to end: render, train, export, evaluate, record.

``FULL_RECIPE`` makes the model shipped in ``tracking/models/twin``; ``QUICK_RECIPE`` makes a tiny
one in about a minute, which checks the whole path (used by the tests). The model folder gets
``pose_cfg.yaml``, the frozen graph and ``evaluation.json``: the held-out accuracy and speed
measured through dlclive, and what produced the model (recipe, seed, training time, versions,
the graph's SHA-256).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from acquisition.sim.skeleton import BODY_PARTS
from tracking.training.dataset import EVALUATION_CONDITIONS, render_training_crops
from tracking.training.evaluate import evaluate_model_folder
from tracking.training.export import GRAPH_FILE_NAME, write_model_folder
from tracking.training.network import NetworkConfig
from tracking.training.train import LOCREF_STDEV_PX, TrainingConfig, train_network

EVALUATION_FILE_NAME = "evaluation.json"


@dataclass(frozen=True)
class Recipe:
    """How much data, which net and how long: everything but the seed."""

    name: str
    scenes: int
    frames_per_camera: int  # per scene
    crop_px: int
    background_share: float
    training: TrainingConfig
    evaluation_frames_per_camera: int
    timing_frames: int


FULL_RECIPE = Recipe(
    name="full",
    scenes=24,
    frames_per_camera=200,
    crop_px=128,
    background_share=0.15,
    training=TrainingConfig(steps=3000, batch_size=32),
    evaluation_frames_per_camera=40,
    timing_frames=300,
)

QUICK_RECIPE = Recipe(
    name="quick",
    scenes=2,
    frames_per_camera=16,
    crop_px=128,
    background_share=0.15,
    training=TrainingConfig(
        steps=40,
        batch_size=8,
        warmup_steps=5,
        network=NetworkConfig(stem_channels=8, mid_channels=8, deep_channels=16, dilations=(1, 2)),
    ),
    evaluation_frames_per_camera=2,
    timing_frames=10,
)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "numpy", "opencv-python-headless", "deeplabcut-live"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def build_twin_model(
    recipe: Recipe,
    output_dir: Path | str,
    *,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Make a model folder by ``recipe`` from ``seed`` and return what ``evaluation.json`` says.

    ``threads`` caps TensorFlow's threads during the evaluation's inference (None: all cores).
    """
    say = progress or (lambda message: None)
    training = dataclasses.replace(recipe.training, seed=seed)
    started = time.perf_counter()
    crops = render_training_crops(
        scenes=recipe.scenes,
        frames_per_camera=recipe.frames_per_camera,
        crop_px=recipe.crop_px,
        seed=seed,
        background_share=recipe.background_share,
        progress=say,
    )
    rendering_s = time.perf_counter() - started
    say(f"rendered {len(crops)} crops of {recipe.crop_px} px in {rendering_s:.0f} s")
    trained = train_network(crops, training, progress=say)
    say(f"trained {training.steps} steps in {trained.training_s:.0f} s")
    folder = write_model_folder(
        trained.model,
        training.network,
        BODY_PARTS,
        output_dir,
        locref_stdev=LOCREF_STDEV_PX,
        extra_config={"pos_dist_thresh": training.positive_radius_px},
    )
    graph_bytes = (folder / GRAPH_FILE_NAME).read_bytes()
    say(f"exported {folder} ({len(graph_bytes) / 1024:.0f} KiB graph); evaluating through dlclive")
    evaluation = evaluate_model_folder(
        folder,
        frames_per_camera=recipe.evaluation_frames_per_camera,
        conditions=EVALUATION_CONDITIONS,
        timing_frames=recipe.timing_frames,
        threads=threads,
    )
    record = {
        "model": {
            "body_parts": list(BODY_PARTS),
            "graph_file": GRAPH_FILE_NAME,
            "graph_bytes": len(graph_bytes),
            "graph_sha256": hashlib.sha256(graph_bytes).hexdigest(),
            "parameters": int(trained.model.count_params()),
        },
        "recipe": _jsonable(dataclasses.asdict(recipe)) | {"seed": seed},
        "training": {
            "crops": len(crops),
            "rendering_s": round(rendering_s, 1),
            "training_s": round(trained.training_s, 1),
            "final_loss": trained.history[-1][1] if trained.history else None,
            "loss_history": [list(entry) for entry in trained.history],
        },
        "evaluation": evaluation,
        "versions": _versions(),
    }
    (folder / EVALUATION_FILE_NAME).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return record


def _jsonable(value: Any) -> Any:
    """Tuples to lists, recursively, so the recipe reads back as it was written."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
