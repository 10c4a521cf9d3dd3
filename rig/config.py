"""The rig's configuration: TOML files validated once, at start-up, into frozen dataclasses.

Every table and key is declared below. An unknown key, a value of the wrong type or out of range,
a missing required key or an unreadable file raises :class:`ConfigError` naming the file and the
dotted key, before any process starts, any hardware is armed or any file is created.

The dataclasses are plain and picklable: each worker process receives the whole :class:`RigConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from acquisition.settings import (
    CameraConfig,
    DaqConfig,
    SimConfig,
    TriggerBoxConfig,
    TriggerConfig,
    between,
    ge,
    gt,
)
from tracking.pose_process import role_of as pose_role
from tracking.settings import TrackingSettings

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "sim.toml"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"key '{key}'" if key else "the file"
        super().__init__(f"{path}: {where}: {problem}")


@dataclass(frozen=True)
class TrialConfig:
    subject: str = "unknown"
    duration_s: float = field(default=5.0, metadata=gt(0))
    output_dir: str = "trials"
    # The writer flushes the file at least this often; a crash loses at most this much.
    flush_interval_s: float = field(default=0.5, metadata=between(0.01, 10.0))
    # Refuse to start unless this much more than the trial's estimated size is free on disk.
    disk_margin_bytes: int = field(default=100_000_000, metadata=ge(0))


@dataclass(frozen=True)
class EndpointsConfig:
    """ZeroMQ endpoints; empty means ``ipc://`` sockets in a private folder made per trial.

    A rig spread over several hosts (``[remote]``) gives every endpoint as ``tcp://ADDRESS:PORT``:
    the process that binds it listens on ADDRESS (one of its own host's addresses), the others
    connect there. The comment says who binds each.
    """

    control: str = ""  # the console (the supervisor)
    record: str = ""  # the writer
    trigger_line: str = ""  # the simulated DAQ (the twin trigger line)
    poses: str = ""  # the triangulator
    jump_input: str = ""  # the jump detector
    monitor: str = ""  # the live preview
    replay_credit: str = ""  # a replay's DAQ
    # Each camera's newest raw frames for tracking, by camera name: the camera process.
    live_frames: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteConfig:
    """Roles that run on other hosts, each started there with ``rig worker --role ROLE``."""

    roles: tuple[str, ...] = ()
    # How long the console waits for each remote role's `rig worker` to answer before a trial.
    worker_wait_s: float = field(default=60.0, metadata=gt(0))


@dataclass(frozen=True)
class RigConfig:
    trial: TrialConfig = TrialConfig()
    trigger: TriggerConfig = TriggerConfig()
    triggerbox: TriggerBoxConfig = TriggerBoxConfig()
    daq: DaqConfig = DaqConfig()
    cameras: tuple[CameraConfig, ...] = ()
    endpoints: EndpointsConfig = EndpointsConfig()
    remote: RemoteConfig = RemoteConfig()
    sim: SimConfig = SimConfig()
    tracking: TrackingSettings = TrackingSettings()
    # Where the config came from; not a key of the file.
    source_path: str = field(default="", metadata={"internal": True})

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(camera.name for camera in self.cameras)

    @property
    def pose_groups(self) -> tuple[tuple[str, ...], ...]:
        """The cameras of each pose process (one shared process, or one per camera)."""
        if not self.tracking.enabled:
            return ()
        if self.tracking.pose_processes == "shared":
            return (self.camera_names,)
        return tuple((name,) for name in self.camera_names)

    @property
    def remotable_roles(self) -> tuple[str, ...]:
        """The roles this rig's `rig worker` may take on another host. The DAQ, the trigger box,
        the jump detector and the live preview stay on the console, which the DAQ and the
        trigger box are wired to."""
        roles = ["writer", *(f"camera:{name}" for name in self.camera_names)]
        if self.tracking.enabled:
            roles += [pose_role(group) for group in self.pose_groups]
            roles.append("triangulator")
        return tuple(roles)

    @property
    def samples_per_pulse(self) -> float:
        return self.daq.rate_hz / self.trigger.rate_hz

    def to_toml(self) -> str:
        """The resolved configuration (defaults filled in) as TOML text, for the trial file."""
        return tomli_w.dumps(_to_plain(self))


# --- loading -------------------------------------------------------------------------------------


def load_config(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> RigConfig:
    """Read and validate a rig config; ``overrides`` maps dotted keys to values (from the CLI)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except OSError as error:
        raise ConfigError(path, "", f"cannot read: {error.strerror}") from None
    return parse_config(text, path, overrides)


def parse_config(text: str, path: Path | str, overrides: dict[str, Any] | None = None) -> RigConfig:
    """Validate config TOML ``text``; ``path`` names it in errors and anchors relative paths."""
    path = Path(path)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, "", f"not valid TOML: {error}") from None
    for dotted_key, value in (overrides or {}).items():
        _set_dotted(table, dotted_key, value)
    config = _build(RigConfig, table, "", path)
    config = dataclasses.replace(
        config, source_path=str(path), tracking=_resolve_tracking_paths(config.tracking, path)
    )
    _check_rig(config, path)
    return config


def _resolve_tracking_paths(tracking: TrackingSettings, path: Path) -> TrackingSettings:
    """Model and calibration paths relative to the config file's folder, made absolute."""
    base = path.resolve().parent

    def resolve(value: str) -> str:
        return str((base / value).resolve()) if value and not Path(value).is_absolute() else value

    return dataclasses.replace(
        tracking,
        model=resolve(tracking.model),
        camera_models={name: resolve(value) for name, value in tracking.camera_models.items()},
        calibration=tracking.calibration
        if tracking.calibration == "twin"
        else resolve(tracking.calibration),
    )


def _set_dotted(table: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, last = dotted_key.split(".")
    for part in parents:
        table = table.setdefault(part, {})
    table[last] = value


def _build(cls: type, table: Any, prefix: str, path: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, f"expected a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        key = _join(prefix, unknown[0])
        raise ConfigError(path, key, f"unknown key (known keys here: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        key = _join(prefix, name)
        if name not in table:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(path, key, "required key is missing")
            continue
        value = _convert(hints[name], table[name], key, path)
        _check_bounds(spec.metadata, value, key, path)
        values[name] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        # A settings class that checks how its fields fit together (``__post_init__``).
        raise ConfigError(path, prefix, str(error)) from None


def _convert(hint: Any, value: Any, key: str, path: Path) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, path)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(path, key, f"must be one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {_describe(value)}")
        return tuple(_convert(args[0], item, f"{key}[{i}]", path) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, key, f"expected a table, got {_describe(value)}")
        return {k: _convert(args[1], v, _join(key, k), path) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"union types are not supported in config schemas ({key})")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, key, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(path, key, f"expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {key}")


def _check_bounds(metadata: Any, value: Any, key: str, path: Path) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    checks = (
        ("gt", lambda bound: value > bound, "greater than"),
        ("ge", lambda bound: value >= bound, "at least"),
        ("lt", lambda bound: value < bound, "less than"),
        ("le", lambda bound: value <= bound, "at most"),
    )
    for name, holds, words in checks:
        if name in metadata and not holds(metadata[name]):
            raise ConfigError(path, key, f"must be {words} {metadata[name]}, got {value!r}")


def _check_rig(config: RigConfig, path: Path) -> None:
    """Rules that tie several keys together."""
    if not config.cameras:
        raise ConfigError(path, "cameras", "at least one camera is required")
    seen: set[str] = set()
    for i, camera in enumerate(config.cameras):
        if not camera.name.isidentifier():
            raise ConfigError(
                path,
                f"cameras[{i}].name",
                f"must be a simple name (letters, digits, _), got {camera.name!r}",
            )
        if camera.name in seen:
            raise ConfigError(path, f"cameras[{i}].name", f"duplicate camera name {camera.name!r}")
        seen.add(camera.name)
    channel_names = [channel.name for channel in config.daq.channels]
    if not channel_names:
        raise ConfigError(path, "daq.channels", "at least one analog channel is required")
    for i, name in enumerate(channel_names):
        if name in channel_names[:i]:
            raise ConfigError(path, f"daq.channels[{i}].name", f"duplicate channel name {name!r}")
    samples_per_pulse = config.samples_per_pulse
    if samples_per_pulse < 2:
        raise ConfigError(
            path,
            "trigger.rate_hz",
            f"the DAQ at {config.daq.rate_hz:g} Hz needs at least 2 samples per trigger pulse "
            f"to record the trigger line; at most {config.daq.rate_hz / 2:g} Hz",
        )
    for name in config.sim.faults.cameras:
        if name not in seen:
            raise ConfigError(path, f"sim.faults.cameras.{name}", f"no camera named {name!r}")
    for name, faults in config.sim.faults.cameras.items():
        for i, index in enumerate(faults.drop_trigger_indices):
            if index < 0:
                key = f"sim.faults.cameras.{name}.drop_trigger_indices[{i}]"
                raise ConfigError(path, key, f"trigger indices start at 0, got {index}")
    simulated_box = config.trigger.source == "triggerbox" and config.triggerbox.backend == "sim"
    if simulated_box and config.daq.backend != "sim":
        raise ConfigError(
            path,
            "triggerbox.backend",
            "the simulated trigger box lives in the simulated DAQ: needs daq.backend = 'sim'",
        )
    for i, camera in enumerate(config.cameras):
        if camera.needs_twin_trigger_line and config.daq.backend != "sim":
            raise ConfigError(
                path,
                f"cameras[{i}].backend",
                "twin cameras and software_per_pulse GenICam cameras take their pulses from the "
                "simulated DAQ's trigger line: needs daq.backend = 'sim'",
            )
    tracking = config.tracking
    if tracking.enabled:
        for name in tracking.camera_models:
            if name not in seen:
                raise ConfigError(
                    path, f"tracking.camera_models.{name}", f"no camera named {name!r}"
                )
        for camera in config.cameras:
            model = tracking.model_for(camera.name)
            if not model:
                raise ConfigError(
                    path, "tracking.model", f"no pose model for camera {camera.name!r}"
                )
            if not (Path(model) / "pose_cfg.yaml").is_file():
                key = (
                    f"tracking.camera_models.{camera.name}"
                    if camera.name in tracking.camera_models
                    else "tracking.model"
                )
                raise ConfigError(path, key, f"{model} is not a model folder (no pose_cfg.yaml)")
        if tracking.calibration == "twin":
            if any(camera.backend != "sim" for camera in config.cameras):
                raise ConfigError(
                    path,
                    "tracking.calibration",
                    "'twin' needs twin cameras: give a calibration file",
                )
        elif not Path(tracking.calibration).is_file():
            raise ConfigError(path, "tracking.calibration", f"{tracking.calibration}: no such file")
    if config.triggerbox.backend == "serial" and not config.triggerbox.port:
        raise ConfigError(path, "triggerbox.port", "required when triggerbox.backend = 'serial'")
    _check_endpoints(config, path)


def _check_endpoints(config: RigConfig, path: Path) -> None:
    """Endpoints name real cameras; a rig over several hosts has every endpoint on TCP."""
    endpoints = config.endpoints
    for name in endpoints.live_frames:
        if name not in config.camera_names:
            raise ConfigError(path, f"endpoints.live_frames.{name}", f"no camera named {name!r}")
    for i, role in enumerate(config.remote.roles):
        if role not in config.remotable_roles:
            raise ConfigError(
                path,
                f"remote.roles[{i}]",
                f"{role!r} cannot run on another host; this rig's remote roles are "
                f"{', '.join(config.remotable_roles)} (the DAQ, the trigger box, the jump "
                "detector and the preview stay on the console)",
            )
        if role in config.remote.roles[:i]:
            raise ConfigError(path, f"remote.roles[{i}]", f"{role!r} is listed twice")
    if not config.remote.roles:
        return
    needed = ["control", "record"]
    if any(camera.needs_twin_trigger_line for camera in config.cameras):
        needed.append("trigger_line")
    if config.tracking.enabled:
        needed += ["poses", "jump_input"]
        needed += [f"live_frames.{name}" for name in config.camera_names]
    for key in needed:
        table, _, name = key.partition(".")
        value = endpoints.live_frames.get(name, "") if name else getattr(endpoints, table)
        if not value.startswith("tcp://"):
            got = f"got {value!r}" if value else "it is not set"
            raise ConfigError(
                path,
                f"endpoints.{key}",
                f"a rig with [remote] roles needs every endpoint as tcp://ADDRESS:PORT; {got}",
            )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r})"


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("internal")
        }
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value
