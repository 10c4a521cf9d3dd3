"""A tracked trial replayed with its writer, cameras, pose process and triangulator in `rig worker`
processes on other hosts comes out the same as the replay on one host: frames, DAQ, 2D and 3D
poses and events identical (a replay reproduces its recording exactly, so the one-host and the
several-host files can be compared bit for bit, which two live twin trials cannot: their pulses
start at different DAQ samples).

The hosts are processes connected only over TCP: on loopback with a port per endpoint, and, where
this machine allows it (root or CAP_NET_ADMIN, Debian's iproute2), in a network namespace joined to
the console's by a veth pair, so the workers reach the console only through that link.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import h5py
import pytest
import tomli_w
from replay_recordings import CommandRun, only_trial_file, run_command

from rig.replay.compare import Status, compare_trials
from tests.rig.remote.hosts import (
    ALL_REMOTE_ROLES,
    CAMERAS,
    VethNamespace,
    host_tables,
    veth_namespace,
    worker_hosts,
)

pytestmark = pytest.mark.timeout(600)

COMPARED = (
    *(f"/cameras/{camera}/{column}" for camera in CAMERAS for column in ("frames", "frame_id")),
    *(f"/cameras/{camera}/daq_sample_index" for camera in CAMERAS),
    "/daq/analog",
    "/daq/trigger_sample_index",
    *(f"/pose2d/{camera}" for camera in CAMERAS),
    "/pose3d/points",
    "/pose3d/reprojection_error",
    "/events",
)


def replay_across_hosts(
    recording: Path,
    folder: Path,
    console_address: str = "127.0.0.1",
    worker_address: str = "127.0.0.1",
    namespace: str = "",
) -> tuple[Path, str]:
    """Replay ``recording`` with every movable role on the worker hosts; returns the replay's
    file and what the worker hosts printed."""
    hosts_config = folder / "hosts.toml"
    # `rig worker` needs a whole rig config: the recording's own, with the hosts' tables.
    with h5py.File(recording, "r") as f:
        table = tomllib.loads(str(f.attrs["config"]))
    table.update(tomllib.loads(host_tables(ALL_REMOTE_ROLES, console_address, worker_address)))
    hosts_config.write_text(tomli_w.dumps(table))
    output = folder / "replays"
    with worker_hosts(hosts_config, ALL_REMOTE_ROLES, folder, namespace=namespace) as hosts:
        result = run_command(
            "-m",
            "rig.cli",
            "replay",
            str(recording),
            "--hosts",
            str(hosts_config),
            "--output",
            str(output),
        )
        for host in hosts:
            host.process.wait(timeout=60)
    logs = "\n".join(host.output()[-1500:] for host in hosts)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:] + logs
    for host in hosts:
        assert host.process.returncode == 0, host.output()
    return only_trial_file(output), logs


def assert_same_as_on_one_host(across_hosts: Path, one_host: CommandRun, hosts: str) -> None:
    comparison = compare_trials(one_host.path, across_hosts)
    print("\n".join(f"{row.dataset}: {row.status.value}" for row in comparison.differences))
    assert comparison.identical, comparison.differences
    for dataset in COMPARED:
        assert comparison.row(dataset).status is Status.IDENTICAL, dataset
    with h5py.File(across_hosts, "r") as f:
        assert set(json.loads(f.attrs["worker_hosts"])) == set(ALL_REMOTE_ROLES)
        assert f.attrs["closed_cleanly"] == 1
        assert f.attrs["replay_of"] == h5py.File(one_host.path, "r").attrs["replay_of"]
    print(hosts)


def test_replay_across_hosts_on_loopback_equals_the_one_host_replay(
    tracked_recording: Path, tracked_replay: CommandRun, tmp_path: Path
) -> None:
    assert tracked_replay.returncode == 0, tracked_replay.stderr[-3000:]
    replay, logs = replay_across_hosts(tracked_recording, tmp_path)
    assert_same_as_on_one_host(replay, tracked_replay, logs)


def test_replay_across_network_namespaces_equals_the_one_host_replay(
    tracked_recording: Path, tracked_replay: CommandRun, tmp_path: Path
) -> None:
    with veth_namespace() as namespace:
        if not isinstance(namespace, VethNamespace):
            pytest.skip(f"this machine cannot join network namespaces: {namespace}")
        replay, logs = replay_across_hosts(
            tracked_recording,
            tmp_path,
            namespace.console_address,
            namespace.worker_address,
            namespace.name,
        )
    assert_same_as_on_one_host(replay, tracked_replay, logs)
