"""Labelled frames of the twin mouse: rendered from every twin camera, labels = projected parts.

Training scenes vary what a real rig varies a little: the gap (so the cameras' framing), the jump
(height, crouch and push-off durations), where the mouse stands and which way it faces (a few mm,
a few degrees), sensor noise, focus blur and light. Each scene has its own render seed (the
platform texture and the sensor noise). Frames are sampled over the whole trajectory with most of
them in the movement. For training, each frame is cut to a square crop (the net is fully
convolutional, so it runs on whole frames afterwards): most crops around the mouse, some anywhere
in the frame, which are mostly platforms, floor and walls, so the net learns what is not a part.

Evaluation frames are whole frames of the default jump and gap, from render seeds that training
never uses (training seeds are below ``EVALUATION_SEED_BASE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from acquisition.sim.camera_model import twin_cameras
from acquisition.sim.render import FrameRenderer
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters

CAMERA_NAMES: tuple[str, ...] = ("cam_left", "cam_right", "cam_front", "cam_top")
FRAME_WIDTH_PX = 640
FRAME_HEIGHT_PX = 480
# Render seeds of evaluation scenes start here; training seeds are drawn below it.
EVALUATION_SEED_BASE = 1 << 30


@dataclass(frozen=True)
class SceneSettings:
    """One rig set-up: the jump, the gap the cameras frame, and how frames look."""

    jump: JumpParameters
    noise_dn: float
    blur_px: float
    brightness: float
    render_seed: int
    # Per-frame perturbation of the mouse's pose in the world (0: the jump as modelled).
    max_shift_mm: float = 0.0
    max_yaw_deg: float = 0.0


@dataclass(frozen=True)
class LabelledImages:
    """Images with their labels, all the same size."""

    images: np.ndarray  # (N, H, W) uint8
    labels_px: np.ndarray  # (N, K, 2) float32 x, y in pixels of the image
    visible: np.ndarray  # (N, K) bool, the label lies inside the image
    camera_index: np.ndarray  # (N,) int16, index into the camera names used

    def __post_init__(self) -> None:
        count = self.images.shape[0]
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W) uint8, got {self.images.shape}")
        if self.labels_px.shape != (count, len(BODY_PARTS), 2):
            raise ValueError(f"labels_px must be (N, K, 2), got {self.labels_px.shape}")
        if self.visible.shape != (count, len(BODY_PARTS)):
            raise ValueError(f"visible must be (N, K), got {self.visible.shape}")
        if self.camera_index.shape != (count,):
            raise ValueError(f"camera_index must be (N,), got {self.camera_index.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


def random_scene(rng: np.random.Generator, render_seed: int) -> SceneSettings:
    """A plausible training scene around the rig's default set-up."""
    jump = JumpParameters(
        crouch_onset_s=0.5,
        crouch_duration_s=float(rng.uniform(0.25, 0.45)),
        push_off_duration_s=float(rng.uniform(0.06, 0.10)),
        gap_mm=float(rng.uniform(65.0, 100.0)),
        height_mm=float(rng.uniform(20.0, 40.0)),
    )
    blurred = rng.random() < 0.5
    return SceneSettings(
        jump=jump,
        noise_dn=float(rng.uniform(1.0, 4.0)),
        blur_px=float(rng.uniform(0.3, 1.5)) if blurred else 0.0,
        # Down to half the light: the poster's first recordings were dim.
        brightness=float(rng.uniform(0.45, 1.15)),
        render_seed=render_seed,
        max_shift_mm=8.0,
        max_yaw_deg=8.0,
    )


def sample_times_s(model: JumpModel, count: int, rng: np.random.Generator) -> np.ndarray:
    """Times (count,) over the whole trial: a quarter still (before the crouch, after settling),
    the rest in the movement, half of that from the push-off on, where parts move fastest."""
    events = model.true_events()
    onset, push, settled = events["crouch_onset_s"], events["push_off_onset_s"], events["settled_s"]
    kind = rng.random(count)
    times = np.where(
        kind < 0.15,
        rng.uniform(onset - 0.3, onset, count),
        np.where(
            kind < 0.25,
            rng.uniform(settled, settled + 0.3, count),
            np.where(
                kind < 0.6, rng.uniform(onset, settled, count), rng.uniform(push, settled, count)
            ),
        ),
    )
    return np.asarray(times, dtype=np.float64)


def perturb_points(
    points_mm: np.ndarray, rng: np.random.Generator, max_shift_mm: float, max_yaw_deg: float
) -> np.ndarray:
    """Points (T, K, 3) each frame shifted in x and y and turned about the vertical through
    its parts' mean, by uniform random amounts up to the given bounds; a new array."""
    count = points_mm.shape[0]
    yaw = np.radians(rng.uniform(-max_yaw_deg, max_yaw_deg, count))
    shift = np.zeros((count, 3))
    shift[:, :2] = rng.uniform(-max_shift_mm, max_shift_mm, (count, 2))
    centre = points_mm.mean(axis=1, keepdims=True)
    relative = points_mm - centre
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    turned = relative.copy()
    turned[..., 0] = cos * relative[..., 0] - sin * relative[..., 1]
    turned[..., 1] = sin * relative[..., 0] + cos * relative[..., 1]
    return np.asarray(turned + centre + shift[:, None, :], dtype=np.float64)


FrameSink = Callable[[np.ndarray, np.ndarray, int], None]


def render_scene(
    scene: SceneSettings,
    frames_per_camera: int,
    rng: np.random.Generator,
    sink: FrameSink,
    camera_names: Sequence[str] = CAMERA_NAMES,
    times_s: np.ndarray | None = None,
) -> None:
    """Render ``frames_per_camera`` frames of one scene from every camera and hand each to
    ``sink(frame (H, W) uint8, labels (K, 2) px, camera index)``. ``times_s`` (T,) fixes the
    times (then T frames per camera); otherwise they are sampled with ``sample_times_s``."""
    model = JumpModel(scene.jump)
    cameras = twin_cameras(
        list(camera_names), FRAME_WIDTH_PX, FRAME_HEIGHT_PX, gap_mm=scene.jump.gap_mm
    )
    for camera_index, camera in enumerate(cameras):
        renderer = FrameRenderer(
            camera,
            noise_dn=scene.noise_dn,
            blur_px=scene.blur_px,
            brightness=scene.brightness,
            seed=scene.render_seed,
            gap_mm=scene.jump.gap_mm,
        )
        times = sample_times_s(model, frames_per_camera, rng) if times_s is None else times_s
        points = model.points_mm(times)
        if scene.max_shift_mm > 0 or scene.max_yaw_deg > 0:
            points = perturb_points(points, rng, scene.max_shift_mm, scene.max_yaw_deg)
        for trigger_index, frame_points in enumerate(points):
            frame = renderer.render(frame_points, trigger_index)
            sink(frame, camera.project(frame_points), camera_index)


def _inside(labels_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., K) bool: finite labels (..., K, 2) inside an image of that size."""
    x, y = labels_px[..., 0], labels_px[..., 1]
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(x)
            & np.isfinite(y)
            & (x >= 0)
            & (y >= 0)
            & (x <= width - 1)
            & (y <= height - 1)
        )


class _CropCollector:
    """Cuts each frame it is given to one square crop, into preallocated arrays."""

    def __init__(
        self, capacity: int, crop_px: int, background_share: float, rng: np.random.Generator
    ) -> None:
        self.crop_px = crop_px
        self.background_share = background_share
        self.rng = rng
        self.images = np.zeros((capacity, crop_px, crop_px), dtype=np.uint8)
        self.labels = np.zeros((capacity, len(BODY_PARTS), 2), dtype=np.float32)
        self.visible = np.zeros((capacity, len(BODY_PARTS)), dtype=bool)
        self.camera_index = np.zeros(capacity, dtype=np.int16)
        self.count = 0

    def __call__(self, frame: np.ndarray, labels_px: np.ndarray, camera_index: int) -> None:
        height, width = frame.shape
        size = self.crop_px
        shown = _inside(labels_px, width, height)
        if self.rng.random() < self.background_share or not np.any(shown):
            left = int(self.rng.integers(0, width - size + 1))
            top = int(self.rng.integers(0, height - size + 1))
        else:
            # Around one of the parts, anywhere within a third of the crop from its centre, so
            # parts are seen in every position of the crop, near its edges too.
            anchor = labels_px[self.rng.choice(np.flatnonzero(shown))]
            centre = anchor + self.rng.uniform(-size / 3.0, size / 3.0, 2)
            left = int(np.clip(round(centre[0] - size / 2.0), 0, width - size))
            top = int(np.clip(round(centre[1] - size / 2.0), 0, height - size))
        slot = self.count
        self.images[slot] = frame[top : top + size, left : left + size]
        crop_labels = labels_px - np.array([left, top])
        self.labels[slot] = np.nan_to_num(crop_labels, nan=-1.0)
        self.visible[slot] = _inside(crop_labels, size, size)
        self.camera_index[slot] = camera_index
        self.count += 1

    def result(self) -> LabelledImages:
        used = slice(0, self.count)
        return LabelledImages(
            self.images[used], self.labels[used], self.visible[used], self.camera_index[used]
        )


def render_training_crops(
    *,
    scenes: int,
    frames_per_camera: int,
    crop_px: int,
    seed: int,
    background_share: float = 0.15,
    camera_names: Sequence[str] = CAMERA_NAMES,
    progress: Callable[[str], None] | None = None,
) -> LabelledImages:
    """``scenes * len(camera_names) * frames_per_camera`` crops (crop_px, crop_px) of random
    training scenes, reproducible from ``seed``."""
    if scenes < 1 or frames_per_camera < 1:
        raise ValueError("scenes and frames_per_camera must be >= 1")
    if not 8 <= crop_px <= min(FRAME_WIDTH_PX, FRAME_HEIGHT_PX):
        raise ValueError(f"crop_px must be between 8 and {FRAME_HEIGHT_PX}, got {crop_px}")
    if not 0.0 <= background_share <= 1.0:
        raise ValueError(f"background_share must be in [0, 1], got {background_share}")
    rng = np.random.default_rng([seed, 0x7261696E])
    render_seeds = rng.choice(EVALUATION_SEED_BASE, size=scenes, replace=False)
    collector = _CropCollector(
        scenes * len(camera_names) * frames_per_camera, crop_px, background_share, rng
    )
    for scene_index, render_seed in enumerate(render_seeds.tolist()):
        scene = random_scene(rng, int(render_seed))
        render_scene(scene, frames_per_camera, rng, collector, camera_names)
        if progress is not None:
            progress(
                f"scene {scene_index + 1}/{scenes}: gap {scene.jump.gap_mm:.0f} mm, "
                f"height {scene.jump.height_mm:.0f} mm, noise {scene.noise_dn:.1f} DN, "
                f"blur {scene.blur_px:.1f} px, brightness {scene.brightness:.2f}"
            )
    return collector.result()


@dataclass(frozen=True)
class EvaluationCondition:
    """How held-out frames look; the jump and gap are the rig's defaults."""

    name: str
    noise_dn: float = 2.0
    blur_px: float = 0.0
    brightness: float = 1.0


EVALUATION_CONDITIONS: tuple[EvaluationCondition, ...] = (
    EvaluationCondition("nominal"),
    EvaluationCondition("dim_blurred", noise_dn=3.0, blur_px=1.0, brightness=0.5),
)


def evaluation_times_s(frames_per_camera: int) -> np.ndarray:
    """(frames_per_camera,) times evenly over the default jump, from just before the crouch to
    just after the mouse settles."""
    events = JumpModel(JumpParameters()).true_events()
    return np.linspace(
        events["crouch_onset_s"] - 0.05, events["settled_s"] + 0.05, frames_per_camera
    )


def render_evaluation_frames(
    condition: EvaluationCondition,
    frames_per_camera: int,
    *,
    seed_offset: int = 0,
    camera_names: Sequence[str] = CAMERA_NAMES,
) -> LabelledImages:
    """Whole frames (N, 480, 640) of the default jump over the default gap, seen by every
    camera, under a render seed training never uses."""
    if frames_per_camera < 1:
        raise ValueError("frames_per_camera must be >= 1")
    if seed_offset < 0:
        raise ValueError(f"seed_offset must be >= 0, got {seed_offset}")
    scene = SceneSettings(
        jump=JumpParameters(),
        noise_dn=condition.noise_dn,
        blur_px=condition.blur_px,
        brightness=condition.brightness,
        render_seed=EVALUATION_SEED_BASE + seed_offset,
    )
    count = frames_per_camera * len(camera_names)
    images = np.zeros((count, FRAME_HEIGHT_PX, FRAME_WIDTH_PX), dtype=np.uint8)
    labels = np.zeros((count, len(BODY_PARTS), 2), dtype=np.float32)
    cameras = np.zeros(count, dtype=np.int16)
    filled = 0

    def keep(frame: np.ndarray, labels_px: np.ndarray, camera_index: int) -> None:
        nonlocal filled
        images[filled] = frame
        labels[filled] = labels_px
        cameras[filled] = camera_index
        filled += 1

    render_scene(
        scene,
        frames_per_camera,
        np.random.default_rng(0),
        keep,
        camera_names,
        times_s=evaluation_times_s(frames_per_camera),
    )
    return LabelledImages(images, labels, _inside(labels, FRAME_WIDTH_PX, FRAME_HEIGHT_PX), cameras)
