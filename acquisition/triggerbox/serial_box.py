"""The trigger box on a serial port, through pyserial (the only module that imports it).

Any pyserial URL works: ``/dev/ttyACM0`` or ``COM3`` for the box, the emulator's ``/dev/pts/N``,
``socket://host:port`` for a box behind a serial server.

Each command is one transaction: drop whatever stale bytes are waiting, send ``\\n`` (which ends
any half line the box holds, so the command starts a fresh line) and the command, then read lines
until the reply to that command arrives. Lines that are not that reply (noise, the boot banner,
an ERR for a line the box could not read) are skipped; no answer within ``timeout_s`` or a port
that fails is a :class:`~acquisition.errors.DeviceError`.
"""

from __future__ import annotations

import errno
import logging
import math
import threading
import time
from typing import Any

from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.triggerbox.interface import CommandRejected, TriggerBox
from acquisition.triggerbox.protocol import (
    DEFAULT_BAUDRATE,
    MAX_RATE_HZ,
    MAX_REPLY_BYTES,
    MICROHERTZ_PER_HZ,
    MIN_RATE_HZ,
    PROTOCOL_MAJOR,
    Command,
    ErrorReply,
    LineAssembler,
    MalformedReply,
    OkReply,
    encode_request,
    parse_count,
    parse_rate_uhz,
    parse_reply,
    parse_version,
)

logger = logging.getLogger(__name__)

# How long one read may block: short, so a command's deadline is kept to within this.
_POLL_S = 0.02
# An Arduino Uno resets when its port is opened and its bootloader waits ~1-2 s before the
# firmware runs; the first VERSION is retried for this long.
DEFAULT_BOOT_TIMEOUT_S = 3.0


class NoReply(DeviceError):
    """The box did not answer in time (while the port itself kept working)."""


class SerialTriggerBox(TriggerBox):
    """The rig's trigger box (firmware/triggerbox) or its emulator, on a pyserial port."""

    min_rate_hz = MIN_RATE_HZ
    max_rate_hz = MAX_RATE_HZ

    def __init__(
        self,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout_s: float = 1.0,
        boot_timeout_s: float = DEFAULT_BOOT_TIMEOUT_S,
    ) -> None:
        super().__init__()
        if not port:
            raise ValueError("the trigger box needs a serial port (e.g. /dev/ttyACM0)")
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {baudrate}")
        for name, value in (("timeout_s", timeout_s), ("boot_timeout_s", boot_timeout_s)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {value}")
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.boot_timeout_s = boot_timeout_s
        self._serial: Any = None
        self._lock = threading.Lock()
        self._version = ""
        self._rate_hz: float | None = None

    def info(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "baudrate": self.baudrate,
            "firmware_version": self._version,
            "rate_hz": self._rate_hz,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def _do_open(self) -> None:
        try:
            import serial
        except ImportError as error:
            raise HardwareUnavailable(
                "pyserial is not installed; it is needed to talk to the trigger box"
            ) from error
        try:
            self._serial = serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                timeout=min(_POLL_S, self.timeout_s),
                write_timeout=self.timeout_s,
                # Two programs pacing one rig would interleave their commands.
                exclusive=True,
            )
        except (OSError, ValueError) as error:
            raise HardwareUnavailable(
                f"cannot open the trigger box's serial port {self.port!r}: {error}. Is the box "
                "plugged in, is the port right, and may this user open it (group dialout)?"
            ) from error
        self._set_dtr()
        self._version = self._wait_for_firmware()
        self._do_stop()

    def _do_close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except OSError:
                logger.warning("closing trigger box port %s failed", self.port, exc_info=True)

    def _set_dtr(self) -> None:
        # Boards with native USB (ATmega32U4) only send while DTR is set. A pseudo-terminal
        # refuses the modem-control ioctl with ENOTTY (errno 25); it has no DTR to set.
        try:
            self._serial.dtr = True
        except OSError as error:
            if getattr(error, "errno", None) not in (errno.ENOTTY, errno.EINVAL):
                raise DeviceError(f"cannot set DTR on {self.port}: {error}") from error

    def _wait_for_firmware(self) -> str:
        deadline_s = time.monotonic() + self.boot_timeout_s
        while True:
            remaining_s = deadline_s - time.monotonic()
            try:
                reply = self._transact(Command.VERSION, timeout_s=min(self.timeout_s, remaining_s))
                break
            except NoReply as error:
                if time.monotonic() >= deadline_s:
                    raise DeviceError(
                        f"no trigger box answers on {self.port} (waited "
                        f"{self.boot_timeout_s:g} s for its firmware version): {error}"
                    ) from error
        major, _, _ = parse_version(reply.value)
        if major != PROTOCOL_MAJOR:
            raise DeviceError(
                f"trigger box on {self.port} runs firmware {reply.value}; this software speaks "
                f"protocol {PROTOCOL_MAJOR}.x: update the firmware (firmware/triggerbox)"
            )
        return reply.value

    # --- commands --------------------------------------------------------------------------------

    def _do_set_rate(self, rate_hz: float) -> float:
        reply = self._transact(Command.RATE, rate_hz=rate_hz)
        self._rate_hz = parse_rate_uhz(reply.value) / MICROHERTZ_PER_HZ
        return self._rate_hz

    def _do_arm(self) -> None:
        self._transact(Command.ARM)

    def _do_start(self) -> None:
        self._transact(Command.START)

    def _do_stop(self) -> int:
        return parse_count(self._transact(Command.STOP).value)

    def _do_pulse_count(self) -> int:
        return parse_count(self._transact(Command.COUNT).value)

    def _do_firmware_version(self) -> str:
        self._version = self._transact(Command.VERSION).value
        return self._version

    def state(self) -> str:
        """The box's state: ``"IDLE"``, ``"ARMED"`` or ``"RUNNING"``."""
        self._require_open()
        return self._transact(Command.STATE).value

    # --- the wire --------------------------------------------------------------------------------

    def _transact(
        self, command: Command, rate_hz: float | None = None, timeout_s: float | None = None
    ) -> OkReply:
        """Send one command and return its OK reply; CommandRejected for its ERR reply."""
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        port = self._serial
        if port is None:
            raise RuntimeError("trigger box port not open")
        request = b"\n" + encode_request(command, rate_hz)
        with self._lock:
            deadline_s = time.monotonic() + wait_s
            lines = LineAssembler(MAX_REPLY_BYTES, keep_tail=True)
            try:
                port.reset_input_buffer()
                port.write(request)
                while True:
                    for line in lines.feed(port.read(max(1, port.in_waiting))):
                        reply = _reply_to(command, line.text)
                        if isinstance(reply, ErrorReply):
                            raise CommandRejected(command, reply.code, reply.message)
                        if reply is not None:
                            return reply
                    if time.monotonic() >= deadline_s:
                        raise NoReply(
                            f"trigger box on {self.port} did not answer {command} "
                            f"within {wait_s:g} s"
                        )
            except DeviceError:
                raise
            except Exception as error:
                if not _is_port_failure(error):
                    raise
                raise DeviceError(
                    f"trigger box port {self.port} failed during {command} (unplugged?): {error}"
                ) from error


def _reply_to(command: Command, text: bytes) -> OkReply | ErrorReply | None:
    """The reply to ``command`` in this line, or None for a line to skip."""
    try:
        reply = parse_reply(text)
    except MalformedReply as error:
        logger.debug("skipping a line from the trigger box: %s", error)
        return None
    if reply.command != command:
        logger.debug("skipping a reply to another command: %r", text)
        return None
    return reply


def _is_port_failure(error: Exception) -> bool:
    """pyserial's SerialException (an OSError), OSError, termios.error: the port is gone."""
    if isinstance(error, OSError):
        return True
    # termios.error (a failed tcflush on a vanished terminal) is not an OSError; it is not
    # imported here because termios does not exist on Windows.
    return type(error).__module__ == "termios"


def list_serial_ports() -> list[dict[str, str]]:
    """Serial ports on this machine (where a trigger box may be): device, description, USB id."""
    try:
        from serial.tools import list_ports
    except ImportError as error:
        raise HardwareUnavailable(f"pyserial cannot be imported ({error})") from error
    return [
        {
            "device": port.device,
            "description": port.description or "",
            "usb_id": f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None else "",
        }
        for port in sorted(list_ports.comports(), key=lambda p: p.device)
    ]
