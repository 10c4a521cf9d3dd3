"""[remote] and [endpoints] of a rig over several hosts: mistakes are config errors naming the key,
before anything starts; a trial's plan and camera factory survive the trip as JSON."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from acquisition.camera_process import make_camera, run_camera
from rig.config import ConfigError, load_config
from rig.replay.cameras import ReplayCameraFactory
from rig.workers import (
    TrialPlan,
    camera_factory_from_spec,
    camera_factory_spec,
    worker_call,
)
from tests.rig.remote.hosts import ALL_REMOTE_ROLES, SHARED_POSE, host_tables
from tests.rig.trial_configs import config_with, rig, tracked_config_with


def test_a_tracked_rig_over_several_hosts_loads(tmp_path: Path) -> None:
    config = load_config(tracked_config_with(tmp_path, host_tables(ALL_REMOTE_ROLES)))
    assert config.remote.roles == ALL_REMOTE_ROLES
    assert set(config.remotable_roles) == set(ALL_REMOTE_ROLES)
    assert config.endpoints.live_frames["cam_top"].startswith("tcp://127.0.0.1:")


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (('roles = ["writer"', 'roles = ["daq"'), "remote.roles[0]", "stay on the console"),
        (('roles = ["writer"', 'roles = ["camera:cam_side"'), "remote.roles[0]", "cannot run"),
        (('roles = ["writer"', 'roles = ["camera:cam_top", "writer"'), "remote.roles[5]", "twice"),
        (('record = "tcp://', 'record = "ipc://'), "endpoints.record", "tcp://ADDRESS:PORT"),
        (("cam_front = ", "cam_side = "), "endpoints.live_frames.cam_side", "no camera named"),
        (("worker_wait_s = 120", "worker_wait_s = 0"), "remote.worker_wait_s", "greater than 0"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, edit: tuple[str, str], key: str, words: str) -> None:
    text = host_tables(ALL_REMOTE_ROLES)
    assert edit[0] in text
    path = tracked_config_with(tmp_path, text.replace(*edit, 1))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.key == key
    assert words in raised.value.problem
    assert str(path) in str(raised.value)


def test_an_endpoint_left_out_is_named(tmp_path: Path) -> None:
    text = "\n".join(
        line for line in host_tables(["writer"]).splitlines() if not line.startswith("poses")
    )
    with pytest.raises(ConfigError) as raised:
        load_config(tracked_config_with(tmp_path, text))
    assert raised.value.key == "endpoints.poses"
    assert "not set" in raised.value.problem


def test_pose_roles_follow_the_pose_process_layout(tmp_path: Path) -> None:
    path = tracked_config_with(tmp_path, host_tables([SHARED_POSE]))
    shared = 'pose_processes = "shared"'
    assert shared in path.read_text()
    path.write_text(path.read_text().replace(shared, 'pose_processes = "per_camera"'))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.key == "remote.roles[0]"
    assert "pose:cam_left, pose:cam_right" in raised.value.problem


def test_rig_worker_refuses_a_role_the_config_does_not_move(tmp_path: Path) -> None:
    config = config_with(tmp_path, host_tables(["writer"]))
    result = rig("worker", "--config", str(config), "--role", "camera:cam_left", "--trials", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "remote.roles" in result.stderr
    assert "'camera:cam_left' is not one of this rig's remote roles (writer)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_plan_and_the_camera_factory_travel_as_json(tmp_path: Path) -> None:
    config = load_config(tracked_config_with(tmp_path, host_tables(ALL_REMOTE_ROLES)))
    from rig.supervisor import Supervisor

    endpoints = Supervisor(config)._endpoints(tmp_path)
    plan = TrialPlan(
        trial_id="t1",
        trial_path=str(tmp_path / "t1.h5"),
        root_attrs={"subject": "m1", "duration_requested_s": 2.5, "closed": True},
        endpoints=endpoints,
        calibration_toml="[cam_0]\n",
    )
    again = TrialPlan.from_message(json.loads(json.dumps(plan.as_message())))
    assert again == plan
    assert again.endpoints.live_frames_of("cam_top") == config.endpoints.live_frames["cam_top"]
    assert again.endpoints.poses == config.endpoints.poses
    for factory in (make_camera, ReplayCameraFactory("/data/trial.h5", "tcp://10.0.0.1:5605")):
        spec = json.loads(json.dumps(camera_factory_spec(factory)))
        assert camera_factory_from_spec(spec) == factory
    with pytest.raises(ValueError, match="cannot run on another host"):
        camera_factory_spec(lambda *args: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="unknown camera factory"):
        camera_factory_from_spec({"name": "os:system", "fields": None})
    abort = multiprocessing.get_context("spawn").Event()
    call = worker_call("camera:cam_top", config, again, abort)
    assert call.target is run_camera
    assert call.args[0].name == "cam_top"
    with pytest.raises(ValueError, match="no worker 'camera:cam_side'"):
        worker_call("camera:cam_side", config, again, abort)
