"""The training data, the seeded training and the quick end-to-end recipe (script included)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from acquisition.sim.skeleton import BODY_PARTS
from tracking.training.dataset import (
    EVALUATION_SEED_BASE,
    EvaluationCondition,
    LabelledImages,
    render_evaluation_frames,
    render_training_crops,
)
from tracking.training.network import NetworkConfig, build_network
from tracking.training.train import (
    TrainingConfig,
    configure_determinism,
    learning_rate_at,
    train_network,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "train_twin_model.py"
TINY_TRAINING = TrainingConfig(
    steps=4,
    batch_size=4,
    warmup_steps=1,
    network=NetworkConfig(stem_channels=4, mid_channels=4, deep_channels=8, dilations=(1,)),
)


@pytest.fixture(scope="module")
def tiny_crops() -> LabelledImages:
    return render_training_crops(scenes=1, frames_per_camera=3, crop_px=64, seed=5)


def test_training_crops_are_reproducible_and_labelled(tiny_crops: LabelledImages) -> None:
    again = render_training_crops(scenes=1, frames_per_camera=3, crop_px=64, seed=5)
    other = render_training_crops(scenes=1, frames_per_camera=3, crop_px=64, seed=6)
    assert len(tiny_crops) == 12
    assert tiny_crops.images.shape == (12, 64, 64)
    np.testing.assert_array_equal(tiny_crops.images, again.images)
    np.testing.assert_array_equal(tiny_crops.labels_px, again.labels_px)
    assert not np.array_equal(tiny_crops.images, other.images)
    shown = tiny_crops.labels_px[tiny_crops.visible]
    assert np.all((shown >= 0) & (shown <= 63))
    assert set(tiny_crops.camera_index.tolist()) == {0, 1, 2, 3}


def test_labels_sit_on_the_painted_markers() -> None:
    data = render_evaluation_frames(EvaluationCondition("labels", noise_dn=0.0), 3)
    x = np.rint(data.labels_px[..., 0]).astype(int)
    y = np.rint(data.labels_px[..., 1]).astype(int)
    frames = np.arange(len(data))[:, None]
    # Markers are bright (205-255) on a dark body; the scene behind is 105-175.
    brightness = data.images[frames, y, x]
    print(f"marker gray at labels: min {brightness.min()}, median {np.median(brightness)}")
    assert np.mean(brightness > 180) > 0.9
    assert data.visible.all()


def test_evaluation_frames_use_seeds_training_never_draws() -> None:
    with pytest.raises(ValueError, match="seed_offset"):
        render_evaluation_frames(EvaluationCondition("bad"), 1, seed_offset=-1)
    # Training seeds are drawn below EVALUATION_SEED_BASE (see dataset.render_training_crops).
    assert EVALUATION_SEED_BASE == 1 << 30


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainingConfig(steps=100, warmup_steps=10, learning_rate=1e-3)
    rates = [learning_rate_at(step, config) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3)
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates[10:]))
    assert rates[-1] == pytest.approx(0.02e-3, rel=0.05)


def test_same_seed_gives_the_same_weights(tiny_crops: LabelledImages) -> None:
    first = train_network(tiny_crops, TINY_TRAINING, log_every=2)
    second = train_network(tiny_crops, TINY_TRAINING, log_every=2)
    weights = [np.concatenate([w.ravel() for w in t.model.get_weights()]) for t in (first, second)]
    np.testing.assert_array_equal(weights[0], weights[1])
    assert [entry[0] for entry in first.history] == [2, 4]
    assert first.history == second.history

    def initial_weights(seed: int) -> np.ndarray:
        configure_determinism(seed)
        model = build_network(TINY_TRAINING.network, len(BODY_PARTS))
        return np.concatenate([w.ravel() for w in model.get_weights()])

    # And the seed is what decides: the same seed starts from the same weights, another not.
    np.testing.assert_array_equal(initial_weights(0), initial_weights(0))
    assert not np.array_equal(initial_weights(0), initial_weights(1))


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_twin_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_rejects_bad_arguments() -> None:
    script = _load_script()
    with pytest.raises(SystemExit):
        script.parse_args(["--seed", "-1"])
    with pytest.raises(SystemExit):
        script.parse_args(["--threads", "0"])
    args = script.parse_args(["--quick"])
    assert args.quick
    assert args.output == REPO_ROOT / "tracking" / "models" / "twin"


def test_quick_script_exports_a_folder_dlclive_loads(tmp_path: Path) -> None:
    output = tmp_path / "quick_model"
    started = time.perf_counter()
    assert _load_script().main(["--quick", "--output", str(output), "--threads", "1"]) == 0
    print(f"--quick took {time.perf_counter() - started:.0f} s")
    assert sorted(path.name for path in output.iterdir()) == [
        "evaluation.json",
        "pose_cfg.yaml",
        "twin_pose_net.pb",
    ]
    record = json.loads((output / "evaluation.json").read_text(encoding="utf-8"))
    nominal = record["evaluation"]["conditions"]["nominal"]
    assert nominal["parts"] == 4 * 2 * len(BODY_PARTS)
    assert 0.0 <= nominal["found_share"] <= 1.0
    assert record["recipe"]["name"] == "quick"
    assert record["evaluation"]["inference_ms_640x480"]["frames"] == 10
    # Loaded by dlclive itself, as the rig's pose process will.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import dlclive
    live = dlclive.DLCLive(str(output), model_type="base")
    frame = render_evaluation_frames(EvaluationCondition("quick"), 1).images[0]
    pose = live.init_inference(frame)
    again = live.get_pose(frame)
    live.close()
    assert pose.shape == (len(BODY_PARTS), 3)
    np.testing.assert_array_equal(pose, again)
    assert np.all(np.isfinite(pose))
