"""The preview page in a real (headless) Chromium, fed the twin's jump at the rig's rates.

What the page drew is read from its own reports (``/api/rendered``: frames and skeletons drawn
per camera, the phase and the jump's numbers as shown, updates per second) and from a
screenshot. Chromium must be installed (``scripts/setup.sh --dev``): without it these tests fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from chromium import HeadlessPage, rendered_reports, wait_for_report
from preview_feed import TwinFeed

from rig.config import RigConfig
from rig.preview import PreviewServer
from tracking.jump_detection import PHASES

WINDOW = (1400, 1000)
# Generous: a loaded 2-core machine starts Chromium slowly.
PAGE_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def live_preview(
    rig_config: RigConfig, chromium_path: str
) -> Iterator[tuple[PreviewServer, TwinFeed]]:
    with (
        PreviewServer(rig_config, "tcp://127.0.0.1:*", port=0) as server,
        TwinFeed(rig_config, server.monitor_endpoint) as feed,
    ):
        yield server, feed


def shows_every_camera(report: dict[str, Any], cameras: tuple[str, ...], frames: int) -> bool:
    return all(report["frames_drawn"].get(name, 0) >= frames for name in cameras)


def test_the_page_shows_the_cameras_skeletons_phase_and_jump(
    live_preview: tuple[PreviewServer, TwinFeed], rig_config: RigConfig, tmp_path: Path
) -> None:
    server, feed = live_preview
    cameras = rig_config.camera_names

    def complete(report: dict[str, Any]) -> bool:
        return (
            shows_every_camera(report, cameras, 5)
            and all(report["skeletons_drawn"].get(name, 0) >= 1 for name in cameras)
            and bool(report["jump_shown"])
            and len(report["phases_seen"]) >= 2
            and report["traces_drawn"] > 0
            and report["side_view_points"] > 0
        )

    with HeadlessPage(server.url, tmp_path / "profile", WINDOW) as page:
        report = wait_for_report(server.url, complete, PAGE_TIMEOUT_S, page)
        shot = page.screenshot(tmp_path / "preview.png")
    print(
        f"page: {report['updates_per_s']:.1f} updates/s, frames/s per camera "
        f"{ {k: round(v, 1) for k, v in report['frames_per_s'].items()} }, "
        f"phases seen {report['phases_seen']}"
    )
    assert report["camera_tiles"] == len(cameras)
    assert report["cameras_with_frames"] == len(cameras)
    assert report["errors"] == 0, report["last_error"]
    assert report["trial_id_shown"] == feed.trial_id
    assert report["phase_shown"] in PHASES
    assert set(report["phases_seen"]) <= set(PHASES)
    assert "crouch" in report["phases_seen"] or "still" in report["phases_seen"]
    assert report["side_view_points"] == 10
    # The jump's numbers as the page shows them, from what the detector sent.
    truth = feed.last_jump()
    shown = report["jump_shown"]
    assert shown["jump_height_mm"] == f"{truth['jump_height_mm']:.1f} mm"
    assert shown["jump_distance_mm"] == f"{truth['jump_distance_mm']:.1f} mm"
    assert shown["flight_time_s"] == f"{truth['flight_time_s'] * 1000:.1f} ms"
    assert shown["takeoff_speed_mm_per_s"] == f"{truth['takeoff_speed_mm_per_s']:.0f} mm/s"
    assert shown["peak_push_off_force_n"] == f"{truth['peak_push_off_force_n']:.3f} N"
    onsets = [key for key in truth if key.startswith("emg_onset_from_takeoff_s/")]
    assert len(onsets) == 4
    for key in onsets:
        assert shown[key] == f"{truth[key] * 1000:.1f} ms"
    # NaN from the detector: shown as missing (an en dash).
    assert shown["takeoff_angle_deg"] == "\u2013"

    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None, "the screenshot is not a PNG"
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert float(image.std()) > 20.0, "the screenshot is blank"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200


def test_a_browser_opened_after_another_closed_sees_new_frames(
    live_preview: tuple[PreviewServer, TwinFeed], rig_config: RigConfig, tmp_path: Path
) -> None:
    server, _ = live_preview
    cameras = rig_config.camera_names
    with HeadlessPage(server.url, tmp_path / "first", WINDOW) as first:
        seen = wait_for_report(
            server.url, lambda r: shows_every_camera(r, cameras, 2), PAGE_TIMEOUT_S, first
        )
    first_client = seen["client_id"]
    with HeadlessPage(server.url, tmp_path / "second", WINDOW) as second:
        again = wait_for_report(
            server.url,
            lambda r: shows_every_camera(r, cameras, 5),
            PAGE_TIMEOUT_S,
            second,
            exclude=frozenset({first_client}),
        )
    assert again["client_id"] != first_client
    assert again["server_id"] == seen["server_id"]
    assert again["cameras_with_frames"] == len(cameras)
    # The closed page stopped reporting; the preview kept going.
    reports = rendered_reports(server.url)
    assert reports[first_client]["received_s_ago"] > reports[again["client_id"]]["received_s_ago"]


def test_the_page_reconnects_to_a_restarted_preview(
    rig_config: RigConfig, chromium_path: str, tmp_path: Path
) -> None:
    cameras = rig_config.camera_names
    first = PreviewServer(rig_config, "tcp://127.0.0.1:*", port=0)
    first.start()
    try:
        port = int(first.url.rstrip("/").rsplit(":", 1)[1])
        with TwinFeed(rig_config, first.monitor_endpoint):
            page = HeadlessPage(first.url, tmp_path / "profile", WINDOW)
            page.open()
            before = wait_for_report(
                first.url, lambda r: shows_every_camera(r, cameras, 2), PAGE_TIMEOUT_S, page
            )
    except BaseException:
        first.stop()
        raise
    try:
        first.stop()
        # The page keeps trying while the preview is away, and picks up the new one.
        with (
            PreviewServer(rig_config, "tcp://127.0.0.1:*", port=port) as second,
            TwinFeed(rig_config, second.monitor_endpoint, trial_id="trial_0002"),
        ):

            def reconnected(report: dict[str, Any]) -> bool:
                return (
                    report["client_id"] == before["client_id"]
                    and report["server_id"] != before["server_id"]
                    and report["trial_id_shown"] == "trial_0002"
                    and shows_every_camera(report, cameras, 1)
                )

            after = wait_for_report(second.url, reconnected, PAGE_TIMEOUT_S, page)
    finally:
        page.close()
    assert after["connected"] is True
    assert after["errors"] >= 1  # it did notice the preview was gone
