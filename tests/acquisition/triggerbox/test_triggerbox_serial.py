"""The pyserial client against the firmware emulator, over a real pseudo-terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from acquisition.daq.interface import rising_edges
from acquisition.daq.pulses import SampleClockPulses
from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.triggerbox import firmware_model
from acquisition.triggerbox.emulator import HostClockPulseSource, ReplyFaults, TriggerBoxEmulator
from acquisition.triggerbox.firmware_model import FirmwareModel
from acquisition.triggerbox.interface import CommandRejected
from acquisition.triggerbox.protocol import MAX_REQUEST_BYTES, LineAssembler
from acquisition.triggerbox.serial_box import SerialTriggerBox

pytestmark = pytest.mark.timeout(20)

REPO_ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 5_000_000_000

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[TriggerBoxEmulator]:
    with TriggerBoxEmulator(HostClockPulseSource(clock)) as running:
        yield running


@pytest.fixture
def box(emulator: TriggerBoxEmulator) -> Iterator[SerialTriggerBox]:
    with SerialTriggerBox(emulator.port_path) as opened:
        assert isinstance(opened, SerialTriggerBox)
        yield opened


def run_one_second_at_200_hz(box: SerialTriggerBox, clock: FakeClock) -> int:
    assert box.set_rate(200.0) == 200.0
    box.arm()
    assert box.pulse_count() == 0
    box.start()
    clock.now_ns += 1_000_000_000
    return box.stop()


def test_a_run_counts_its_pulses(box: SerialTriggerBox, clock: FakeClock) -> None:
    assert box.firmware_version() == "1.0.0"
    assert box.state() == "IDLE"
    assert box.set_rate(200.0) == 200.0
    box.arm()
    assert box.state() == "ARMED"
    assert box.pulse_count() == 0
    box.start()
    assert box.state() == "RUNNING"
    assert box.pulse_count() == 1  # pulse 0 goes out at START
    clock.now_ns += 500_000_000
    assert box.pulse_count() == 101
    clock.now_ns += 500_000_000
    assert box.stop() == 201
    clock.now_ns += 500_000_000
    assert box.pulse_count() == 201
    assert box.state() == "IDLE"
    assert box.info() == {
        "port": box.port,
        "baudrate": 115_200,
        "firmware_version": "1.0.0",
        "rate_hz": 200.0,
    }
    # A second run starts from 0 again.
    box.arm()
    assert box.pulse_count() == 0


def test_the_achieved_rate_comes_back(box: SerialTriggerBox) -> None:
    assert box.set_rate(333.0) == pytest.approx(333.000333, abs=1e-9)
    assert box.set_rate(0.12) == pytest.approx(0.12, abs=1e-9)


def test_round_trip_time(box: SerialTriggerBox) -> None:
    n = 200
    t0_ns = time.perf_counter_ns()
    for _ in range(n):
        box.pulse_count()
    print(f"COUNT round trip over a pty: {(time.perf_counter_ns() - t0_ns) / n / 1e3:.0f} us")


@pytest.mark.parametrize(
    ("calls", "command"),
    [(["start"], "START"), (["arm"], "ARM"), (["set_rate", "arm", "start", "arm"], "ARM")],
)
def test_a_command_in_the_wrong_state_is_refused(
    box: SerialTriggerBox, calls: list[str], command: str
) -> None:
    with pytest.raises(CommandRejected) as caught:
        for call in calls:
            if call == "set_rate":
                box.set_rate(100.0)
            else:
                getattr(box, call)()
    assert (caught.value.command, caught.value.reason) == (command, "STATE")
    assert isinstance(caught.value, DeviceError)
    # The box is still there and answers.
    assert box.firmware_version() == "1.0.0"


def test_set_rate_while_running_is_refused(box: SerialTriggerBox) -> None:
    box.set_rate(100.0)
    box.arm()
    box.start()
    with pytest.raises(CommandRejected, match="RATE: STATE"):
        box.set_rate(50.0)


@pytest.mark.parametrize("rate_hz", [0.0, 0.1, 10_000.5, float("nan"), float("inf")])
def test_a_rate_the_box_cannot_make_is_refused_before_sending(
    box: SerialTriggerBox, rate_hz: float
) -> None:
    with pytest.raises(ValueError, match=r"0\.12 to 10000 Hz"):
        box.set_rate(rate_hz)


@pytest.mark.parametrize(
    "faults",
    [
        ReplyFaults(garbage_before_reply=b"\x00\xff\xfe garbage"),
        ReplyFaults(garbage_before_reply=b"\x00\xffgarbage\n"),
        ReplyFaults(garbage_before_reply=b"OK STATE ARMED\nERR ? UNKNOWN unknown command\nOK "),
        ReplyFaults(garbage_before_reply=b"READY jumprig-triggerbox 1.0.0\n"),
        ReplyFaults(garbage_before_reply=bytes(range(0x80, 0x100)) * 8),
        ReplyFaults(reply_pieces=5, pause_between_pieces_s=0.02),
        ReplyFaults(reply_pieces=30),
        ReplyFaults(garbage_before_reply=b"\xfe\xfe", reply_pieces=3, pause_between_pieces_s=0.01),
    ],
    ids=[
        "binary-noise",
        "noise-line",
        "replies-to-other-commands",
        "boot-banner",
        "1kB-noise",
        "split-with-pauses",
        "byte-by-byte",
        "noise-and-split",
    ],
)
def test_noise_and_split_replies_are_recovered_within_the_line(
    emulator: TriggerBoxEmulator, box: SerialTriggerBox, clock: FakeClock, faults: ReplyFaults
) -> None:
    emulator.faults = faults
    assert run_one_second_at_200_hz(box, clock) == 201
    assert box.firmware_version() == "1.0.0"


def test_noise_sent_to_the_box_costs_no_command(
    emulator: TriggerBoxEmulator, box: SerialTriggerBox, clock: FakeClock
) -> None:
    # Half a line of noise, and an over-long one, sitting in the box's buffer: the newline that
    # starts every command ends them, the box answers ERR ? and the client skips that.
    serial_port = box._serial
    serial_port.write(b"\xff\x00half a li")
    assert box.firmware_version() == "1.0.0"
    serial_port.write(b"x" * (3 * MAX_REQUEST_BYTES))
    assert run_one_second_at_200_hz(box, clock) == 201


def test_a_box_that_stops_answering_raises_within_the_timeout(
    emulator: TriggerBoxEmulator, box: SerialTriggerBox
) -> None:
    assert box.timeout_s == 1.0
    emulator.faults = ReplyFaults(silent=True)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="did not answer COUNT within 1 s"):
        box.pulse_count()
    elapsed_s = time.monotonic() - t0
    print(f"silent box noticed after {elapsed_s * 1e3:.0f} ms (timeout_s = 1.0)")
    assert elapsed_s < 1.5
    # Answering again, it is usable again.
    emulator.faults = ReplyFaults()
    assert box.pulse_count() == 0


def test_unplugging_raises_device_error_at_once(
    emulator: TriggerBoxEmulator, box: SerialTriggerBox
) -> None:
    port_path = emulator.port_path
    emulator.unplug()
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="unplugged"):
        box.pulse_count()
    elapsed_s = time.monotonic() - t0
    print(f"unplugged box noticed after {elapsed_s * 1e3:.2f} ms")
    assert elapsed_s < 1.5
    box.close()
    with pytest.raises(HardwareUnavailable, match="cannot open"):
        SerialTriggerBox(port_path).open()


def test_unplugging_while_a_reply_is_awaited(
    emulator: TriggerBoxEmulator, box: SerialTriggerBox
) -> None:
    emulator.faults = ReplyFaults(silent=True)
    unplugged_at: list[float] = []

    def pull_the_cable() -> None:
        time.sleep(0.2)
        unplugged_at.append(time.monotonic())
        emulator.unplug()

    puller = threading.Thread(target=pull_the_cable)
    puller.start()
    try:
        # The port's failure, not the 1 s timeout, ends the wait.
        with pytest.raises(DeviceError, match="unplugged"):
            box.stop()
        noticed_at = time.monotonic()
    finally:
        puller.join()
    elapsed_s = noticed_at - unplugged_at[0]
    print(f"unplug during a pending STOP noticed after {elapsed_s * 1e3:.1f} ms")
    assert elapsed_s < 1.5


def test_unplugging_stops_the_pulses(clock: FakeClock) -> None:
    source = HostClockPulseSource(clock)
    with TriggerBoxEmulator(source) as emulator, SerialTriggerBox(emulator.port_path) as box:
        box.set_rate(100.0)
        box.arm()
        box.start()
        clock.now_ns += 1_000_000_000
        emulator.unplug()
        clock.now_ns += 1_000_000_000
        assert source.count() == 101


def test_a_missing_port_is_hardware_unavailable(tmp_path: Path) -> None:
    with pytest.raises(HardwareUnavailable, match="ttyACM9"):
        SerialTriggerBox(str(tmp_path / "ttyACM9")).open()


def test_nothing_listening_on_a_socket_is_hardware_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(HardwareUnavailable, match="cannot open"):
        SerialTriggerBox(f"socket://127.0.0.1:{free_port}").open()


def test_a_port_where_nothing_answers_fails_to_open(emulator: TriggerBoxEmulator) -> None:
    emulator.faults = ReplyFaults(silent=True)
    box = SerialTriggerBox(emulator.port_path, timeout_s=0.2, boot_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="no trigger box answers"):
        box.open()
    print(f"gave up after {time.monotonic() - t0:.2f} s (boot_timeout_s = 0.5)")
    # The failed open let go of the port: another client gets its exclusive lock.
    emulator.faults = ReplyFaults()
    with SerialTriggerBox(emulator.port_path) as other:
        assert other.firmware_version() == "1.0.0"
    box.close()
    box.close()


def test_a_port_is_used_by_one_client_at_a_time(box: SerialTriggerBox) -> None:
    with pytest.raises(HardwareUnavailable, match="lock"):
        SerialTriggerBox(box.port).open()
    assert box.firmware_version() == "1.0.0"


def test_a_box_that_answers_only_after_booting_is_waited_for(
    emulator: TriggerBoxEmulator,
) -> None:
    # An Arduino resets when the port opens and ignores the first VERSION while it boots.
    emulator.faults = ReplyFaults(silent=True)
    boots = threading.Timer(0.3, lambda: setattr(emulator, "faults", ReplyFaults()))
    boots.start()
    try:
        with SerialTriggerBox(emulator.port_path, timeout_s=0.1, boot_timeout_s=3.0) as box:
            assert box.firmware_version() == "1.0.0"
    finally:
        boots.cancel()
        boots.join()


def test_firmware_of_another_protocol_major_is_refused(
    emulator: TriggerBoxEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(firmware_model, "FIRMWARE_VERSION", "2.0.0")
    box = SerialTriggerBox(emulator.port_path)
    with pytest.raises(DeviceError, match=r"firmware 2\.0\.0"):
        box.open()
    box.close()


def test_opening_stops_a_run_left_going(emulator: TriggerBoxEmulator, clock: FakeClock) -> None:
    first = SerialTriggerBox(emulator.port_path)
    first.open()
    first.set_rate(100.0)
    first.arm()
    first.start()
    first.close()  # a session that died without STOP
    clock.now_ns += 1_000_000_000
    with SerialTriggerBox(emulator.port_path) as second:
        assert isinstance(second, SerialTriggerBox)
        assert second.state() == "IDLE"
        clock.now_ns += 1_000_000_000
        assert second.pulse_count() == 101


def test_the_lifecycle_is_enforced(emulator: TriggerBoxEmulator) -> None:
    box = SerialTriggerBox(emulator.port_path)
    with pytest.raises(RuntimeError, match="not open"):
        box.pulse_count()
    box.open()
    with pytest.raises(RuntimeError, match="already open"):
        box.open()
    box.close()
    box.close()
    with pytest.raises(RuntimeError, match="closed"):
        box.arm()
    with pytest.raises(RuntimeError, match="closed"):
        box.open()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": ""}, "serial port"),
        ({"port": "/dev/ttyACM0", "baudrate": 0}, "baudrate"),
        ({"port": "/dev/ttyACM0", "timeout_s": 0.0}, "timeout_s"),
        ({"port": "/dev/ttyACM0", "timeout_s": float("nan")}, "timeout_s"),
        ({"port": "/dev/ttyACM0", "boot_timeout_s": -1.0}, "boot_timeout_s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SerialTriggerBox(**kwargs)  # type: ignore[arg-type]


def test_the_emulator_lifecycle() -> None:
    emulator = TriggerBoxEmulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = emulator.port_path
    emulator.start()
    with pytest.raises(RuntimeError, match="already started"):
        emulator.start()
    emulator.close()
    emulator.close()
    with pytest.raises(RuntimeError, match="closed"):
        emulator.start()


def test_reply_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="reply_pieces"):
        ReplyFaults(reply_pieces=0)
    with pytest.raises(ValueError, match="pause_between_pieces_s"):
        ReplyFaults(pause_between_pieces_s=-0.1)


def test_the_twin_pulses_land_on_daq_samples() -> None:
    """The emulator drives the simulated DAQ's pulse generator, as the twin's DAQ process does."""
    daq_rate_hz, block_samples = 10_000.0, 100
    pulses = SampleClockPulses(daq_rate_hz, duty_cycle=0.5)
    with TriggerBoxEmulator(pulses) as emulator, SerialTriggerBox(emulator.port_path) as box:
        box.set_rate(200.0)
        box.arm()
        first_sample = 0
        blocks = [pulses.levels(first_sample, block_samples)]
        first_sample += block_samples
        box.start()
        for _ in range(100):  # one second of samples
            blocks.append(pulses.levels(first_sample, block_samples))
            first_sample += block_samples
        sent = box.stop()
        blocks.append(pulses.levels(first_sample, block_samples))
    edges = rising_edges(np.concatenate(blocks), 0, 0)
    assert edges[0] == block_samples  # pulse 0 on the first sample after START
    assert set(np.diff(edges).tolist()) == {50}
    assert sent == edges.size == 200


def test_socket_urls_reach_a_box_behind_a_serial_server() -> None:
    """A box behind a TCP serial server (``socket://``), here the firmware model on a socket."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        model = FirmwareModel(HostClockPulseSource())

        def serve() -> None:
            connection, _ = server.accept()
            lines = LineAssembler(MAX_REQUEST_BYTES)
            with connection:
                while data := connection.recv(4096):
                    for line in lines.feed(data):
                        reply = model.handle(line)
                        if reply is not None:
                            connection.sendall(reply)

        server_thread = threading.Thread(target=serve, daemon=True)
        server_thread.start()
        with SerialTriggerBox(f"socket://127.0.0.1:{port}") as box:
            assert box.firmware_version() == "1.0.0"
            assert box.set_rate(250.0) == 250.0
            box.arm()
            box.start()
            assert box.stop() >= 1
        server_thread.join(timeout=5.0)


def test_the_emulator_runs_as_a_program() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "acquisition.triggerbox.emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    ) as process:
        try:
            assert process.stdout is not None
            port_path = process.stdout.readline().strip()
            with SerialTriggerBox(port_path) as box:
                assert box.firmware_version() == "1.0.0"
                assert box.set_rate(500.0) == 500.0
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
