"""Trials whose workers run in `rig worker` processes reached only over TCP (different ports on
loopback standing in for hosts): the file, the accounting and the tracking are those of a trial on
one host; a remote worker that dies ends the trial with its role and host named; a worker host
that never comes is named before anything starts."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.rig.remote.hosts import ALL_REMOTE_ROLES, CAMERAS, host_tables, worker_hosts
from tests.rig.trial_configs import config_with, rig, tracked_config_with

pytestmark = pytest.mark.timeout(400)

EARLY_JUMP = "crouch_onset_s = 1.5"


def test_a_tracked_trial_with_every_movable_role_on_other_hosts(tmp_path: Path) -> None:
    config = tracked_config_with(tmp_path, host_tables(ALL_REMOTE_ROLES))
    text = config.read_text()
    assert EARLY_JUMP in text and "complete_after_trial = true" in text
    config.write_text(
        text.replace(EARLY_JUMP, "crouch_onset_s = 0.3").replace(
            "complete_after_trial = true", "complete_after_trial = false"
        )
    )
    output = tmp_path / "trials"
    with worker_hosts(config, ALL_REMOTE_ROLES, tmp_path) as hosts:
        result = rig(
            "run",
            "--config",
            str(config),
            "--duration-s",
            "1.2",
            "--output",
            str(output),
            timeout_s=300,
        )
        for host in hosts:
            host.process.wait(timeout=60)
    logs = "\n".join(host.output() for host in hosts)
    print(result.stdout[-3000:], result.stderr[-2000:], logs[-3000:])
    assert result.returncode == 0
    for host in hosts:
        assert host.process.returncode == 0, host.output()
        assert "started (pid" in host.output() and "ended (exit code 0)" in host.output()
    (path,) = output.glob("*.h5")
    with h5py.File(path, "r") as trial:
        assert trial.attrs["closed_cleanly"] == 1
        assert trial.attrs["end_reason"] == "completed"
        assert json.loads(trial.attrs["worker_hosts"]) == dict.fromkeys(
            sorted(ALL_REMOTE_ROLES), platform.node()
        )
        pulses = len(trial["daq/trigger_sample_index"])
        for camera in CAMERAS:
            group = trial[f"cameras/{camera}"]
            assert len(group["trigger_index"]) + int(group.attrs["frames_dropped"]) == pulses
            inferred = np.isfinite(trial[f"pose2d/{camera}"][:, :, 2]).all(axis=1)
            # Live, the newest of every 10th frame: on 2 cores a few a second keep up.
            assert inferred.sum() >= 1, camera
        points = trial["pose3d/points"][:]
        indices = trial["pose3d/trigger_index"][:]
        truth_indices = list(trial["sim/truth/trigger_index"][:])
        truth = trial["sim/truth/points"][:][[truth_indices.index(i) for i in indices]]
        error_mm = np.linalg.norm(points - truth, axis=-1)
        print(
            f"3D from the remote triangulator: {len(indices)} trigger indices, median error "
            f"{np.nanmedian(error_mm):.2f} mm"
        )
        assert len(indices) >= 1
        assert np.nanmedian(error_mm) < 2.0
        names = {name.decode() for name in trial["events"]["name"]}
        assert "crouch_onset" in names, names


def test_a_remote_worker_that_dies_ends_the_trial_with_its_host_named(tmp_path: Path) -> None:
    roles = ["camera:cam_left"]
    config = config_with(
        tmp_path,
        host_tables(roles)
        + '\n[sim.faults]\nkill_worker = "camera:cam_left"\nkill_worker_after_s = 1.0\n',
    )
    text = config.read_text()
    # The default config has a [sim.faults] table already: keep one.
    config.write_text(text.replace("[sim.faults]\nslow_disk_ms_per_frame = 0.0\n", "", 1))
    output = tmp_path / "trials"
    with worker_hosts(config, roles, tmp_path) as hosts:
        result = rig(
            "run",
            "--config",
            str(config),
            "--duration-s",
            "4",
            "--output",
            str(output),
            timeout_s=300,
        )
    print(result.stdout[-3000:], result.stderr[-2000:], hosts[0].output())
    assert result.returncode == 1
    assert "killed on the console's request" in hosts[0].output()
    (path,) = output.glob("*.h5")
    with h5py.File(path, "r") as trial:
        reason = str(trial.attrs["end_reason"])
        assert f"camera:cam_left on {platform.node()}: process died (exit code -9)" in reason
        stop_after_s = float(trial.attrs["stop_requested_after_s"])
        print(f"killed at 1.0 s, stop decided at {stop_after_s:.2f} s")
        assert stop_after_s - 1.0 < 1.0
        assert trial.attrs["closed_cleanly"] == 1
        pulses = len(trial["daq/trigger_sample_index"])
        for camera in ("cam_right", "cam_front", "cam_top"):
            assert len(trial[f"cameras/{camera}/trigger_index"]) == pulses, camera
        assert 0 < len(trial["cameras/cam_left/trigger_index"]) < pulses


def test_a_worker_host_that_never_answers_is_named_and_nothing_starts(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        host_tables(["writer", "camera:cam_top"]).replace(
            "worker_wait_s = 120", "worker_wait_s = 1.5"
        ),
    )
    output = tmp_path / "trials"
    result = rig("run", "--config", str(config), "--duration-s", "2", "--output", str(output))
    print(result.stdout[-2000:], result.stderr[-2000:])
    assert result.returncode == 1
    message = result.stdout + result.stderr
    assert "no `rig worker` answered within 1.5 s for camera:cam_top, writer" in message
    assert "Traceback" not in message
    assert not list(output.glob("*.h5"))
