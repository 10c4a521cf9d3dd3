"""Everything an export needs from a trial file except the frames, read once into plain arrays.

The data come through the project's reader (:func:`rig.trialfile.open_trial`), so a file that
was not closed cleanly gives its committed rows only. Attributes of groups and datasets (body
parts, channel kinds, calibration sizes), which the reader does not offer, are read through a
second, read-only handle on the same file.
"""

from __future__ import annotations

import datetime
import json
import math
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, TrialFileError, open_trial
from tracking.camera_group import Camera, CameraGroup
from tracking.jump_detection import EVENTS_TABLE_DTYPE, JumpEvent, events_from_table

CALIBRATION_GROUP = "/calibration"
EVENTS_PATH = "/events"
POSE2D_GROUP = "/pose2d"
POSE3D_POINTS = "/pose3d/points"
POSE3D_TRIGGER_INDEX = "/pose3d/trigger_index"
POSE3D_REPROJECTION_ERROR = "/pose3d/reprojection_error"
POSE3D_CAMERAS_USED = "/pose3d/cameras_used"
SIM_GROUP = "/sim"


class ExportError(Exception):
    """A trial file that cannot be exported as asked; the message says which file and why."""


@dataclass(frozen=True, eq=False)
class CameraContents:
    """One camera's frame table and 2D poses (N committed frames, K body parts)."""

    name: str
    width_px: int
    height_px: int
    backend: str  # "sim", "genicam", ... from the trial's config; "" when unknown
    frame_id: np.ndarray  # (N,) int64
    trigger_index: np.ndarray  # (N,) int64, -1 unknown
    daq_sample_index: np.ndarray  # (N,) int64, -1 unknown
    t_host_ns: np.ndarray  # (N,) int64
    t_device_ns: np.ndarray  # (N,) int64, -1 where the camera has no clock
    pose2d: np.ndarray | None  # (N, K, 3) float32 x px, y px, likelihood; NaN where not inferred
    pose2d_body_parts: tuple[str, ...]  # (K,)
    pose_model: str  # the model folder the poses came from, "" when unknown

    @property
    def frame_count(self) -> int:
        return int(self.trigger_index.shape[0])


@dataclass(frozen=True, eq=False)
class Pose3dContents:
    """Triangulated body parts: M rows, K body parts, C cameras."""

    points_mm: np.ndarray  # (M, K, 3) float32
    trigger_index: np.ndarray  # (M,) int64
    reprojection_error_px: np.ndarray | None  # (M, K) float32
    cameras_used: np.ndarray | None  # (M, K, C) bool
    camera_order: tuple[str, ...]  # (C,) the cameras axis of cameras_used
    body_parts: tuple[str, ...]  # (K,)


@dataclass(frozen=True, eq=False)
class DaqContents:
    """The analog inputs on the master clock (S samples, C channels) and the trigger pulses."""

    rate_hz: float
    analog: np.ndarray  # (S, C) float32, each channel in its unit
    channel_names: tuple[str, ...]  # (C,)
    channel_units: tuple[str, ...]  # (C,) e.g. "V", "N"
    channel_kinds: tuple[str, ...]  # (C,) "emg", "force", "other"
    trigger_sample_index: np.ndarray  # (P,) int64: pulse p was recorded at this sample

    @property
    def pulse0_sample(self) -> int:
        """Sample of trigger pulse 0, where the rig's event times (``t_s``) start; 0 without
        pulses."""
        return int(self.trigger_sample_index[0]) if self.trigger_sample_index.size else 0


@dataclass(frozen=True, eq=False)
class TrialContents:
    """A trial file's identity, provenance and data, frames excepted."""

    path: Path
    trial_id: str
    subject: str
    started_utc: datetime.datetime
    closed_cleanly: bool
    end_reason: str
    config_text: str  # the resolved TOML the trial ran with, "" if absent
    config: dict[str, Any]  # the same, parsed; {} if absent or unreadable
    root_attrs: dict[str, Any]  # every root attribute, as plain Python values
    software_versions: dict[str, str]  # {"jumprig": "0.1.0", "numpy": ...}
    cameras: tuple[CameraContents, ...]
    daq: DaqContents
    calibration: CameraGroup | None
    calibration_source: str
    pose3d: Pose3dContents | None
    events: tuple[JumpEvent, ...]
    is_simulated: bool

    def camera(self, name: str) -> CameraContents:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise ExportError(
            f"{self.path}: no camera {name!r}; cameras: {[c.name for c in self.cameras]}"
        )


@contextmanager
def opened_trial(path: Path | str) -> Iterator[tuple[TrialFile, TrialContents]]:
    """The open trial (for reading frames) and its contents; ExportError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        trial = open_trial(path)
    except (TrialFileError, OSError) as error:
        raise ExportError(f"{path}: not a readable trial file: {error}") from error
    with trial:
        try:
            contents = _read_contents(trial)
        except TrialFileError as error:
            raise ExportError(str(error)) from error
        yield trial, contents


def read_trial_contents(path: Path | str) -> TrialContents:
    """Everything but the frames of the trial file at ``path``."""
    with opened_trial(path) as (_, contents):
        return contents


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attributes:
    """Attributes of groups and datasets below the root, and which optional parts exist."""

    by_path: dict[str, dict[str, Any]]
    present: frozenset[str]

    def of(self, path: str) -> dict[str, Any]:
        return self.by_path.get(path, {})


def _read_contents(trial: TrialFile) -> TrialContents:
    path = trial.path
    attributes = _read_attributes(trial)
    root = {key: _plain(value) for key, value in trial.attrs.items()}
    config_text = str(root.get(layout.ATTR_CONFIG, ""))
    config = _parse_config(config_text)
    camera_backends = {
        str(entry.get("name", "")): str(entry.get("backend", ""))
        for entry in config.get("cameras", [])
        if isinstance(entry, dict)
    }
    cameras = tuple(
        _read_camera(trial, attributes, name, camera_backends.get(name, ""))
        for name in trial.camera_names
    )
    daq = _read_daq(trial, attributes)
    calibration, calibration_source = _read_calibration(trial, attributes)
    pose3d = _read_pose3d(trial, attributes) if POSE3D_POINTS in attributes.present else None
    events: tuple[JumpEvent, ...] = ()
    if EVENTS_PATH in attributes.present:
        table = trial.read(EVENTS_PATH)
        if table.dtype != EVENTS_TABLE_DTYPE:
            raise ExportError(f"{path}: {EVENTS_PATH} is not an events table ({table.dtype})")
        events = tuple(events_from_table(table))
    trial_id = str(root.get(layout.ATTR_TRIAL_ID) or path.stem)
    return TrialContents(
        path=path,
        trial_id=trial_id,
        subject=str(root.get(layout.ATTR_SUBJECT) or "unknown"),
        started_utc=_parse_utc(root.get(layout.ATTR_STARTED_UTC), path),
        closed_cleanly=trial.closed_cleanly,
        end_reason=trial.end_reason,
        config_text=config_text,
        config=config,
        root_attrs=root,
        software_versions=_software_versions(root),
        cameras=cameras,
        daq=daq,
        calibration=calibration,
        calibration_source=calibration_source,
        pose3d=pose3d,
        events=events,
        is_simulated=SIM_GROUP in attributes.present,
    )


def _read_attributes(trial: TrialFile) -> _Attributes:
    """The reader holds the file open, and so may the user (a notebook's h5py handle): HDF5
    opens a file a second time in one process only with the locking flags of the first open,
    so each of h5py's locking choices is tried (None: HDF5's default)."""
    failures: list[Exception] = []
    lockings: tuple[bool | str | None, ...] = (False, None, True, "best-effort")
    for locking in lockings:
        try:
            with h5py.File(
                trial.path, "r", swmr=trial.opened_in_swmr_mode, locking=locking
            ) as h5file:
                return _collect_attributes(h5file)
        except (OSError, KeyError, RuntimeError) as error:
            failures.append(error)
    raise ExportError(f"{trial.path}: attributes cannot be read: {failures[0]}")


def _collect_attributes(h5file: h5py.File) -> _Attributes:
    by_path: dict[str, dict[str, Any]] = {}
    present: set[str] = set()

    def collect(name: str, item: Any) -> None:
        path = "/" + name
        present.add(path)
        by_path[path] = {key: _plain(value) for key, value in item.attrs.items()}

    h5file.visititems(collect)
    return _Attributes(by_path=by_path, present=frozenset(present))


def _read_camera(
    trial: TrialFile, attributes: _Attributes, name: str, backend: str
) -> CameraContents:
    table = trial.frame_table(name)
    group_attrs = attributes.of(layout.camera_group(name))
    frames_shape = trial.read(layout.camera_dataset(name, layout.FRAMES), 0, 0).shape
    height = int(group_attrs.get(layout.ATTR_HEIGHT, frames_shape[1]))
    width = int(group_attrs.get(layout.ATTR_WIDTH, frames_shape[2]))
    pose_path = f"{POSE2D_GROUP}/{name}"
    pose2d = None
    body_parts: tuple[str, ...] = ()
    model = ""
    if pose_path in attributes.present:
        pose2d = trial.read(pose_path).astype(np.float32)
        frames = table[layout.TRIGGER_INDEX].shape[0]
        if pose2d.ndim != 3 or pose2d.shape[2] != 3 or pose2d.shape[0] != frames:
            raise ExportError(
                f"{trial.path}: {pose_path} has shape {pose2d.shape}, expected ({frames}, K, 3)"
            )
        pose_attrs = attributes.of(pose_path)
        body_parts = _body_parts(pose_attrs.get("body_parts"), pose2d.shape[1])
        model = str(pose_attrs.get("model", ""))
    return CameraContents(
        name=name,
        width_px=width,
        height_px=height,
        backend=backend,
        frame_id=table[layout.FRAME_ID].astype(np.int64),
        trigger_index=table[layout.TRIGGER_INDEX].astype(np.int64),
        daq_sample_index=table[layout.DAQ_SAMPLE_INDEX].astype(np.int64),
        t_host_ns=table[layout.T_HOST_NS].astype(np.int64),
        t_device_ns=table[layout.T_DEVICE_NS].astype(np.int64),
        pose2d=pose2d,
        pose2d_body_parts=body_parts,
        pose_model=model,
    )


def _read_daq(trial: TrialFile, attributes: _Attributes) -> DaqContents:
    rate_hz = float(trial.daq_rate_hz)
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ExportError(f"{trial.path}: {layout.DAQ_ANALOG} rate_hz is {rate_hz}, not > 0")
    analog = trial.daq_analog()
    names = tuple(str(name) for name in trial.daq_channel_names)
    if analog.ndim != 2 or analog.shape[1] != len(names):
        raise ExportError(
            f"{trial.path}: {layout.DAQ_ANALOG} has shape {analog.shape}, "
            f"expected (S, {len(names)}) for its channel names"
        )
    units = tuple(str(unit) for unit in trial.daq_channel_units)
    if len(units) != len(names):
        units = ("",) * len(names)
    kinds_attr = attributes.of(layout.DAQ_ANALOG).get(layout.ATTR_KINDS)
    kinds = tuple(str(kind) for kind in kinds_attr) if isinstance(kinds_attr, list) else ()
    if len(kinds) != len(names):
        # Files without kinds: a channel in newtons is a force, the rest EMG (as the report does).
        kinds = tuple("force" if unit == "N" else "emg" for unit in units)
    return DaqContents(
        rate_hz=rate_hz,
        analog=analog,
        channel_names=names,
        channel_units=units,
        channel_kinds=kinds,
        trigger_sample_index=trial.trigger_sample_index().astype(np.int64),
    )


def _read_calibration(trial: TrialFile, attributes: _Attributes) -> tuple[CameraGroup | None, str]:
    if CALIBRATION_GROUP not in attributes.present:
        return None, ""
    group_attrs = attributes.of(CALIBRATION_GROUP)
    source = str(group_attrs.get("source", ""))
    cameras = []
    for name in trial.camera_names:
        prefix = f"{CALIBRATION_GROUP}/{name}"
        if prefix not in attributes.present:
            continue
        camera_attrs = attributes.of(prefix)
        try:
            cameras.append(
                Camera(
                    name=name,
                    width=int(camera_attrs["width"]),
                    height=int(camera_attrs["height"]),
                    matrix=trial.read(f"{prefix}/matrix"),
                    distortion=trial.read(f"{prefix}/distortion"),
                    rotation_vector=trial.read(f"{prefix}/rotation_vector"),
                    translation_mm=trial.read(f"{prefix}/translation_mm"),
                )
            )
        except (KeyError, ValueError) as error:
            raise ExportError(f"{trial.path}: {prefix} is not a usable camera: {error}") from None
    if not cameras:
        return None, source
    return CameraGroup(cameras, {"source": source, "units": "mm"}), source


def _read_pose3d(trial: TrialFile, attributes: _Attributes) -> Pose3dContents:
    points = trial.read(POSE3D_POINTS).astype(np.float32)
    trigger_index = trial.read(POSE3D_TRIGGER_INDEX).astype(np.int64)
    if points.ndim != 3 or points.shape[2] != 3 or trigger_index.shape != (points.shape[0],):
        raise ExportError(
            f"{trial.path}: {POSE3D_POINTS} {points.shape} with trigger_index "
            f"{trigger_index.shape}: expected (M, K, 3) and (M,)"
        )
    error = None
    if POSE3D_REPROJECTION_ERROR in attributes.present:
        error = trial.read(POSE3D_REPROJECTION_ERROR).astype(np.float32)
        if error.shape != points.shape[:2]:
            error = None
    used = None
    order: tuple[str, ...] = ()
    if POSE3D_CAMERAS_USED in attributes.present:
        used = trial.read(POSE3D_CAMERAS_USED).astype(bool)
        order_attr = attributes.of(POSE3D_CAMERAS_USED).get("cameras", [])
        order = tuple(str(name) for name in order_attr) if isinstance(order_attr, list) else ()
        if used.shape[:2] != points.shape[:2] or used.ndim != 3 or len(order) != used.shape[2]:
            used, order = None, ()
    return Pose3dContents(
        points_mm=points,
        trigger_index=trigger_index,
        reprojection_error_px=error,
        cameras_used=used,
        camera_order=order,
        body_parts=_body_parts(attributes.of(POSE3D_POINTS).get("body_parts"), points.shape[1]),
    )


def _body_parts(value: Any, count: int) -> tuple[str, ...]:
    """The stored body part names, or ``part_0``, ``part_1``, ... when they do not fit."""
    if isinstance(value, list) and len(value) == count:
        return tuple(str(part) for part in value)
    return tuple(f"part_{index}" for index in range(count))


def _parse_config(text: str) -> dict[str, Any]:
    # The config is provenance here: an export must not fail on it, so an unreadable one is {}.
    try:
        return tomllib.loads(text) if text else {}
    except tomllib.TOMLDecodeError:
        return {}


def _parse_utc(value: Any, path: Path) -> datetime.datetime:
    if not isinstance(value, str) or not value:
        raise ExportError(f"{path}: root attribute {layout.ATTR_STARTED_UTC!r} is missing")
    try:
        started = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ExportError(
            f"{path}: root attribute {layout.ATTR_STARTED_UTC!r} is not ISO 8601: {value!r}"
        ) from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=datetime.UTC)
    return started


def _software_versions(root: dict[str, Any]) -> dict[str, str]:
    versions = {
        key.removeprefix("version_"): str(value)
        for key, value in root.items()
        if key.startswith("version_")
    }
    # Older files may keep them as one JSON mapping.
    text = root.get("software_versions")
    if isinstance(text, str):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError:
            mapping = {}
        if isinstance(mapping, dict):
            versions.update({str(key): str(value) for key, value in mapping.items()})
    return versions


def _plain(value: Any) -> Any:
    """An HDF5 attribute as plain Python: text as str, arrays as lists, numpy scalars unwrapped."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
