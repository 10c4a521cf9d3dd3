"""Settings of online tracking: the ``[tracking]`` table of the rig's TOML config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TrackingSettings:
    """Pose estimation, triangulation and jump detection for a trial.

    Relative paths (``model``, ``camera_models``, ``calibration``) are taken relative to the
    config file's folder when the config is loaded.
    """

    enabled: bool = False
    # An exported DeepLabCut model folder (pose_cfg.yaml + one frozen .pb), shared by every camera.
    model: str = ""
    # Per-camera models, by camera name, where cameras need their own.
    camera_models: dict[str, str] = field(default_factory=dict)
    # "twin": the digital twin's exact cameras; otherwise an anipose calibration TOML.
    calibration: str = "twin"
    # "shared": one inference process for all cameras (one TensorFlow in memory; measured best on
    # a 2-core machine); "per_camera": one process per camera, for machines with cores to spare.
    pose_processes: Literal["shared", "per_camera"] = "shared"
    # Live inference takes only trigger indices that are multiples of this (1 = every frame),
    # so that all cameras infer the same frames and they can be triangulated.
    infer_every_n_frames: int = field(default=1, metadata={"ge": 1, "le": 10_000})
    # How long the triangulator waits for the other cameras' poses of a trigger index.
    join_wait_ms: float = field(default=100.0, metadata={"gt": 0.0, "le": 10_000.0})
    min_likelihood: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    max_reprojection_px: float = field(default=8.0, metadata={"gt": 0.0})
    # After the trial, infer every frame not inferred live and triangulate every trigger index,
    # so the file ends complete.
    complete_after_trial: bool = True

    def model_for(self, camera: str) -> str:
        return self.camera_models.get(camera, self.model)
