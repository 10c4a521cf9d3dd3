"""The firmware and the Python emulator answer alike.

The firmware source is built for the host against stand-ins for the Arduino core
(firmware/triggerbox/host/) and fed the same byte script as the emulator's state machine; the
replies must match byte for byte. Skipped where no C++ compiler is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from acquisition.triggerbox.firmware_model import FirmwareModel
from acquisition.triggerbox.protocol import (
    DEFAULT_BAUDRATE,
    FIRMWARE_VERSION,
    MAX_RATE_UHZ,
    MAX_REQUEST_BYTES,
    MESSAGE_NO_RATE,
    MESSAGE_NOT_ARMED,
    MESSAGE_RUNNING,
    MESSAGES,
    MIN_RATE_UHZ,
    TIMER_PRESCALERS,
    ErrorCode,
    LineAssembler,
    encode_banner,
)

FIRMWARE_DIR = Path(__file__).resolve().parents[3] / "firmware" / "triggerbox"
FIRMWARE_SOURCE = FIRMWARE_DIR / "triggerbox.ino"

# Chunks of serial input (C escapes), "@tick N" compare matches, "@timer" to show the setting.
SCRIPT = [
    r"VERSION\n",
    r"STATE\n",
    r"START\n",
    r"ARM\n",
    r"RATE 333\n",
    "@timer",
    r"RATE 0.1\n",
    r"RATE 0.12\n",
    "@timer",
    r"RATE 10000\n",
    "@timer",
    r"RATE 10000.000001\n",
    r"RATE 1234.567891\n",
    "@timer",
    r"RATE 200\r\n",
    "@timer",
    r"RATE 2e2\n",
    r"RATE 200.\n",
    r"RATE\n",
    r"RATE \n",
    r"RATE 1 2\n",
    r"COUNT 1\n",
    r"ARM \n",
    r"\n\n",
    r"\xff\x00garbage\n",
    r"ST\x01ART\n",
    "x" * (MAX_REQUEST_BYTES + 5) + r"\n",
    "y" * MAX_REQUEST_BYTES + r"\n",
    r"ARM\n",
    r"COUNT\n",
    r"STATE\n",
    r"ST",
    r"ART\nCOU",
    r"NT\n",
    "@tick 9",
    r"COUNT\n",
    r"RATE 100\n",
    r"STOP\n",
    r"RATE 100\n",
    r"ARM\n",
    r"START\n",
    "@tick 2000",
    r"STATE\n",
    r"STOP\n",
    "@tick 50",
    r"COUNT\n",
    r"STOP\n",
    r"START\n",
    r"ARM\n",
    r"STOP\n",
    r"COUNT\n",
    r"version\n",
]


class Timer1PulseSource:
    """What the firmware's Timer1 does, in compare matches: pulse 0 at start, one per two."""

    def __init__(self) -> None:
        self.running = False
        self.compare_matches = 0

    def start(self, rate_hz: float) -> None:
        self.running = True
        self.compare_matches = 0

    def stop(self) -> None:
        self.running = False

    def count(self) -> int:
        return 1 + self.compare_matches // 2

    def tick(self, n: int) -> None:
        if self.running:
            self.compare_matches += n


def unescape(chunk: str) -> bytes:
    return chunk.encode("latin-1").decode("unicode_escape").encode("latin-1")


def emulator_transcript(script: list[str]) -> bytes:
    source = Timer1PulseSource()
    model = FirmwareModel(source)
    lines = LineAssembler(MAX_REQUEST_BYTES)
    out = bytearray(encode_banner())
    for chunk in script:
        if chunk.startswith("@tick "):
            source.tick(int(chunk.split()[1]))
        elif chunk == "@timer":
            assert model.timer is not None
            out += f"TIMER {model.timer.prescaler} {model.timer.compare_value}\n".encode()
        else:
            for line in lines.feed(unescape(chunk)):
                reply = model.handle(line)
                if reply is not None:
                    out += reply
    return bytes(out)


@pytest.fixture(scope="module")
def firmware_on_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the firmware for the host")
    executable = tmp_path_factory.mktemp("firmware") / "triggerbox_host"
    subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(FIRMWARE_DIR / "host"),
            str(FIRMWARE_DIR / "host" / "host_harness.cpp"),
            "-o",
            str(executable),
        ],
        check=True,
        timeout=60,
    )
    return executable


def test_the_firmware_answers_like_the_emulator(firmware_on_host: Path) -> None:
    firmware = subprocess.run(
        [str(firmware_on_host), *SCRIPT], capture_output=True, check=True, timeout=10
    ).stdout
    emulator = emulator_transcript(SCRIPT)
    assert firmware.decode("latin-1").splitlines() == emulator.decode("latin-1").splitlines()
    assert firmware == emulator
    # The script reaches every reply the firmware can give.
    assert b"OK COUNT 5" in firmware and b"OK STOP 1001" in firmware
    for code in ErrorCode:
        if code is not ErrorCode.SOURCE:
            assert f" {code} ".encode() in firmware


def test_the_firmware_constants_match_the_protocol() -> None:
    source = FIRMWARE_SOURCE.read_text()

    def constant(name: str) -> str:
        match = re.search(rf"\b{name}(?:\[\])? = \{{?\"?([^\";}}]+)", source)
        assert match is not None, name
        return match.group(1)

    assert constant("FIRMWARE_VERSION") == FIRMWARE_VERSION
    assert int(constant("BAUDRATE")) == DEFAULT_BAUDRATE
    assert int(constant("MAX_REQUEST_BYTES")) == MAX_REQUEST_BYTES
    assert int(constant("MIN_RATE_UHZ").removesuffix("ULL")) == MIN_RATE_UHZ
    assert int(constant("MAX_RATE_UHZ").removesuffix("ULL")) == MAX_RATE_UHZ
    prescalers = tuple(int(part) for part in constant("TIMER_PRESCALERS").split(","))
    assert prescalers == TIMER_PRESCALERS
    for message in [*MESSAGES.values(), MESSAGE_RUNNING, MESSAGE_NO_RATE, MESSAGE_NOT_ARMED]:
        if message != MESSAGES[ErrorCode.SOURCE]:
            assert f'F("{message}")' in source, message
