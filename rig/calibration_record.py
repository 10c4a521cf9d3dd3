"""The camera calibration a trial uses, and how it is kept in the trial file.

The file's ``/calibration`` group holds the calibration as anipose's TOML text (attribute
``anipose_toml``, the format aniposelib and anipose read) and, per camera, its arrays for users
of h5py and MATLAB.
"""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np

from rig.config import RigConfig
from tracking.camera_group import CameraGroup

TWIN = "twin"


def trial_camera_group(config: RigConfig) -> CameraGroup | None:
    """The calibration of this rig: the twin's exact cameras, a calibration file, or none."""
    calibration = config.tracking.calibration
    if calibration == TWIN:
        if any(camera.backend != "sim" for camera in config.cameras):
            return None
        from acquisition.sim.camera_model import twin_cameras

        first = config.cameras[0]
        models = twin_cameras(
            config.camera_names, first.width, first.height, gap_mm=config.sim.jump.gap_mm
        )
        document: dict[str, Any] = {
            f"cam_{index}": model.to_anipose() for index, model in enumerate(models)
        }
        document["metadata"] = {"source": "digital twin (exact)", "units": "mm"}
        return CameraGroup.from_anipose(document, source="the digital twin")
    return CameraGroup.load(calibration).subset(config.camera_names)


def calibration_datasets(
    group: CameraGroup, source: str
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Datasets and attributes of ``/calibration`` (and each camera's reference to it)."""
    datasets: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, Any]] = {
        "/calibration": {
            "anipose_toml": group.to_toml(),
            "source": source,
            "units": "mm",
        }
    }
    for name in group.names:
        camera = group[name]
        prefix = f"/calibration/{name}"
        datasets[f"{prefix}/matrix"] = np.asarray(camera.matrix, dtype=np.float64)
        datasets[f"{prefix}/distortion"] = np.asarray(camera.distortion, dtype=np.float64)
        datasets[f"{prefix}/rotation_vector"] = np.asarray(camera.rotation_vector, dtype=np.float64)
        datasets[f"{prefix}/translation_mm"] = np.asarray(camera.translation_mm, dtype=np.float64)
        attrs[prefix] = {"width": camera.width, "height": camera.height}
        attrs[f"/cameras/{name}"] = {"calibration": prefix}
    return datasets, attrs


def group_from_attribute(anipose_toml: str, source: str) -> CameraGroup:
    return CameraGroup.from_anipose(tomllib.loads(anipose_toml), source=source)
