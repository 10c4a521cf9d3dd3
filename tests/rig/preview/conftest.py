"""Fixtures for the preview's tests: a small twin rig config and the browser.

The helper modules (``preview_feed``, ``chromium``) sit beside this file and are imported by
name; an end-to-end test elsewhere can put this folder on ``sys.path`` and use them too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from chromium import ChromiumMissing, find_chromium  # noqa: E402

from rig.config import RigConfig, load_config  # noqa: E402

CAMERA_NAMES = ("cam_left", "cam_right", "cam_front", "cam_top")


def small_rig_config(width: int = 320, height: int = 240) -> RigConfig:
    """The default twin rig with smaller frames, the jump early in the trial."""
    cameras = [{"name": name, "width": width, "height": height} for name in CAMERA_NAMES]
    return load_config(None, {"cameras": cameras, "sim.jump.crouch_onset_s": 0.3})


@pytest.fixture(scope="session")
def rig_config() -> RigConfig:
    return small_rig_config()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return find_chromium()
    except ChromiumMissing as error:
        pytest.fail(str(error), pytrace=False)
