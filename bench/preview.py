"""Preview benchmark: the recorder's highest rate with the live preview open, against without it.

Run: ``.venv/bin/python bench/preview.py [--quick] [--json PATH] [--rates 250,500,...]``

At each rate two real trials of the digital twin run through ``rig.supervisor.Supervisor``, as
``bench/rig_rate.py`` runs them (same config, same frame accounting, same lateness verdict):
one without a preview, and one with the preview process (``rig.preview.PreviewServer``)
receiving the rig's monitor feed while a headless Chromium shows the page. The page reports what
it drew (``/api/rendered``), so the row says how many updates per second and frames per camera the
scientist saw, and how much CPU the preview process and the browser took while recording. The
reference is the same recorder without the preview, at the same rate, in the same run: the ratio
of the highest no-drop rates (goal: within 5%), and the same for the rates kept up in real time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rig_rate
from benchlib import (
    Column,
    add_common_arguments,
    load_average_1min,
    machine_info,
    median_of,
    parse_size,
    print_machine,
    print_table,
    size_label,
    use_single_threaded_compute,
    write_json,
)

from rig.config import DEFAULT_CONFIG_PATH, RigConfig
from rig.preview import PreviewServer
from rig.supervisor import Supervisor

NAME = "preview"
# Whole numbers of samples per pulse of the 10 kHz DAQ clock, past the 500 Hz design rate.
DEFAULT_RATES_HZ = (200.0, 250.0, 400.0, 500.0, 625.0, 10_000.0 / 12, 1000.0)
QUICK_RATES_HZ = (100.0,)
BROWSER_NAMES = ("chromium", "chromium-browser")
PAGE_READY_TIMEOUT_S = 60.0
REPORT_POLL_S = 0.25
_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- the browser --------------------------------------------------------------------------------


def find_browser(given: str | None) -> str:
    for name in (given,) if given else BROWSER_NAMES:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit(
        "bench/preview.py needs Chromium to view the page (looked for "
        f"{given or ' or '.join(BROWSER_NAMES)}): install it with scripts/setup.sh --dev, "
        "or name it with --browser"
    )


class ViewingBrowser:
    """A headless Chromium showing the preview page, in its own process group."""

    def __init__(self, browser: str, url: str, profile: Path) -> None:
        self.url = url
        profile.mkdir(parents=True, exist_ok=True)
        self._log = (profile.parent / (profile.name + ".log")).open("wb")
        self.process = subprocess.Popen(
            [
                browser,
                "--headless=new",
                "--no-sandbox",  # needed as root; it shows only the rig's own page
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--mute-audio",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                url,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) of every process of the browser so far."""
        return _group_cpu_seconds(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


def page_reports(url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(url + "api/rendered", timeout=5) as response:
        reports: dict[str, dict[str, Any]] = json.load(response)["reports"]
    return reports


def wait_for_page(url: str, browser: ViewingBrowser, known: set[str]) -> str:
    """The client id of the new page once it reports it is connected."""
    deadline = time.monotonic() + PAGE_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if browser.process.poll() is not None:
            raise SystemExit(f"chromium exited (code {browser.process.returncode})")
        with contextlib.suppress(urllib.error.URLError, OSError):
            for client, report in page_reports(url).items():
                if client not in known and report.get("connected"):
                    return client
        time.sleep(REPORT_POLL_S)
    raise SystemExit(f"the preview page did not report within {PAGE_READY_TIMEOUT_S:g} s")


# --- CPU ------------------------------------------------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S


def _group_cpu_seconds(group: int) -> float:
    """CPU seconds of the live processes of a process group (0 where /proc is missing)."""
    total = 0.0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S
    return total


# --- trials -----------------------------------------------------------------------------------


@contextlib.contextmanager
def supervisors_publishing_to(monitor_endpoint: str) -> Iterator[None]:
    """Make rig_rate's trials publish on the preview's monitor feed.

    ``rig_rate.record_at`` builds its own Supervisor; it is given one with the endpoint, so the
    trials with and without the preview run the very same code.
    """

    def supervisor(config: RigConfig) -> Supervisor:
        return Supervisor(config, monitor_endpoint=monitor_endpoint)

    original = rig_rate.Supervisor
    rig_rate.Supervisor = supervisor  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        rig_rate.Supervisor = original  # type: ignore[misc]


class PageSampler:
    """Collects, from a thread, the page's reports that arrive while the trial is running.

    The page reports about once a second its own rolling rates (updates and frames drawn over
    the last second); the preview's state says whether the trial is running.
    """

    def __init__(self, url: str, client: str) -> None:
        self.url = url
        self.client = client
        self.running_reports: list[dict[str, Any]] = []
        self.last_report: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page-sampler", daemon=True)

    def __enter__(self) -> PageSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        seen: set[float] = set()
        while not self._stop.wait(REPORT_POLL_S):
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                report = page_reports(self.url).get(self.client)
                with urllib.request.urlopen(
                    self.url + f"api/state?trace_from={2**62}", timeout=5
                ) as response:
                    trial_state = json.load(response)["trial"]["status"].get("state")
                if report is None:
                    continue
                self.last_report = report
                key = report.get("page_uptime_s", 0.0)
                if trial_state == "running" and key not in seen:
                    seen.add(key)
                    self.running_reports.append(report)


def record_with_preview(
    config: RigConfig,
    duration_s: float,
    folder: Path,
    arguments: argparse.Namespace,
    preview: PreviewServer,
    browser_path: str,
    profiles: Path,
    known_pages: set[str],
) -> dict[str, Any]:
    """One trial with the preview open in a browser: rig_rate's row plus what the page showed."""
    profile = profiles / f"profile-{len(known_pages)}"
    browser = ViewingBrowser(browser_path, preview.url, profile)
    try:
        client = wait_for_page(preview.url, browser, known_pages)
        known_pages.add(client)
        preview_pid = preview.pid
        preview_cpu_before = _proc_cpu_seconds(preview_pid) if preview_pid else None
        browser_cpu_before = browser.cpu_seconds()
        started_s = time.monotonic()
        with (
            PageSampler(preview.url, client) as sampler,
            supervisors_publishing_to(preview.monitor_endpoint),
        ):
            row = rig_rate.record_at(
                config, duration_s, folder, arguments.keep, arguments.late_limit_ms
            )
        trial_s = time.monotonic() - started_s
        preview_cpu_after = _proc_cpu_seconds(preview_pid) if preview_pid else None
        browser_cpu_after = browser.cpu_seconds()
    finally:
        browser.close()
    # The page's own rates over the seconds the trial ran (a trial shorter than the page's
    # one-second report period may have none: its last report stands in).
    reports = sampler.running_reports or ([sampler.last_report] if sampler.last_report else [])
    row["preview"] = True
    row["page_reports"] = len(sampler.running_reports)
    row["page_updates_per_s"] = (
        median_of([report["updates_per_s"] for report in reports]) if reports else 0.0
    )
    row["page_frames_per_s_min"] = (
        median_of([min(report["frames_per_s"].values(), default=0.0) for report in reports])
        if reports
        else 0.0
    )
    row["page_errors"] = reports[-1].get("errors", 0) if reports else None
    row["page_polls_per_s"] = (
        median_of([report["polls_per_s"] for report in reports]) if reports else 0.0
    )
    row["page_fetch_ms"] = reports[-1].get("fetch_ms") if reports else None
    row["page_render_ms"] = reports[-1].get("render_ms") if reports else None
    if preview_cpu_before is not None and preview_cpu_after is not None:
        row["cpu_cores_preview"] = (preview_cpu_after - preview_cpu_before) / trial_s
    row["cpu_cores_browser"] = (browser_cpu_after - browser_cpu_before) / trial_s
    return row


def with_camera_buffer(config: RigConfig, max_buffered_frames: int | None) -> RigConfig:
    """The config with every camera's buffer set (None: as configured).

    A camera buffers what the writer has not taken yet; a small buffer turns a recorder that
    falls behind into dropped frames within a short trial, where a large one hides it.
    """
    if max_buffered_frames is None:
        return config
    cameras = tuple(
        dataclasses.replace(camera, max_buffered_frames=max_buffered_frames)
        for camera in config.cameras
    )
    return dataclasses.replace(config, cameras=cameras)


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()  # before the load of the benchmark itself
    use_single_threaded_compute()
    browser_path = find_browser(arguments.browser)
    quick: bool = arguments.quick
    rates_hz: tuple[float, ...] = arguments.rates or (QUICK_RATES_HZ if quick else DEFAULT_RATES_HZ)
    cameras = arguments.cameras or (2 if quick else 4)
    height, width = arguments.size or ((120, 160) if quick else (480, 640))
    duration_s = arguments.duration_s or (2.0 if quick else 3.0)
    configs = [
        with_camera_buffer(
            rig_rate.trial_config(arguments.config, rate_hz, cameras, height, width),
            arguments.max_buffered_frames,
        )
        for rate_hz in rates_hz
    ]
    for config in configs:
        if config.samples_per_pulse < rig_rate.MIN_SAMPLES_PER_PULSE:
            raise SystemExit(
                f"rate {config.trigger.rate_hz:g} Hz leaves {config.samples_per_pulse:g} DAQ "
                f"samples per pulse; at least {rig_rate.MIN_SAMPLES_PER_PULSE} are needed"
            )
    parent: Path = arguments.dir if arguments.dir is not None else Path.cwd()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="jumprig-bench-preview-", dir=parent))
    scratch = Path(tempfile.mkdtemp(prefix="jumprig-bench-preview-browser-"))
    rows: list[dict[str, Any]] = []
    known_pages: set[str] = set()
    try:
        with PreviewServer(configs[0], f"ipc://{scratch}/monitor", port=arguments.port) as preview:
            print(f"preview at {preview.url}", flush=True)
            for config in configs:
                # Without and with, one after the other, so both see the same machine.
                without = rig_rate.record_at(
                    config, duration_s, folder, arguments.keep, arguments.late_limit_ms
                )
                without["preview"] = False
                rows.append(without)
                with_preview = record_with_preview(
                    config,
                    duration_s,
                    folder,
                    arguments,
                    preview,
                    browser_path,
                    scratch,
                    known_pages,
                )
                rows.append(with_preview)
                for row in (without, with_preview):
                    shown = (
                        f", page {row['page_updates_per_s']:.1f} updates/s, frames/s per "
                        f"camera >= {row['page_frames_per_s_min']:.1f}"
                        if row["preview"]
                        else ""
                    )
                    print(
                        f"  {row['rate_hz']:>6.0f} Hz {'with' if row['preview'] else 'without':>7}"
                        f" preview: {row['frames_written']} written, {row['frames_dropped']} "
                        f"dropped, {row['end_reason']}{shown}",
                        flush=True,
                    )
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return summarize(
        rows,
        machine,
        {
            "config": str(arguments.config),
            "rates_hz": list(rates_hz),
            "cameras": cameras,
            "size": size_label(height, width),
            "duration_s": duration_s,
            "late_limit_ms": arguments.late_limit_ms,
            "max_buffered_frames": configs[0].cameras[0].max_buffered_frames,
            "browser": browser_path,
            "trials_kept_in": str(folder) if arguments.keep else None,
        },
        quick,
    )


def summarize(
    rows: list[dict[str, Any]], machine: dict[str, Any], settings: dict[str, Any], quick: bool
) -> dict[str, Any]:
    def highest(preview: bool, key: str) -> float | None:
        rates = [row["rate_hz"] for row in rows if row["preview"] == preview and row[key]]
        return max(rates) if rates else None

    def ratio(with_rate: float | None, without_rate: float | None) -> float | None:
        if with_rate is None or without_rate is None:
            return None
        return with_rate / without_rate

    with_rows = [row for row in rows if row["preview"]]
    summary = {
        "highest_rate_without_drops_hz": {
            "without_preview": highest(False, "no_drops"),
            "with_preview": highest(True, "no_drops"),
        },
        "highest_rate_kept_up_hz": {
            "without_preview": highest(False, "kept_up"),
            "with_preview": highest(True, "kept_up"),
        },
        "page_updates_per_s_median": median_of([r["page_updates_per_s"] for r in with_rows])
        if with_rows
        else None,
        "page_frames_per_s_min_median": median_of([r["page_frames_per_s_min"] for r in with_rows])
        if with_rows
        else None,
        "cpu_cores_preview_median": median_of(
            [r["cpu_cores_preview"] for r in with_rows if "cpu_cores_preview" in r]
        )
        if any("cpu_cores_preview" in r for r in with_rows)
        else None,
        "cpu_cores_browser_median": median_of([r["cpu_cores_browser"] for r in with_rows])
        if with_rows
        else None,
    }
    no_drops = summary["highest_rate_without_drops_hz"]
    kept_up = summary["highest_rate_kept_up_hz"]
    summary["ratio_without_drops"] = ratio(no_drops["with_preview"], no_drops["without_preview"])
    summary["ratio_kept_up"] = ratio(kept_up["with_preview"], kept_up["without_preview"])
    return {
        "benchmark": NAME,
        "quick": quick,
        "machine": {**machine, "load_average_1min_end": load_average_1min()},
        "settings": settings,
        "rates": rows,
        **summary,
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    settings = results["settings"]
    print_table(
        f"Recorder with and without the live preview, {settings['cameras']} cameras at "
        f"{settings['size']}, {settings['duration_s']:g} s per trial",
        results["rates"],
        [
            Column("rate_hz", "rate Hz", ".0f"),
            Column("preview", "preview"),
            Column("frames_written", "written"),
            Column("frames_dropped", "dropped"),
            Column("lateness_end_p99_ms", "late end ms", ".0f"),
            Column("cpu_cores_total", "cores rig", ".2f"),
            Column("cpu_cores_preview", "cores preview", ".2f"),
            Column("cpu_cores_browser", "cores browser", ".2f"),
            Column("page_updates_per_s", "page upd/s", ".1f"),
            Column("page_frames_per_s_min", "page fps min", ".1f"),
            Column("no_drops", "no drops"),
            Column("kept_up", "kept up"),
        ],
    )
    for row in results["rates"]:
        if row["problems"] or not row["completed"]:
            print(f"  {row['rate_hz']:.0f} Hz: {row['end_reason']}; {row['problems']}")
    cores = results["machine"]["usable_cores"]
    for key, what in (
        ("highest_rate_without_drops_hz", "without a dropped frame"),
        ("highest_rate_kept_up_hz", "kept up in real time (and no drops)"),
    ):
        pair = results[key]
        without = "none" if pair["without_preview"] is None else f"{pair['without_preview']:.0f} Hz"
        with_ = "none" if pair["with_preview"] is None else f"{pair['with_preview']:.0f} Hz"
        print(
            f"highest rate {what}: {without} without the preview, {with_} with it ({cores} cores)"
        )
    for key, what in (("ratio_without_drops", "no drops"), ("ratio_kept_up", "kept up")):
        value = results[key]
        print(
            f"ratio with/without ({what}): "
            + ("-" if value is None else f"{value:.2f} (goal: at least 0.95)")
        )
    updates = results["page_updates_per_s_median"]
    if updates is not None:
        print(
            f"the page showed {updates:.1f} updates/s (median of the trials; goal: 15 or more), "
            f"camera frames at >= {results['page_frames_per_s_min_median']:.1f}/s; "
            f"preview {results['cpu_cores_preview_median'] or 0:.2f} cores, browser "
            f"{results['cpu_cores_browser_median']:.2f} cores while recording"
        )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="base rig config (sim.toml)"
    )
    parser.add_argument(
        "--rates",
        type=rig_rate._parse_rates,
        default=None,
        help="trigger rates in Hz, comma separated (default 200,250,400,500,625,833.3,1000; "
        "--quick 100)",
    )
    parser.add_argument("--cameras", type=int, default=None, help="default 4 (--quick 2)")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="WIDTHxHEIGHT (default 640x480)"
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="per trial (default 3; --quick 2)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder for the trial files (a temporary folder inside it; default: current dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the trial files")
    parser.add_argument(
        "--late-limit-ms",
        type=float,
        default=rig_rate.DEFAULT_LATE_LIMIT_MS,
        help="as rig_rate.py: a rate is kept up when the last quarter of the frames came no "
        "later than this after their pulses' schedule (p99)",
    )
    parser.add_argument(
        "--max-buffered-frames",
        type=int,
        default=None,
        help="each camera's buffer (default: the config's, as rig_rate.py); smaller makes a "
        "recorder that falls behind drop frames within the trial",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="the preview's HTTP port (default: any free one)"
    )
    parser.add_argument(
        "--browser", default=None, help="the Chromium executable (default: chromium on PATH)"
    )
    arguments = parser.parse_args(argv)
    if arguments.cameras is not None and arguments.cameras < 1:
        parser.error("--cameras must be >= 1")
    if arguments.duration_s is not None and arguments.duration_s <= 0:
        parser.error("--duration-s must be positive")
    if arguments.max_buffered_frames is not None and arguments.max_buffered_frames < 1:
        parser.error("--max-buffered-frames must be >= 1")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    results = run(arguments)
    print_results(results)
    write_json(results, arguments.json)


if __name__ == "__main__":
    main()
