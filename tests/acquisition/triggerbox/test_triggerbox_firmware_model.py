from __future__ import annotations

import pytest

from acquisition.triggerbox.emulator import HostClockPulseSource
from acquisition.triggerbox.firmware_model import FirmwareModel
from acquisition.triggerbox.protocol import (
    MAX_REQUEST_BYTES,
    PULSE_COUNT_MODULUS,
    BoxState,
    Line,
)


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns


class RecordingPulseSource:
    """Counts what the test tells it to; remembers how it was driven."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.started_at_hz: list[float] = []
        self.stops = 0
        self.pulses = 0

    def start(self, rate_hz: float) -> None:
        if self.refuse:
            raise RuntimeError("pulse train already ran")
        self.started_at_hz.append(rate_hz)
        self.pulses = 1

    def stop(self) -> None:
        self.stops += 1

    def count(self) -> int:
        return self.pulses


def ask(model: FirmwareModel, line: bytes) -> bytes | None:
    return model.handle(Line(line))


def test_a_run_rate_arm_start_stop() -> None:
    source = RecordingPulseSource()
    model = FirmwareModel(source)
    assert ask(model, b"STATE") == b"OK STATE IDLE\n"
    assert ask(model, b"RATE 333") == b"OK RATE 333.000333\n"
    assert ask(model, b"ARM") == b"OK ARM\n"
    assert ask(model, b"COUNT") == b"OK COUNT 0\n"
    assert ask(model, b"START") == b"OK START\n"
    # The source runs at the rate the timer makes, not the rate asked for.
    assert source.started_at_hz == [333.000333]
    source.pulses = 41
    assert ask(model, b"STATE") == b"OK STATE RUNNING\n"
    assert ask(model, b"COUNT") == b"OK COUNT 41\n"
    assert ask(model, b"STOP") == b"OK STOP 41\n"
    source.pulses = 99  # whatever the source says later, the run's count is kept
    assert ask(model, b"COUNT") == b"OK COUNT 41\n"
    assert ask(model, b"STOP") == b"OK STOP 41\n"
    assert source.stops == 1
    assert ask(model, b"ARM") == b"OK ARM\n"
    assert ask(model, b"COUNT") == b"OK COUNT 0\n"


@pytest.mark.parametrize(
    ("script", "last_reply"),
    [
        ([b"START"], b"ERR START STATE not armed\n"),
        ([b"RATE 200", b"START"], b"ERR START STATE not armed\n"),
        ([b"ARM"], b"ERR ARM STATE no rate set\n"),
        ([b"RATE 200", b"ARM", b"START", b"ARM"], b"ERR ARM STATE not while running\n"),
        ([b"RATE 200", b"ARM", b"START", b"RATE 100"], b"ERR RATE STATE not while running\n"),
        ([b"RATE 200", b"ARM", b"START", b"START"], b"ERR START STATE not armed\n"),
        ([b"RATE 200", b"ARM", b"STOP", b"START"], b"ERR START STATE not armed\n"),
        ([b"RATE 0.1"], b"ERR RATE RANGE rate out of range 0.12 to 10000 Hz\n"),
        ([b"RATE 10000.000001"], b"ERR RATE RANGE rate out of range 0.12 to 10000 Hz\n"),
        ([b"RATE x"], b"ERR RATE SYNTAX bad argument\n"),
        ([b"GO"], b"ERR ? UNKNOWN unknown command\n"),
    ],
)
def test_commands_in_the_wrong_state_or_out_of_range_are_refused(
    script: list[bytes], last_reply: bytes
) -> None:
    model = FirmwareModel(RecordingPulseSource())
    replies = [ask(model, line) for line in script]
    assert replies[-1] == last_reply


def test_a_refused_command_leaves_the_state_alone() -> None:
    model = FirmwareModel(RecordingPulseSource())
    ask(model, b"RATE 200")
    ask(model, b"ARM")
    ask(model, b"RATE 0.01")
    assert model.state is BoxState.ARMED
    assert model.timer is not None and model.timer.achieved_rate_uhz == 200_000_000


def test_an_over_long_line_and_an_empty_line() -> None:
    model = FirmwareModel(RecordingPulseSource())
    assert model.handle(Line(b"", overflowed=True)) == b"ERR ? OVERFLOW line too long\n"
    assert model.handle(Line(b"")) is None
    assert ask(model, b"A" * MAX_REQUEST_BYTES) == b"ERR ? UNKNOWN unknown command\n"


def test_a_source_that_refuses_to_start_is_reported_and_the_box_stays_armed() -> None:
    model = FirmwareModel(RecordingPulseSource(refuse=True))
    ask(model, b"RATE 200")
    ask(model, b"ARM")
    assert ask(model, b"START") == b"ERR START SOURCE pulse source failed\n"
    assert model.state is BoxState.ARMED


def test_the_count_wraps_like_the_firmwares_32_bit_counter() -> None:
    source = RecordingPulseSource()
    model = FirmwareModel(source)
    for line in (b"RATE 200", b"ARM", b"START"):
        ask(model, line)
    source.pulses = PULSE_COUNT_MODULUS + 5
    assert ask(model, b"COUNT") == b"OK COUNT 5\n"


def test_shutdown_stops_a_running_train() -> None:
    source = RecordingPulseSource()
    model = FirmwareModel(source)
    for line in (b"RATE 200", b"ARM", b"START"):
        ask(model, line)
    model.shutdown()
    model.shutdown()
    assert source.stops == 1
    assert model.state is BoxState.IDLE


def test_host_clock_source_counts_pulse_zero_at_start_and_freezes_at_stop() -> None:
    clock = FakeClock()
    source = HostClockPulseSource(clock)
    assert source.count() == 0
    source.start(200.0)
    assert source.count() == 1
    clock.now_ns += 4_999_999
    assert source.count() == 1
    clock.now_ns += 1
    assert source.count() == 2
    clock.now_ns += 995_000_000  # 1 s after start: pulses 0..200
    assert source.count() == 201
    source.stop()
    clock.now_ns += 10_000_000_000
    assert source.count() == 201
    source.start(10.0)  # a new run starts over
    assert source.count() == 1


def test_host_clock_source_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HostClockPulseSource().start(0.0)
