"""2D pose of one camera's frames with DeepLabCut-Live (TensorFlow engine).

A model folder is what DeepLabCut's ``export_model`` writes (and what
``scripts/train_twin_model.py`` writes for the twin): ``pose_cfg.yaml`` and exactly one frozen
graph ``*.pb``. The folder is checked here, before ``dlclive`` sees it, so a broken folder is a
:class:`PoseModelError` that names the folder and the problem instead of a traceback from inside
``dlclive``.

``dlclive`` imports TensorFlow and torch when it is imported (seconds); it is imported only
when a :class:`PoseEstimator` is made, so importing this module is cheap.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

POSE_CONFIG_NAME = "pose_cfg.yaml"


class PoseModelError(RuntimeError):
    """A pose model folder that cannot be used; the message names the folder and the problem."""


@dataclass(frozen=True)
class PoseModelInfo:
    """What the rig needs to know of a model folder, read from its ``pose_cfg.yaml``."""

    model_dir: Path
    graph_path: Path  # the one frozen graph, *.pb
    body_parts: tuple[str, ...]  # all_joints_names, in output order
    stride: float  # input pixels per score-map cell
    location_refinement: bool


def read_model_folder(model_dir: Path | str) -> PoseModelInfo:
    """Check a DeepLabCut-Live TensorFlow model folder and read what the rig needs from it.

    Raises PoseModelError (naming the folder) when the folder is missing, holds no ``*.pb`` or
    more than one, or its ``pose_cfg.yaml`` is missing, unreadable or lacks a key dlclive uses.
    """
    folder = Path(model_dir)
    if not folder.exists():
        raise PoseModelError(f"pose model folder {folder} does not exist")
    if not folder.is_dir():
        raise PoseModelError(f"pose model folder {folder} is not a folder")
    graphs = sorted(path for path in folder.glob("*.pb") if path.is_file())
    if not graphs:
        raise PoseModelError(
            f"pose model folder {folder} holds no frozen graph (*.pb); export the model with "
            "DeepLabCut's export_model and point the config at the exported folder"
        )
    if len(graphs) > 1:
        # dlclive would silently take whichever the file system lists first.
        names = ", ".join(path.name for path in graphs)
        raise PoseModelError(
            f"pose model folder {folder} holds {len(graphs)} frozen graphs ({names}); "
            "it must hold exactly one"
        )
    config = _read_pose_config(folder)
    body_parts = _body_parts(config, folder)
    stride = config.get("stride")
    if isinstance(stride, bool) or not isinstance(stride, int | float) or not stride > 0:
        raise PoseModelError(
            f"{folder / POSE_CONFIG_NAME}: 'stride' must be a positive number, got {stride!r}"
        )
    refinement = config.get("location_refinement")
    if not isinstance(refinement, bool):
        raise PoseModelError(
            f"{folder / POSE_CONFIG_NAME}: 'location_refinement' must be true or false, "
            f"got {refinement!r}"
        )
    if refinement:
        stdev = config.get("locref_stdev")
        if (
            isinstance(stdev, bool)
            or not isinstance(stdev, int | float)
            or not math.isfinite(stdev)
            or not stdev > 0
        ):
            raise PoseModelError(
                f"{folder / POSE_CONFIG_NAME}: 'locref_stdev' must be a positive number when "
                f"location_refinement is true, got {stdev!r}"
            )
    return PoseModelInfo(
        model_dir=folder,
        graph_path=graphs[0],
        body_parts=body_parts,
        stride=float(stride),
        location_refinement=refinement,
    )


def _read_pose_config(folder: Path) -> dict[str, Any]:
    path = folder / POSE_CONFIG_NAME
    if not path.is_file():
        raise PoseModelError(f"pose model folder {folder} has no {POSE_CONFIG_NAME}")
    # The same parser and settings as dlclive, so what is checked here is what it will read.
    import ruamel.yaml

    try:
        with path.open(encoding="utf-8") as stream:
            config = ruamel.yaml.YAML(typ="safe", pure=True).load(stream)
    except (OSError, UnicodeDecodeError, ruamel.yaml.YAMLError) as error:
        raise PoseModelError(f"{path}: cannot be read as YAML: {error}") from error
    if not isinstance(config, dict):
        raise PoseModelError(f"{path}: expected a mapping of keys, got {type(config).__name__}")
    return config


def _body_parts(config: dict[str, Any], folder: Path) -> tuple[str, ...]:
    path = folder / POSE_CONFIG_NAME
    names = config.get("all_joints_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PoseModelError(f"{path}: 'all_joints_names' must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise PoseModelError(f"{path}: 'all_joints_names' repeats a name: {names}")
    num_joints = config.get("num_joints", len(names))
    if num_joints != len(names):
        raise PoseModelError(
            f"{path}: 'num_joints' is {num_joints!r} but 'all_joints_names' lists {len(names)}"
        )
    return tuple(names)


def _import_dlclive() -> Any:
    """dlclive, imported on first use; a missing package is a PoseModelError, not an ImportError
    from deep inside the rig."""
    try:
        # Importing dlclive imports matplotlib, which trips pyparsing's deprecation warnings:
        # they are about those packages, not about anything the rig can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import dlclive
    except ImportError as error:
        raise PoseModelError(
            f"DeepLabCut-Live (dlclive) with TensorFlow is needed for pose estimation: {error}"
        ) from error
    return dlclive


class PoseEstimator:
    """Body parts in single gray frames of one camera, through DeepLabCut-Live.

    ``estimate(frame)`` returns (K, 3) float32: x and y in pixels of the frame (DeepLabCut's
    convention) and the likelihood in [0, 1] of each body part, in ``body_parts`` order. The
    first call loads the graph and initialises inference (slow); later calls cost milliseconds.
    ``threads`` caps TensorFlow's threads (None: TensorFlow's default, all cores), so several
    estimators on one machine do not fight over cores. ``close`` may be called more than once;
    after it, make a new estimator.
    """

    def __init__(self, model_dir: Path | str, *, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.info = read_model_folder(model_dir)
        dlclive = _import_dlclive()
        tf_config = None
        if threads is not None:
            import tensorflow as tf

            tf_config = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
            )
        try:
            self._live: Any = dlclive.DLCLive(
                str(self.info.model_dir), model_type="base", tf_config=tf_config
            )
        except Exception as error:  # dlclive raises whatever its loaders raise
            raise PoseModelError(
                f"pose model folder {self.info.model_dir}: dlclive cannot load it: {error}"
            ) from error
        self._initialised = False
        self._closed = False

    @property
    def body_parts(self) -> tuple[str, ...]:
        return self.info.body_parts

    @property
    def model_dir(self) -> Path:
        return self.info.model_dir

    def estimate(self, frame: np.ndarray) -> np.ndarray:
        """Frame (H, W) uint8 -> pose (K, 3) float32: x px, y px, likelihood per body part."""
        if self._closed:
            raise RuntimeError("PoseEstimator is closed; make a new one")
        image = _checked_frame(frame, self.info.stride)
        # dlclive turns a 2-D frame into 3 equal channels itself (gray -> RGB).
        if not self._initialised:
            try:
                pose = self._live.init_inference(image)
            except Exception as error:  # a graph dlclive cannot run fails here, not earlier
                raise PoseModelError(
                    f"pose model folder {self.info.model_dir}: the graph "
                    f"{self.info.graph_path.name} does not run: {error}"
                ) from error
            self._initialised = True
        else:
            pose = self._live.get_pose(image)
        pose = np.asarray(pose, dtype=np.float32)
        expected = (len(self.info.body_parts), 3)
        if pose.shape != expected:
            raise PoseModelError(
                f"pose model folder {self.info.model_dir}: the graph gives poses of shape "
                f"{pose.shape}, but {POSE_CONFIG_NAME} names {expected[0]} body parts"
            )
        return pose

    def close(self) -> None:
        """Release the TensorFlow session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._initialised:
            self._live.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _checked_frame(frame: np.ndarray, stride: float) -> np.ndarray:
    """The frame as a C-contiguous (H, W) uint8 array, or ValueError."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim != 2:
        raise ValueError(f"frame must be a gray image (H, W), got shape {frame.shape}")
    if min(frame.shape) < stride:
        raise ValueError(f"frame {frame.shape} is smaller than the model's stride {stride:g} px")
    return np.ascontiguousarray(frame)
