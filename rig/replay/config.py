"""The rig config of a replay: the one the trial was recorded with, its devices swapped for replay.

What changes, and why:

- every camera and the DAQ become ``sim``, so the supervisor wires them like the digital twin
  (the DAQ process publishes the twin trigger line the cameras take their pulses from), while
  the replay factories hand the processes devices that read the file;
- the trigger source becomes ``daq_counter``: the pulses are in the recorded trigger line, which
  the replay DAQ plays back as sampled; there is no trigger box to start;
- the twin's fault knobs are all off: a replay reproduces the recorded drops, it adds none;
- endpoints go back to the per-trial ``ipc://`` defaults and no role runs on another host (a
  replay runs on one machine, whatever the recording did), unless
  ``hosts`` names a rig config whose ``[endpoints]`` and ``[remote]`` spread it over several
  (``rig replay --hosts``, docs/multi-host.md);
- the camera processes may buffer more frames
  (:data:`~rig.replay.pacing.REPLAY_MIN_BUFFERED_FRAMES`), so a fast replay never drops one
  while the pacing reacts;
- ``trial.duration_s`` is the recorded length, ``trial.output_dir`` the replay's output folder;
- ``--model`` / ``--calibration`` replace the tracking model / calibration (and switch tracking
  on), ``--no-tracking`` switches it off.
"""

from __future__ import annotations

import dataclasses
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from rig.config import ConfigError, RigConfig, load_config
from rig.replay.pacing import REPLAY_MIN_BUFFERED_FRAMES
from rig.replay.source import CONFIG_ATTRIBUTE, RecordedTrial

DEFAULT_MAX_BUFFERED_FRAMES = 1000


class ReplayConfigError(ValueError):
    """The recorded config cannot be used for a replay; the message names the file and the key."""


def replay_config(
    recorded: RecordedTrial,
    *,
    output_dir: Path,
    model: Path | None = None,
    calibration: Path | None = None,
    tracking: bool | None = None,
    hosts: Path | None = None,
) -> RigConfig:
    """The config to replay ``recorded`` with; ``tracking`` None keeps the recorded choice;
    ``hosts`` is a rig config whose ``[endpoints]`` and ``[remote]`` tables the replay takes."""
    try:
        table = tomllib.loads(recorded.config_toml)
    except tomllib.TOMLDecodeError as error:
        raise ReplayConfigError(
            f"{recorded.path}: {CONFIG_ATTRIBUTE}: not valid TOML: {error}"
        ) from None
    if recorded.samples == 0:
        raise ReplayConfigError(f"{recorded.path}: /daq/analog: no committed samples to replay")
    _swap_devices(table)
    trial = _table(table, "trial")
    trial["output_dir"] = str(output_dir)
    trial["duration_s"] = recorded.duration_s
    tracking_table = _table(table, "tracking")
    if model is not None:
        tracking_table["model"] = str(model.resolve())
        tracking_table.pop("camera_models", None)
        tracking_table["enabled"] = True
    if calibration is not None:
        tracking_table["calibration"] = str(calibration.resolve())
        tracking_table["enabled"] = True
    if tracking is not None:
        tracking_table["enabled"] = tracking
    host_tables = read_host_tables(hosts) if hosts is not None else {}
    table.update(host_tables)
    with tempfile.TemporaryDirectory(prefix="jumprig-replay-config-") as folder:
        path = Path(folder) / "replay.toml"
        path.write_text(tomli_w.dumps(table))
        try:
            config = load_config(path)
        except ConfigError as error:
            if error.key.split(".")[0] in host_tables:
                raise ReplayConfigError(f"{hosts}: key '{error.key}': {error.problem}") from None
            raise ReplayConfigError(
                f"{recorded.path}: {CONFIG_ATTRIBUTE}, key '{error.key}': {error.problem}"
            ) from None
    _check_matches_file(config, recorded)
    return dataclasses.replace(config, source_path=f"{recorded.path} ({CONFIG_ATTRIBUTE})")


HOST_TABLES = ("endpoints", "remote")


def read_host_tables(path: Path) -> dict[str, Any]:
    """The ``[endpoints]`` and ``[remote]`` tables of the rig config at ``path``."""
    try:
        table = tomllib.loads(path.read_text())
    except OSError as error:
        raise ReplayConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ReplayConfigError(f"{path}: not valid TOML: {error}") from None
    tables = {name: table[name] for name in HOST_TABLES if name in table}
    if "remote" not in tables:
        raise ReplayConfigError(f"{path}: no [remote] table: nothing would run on another host")
    return tables


def _swap_devices(table: dict[str, Any]) -> None:
    cameras = table.get("cameras")
    if not isinstance(cameras, list):
        cameras = []
    for camera in cameras:
        if isinstance(camera, dict):
            camera["backend"] = "sim"
            buffered = camera.get("max_buffered_frames", DEFAULT_MAX_BUFFERED_FRAMES)
            if isinstance(buffered, int):
                camera["max_buffered_frames"] = max(buffered, REPLAY_MIN_BUFFERED_FRAMES)
    _table(table, "daq")["backend"] = "sim"
    _table(table, "trigger")["source"] = "daq_counter"
    _table(table, "triggerbox")["backend"] = "sim"
    _table(table, "sim").pop("faults", None)
    # A recording made over several hosts replays on this one unless --hosts says otherwise.
    for name in HOST_TABLES:
        table.pop(name, None)


def _table(table: dict[str, Any], key: str) -> dict[str, Any]:
    value = table.setdefault(key, {})
    if not isinstance(value, dict):
        raise ReplayConfigError(f"{CONFIG_ATTRIBUTE}: key '{key}' is not a table")
    return value


def _check_matches_file(config: RigConfig, recorded: RecordedTrial) -> None:
    """The recorded config must describe the recorded data (cameras, sizes, DAQ)."""
    where = f"{recorded.path}: {CONFIG_ATTRIBUTE}"
    recorded_names = tuple(camera.name for camera in recorded.cameras)
    if config.camera_names != recorded_names:
        raise ReplayConfigError(
            f"{where}: cameras {list(config.camera_names)}, the file has {list(recorded_names)}"
        )
    for camera, stored in zip(config.cameras, recorded.cameras, strict=True):
        if stored.frames and (camera.height, camera.width) != (stored.height, stored.width):
            raise ReplayConfigError(
                f"{where}: camera {camera.name} is {camera.width}x{camera.height}, its recorded "
                f"frames are {stored.width}x{stored.height}"
            )
    channel_names = tuple(channel.name for channel in config.daq.channels)
    if channel_names != recorded.daq_channel_names:
        raise ReplayConfigError(
            f"{where}: DAQ channels {list(channel_names)}, the file has "
            f"{list(recorded.daq_channel_names)}"
        )
    if config.daq.rate_hz != recorded.daq_rate_hz:
        raise ReplayConfigError(
            f"{where}: daq.rate_hz {config.daq.rate_hz:g}, the file was sampled at "
            f"{recorded.daq_rate_hz:g} Hz"
        )
