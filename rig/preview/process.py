"""The preview process and its handle in the rig console: :class:`PreviewServer`.

One preview process runs for a whole ``rig run`` session, across its trials. It binds the monitor
feed's SUB socket (the rig's stages connect to it) and serves the page over HTTP from the same
process. It is started with the ``spawn`` method, like every worker, and ends when told to, or
by itself when the console that started it is gone.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import TracebackType
from typing import Any

import zmq

from acquisition.worker import setup_worker
from rig.config import RigConfig
from rig.preview.layout import layout_from_config
from rig.preview.receiver import FeedReceiver
from rig.preview.state import PreviewState
from rig.preview.web import make_http_server

ROLE = "preview"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
# Spawning imports numpy, OpenCV and ZeroMQ afresh: seconds on a loaded machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
# How often the process looks for its stop event and for its parent.
WATCH_INTERVAL_S = 0.2
HTTP_POLL_INTERVAL_S = 0.1
# The preview runs below the recorder's priority: on a busy machine the recording keeps its
# cores and the page updates less often, never the other way round.
DEFAULT_NICENESS = 10


class PreviewError(RuntimeError):
    """The preview could not start (port taken, endpoint unusable); the message says why."""


def run_preview(
    config: RigConfig,
    monitor_endpoint: str,
    host: str,
    port: int,
    report: Connection,
    stop: Event,
    options: dict[str, Any] | None = None,
    niceness: int = DEFAULT_NICENESS,
) -> None:
    """The preview process: bind the feed and the HTTP port, report ("ready", info) or
    ("error", reason) on ``report``, then serve until ``stop`` is set or the parent is gone.

    ``options`` go to :class:`PreviewState` (``jpeg_quality``, ``max_frame_width_px``);
    ``niceness`` is added to the process's nice value.
    """
    log = setup_worker(ROLE)
    if niceness:
        try:
            os.nice(niceness)
        except OSError as error:  # not allowed here: run at the console's priority
            log.warning("preview: cannot lower its priority: %s", error)
    context = zmq.Context()
    receiver: FeedReceiver | None = None
    try:
        try:
            state = PreviewState(layout_from_config(config), **(options or {}))
            receiver = FeedReceiver(context, monitor_endpoint, state)
            server = make_http_server(state, host, port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                reason = (
                    f"port {port} on {host} is already in use (another preview or program "
                    "listens there); choose another port"
                )
            else:
                reason = f"cannot listen on {host}:{port}: {error}"
            report.send(("error", reason))
            return
        except zmq.ZMQError as error:
            report.send(("error", f"cannot bind the monitor feed at {monitor_endpoint}: {error}"))
            return
        except Exception as error:
            report.send(("error", f"{type(error).__name__}: {error}"))
            raise
        receiver.start()
        serving = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": HTTP_POLL_INTERVAL_S},
            name="preview-http",
            daemon=True,
        )
        serving.start()
        report.send(
            (
                "ready",
                {
                    "url": f"http://{_url_host(host)}:{server.port}/",
                    "port": server.port,
                    "monitor_endpoint": receiver.endpoint,
                },
            )
        )
        parent = multiprocessing.parent_process()
        try:
            while not stop.wait(WATCH_INTERVAL_S):
                if parent is not None and not parent.is_alive():
                    log.warning("the rig console is gone; the preview stops")
                    break
        finally:
            server.shutdown()
            server.server_close()
            serving.join(STOP_TIMEOUT_S)
    finally:
        if receiver is not None:
            receiver.stop()
        report.close()
        context.term()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class PreviewServer:
    """The live preview, in its own process: ``start()``, ``url``, ``stop()``; a context manager.

    ``monitor_endpoint`` is bound by the preview (the rig's stages connect PUB sockets to it);
    ``tcp://127.0.0.1:*`` binds a free port, which :attr:`monitor_endpoint` then names. ``port``
    0 takes any free HTTP port. ``options`` go to the preview's state (``jpeg_quality``,
    ``max_frame_width_px``). The process runs ``niceness`` below the console's priority (0: the
    same), so a busy machine serves the recording first.
    """

    def __init__(
        self,
        config: RigConfig,
        monitor_endpoint: str,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        options: dict[str, Any] | None = None,
        niceness: int = DEFAULT_NICENESS,
    ) -> None:
        if not isinstance(config, RigConfig):
            raise TypeError(f"config must be a RigConfig, got {type(config).__name__}")
        if not monitor_endpoint:
            raise ValueError("monitor_endpoint must not be empty")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer 0..65535, got {port!r}")
        if not host:
            raise ValueError("host must not be empty")
        if not start_timeout_s > 0:
            raise ValueError(f"start_timeout_s must be > 0, got {start_timeout_s!r}")
        if isinstance(niceness, bool) or not isinstance(niceness, int) or not 0 <= niceness <= 19:
            raise ValueError(f"niceness must be an integer 0..19, got {niceness!r}")
        self.config = config
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.options = dict(options or {})
        self.niceness = niceness
        self._requested_endpoint = monitor_endpoint
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._stop: Event | None = None
        self._info: dict[str, Any] | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8050/``."""
        return str(self._ready_info()["url"])

    @property
    def monitor_endpoint(self) -> str:
        """Where the preview listens: the endpoint given, with a wildcard port resolved."""
        if self._info is None:
            return self._requested_endpoint
        return str(self._info["monitor_endpoint"])

    @property
    def pid(self) -> int | None:
        """The preview process's id while it runs (to measure what it costs)."""
        if self._process is None or self._stopped:
            return None
        return self._process.pid

    @property
    def is_running(self) -> bool:
        return self._process is not None and not self._stopped and self._process.is_alive()

    def start(self) -> None:
        """Spawn the preview; returns once its HTTP port listens and its feed socket is bound.

        Raises PreviewError with the reason when it cannot start (for example a taken port).
        """
        if self._process is not None:
            raise RuntimeError("the preview was started already; make a new PreviewServer")
        receive, send = self._context.Pipe(duplex=False)
        stop = self._context.Event()
        process = self._context.Process(
            target=run_preview,
            args=(self.config, self._requested_endpoint, self.host, self.port, send, stop),
            kwargs={"options": self.options, "niceness": self.niceness},
            name=ROLE,
            daemon=True,
        )
        self._process, self._stop = process, stop
        process.start()
        send.close()
        try:
            if not receive.poll(self.start_timeout_s):
                raise PreviewError(f"the preview did not start within {self.start_timeout_s:g} s")
            try:
                kind, detail = receive.recv()
            except EOFError:
                process.join(STOP_TIMEOUT_S)
                raise PreviewError(
                    f"the preview process ended while starting (exit code {process.exitcode})"
                ) from None
        except PreviewError:
            self.stop()
            raise
        finally:
            receive.close()
        if kind != "ready":
            self.stop()
            raise PreviewError(f"the preview could not start: {detail}")
        self._info = dict(detail)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the preview process; safe to call more than once."""
        process, stop = self._process, self._stop
        if process is None or stop is None or self._stopped:
            return
        self._stopped = True
        self._info = None
        stop.set()
        process.join(timeout_s)
        if process.is_alive():
            process.terminate()
            process.join(timeout_s)
        if process.exitcode is not None:
            process.close()

    def _ready_info(self) -> dict[str, Any]:
        if self._info is None:
            raise RuntimeError("the preview is not running; call start() first")
        return self._info

    def __enter__(self) -> PreviewServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
