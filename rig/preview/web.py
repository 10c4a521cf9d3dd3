"""The preview's HTTP server (standard library only): the page, its state as JSON, JPEG frames.

Routes:

- ``GET /``: the page (``static/index.html``); ``GET /static/<file>``: its scripts and styles.
- ``GET /api/layout``: cameras, body parts, skeleton edges, channels, phases (from the config).
- ``GET /api/state?trace_from=<bin>``: the newest state (see :meth:`PreviewState.snapshot`),
  with the trace bins from ``trace_from`` on (default: the whole window); the page polls it.
- ``GET /frame/<camera>.jpg``: the camera's newest frame, encoded on request; headers
  ``X-Frame-Seq``, ``X-Frame-Id``, ``X-Trigger-Index`` say which frame it is, ``X-Pose`` holds
  the 2D pose nearest it as JSON (``{"trigger_index", "frame_id", "points": [[x, y,
  likelihood], ...]}``, None where not finite) or ``null``.
- ``GET /healthz``: 200 and a small JSON while the server runs.
- ``POST /api/rendered``: the page reports what it drew (frames, skeletons, phase, jump numbers,
  updates per second) about once a second; ``GET /api/rendered`` lists the latest report of each
  page, for tests and the benchmark.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from rig.preview.state import PreviewState

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Render reports kept, one per page (a page names itself with a random id when it loads).
MAX_RENDER_REPORTS = 16
MAX_REPORT_BYTES = 64 * 1024
# An idle keep-alive connection is closed after this long, so its thread ends.
CONNECTION_TIMEOUT_S = 10.0


class RenderReports:
    """The newest report of each page that posted one; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._received_ns: dict[str, int] = {}

    def put(self, report: dict[str, Any]) -> None:
        client = report.get("client_id")
        if not isinstance(client, str) or not client:
            raise ValueError("a render report needs a client_id string")
        with self._lock:
            self._reports[client] = report
            self._reports.move_to_end(client)
            self._received_ns[client] = time.monotonic_ns()
            while len(self._reports) > MAX_RENDER_REPORTS:
                oldest, _ = self._reports.popitem(last=False)
                self._received_ns.pop(oldest, None)

    def all(self) -> dict[str, dict[str, Any]]:
        """Each page's newest report, with ``received_s_ago`` added; oldest page first."""
        now_ns = time.monotonic_ns()
        with self._lock:
            return {
                client: {**report, "received_s_ago": (now_ns - self._received_ns[client]) / 1e9}
                for client, report in self._reports.items()
            }


class PreviewHttpServer(ThreadingHTTPServer):
    """Serves one :class:`PreviewState`; one thread per connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: PreviewState) -> None:
        self.state = state
        self.reports = RenderReports()
        self.layout_json = json.dumps(
            {**state.layout.to_json_dict(), "server_id": state.server_id}, separators=(",", ":")
        ).encode()
        super().__init__(address, PreviewRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that went away (closed tab, idle connection) is routine, not an error."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        log.exception("preview: request from %s failed", client_address)


class PreviewRequestHandler(BaseHTTPRequestHandler):
    # Keep-alive: a page polling at 20+ Hz reuses its connections.
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: with Nagle's algorithm the body would wait
    # for the browser's delayed ACK of the headers (40 ms a response).
    disable_nagle_algorithm = True
    timeout = CONNECTION_TIMEOUT_S
    server: PreviewHttpServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            if path in ("/", "/index.html"):
                self._send_static("index.html")
            elif path.startswith("/static/"):
                self._send_static(path[len("/static/") :])
            elif path == "/api/state":
                trace_from = _int_parameter(url.query, "trace_from", -1)
                if trace_from is None:
                    self._send_json(HTTPStatus.BAD_REQUEST, {"error": "trace_from: an integer"})
                    return
                body = self.server.state.snapshot_json(trace_from)
                self._send(HTTPStatus.OK, body, "application/json")
            elif path == "/api/layout":
                self._send(HTTPStatus.OK, self.server.layout_json, "application/json")
            elif path.startswith("/frame/") and path.endswith(".jpg"):
                self._send_frame(path[len("/frame/") : -len(".jpg")])
            elif path == "/healthz":
                self._send_json(
                    HTTPStatus.OK,
                    {
                        "ok": True,
                        "server_id": self.server.state.server_id,
                        "messages": self.server.state.version,
                    },
                )
            elif path == "/api/rendered":
                self._send_json(HTTPStatus.OK, {"reports": self.server.reports.all()})
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
        except (BrokenPipeError, ConnectionResetError):
            # The browser went away (a closed tab); nothing to answer.
            self.close_connection = True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path != "/api/rendered":
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_REPORT_BYTES:
                self.close_connection = True
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": "report size out of range"})
                return
            body = self.rfile.read(length)
            try:
                report = json.loads(body)
                if not isinstance(report, dict):
                    raise ValueError("a report must be a JSON object")
                self.server.reports.put(report)
            except ValueError as error:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_frame(self, camera: str) -> None:
        try:
            frame = self.server.state.jpeg(camera)
        except KeyError:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no camera named {camera!r}"})
            return
        if frame is None:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
            return
        self._send(
            HTTPStatus.OK,
            frame.jpeg,
            "image/jpeg",
            {
                "X-Frame-Seq": str(frame.frame_seq),
                "X-Frame-Id": str(frame.frame_id),
                "X-Trigger-Index": str(frame.trigger_index),
                # The 2D pose nearest this frame, so the skeleton drawn matches the picture.
                "X-Pose": json.dumps(frame.pose, separators=(",", ":"), allow_nan=False),
            },
        )

    def _send_static(self, name: str) -> None:
        # Only plain files directly in the static folder: no way out of it.
        candidate = STATIC_DIR / name
        if "/" in name or name.startswith(".") or not candidate.is_file():
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such file: {name}"})
            return
        content_type = CONTENT_TYPES.get(candidate.suffix, "application/octet-stream")
        self._send(HTTPStatus.OK, candidate.read_bytes(), content_type)

    def _send_json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value, separators=(",", ":")).encode(), "application/json")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # Everything here is live: never from a cache.
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _int_parameter(query: str, name: str, default: int) -> int | None:
    """An integer query parameter; None when it is given but is not an integer."""
    values = parse_qs(query).get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        return None


def make_http_server(state: PreviewState, host: str, port: int) -> PreviewHttpServer:
    """An HTTP server bound (listening) at host:port (0: any free port); not serving yet.

    Raises OSError (errno EADDRINUSE) when the port is taken.
    """
    return PreviewHttpServer((host, port), state)
