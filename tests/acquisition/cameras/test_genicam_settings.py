"""GenICamSettings: defaults, validation, and the shape the rig's TOML loader can build."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from acquisition.cameras.genicam_settings import GenICamSettings

LOADABLE_SCALARS = (str, int, float, bool)
BOUND_KEYS = {"gt", "ge", "lt", "le"}


def is_loadable(hint: Any) -> bool:
    """Whether the rig's config loader can build a value of this type from TOML."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in LOADABLE_SCALARS or dataclasses.is_dataclass(hint):
        return True
    if origin is Literal:
        return all(isinstance(arg, LOADABLE_SCALARS) for arg in args)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and is_loadable(args[0])
    if origin is dict:
        return args[0] is str and is_loadable(args[1])
    return False


def test_every_field_is_loadable_from_toml_and_has_a_default() -> None:
    hints = typing.get_type_hints(GenICamSettings)
    for spec in dataclasses.fields(GenICamSettings):
        assert is_loadable(hints[spec.name]), spec.name
        has_default = (
            spec.default is not dataclasses.MISSING
            or spec.default_factory is not dataclasses.MISSING
        )
        assert has_default, spec.name
        assert set(spec.metadata) <= BOUND_KEYS, spec.name


def test_the_rig_loader_builds_it_from_a_toml_table(tmp_path: Path) -> None:
    from rig import config as rig_config

    table = tomllib.loads(
        """
        cti_files = ["/opt/vendor/lib/Producer.cti"]
        serial_number = "22012345"
        exposure_us = 1500.0
        gain_db = 3
        trigger = "line"
        trigger_line = "Line1"
        node_names = { ExposureTime = "ExposureTimeAbs", FrameID = "Framecounter" }
        node_values = { AcquisitionFrameRateEnable = "0" }
        """
    )
    settings = rig_config._build(GenICamSettings, table, "cameras[0].genicam", tmp_path / "x.toml")
    assert settings == GenICamSettings(
        cti_files=("/opt/vendor/lib/Producer.cti",),
        serial_number="22012345",
        exposure_us=1500.0,
        gain_db=3.0,
        trigger="line",
        trigger_line="Line1",
        node_names={"ExposureTime": "ExposureTimeAbs", "FrameID": "Framecounter"},
        node_values={"AcquisitionFrameRateEnable": "0"},
    )
    with pytest.raises(rig_config.ConfigError, match=r"cameras\[0\]\.genicam\.trigger"):
        rig_config._build(GenICamSettings, {"trigger": "hardware"}, "cameras[0].genicam", "x")
    with pytest.raises(rig_config.ConfigError, match=r"cameras\[0\]\.genicam\.fetch_timeout_s"):
        rig_config._build(GenICamSettings, {"fetch_timeout_s": 0}, "cameras[0].genicam", "x")
    with pytest.raises(rig_config.ConfigError, match=r"node_names\.Exposure: not a name"):
        rig_config._build(
            GenICamSettings, {"node_names": {"Exposure": "X"}}, "cameras[0].genicam", "x"
        )


def test_defaults_leave_exposure_and_gain_and_use_a_hardware_line() -> None:
    settings = GenICamSettings()
    assert settings.exposure_us == 0.0
    assert settings.gain_db == -1.0
    assert settings.trigger == "line"
    assert settings.trigger_line == "Line0"
    assert settings.chunk_data is True


def test_vendor_names_replace_standard_ones() -> None:
    settings = GenICamSettings(node_names={"ExposureTime": "ExposureTimeAbs"})
    assert settings.node_name("ExposureTime") == "ExposureTimeAbs"
    assert settings.node_name("Gain") == "Gain"


def test_an_unknown_standard_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"node_names\.ExposureTme: not a name this backend uses"):
        GenICamSettings(node_names={"ExposureTme": "ExposureTimeAbs"})


def test_an_empty_vendor_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"node_names\.Gain: the vendor's name is empty"):
        GenICamSettings(node_names={"Gain": ""})


def test_a_line_trigger_needs_a_line() -> None:
    with pytest.raises(ValueError, match="trigger_line"):
        GenICamSettings(trigger="line", trigger_line="")
    GenICamSettings(trigger="free_run", trigger_line="")


def test_an_empty_cti_path_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cti_files\[1\]"):
        GenICamSettings(cti_files=("/a.cti", ""))


def test_describe_is_plain_json() -> None:
    settings = GenICamSettings(cti_files=("/a.cti",), node_values={"X": "1"})
    described = json.loads(json.dumps(settings.describe()))
    assert described["cti_files"] == ["/a.cti"]
    assert described["node_values"] == {"X": "1"}
    assert described["trigger"] == "line"
