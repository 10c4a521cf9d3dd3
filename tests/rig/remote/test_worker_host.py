"""A `rig worker` host against a stand-in console on a real ZeroMQ socket: it says hello with who
it is, and a launch it cannot carry out comes back as ``launch_failed`` with the reason, not a
crash."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest
import zmq

from acquisition.transport import Endpoints
from rig.config import RigConfig, load_config
from rig.remote.agent import WorkerHost
from rig.remote.protocol import agent_identity
from rig.supervisor import Supervisor
from rig.versions import software_versions
from rig.workers import TrialPlan
from tests.rig.remote.hosts import host_tables
from tests.rig.trial_configs import tracked_config_with

pytestmark = pytest.mark.timeout(60)


def _receive(console: zmq.Socket, wanted: str) -> dict[str, object]:
    """The next message of type ``wanted`` from the worker host (hellos in between skipped)."""
    while True:
        if not console.poll(10_000):
            raise AssertionError(f"no {wanted!r} from the worker host within 10 s")
        identity, raw = console.recv_multipart()
        assert identity == agent_identity("writer").encode()
        message = json.loads(raw)
        if message["type"] == wanted:
            return message


def test_hello_then_a_launch_it_cannot_do_is_reported(tmp_path: Path) -> None:
    config = load_config(tracked_config_with(tmp_path, host_tables(["writer"])))
    context = zmq.Context()
    console = context.socket(zmq.ROUTER)
    console.setsockopt(zmq.LINGER, 0)
    console.bind(config.endpoints.control)
    out = io.StringIO()
    host = WorkerHost(config, "writer", out)
    stop = threading.Event()
    serving = threading.Thread(target=host.serve, args=(stop,), daemon=True)
    serving.start()
    try:
        hello = _receive(console, "hello")
        assert hello["pid"] == os.getpid()
        assert hello["version"] == software_versions()["version_jumprig"]
        # The console's config names a model folder this host does not have.
        config_toml = config.to_toml().replace(config.tracking.model, str(tmp_path / "no_model"))
        plan = TrialPlan("t1", str(tmp_path / "t1.h5"), {}, _endpoints(config))
        console.send_multipart(
            [
                agent_identity("writer").encode(),
                json.dumps(
                    {
                        "type": "launch",
                        "config_toml": config_toml,
                        "plan": plan.as_message(),
                        "camera_factory": {
                            "name": "acquisition.camera_process:make_camera",
                            "fields": None,
                        },
                    }
                ).encode(),
            ]
        )
        failed = _receive(console, "launch_failed")
        assert "tracking.model" in str(failed["reason"])
        assert "no_model is not a model folder" in str(failed["reason"])
        assert "cannot start trial t1" in out.getvalue()
        assert not (tmp_path / "t1.h5").exists()
        # It goes back to waiting for the next trial.
        _receive(console, "hello")
    finally:
        stop.set()
        serving.join(10)
        host.close()
        console.close()
        context.term()
    assert not serving.is_alive()


def _endpoints(config: RigConfig) -> Endpoints:
    return Supervisor(config)._endpoints(Path("/nonexistent"))
