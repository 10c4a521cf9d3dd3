"""Fixtures for the GenICam backend: GenICam's simulators (TLSimu, viky) and camera factories.

TLSimu is fetched once per session by ``scripts/fetch_tlsimu.py`` (into ``.cache/tlsimu``); its
tests skip, saying why, only when it cannot be fetched. viky ships inside the installed
``genicam`` package.

A GenTL producer lists its devices to one Harvester per process at a time, so every camera made
here is closed when its test ends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from acquisition.cameras.genicam import GenICamCamera
from acquisition.cameras.genicam_settings import GenICamSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch_tlsimu.py"
TLSIMU_DIR = REPO_ROOT / ".cache" / "tlsimu"
FETCH_TIMEOUT_S = 300
# TLSimu's four devices, as its producer lists them.
TLSIMU_MONO_SERIAL = "SN_InterfaceA_0"


@pytest.fixture(scope="session")
def tlsimu_cti() -> Path:
    """The path of TLSimu.cti, fetched on first use."""
    try:
        result = subprocess.run(
            [sys.executable, str(FETCH_SCRIPT), "--dest", str(TLSIMU_DIR)],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"TLSimu could not be fetched: {FETCH_SCRIPT.name} timed out (no network?)")
    if result.returncode != 0:
        pytest.skip(f"TLSimu could not be fetched: {result.stderr.strip()[-500:]}")
    cti = Path(result.stdout.strip().splitlines()[-1])
    if not cti.is_file():
        pytest.fail(f"{FETCH_SCRIPT.name} reported {cti}, which does not exist")
    return cti


@pytest.fixture(scope="session")
def viky_cti() -> Path:
    """The path of viky.cti, inside the installed genicam package."""
    try:
        import genicam
    except ImportError as error:
        pytest.skip(f"genicam is not installed: {error}")
    cti = Path(genicam.__file__).resolve().parent / "viky.cti"
    if not cti.is_file():
        pytest.skip(f"this genicam ({genicam.__file__}) ships no viky.cti")
    return cti


class ListPulses:
    """A pulse source that hands out the given pulse numbers, then none.

    ``before_pulse`` runs just before a pulse is handed out: the place for a test to act on the
    simulator at a chosen pulse.
    """

    def __init__(
        self,
        pulses: Sequence[int],
        before_pulse: Callable[[int], None] | None = None,
    ) -> None:
        self._pulses = list(pulses)
        self._before_pulse = before_pulse
        self.closed = False

    def next_pulse(self, timeout_s: float) -> int | None:
        if not self._pulses:
            return None
        pulse = self._pulses.pop(0)
        if self._before_pulse is not None:
            self._before_pulse(pulse)
        return pulse

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def list_pulses() -> type[ListPulses]:
    return ListPulses


CameraFactory = Callable[..., GenICamCamera]


@pytest.fixture
def make_camera() -> Iterator[CameraFactory]:
    """Makes GenICamCameras (name, width, height, settings, pulse source) and closes them all."""
    cameras: list[GenICamCamera] = []

    def make(
        settings: GenICamSettings,
        width: int = 320,
        height: int = 240,
        pulse_source: Any = None,
        name: str = "cam_test",
    ) -> GenICamCamera:
        camera = GenICamCamera(name, width, height, "Mono8", settings, pulse_source)
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        camera.close()


@pytest.fixture
def tlsimu_settings(tlsimu_cti: Path) -> Callable[..., GenICamSettings]:
    """GenICamSettings for TLSimu's first mono camera, software-triggered per pulse."""

    def settings(**overrides: Any) -> GenICamSettings:
        fields: dict[str, Any] = {
            "cti_files": (str(tlsimu_cti),),
            "serial_number": TLSIMU_MONO_SERIAL,
            "trigger": "software_per_pulse",
            "fetch_timeout_s": 0.3,
        }
        fields.update(overrides)
        return GenICamSettings(**fields)

    return settings


@pytest.fixture
def captured_acquirers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every harvesters ImageAcquirer created during the test, so a test can act on the device
    behind a camera's back (stop its acquisition, as a camera that loses frames would)."""
    from harvesters.core import Harvester

    acquirers: list[Any] = []
    real_create = Harvester.create

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        acquirer = real_create(self, *args, **kwargs)
        acquirers.append(acquirer)
        return acquirer

    monkeypatch.setattr(Harvester, "create", create)
    return acquirers
