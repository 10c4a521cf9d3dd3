"""The page's layout of the rig, from the config: cameras, parts, edges, channels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from acquisition.sim.skeleton import BODY_PARTS, SKELETON_EDGES
from rig.config import RigConfig
from rig.preview.layout import layout_from_config
from tracking.jump_detection import PHASES


def test_layout_follows_the_config(rig_config: RigConfig) -> None:
    layout = layout_from_config(rig_config)
    assert [c.name for c in layout.cameras] == list(rig_config.camera_names)
    assert {(c.width, c.height) for c in layout.cameras} == {(320, 240)}
    assert layout.body_parts == BODY_PARTS
    assert [(layout.body_parts[a], layout.body_parts[b]) for a, b in layout.edges] == list(
        SKELETON_EDGES
    )
    # Only force and EMG channels are traced; columns index the DAQ block.
    kinds = {channel.name: channel.kind for channel in rig_config.daq.channels}
    assert [c.name for c in layout.channels] == [
        name for name, kind in kinds.items() if kind in ("force", "emg")
    ]
    for channel in layout.channels:
        assert rig_config.daq.channels[channel.column].name == channel.name
    assert layout.phases == PHASES
    assert layout.gap_mm == rig_config.sim.jump.gap_mm
    assert layout.min_likelihood == rig_config.tracking.min_likelihood
    assert layout.to_json_dict()["cameras"][0]["name"] == rig_config.camera_names[0]


def test_body_parts_come_from_the_pose_model(rig_config: RigConfig, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "graph.pb").write_bytes(b"")
    (model / "pose_cfg.yaml").write_text(
        "all_joints_names: [toe, nose, hip, ear]\nnum_joints: 4\nstride: 8\n"
        "location_refinement: false\n"
    )
    config = dataclasses.replace(
        rig_config, tracking=dataclasses.replace(rig_config.tracking, model=str(model))
    )
    layout = layout_from_config(config)
    assert layout.body_parts == ("toe", "nose", "hip", "ear")
    # Only the edges between parts the model has: none of the twin's edges join these.
    assert layout.edges == ()


def test_an_unreadable_model_falls_back_on_the_twins_parts(
    rig_config: RigConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        rig_config,
        tracking=dataclasses.replace(rig_config.tracking, model=str(tmp_path / "missing")),
    )
    assert layout_from_config(config).body_parts == BODY_PARTS


@pytest.mark.parametrize(
    "option", [{"trace_window_s": 0.0}, {"trace_bins_per_s": -1.0}, {"pose_max_age_s": 0.0}]
)
def test_bad_options_are_refused(rig_config: RigConfig, option: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(option))):
        layout_from_config(rig_config, **option)
