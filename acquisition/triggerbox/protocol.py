"""The trigger box's line protocol (docs/triggerbox.md), shared by the client and the emulator.

The firmware (firmware/triggerbox/triggerbox.ino) mirrors every rule here: the commands, the reply
grammar, the line limits and the integer arithmetic that turns a requested rate into Timer1
settings. Keep the two in step; the tests compare the constants.

Lines are ASCII and end with ``\\n``; ``\\r`` is ignored anywhere, so terminals that send CRLF work.
A request is a keyword, optionally one space and one argument. A reply is
``OK <COMMAND> [value]`` or ``ERR <COMMAND> <CODE> <message>``, where ``<COMMAND>`` names the
command being answered (``?`` when the box could not tell which).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

FIRMWARE_VERSION = "1.0.0"
# A client talks to any firmware with the same major version.
PROTOCOL_MAJOR = 1
DEFAULT_BAUDRATE = 115_200

# The firmware's line buffer; a longer line is dropped whole and answered with ERR ? OVERFLOW.
MAX_REQUEST_BYTES = 32
# The client's bound on one reply line, so a device that streams noise cannot grow memory.
MAX_REPLY_BYTES = 256

# ATmega328P Timer1: 16 MHz CPU clock, 16-bit compare register, these clock prescalers.
CPU_CLOCK_HZ = 16_000_000
TIMER_PRESCALERS = (1, 8, 64, 256, 1024)
TIMER_MAX_HALF_PERIOD_TICKS = 65_536
MICROHERTZ_PER_HZ = 1_000_000
# The output toggles on every compare match, so a pulse period is two timer periods.
HALF_CPU_CLOCK_UHZ = CPU_CLOCK_HZ // 2 * MICROHERTZ_PER_HZ
# Slowest rate the 16-bit timer reaches with the largest prescaler (0.1192 Hz), rounded up.
MIN_RATE_UHZ = 120_000
# Fastest rate offered: a 50 us half period leaves the pulse-counting interrupt ample time.
MAX_RATE_UHZ = 10_000 * MICROHERTZ_PER_HZ
MIN_RATE_HZ = MIN_RATE_UHZ / MICROHERTZ_PER_HZ
MAX_RATE_HZ = MAX_RATE_UHZ / MICROHERTZ_PER_HZ
RATE_DECIMALS = 6

# The firmware counts pulses in an unsigned 32-bit integer.
PULSE_COUNT_MODULUS = 2**32

UNKNOWN_COMMAND = "?"
READY_BANNER_PREFIX = "READY"

_REPLY_TOKENS = ("OK ", "ERR ")
_RATE_PATTERN = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,6}))?")
_COUNT_PATTERN = re.compile(r"[0-9]{1,10}")
_VERSION_PATTERN = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
_PRINTABLE_ASCII = frozenset(range(0x20, 0x7F))


class Command(StrEnum):
    VERSION = "VERSION"
    RATE = "RATE"
    ARM = "ARM"
    START = "START"
    STOP = "STOP"
    COUNT = "COUNT"
    STATE = "STATE"


class BoxState(StrEnum):
    IDLE = "IDLE"
    ARMED = "ARMED"
    RUNNING = "RUNNING"


class ErrorCode(StrEnum):
    UNKNOWN = "UNKNOWN"  # not a command (garbage, a typo, a non-ASCII byte)
    SYNTAX = "SYNTAX"  # a command with a missing, extra or malformed argument
    RANGE = "RANGE"  # a rate the timer cannot produce
    STATE = "STATE"  # a command the box refuses in its present state
    OVERFLOW = "OVERFLOW"  # a line longer than MAX_REQUEST_BYTES
    SOURCE = "SOURCE"  # the emulator's pulse source refused to start (no firmware equivalent)


# The messages the firmware sends, word for word, so the emulator's replies are identical.
MESSAGES = {
    ErrorCode.UNKNOWN: "unknown command",
    ErrorCode.SYNTAX: "bad argument",
    ErrorCode.RANGE: "rate out of range 0.12 to 10000 Hz",
    ErrorCode.OVERFLOW: "line too long",
    ErrorCode.SOURCE: "pulse source failed",
}
MESSAGE_RUNNING = "not while running"
MESSAGE_NO_RATE = "no rate set"
MESSAGE_NOT_ARMED = "not armed"

_COMMANDS_WITHOUT_ARGUMENT = frozenset(Command) - {Command.RATE}


class MalformedReply(ValueError):
    """A line from the box that is not a well-formed reply."""


class RequestError(ValueError):
    """A request line the box answers with an error; carries the fields of that ERR reply."""

    def __init__(self, command: str, code: ErrorCode, message: str | None = None) -> None:
        self.command = command
        self.code = code
        self.message = MESSAGES[code] if message is None else message
        super().__init__(f"{command} {code} {self.message}")


@dataclass(frozen=True)
class Request:
    command: Command
    rate_uhz: int | None = None  # RATE only: the requested rate in micro-hertz


@dataclass(frozen=True)
class OkReply:
    command: Command
    value: str = ""  # "" for ARM and START; validated for the others by parse_reply


@dataclass(frozen=True)
class ErrorReply:
    command: str  # a Command name, or UNKNOWN_COMMAND
    code: ErrorCode
    message: str


Reply = OkReply | ErrorReply


@dataclass(frozen=True)
class TimerSetting:
    """Timer1 in CTC mode, toggling the output on every compare match.

    One pulse period is ``2 * prescaler * half_period_ticks`` CPU cycles; the compare register
    holds ``half_period_ticks - 1``.
    """

    prescaler: int
    half_period_ticks: int
    achieved_rate_uhz: int

    @property
    def compare_value(self) -> int:
        return self.half_period_ticks - 1

    @property
    def achieved_rate_hz(self) -> float:
        return self.achieved_rate_uhz / MICROHERTZ_PER_HZ


@dataclass(frozen=True)
class Line:
    """One line taken off the wire, without its newline and carriage returns."""

    text: bytes
    overflowed: bool = False  # longer than the limit: text is empty, the line was dropped


class LineAssembler:
    """Cuts a byte stream into lines, wherever the reads happened to split it; skips empty lines.

    A line longer than ``max_line_bytes`` is, as the firmware does, dropped up to its newline and
    reported once as overflowed; with ``keep_tail`` (the client) only its last ``max_line_bytes``
    are kept instead, so a reply that follows a long run of noise on the same line survives.
    """

    def __init__(self, max_line_bytes: int, keep_tail: bool = False) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
        self._max_line_bytes = max_line_bytes
        self._keep_tail = keep_tail
        self._pending = bytearray()
        self._overflowed = False

    def feed(self, data: bytes) -> list[Line]:
        lines: list[Line] = []
        for byte in data.replace(b"\r", b""):
            if byte == 0x0A:
                if self._overflowed:
                    lines.append(Line(b"", overflowed=True))
                elif self._pending:
                    lines.append(Line(bytes(self._pending[-self._max_line_bytes :])))
                self._pending.clear()
                self._overflowed = False
            elif self._overflowed:
                continue
            elif self._keep_tail:
                self._pending.append(byte)
                # Trim in batches: memory stays bounded without a copy per byte.
                if len(self._pending) >= 2 * self._max_line_bytes:
                    del self._pending[: -self._max_line_bytes]
            elif len(self._pending) < self._max_line_bytes:
                self._pending.append(byte)
            else:
                self._pending.clear()
                self._overflowed = True
        return lines


# --- rates ------------------------------------------------------------------------------------


def parse_rate_uhz(text: str) -> int:
    """A decimal rate in Hz (up to 9 integer and 6 fractional digits) as exact micro-hertz.

    Raises ValueError for anything else (signs, exponents, spaces), as the firmware does.
    """
    match = _RATE_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a rate in Hz: {text!r}")
    whole, fraction = match.group(1), match.group(2) or ""
    return int(whole) * MICROHERTZ_PER_HZ + int(fraction.ljust(RATE_DECIMALS, "0"))


def format_rate_uhz(rate_uhz: int) -> str:
    """Micro-hertz as the decimal text of the protocol: ``200000000`` -> ``"200.000000"``."""
    if rate_uhz < 0:
        raise ValueError(f"rate must not be negative, got {rate_uhz} uHz")
    whole, fraction = divmod(rate_uhz, MICROHERTZ_PER_HZ)
    return f"{whole}.{fraction:06d}"


def rate_hz_to_uhz(rate_hz: float) -> int:
    """The nearest whole micro-hertz to ``rate_hz``; ValueError if not finite and positive."""
    if not math.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate must be a finite positive number of Hz, got {rate_hz}")
    return round(rate_hz * MICROHERTZ_PER_HZ)


def timer_setting(rate_uhz: int) -> TimerSetting:
    """The Timer1 setting closest to ``rate_uhz``, exactly as the firmware computes it.

    Takes the smallest prescaler whose half period fits the 16-bit timer (the finest resolution),
    with integer rounding. Raises ValueError outside ``MIN_RATE_UHZ..MAX_RATE_UHZ``.
    """
    if not MIN_RATE_UHZ <= rate_uhz <= MAX_RATE_UHZ:
        raise ValueError(
            f"rate {format_rate_uhz(max(rate_uhz, 0))} Hz out of range "
            f"{MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz"
        )
    for prescaler in TIMER_PRESCALERS:
        divisor = prescaler * rate_uhz
        half_period_ticks = (HALF_CPU_CLOCK_UHZ + divisor // 2) // divisor
        if 1 <= half_period_ticks <= TIMER_MAX_HALF_PERIOD_TICKS:
            cycles = prescaler * half_period_ticks
            achieved_rate_uhz = (HALF_CPU_CLOCK_UHZ + cycles // 2) // cycles
            return TimerSetting(prescaler, half_period_ticks, achieved_rate_uhz)
    # Unreachable inside the range checked above; kept so a changed constant fails loudly.
    raise ValueError(f"no Timer1 setting for {format_rate_uhz(rate_uhz)} Hz")


# --- requests (host -> box) --------------------------------------------------------------------


def encode_request(command: Command, rate_hz: float | None = None) -> bytes:
    """One request line, newline included. ``rate_hz`` is given for RATE and only for RATE."""
    if command is Command.RATE:
        if rate_hz is None:
            raise ValueError("RATE needs rate_hz")
        return f"RATE {format_rate_uhz(rate_hz_to_uhz(rate_hz))}\n".encode("ascii")
    if rate_hz is not None:
        raise ValueError(f"{command} takes no rate")
    return f"{command}\n".encode("ascii")


def parse_request(line: bytes) -> Request:
    """What the firmware makes of one request line; RequestError carries the box's ERR reply.

    The rate's range is not checked here: that is the state machine's job, like in the firmware.
    """
    if any(byte not in _PRINTABLE_ASCII for byte in line):
        raise RequestError(UNKNOWN_COMMAND, ErrorCode.UNKNOWN)
    keyword, separator, argument = line.decode("ascii").partition(" ")
    try:
        command = Command(keyword)
    except ValueError:
        raise RequestError(UNKNOWN_COMMAND, ErrorCode.UNKNOWN) from None
    if command in _COMMANDS_WITHOUT_ARGUMENT:
        if separator:
            raise RequestError(command, ErrorCode.SYNTAX)
        return Request(command)
    try:
        return Request(command, rate_uhz=parse_rate_uhz(argument))
    except ValueError:
        raise RequestError(command, ErrorCode.SYNTAX) from None


# --- replies (box -> host) ---------------------------------------------------------------------


def encode_ok(command: Command, value: str = "") -> bytes:
    text = f"OK {command} {value}" if value else f"OK {command}"
    return _checked_reply(text)


def encode_error(command: str, code: ErrorCode, message: str) -> bytes:
    if any(token in message for token in _REPLY_TOKENS):
        raise ValueError(f"an error message must not contain a reply token: {message!r}")
    return _checked_reply(f"ERR {command} {code} {message}")


def encode_banner() -> bytes:
    """The line the firmware prints when it boots; clients ignore it (it is not a reply)."""
    return f"{READY_BANNER_PREFIX} jumprig-triggerbox {FIRMWARE_VERSION}\n".encode("ascii")


def _checked_reply(text: str) -> bytes:
    data = text.encode("ascii")
    if any(byte not in _PRINTABLE_ASCII for byte in data):
        raise ValueError(f"a reply must be printable ASCII: {text!r}")
    return data + b"\n"


def parse_reply(line: bytes) -> Reply:
    """The reply in one line, or MalformedReply.

    The reply starts at the last ``OK `` or ``ERR `` in the line, so noise before it on the same
    line (a bootloader's bytes, half a line from before the port was opened) is skipped. The value
    is checked against its command: a count is a non-negative integer, a rate a decimal in Hz, a
    version ``major.minor.patch``, a state one of BoxState, ARM and START carry nothing.
    """
    text = line.decode("ascii", errors="replace")
    start = max(text.rfind(token) for token in _REPLY_TOKENS)
    if start < 0:
        raise MalformedReply(f"no reply in {line!r}")
    fields = text[start:].split(" ")
    if fields[0] == "OK":
        return _parse_ok(fields[1:], line)
    return _parse_error(fields[1:], line)


def _parse_ok(fields: list[str], line: bytes) -> OkReply:
    if not fields:
        raise MalformedReply(f"OK without a command in {line!r}")
    try:
        command = Command(fields[0])
    except ValueError:
        raise MalformedReply(f"OK for an unknown command in {line!r}") from None
    values = fields[1:]
    if command in (Command.ARM, Command.START):
        if values:
            raise MalformedReply(f"OK {command} carries no value, got {line!r}")
        return OkReply(command)
    if len(values) != 1:
        raise MalformedReply(f"OK {command} needs exactly one value, got {line!r}")
    value = values[0]
    valid = {
        Command.VERSION: _VERSION_PATTERN.fullmatch(value) is not None,
        Command.RATE: _RATE_PATTERN.fullmatch(value) is not None,
        Command.STOP: _COUNT_PATTERN.fullmatch(value) is not None,
        Command.COUNT: _COUNT_PATTERN.fullmatch(value) is not None,
        Command.STATE: value in BoxState.__members__,
    }[command]
    if not valid:
        raise MalformedReply(f"bad value for OK {command} in {line!r}")
    return OkReply(command, value)


def _parse_error(fields: list[str], line: bytes) -> ErrorReply:
    if len(fields) < 3:
        raise MalformedReply(f"ERR needs a command, a code and a message, got {line!r}")
    command, code_text, *message = fields
    if command != UNKNOWN_COMMAND and command not in Command.__members__:
        raise MalformedReply(f"ERR for an unknown command in {line!r}")
    try:
        code = ErrorCode(code_text)
    except ValueError:
        raise MalformedReply(f"unknown error code in {line!r}") from None
    return ErrorReply(command, code, " ".join(message))


def parse_count(value: str) -> int:
    """The pulse count of an OK STOP or OK COUNT reply."""
    if _COUNT_PATTERN.fullmatch(value) is None:
        raise MalformedReply(f"not a pulse count: {value!r}")
    count = int(value)
    if count >= PULSE_COUNT_MODULUS:
        raise MalformedReply(f"pulse count {count} exceeds the firmware's 32-bit counter")
    return count


def parse_version(value: str) -> tuple[int, int, int]:
    match = _VERSION_PATTERN.fullmatch(value)
    if match is None:
        raise MalformedReply(f"not a firmware version: {value!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch
