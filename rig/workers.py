"""What each worker process of a trial runs: its entry function and arguments, by role.

The supervisor starts these on the console; a ``rig worker`` on another host starts the same from
the same :class:`TrialPlan` (which travels to it as JSON over the control channel), so a role runs
the same code with the same arguments wherever it runs.

Roles: ``writer``, ``camera:<name>``, ``daq``, ``pose:<name>[+<name>...]``, ``triangulator`` and
``jumps`` (the jump detector).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

from acquisition.camera_process import CameraFactory, make_camera, run_camera
from acquisition.daq_process import DaqFactory, make_daq, run_daq
from acquisition.sim.skeleton import BODY_PARTS
from acquisition.transport import Endpoints
from rig.config import RigConfig
from rig.writer_process import run_writer, trial_jump_channels
from tracking.jump_process import ROLE as JUMPS
from tracking.jump_process import run_jump_detector
from tracking.pose import read_model_folder
from tracking.pose_process import role_of as pose_role
from tracking.pose_process import run_pose
from tracking.triangulator_process import ROLE as TRIANGULATOR
from tracking.triangulator_process import run_triangulator

WRITER = "writer"
DAQ = "daq"

# Camera factories that may be named in a message to another host: the real devices (and the
# twin) and a replay's recorded cameras. A factory is named by module and attribute, never pickled.
REMOTE_CAMERA_FACTORIES = (
    "acquisition.camera_process:make_camera",
    "rig.replay.cameras:ReplayCameraFactory",
)


@dataclass(frozen=True)
class TrialPlan:
    """What the workers of one trial share beyond the config. Plain values only: it travels to
    a ``rig worker`` on another host as JSON."""

    trial_id: str
    trial_path: str  # where the writer creates the file (on the writer's host)
    root_attrs: Mapping[str, Any]
    endpoints: Endpoints
    calibration_toml: str = ""  # the trial's camera group, anipose TOML ("" without tracking)

    def as_message(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "trial_path": self.trial_path,
            "root_attrs": dict(self.root_attrs),
            "endpoints": self.endpoints.as_dict(),
            "calibration_toml": self.calibration_toml,
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> TrialPlan:
        return cls(
            trial_id=str(message["trial_id"]),
            trial_path=str(message["trial_path"]),
            root_attrs=dict(message["root_attrs"]),
            endpoints=Endpoints.from_dict(message["endpoints"]),
            calibration_toml=str(message["calibration_toml"]),
        )


@dataclass(frozen=True)
class WorkerCall:
    """A worker process to start: ``target(*args)``."""

    role: str
    target: Callable[..., None]
    args: tuple[Any, ...]


def worker_call(
    role: str,
    config: RigConfig,
    plan: TrialPlan,
    abort: Event,
    calibration_path: str = "",
    camera_factory: CameraFactory = make_camera,
    daq_factory: DaqFactory = make_daq,
) -> WorkerCall:
    """The process of ``role`` for the trial of ``plan``; ``calibration_path`` is
    ``plan.calibration_toml`` saved where this host's triangulator can read it."""
    endpoints = plan.endpoints
    kind, _, name = role.partition(":")
    if role == WRITER:
        args: tuple[Any, ...] = (config, endpoints, plan.trial_path, dict(plan.root_attrs), abort)
        return WorkerCall(role, run_writer, args)
    if kind == "camera" and name in config.camera_names:
        camera = config.cameras[config.camera_names.index(name)]
        args = (
            camera,
            config.sim,
            config.camera_names,
            endpoints,
            abort,
            config.tracking.enabled,
            camera_factory,
            config.tracking.infer_every_n_frames,
        )
        return WorkerCall(role, run_camera, args)
    if role == DAQ:
        twin_cameras = [c.name for c in config.cameras if c.needs_twin_trigger_line]
        args = (
            config.daq,
            config.trigger,
            config.triggerbox,
            config.sim,
            endpoints,
            twin_cameras,
            abort,
            daq_factory,
        )
        return WorkerCall(role, run_daq, args)
    pose_groups = {pose_role(group): group for group in config.pose_groups}
    if role in pose_groups:
        sizes = {c.name: (c.height, c.width) for c in config.cameras}
        cameras = [(camera, *sizes[camera]) for camera in pose_groups[role]]
        return WorkerCall(role, run_pose, (cameras, config.tracking, endpoints, abort))
    if role == TRIANGULATOR and config.tracking.enabled:
        if not calibration_path:
            raise ValueError("the triangulator needs the trial's calibration")
        args = (config.camera_names, calibration_path, config.tracking, endpoints, abort)
        return WorkerCall(role, run_triangulator, args)
    channels = trial_jump_channels(config)
    if role == JUMPS and channels is not None:
        body_parts = (
            read_model_folder(config.tracking.model_for(config.camera_names[0])).body_parts
            if config.tracking.enabled
            else BODY_PARTS
        )
        args = (
            config.daq.rate_hz,
            channels,
            tuple(body_parts),
            len(config.cameras),
            config.tracking.enabled,
            endpoints,
            abort,
        )
        return WorkerCall(role, run_jump_detector, args)
    raise ValueError(f"this rig has no worker {role!r}")


def camera_factory_spec(factory: CameraFactory) -> dict[str, Any]:
    """``factory`` as a JSON-able spec for a camera process on another host."""
    # A factory object (a dataclass) is named by its class and sent with its fields.
    is_object = dataclasses.is_dataclass(factory) and not isinstance(factory, type)
    named: Any = type(factory) if is_object else factory
    name = f"{named.__module__}:{named.__qualname__}"
    fields = dataclasses.asdict(factory) if is_object else None  # type: ignore[call-overload]
    if name not in REMOTE_CAMERA_FACTORIES:
        raise ValueError(f"camera factory {name} cannot run on another host")
    return {"name": name, "fields": fields}


def camera_factory_from_spec(spec: Mapping[str, Any]) -> CameraFactory:
    name = str(spec["name"])
    if name not in REMOTE_CAMERA_FACTORIES:
        raise ValueError(f"unknown camera factory {name!r}")
    module, _, attribute = name.partition(":")
    factory = getattr(importlib.import_module(module), attribute)
    fields = spec.get("fields")
    made: CameraFactory = factory(**fields) if fields is not None else factory
    return made
