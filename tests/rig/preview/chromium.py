"""Headless Chromium for the preview's tests: find it, keep a page open, take a screenshot, and
read what the page reported it drew (``/api/rendered``).

Debian's ``chromium`` package (``scripts/setup.sh --dev`` installs it). A missing browser is an
error with a clear message (the tests fail; they do not skip): the preview is a web page, and
only a browser shows that it works.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

BROWSER_NAMES = ("chromium", "chromium-browser")
DEFAULT_WINDOW = (1400, 1000)
# Flags for a quiet, offline, headless browser that keeps running a page in the background.
COMMON_FLAGS = (
    "--headless=new",
    # Needed as root (in containers); the tests run only the project's own page.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--hide-scrollbars",
)


class ChromiumMissing(RuntimeError):
    """No Chromium on this machine."""


def find_chromium() -> str:
    """The path of the chromium executable; raises ChromiumMissing naming how to install it."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumMissing(
        "the preview's browser tests need Chromium (looked for "
        f"{' or '.join(BROWSER_NAMES)} on PATH): install it with scripts/setup.sh --dev "
        "(Debian: apt-get install chromium)"
    )


def browser_command(
    url: str, user_data_dir: Path, window: tuple[int, int], extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        find_chromium(),
        *COMMON_FLAGS,
        f"--user-data-dir={user_data_dir}",
        f"--window-size={window[0]},{window[1]}",
        *extra,
        url,
    ]


class HeadlessPage:
    """A headless Chromium showing ``url`` until :meth:`close` (a context manager).

    The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no
    port, nothing to find), which :meth:`screenshot` uses. It runs in its own process group, so
    closing it ends every process it started. ``user_data_dir`` must be a fresh folder.
    """

    def __init__(
        self, url: str, user_data_dir: Path, window: tuple[int, int] = DEFAULT_WINDOW
    ) -> None:
        self.url = url
        self.user_data_dir = Path(user_data_dir)
        self.window = window
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.user_data_dir.with_name(self.user_data_dir.name + ".log")
        self._to_browser = -1
        self._from_browser = -1
        self._received = b""
        self._next_id = 0

    def open(self) -> None:
        self.user_data_dir.mkdir(parents=True, exist_ok=True)
        # The browser reads DevTools commands on its fd 3 and answers on fd 4.
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        command = browser_command(
            self.url, self.user_data_dir, self.window, ("--remote-debugging-pipe",)
        )
        shell = f'exec "$@" 3<&{commands_read} 4>&{answers_write}'
        try:
            with self._log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [_bash(), "-c", shell, "bash", *command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    pass_fds=(commands_read, answers_write),
                    start_new_session=True,
                )
        finally:
            os.close(commands_read)
            os.close(answers_write)
        self._to_browser, self._from_browser = commands_write, answers_read

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, characters: int = 2000) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session_id: str | None = None,
        timeout_s: float = 20.0,
    ) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are skipped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" in self._received:
                raw, self._received = self._received.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"DevTools {method}: {answer['error']}")
                    result: dict[str, Any] = answer.get("result", {})
                    return result
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError(f"DevTools {method}: no answer within {timeout_s:g} s")
            readable, _, _ = select.select([self._from_browser], [], [], left_s)
            if readable:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe:\n{self.log_tail()}")
                self._received += chunk

    def screenshot(self, path: Path) -> Path:
        """A PNG of the page as it is now, ``window`` in size, written to ``path``."""
        targets = self.call("Target.getTargets")["targetInfos"]
        pages = [target for target in targets if target["type"] == "page"]
        if not pages:
            raise RuntimeError(f"chromium shows no page: {targets}")
        session = self.call(
            "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}
        )["sessionId"]
        # The window's size includes no browser frame when headless, but the viewport may differ:
        # fix it, so the picture has the size asked for.
        width, height = self.window
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session_id=session,
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session_id=session)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self, timeout_s: float = 10.0) -> None:
        """End the browser and every process it started; safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            group = process.pid  # the browser leads its own process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                process.wait(timeout_s)
            # Helpers of the browser that outlived it (same group) go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1

    def __enter__(self) -> HeadlessPage:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def rendered_reports(server_url: str, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """The latest report of each page that showed the preview at ``server_url``."""
    with urllib.request.urlopen(server_url.rstrip("/") + "/api/rendered", timeout=timeout_s) as r:
        reports: dict[str, dict[str, Any]] = json.load(r)["reports"]
    return reports


def wait_for_report(
    server_url: str,
    accept: Callable[[dict[str, Any]], bool],
    timeout_s: float,
    page: HeadlessPage | None = None,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The first page report that ``accept`` takes (skipping pages in ``exclude``), polling until
    ``timeout_s``; raises TimeoutError with the last reports seen."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            last = rendered_reports(server_url)
        except (urllib.error.URLError, OSError):
            last = {}
        for client, report in last.items():
            if client not in exclude and accept(report):
                return report
        if page is not None and not page.running:
            raise RuntimeError(f"chromium exited early:\n{page.log_tail()}")
        time.sleep(0.2)
    browser_log = page.log_tail() if page is not None else ""
    raise TimeoutError(
        f"no page reported the expected rendering within {timeout_s:g} s; last reports: "
        f"{json.dumps(last)[:3000]}\n{browser_log}"
    )


def _bash() -> str:
    # bash, not sh: dash cannot redirect file descriptors above 9.
    path = shutil.which("bash")
    if path is None:
        raise RuntimeError("bash is needed to hand chromium its DevTools pipe")
    return path
