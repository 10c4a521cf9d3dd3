"""PreviewServer: the preview's own process, its HTTP routes and its lifecycle."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from acquisition.transport import (
    TOPIC_LIVE_FRAME,
    TOPIC_POSE2D,
    Header,
    array_header,
    make_socket,
    send_message,
)
from rig.config import RigConfig
from rig.preview import PreviewError, PreviewServer

TIMEOUT_S = 10.0


def request(
    server: PreviewServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.url.split("//")[1].rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def get_json(server: PreviewServer, path: str) -> Any:
    status, _, body = request(server, "GET", path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def server(
    rig_config: RigConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PreviewServer]:
    folder = tmp_path_factory.mktemp("preview")
    started = time.monotonic()
    with PreviewServer(rig_config, f"ipc://{folder}/monitor", port=0) as preview:
        print(f"preview started in {time.monotonic() - started:.2f} s at {preview.url}")
        yield preview


def test_it_serves_the_page_and_its_files(server: PreviewServer) -> None:
    status, headers, body = request(server, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    # Everything the page loads comes from the preview itself: nothing from the internet.
    assert "/static/preview.js" in page and "/static/preview.css" in page
    assert "http://" not in page and "https://" not in page
    for name, kind in (("preview.js", "text/javascript"), ("preview.css", "text/css")):
        status, headers, body = request(server, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
        assert b"https://" not in body and b"http://" not in body
        assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path", ["/static/../process.py", "/static/%2e%2e/process.py", "/static/.hidden", "/nope"]
)
def test_nothing_else_is_served(server: PreviewServer, path: str) -> None:
    status, _, _ = request(server, "GET", path)
    assert status == 404


def test_health_layout_and_state(server: PreviewServer, rig_config: RigConfig) -> None:
    health = get_json(server, "/healthz")
    assert health["ok"] is True
    layout = get_json(server, "/api/layout")
    assert [camera["name"] for camera in layout["cameras"]] == list(rig_config.camera_names)
    assert layout["server_id"] == health["server_id"]
    assert len(layout["body_parts"]) == 10
    state = get_json(server, "/api/state")
    assert state["server_id"] == health["server_id"]
    assert set(state["cameras"]) == set(rig_config.camera_names)


def test_frames_are_served_as_jpeg_with_their_pose(server: PreviewServer) -> None:
    status, _, _ = request(server, "GET", "/frame/cam_left.jpg")
    assert status == 503  # no frame yet
    status, _, _ = request(server, "GET", "/frame/no_such_camera.jpg")
    assert status == 404
    context = zmq.Context()
    publisher = make_socket(context, zmq.PUB, server.monitor_endpoint, bind=False)
    try:
        frame = np.tile(np.arange(320, dtype=np.uint8), (240, 1))
        pose = np.array([[10.0, 20.0, 0.95]] * 10, dtype=np.float32)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            # PUB drops what it sends before the connection is made: repeat until it arrives.
            header = array_header("cam_left", 0, frame, frame_id=42, trigger_index=42)
            send_message(publisher, TOPIC_LIVE_FRAME, header, frame)
            pose_header = array_header("pose2d/cam_left", 0, pose, trigger_index=42)
            send_message(publisher, TOPIC_POSE2D, pose_header, pose)
            status, headers, body = request(server, "GET", "/frame/cam_left.jpg")
            if status == 200 and headers["X-Pose"] != "null":
                break
            assert time.monotonic() < deadline, f"no frame reached the preview ({status})"
            time.sleep(0.05)
    finally:
        publisher.close(linger=0)
        context.term()
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["X-Trigger-Index"] == "42"
    assert headers["X-Frame-Id"] == "42"
    assert int(headers["X-Frame-Seq"]) >= 1
    pose_sent = json.loads(headers["X-Pose"])
    assert pose_sent["trigger_index"] == 42
    assert pose_sent["points"][0] == [10.0, 20.0, 0.95]
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (240, 320)
    assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 3


def test_pages_report_what_they_rendered(server: PreviewServer) -> None:
    report = {"client_id": "page-1", "frames_drawn": {"cam_left": 3}, "updates_per_s": 24.5}
    status, _, _ = request(server, "POST", "/api/rendered", json.dumps(report).encode())
    assert status == 204
    reports = get_json(server, "/api/rendered")["reports"]
    assert reports["page-1"]["frames_drawn"] == {"cam_left": 3}
    assert reports["page-1"]["received_s_ago"] >= 0
    for bad in (b"[1, 2]", b"{not json", json.dumps({"frames": 1}).encode()):
        status, _, _ = request(server, "POST", "/api/rendered", bad)
        assert status == 400
    status, _, _ = request(server, "POST", "/elsewhere", b"{}")
    assert status == 404


def test_a_taken_port_is_a_clear_error(rig_config: RigConfig, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        preview = PreviewServer(rig_config, f"ipc://{tmp_path}/monitor", port=port)
        with pytest.raises(PreviewError, match=f"port {port} on 127.0.0.1 is already in use"):
            preview.start()
        assert not preview.is_running


def test_an_unusable_endpoint_is_a_clear_error(rig_config: RigConfig) -> None:
    preview = PreviewServer(rig_config, "nonsense://x", port=0)
    with pytest.raises(PreviewError, match="monitor feed at nonsense://x"):
        preview.start()


def test_lifecycle(rig_config: RigConfig) -> None:
    preview = PreviewServer(rig_config, "tcp://127.0.0.1:*", port=0)
    with pytest.raises(RuntimeError, match="start"):
        _ = preview.url
    assert preview.monitor_endpoint == "tcp://127.0.0.1:*"
    preview.start()
    try:
        assert preview.is_running
        assert isinstance(preview.pid, int)
        # Below the console's priority: a busy machine serves the recording first.
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + preview.niceness)
        assert os.getpriority(os.PRIO_PROCESS, preview.pid) == expected
        assert preview.url.startswith("http://127.0.0.1:")
        # The wildcard port is resolved, so the rig's stages can connect.
        assert preview.monitor_endpoint.startswith("tcp://127.0.0.1:")
        assert not preview.monitor_endpoint.endswith("*")
        assert get_json(preview, "/healthz")["ok"] is True
        with pytest.raises(RuntimeError, match="started already"):
            preview.start()
    finally:
        preview.stop()
    assert not preview.is_running
    assert preview.pid is None
    preview.stop()  # twice is fine


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"monitor_endpoint": ""}, "monitor_endpoint"),
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"host": ""}, "host"),
        ({"niceness": 20}, "niceness"),
    ],
)
def test_bad_arguments_are_refused(
    rig_config: RigConfig, arguments: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"monitor_endpoint": "tcp://127.0.0.1:*", **arguments}
    with pytest.raises(ValueError, match=message):
        PreviewServer(rig_config, **values)


def test_an_unknown_header_field_does_not_stop_the_preview(server: PreviewServer) -> None:
    context = zmq.Context()
    publisher = make_socket(context, zmq.PUB, server.monitor_endpoint, bind=False)
    try:
        before = get_json(server, "/healthz")["messages"]
        deadline = time.monotonic() + TIMEOUT_S
        while get_json(server, "/healthz")["messages"] == before:
            publisher.send_multipart([b"live", b'{"stream": "x", "bogus": 1}', b""])
            send_message(publisher, b"status", Header("status", 0, 0, extra={"trial_id": "t"}))
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        publisher.close(linger=0)
        context.term()
    assert get_json(server, "/healthz")["ok"] is True
