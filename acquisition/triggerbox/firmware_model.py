"""The firmware's state machine in Python: request lines in, reply lines out, no I/O.

It mirrors ``handleLine`` in firmware/triggerbox/triggerbox.ino rule for rule; the emulator wraps
it in a pseudo-terminal. Pulses come from a :class:`~acquisition.triggerbox.emulator.PulseSource`
started at the rate the box's Timer1 would actually make.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from acquisition.triggerbox.protocol import (
    FIRMWARE_VERSION,
    MESSAGE_NO_RATE,
    MESSAGE_NOT_ARMED,
    MESSAGE_RUNNING,
    MESSAGES,
    PULSE_COUNT_MODULUS,
    UNKNOWN_COMMAND,
    BoxState,
    Command,
    ErrorCode,
    Line,
    RequestError,
    TimerSetting,
    encode_error,
    encode_ok,
    format_rate_uhz,
    parse_request,
    timer_setting,
)

if TYPE_CHECKING:
    from acquisition.triggerbox.emulator import PulseSource

logger = logging.getLogger(__name__)


class FirmwareModel:
    """The box's state (IDLE, ARMED, RUNNING), its rate and its pulse count."""

    def __init__(self, pulses: PulseSource) -> None:
        self._pulses = pulses
        self.state = BoxState.IDLE
        self.timer: TimerSetting | None = None
        # The count shown while not running: 0 after ARM, the final count after STOP.
        self._held_count = 0

    def handle(self, line: Line) -> bytes | None:
        """The reply line (newline included) to one request line; None for nothing to answer."""
        if line.overflowed:
            return _error(UNKNOWN_COMMAND, ErrorCode.OVERFLOW)
        if not line.text:
            return None
        try:
            request = parse_request(line.text)
        except RequestError as error:
            return encode_error(error.command, error.code, error.message)
        command = request.command
        if command is Command.VERSION:
            return encode_ok(command, FIRMWARE_VERSION)
        if command is Command.STATE:
            return encode_ok(command, self.state)
        if command is Command.COUNT:
            return encode_ok(command, str(self.count()))
        if command is Command.RATE:
            if request.rate_uhz is None:
                raise RuntimeError("parse_request gave RATE without a rate")
            return self._set_rate(request.rate_uhz)
        if command is Command.ARM:
            return self._arm()
        if command is Command.START:
            return self._start()
        return self._stop()

    def count(self) -> int:
        if self.state is BoxState.RUNNING:
            return self._pulses.count() % PULSE_COUNT_MODULUS
        return self._held_count

    def shutdown(self) -> None:
        """Power off: a running pulse train stops."""
        if self.state is BoxState.RUNNING:
            self._stop()

    def _set_rate(self, rate_uhz: int) -> bytes:
        if self.state is BoxState.RUNNING:
            return encode_error(Command.RATE, ErrorCode.STATE, MESSAGE_RUNNING)
        try:
            self.timer = timer_setting(rate_uhz)
        except ValueError:
            return _error(Command.RATE, ErrorCode.RANGE)
        return encode_ok(Command.RATE, format_rate_uhz(self.timer.achieved_rate_uhz))

    def _arm(self) -> bytes:
        if self.state is BoxState.RUNNING:
            return encode_error(Command.ARM, ErrorCode.STATE, MESSAGE_RUNNING)
        if self.timer is None:
            return encode_error(Command.ARM, ErrorCode.STATE, MESSAGE_NO_RATE)
        self.state = BoxState.ARMED
        self._held_count = 0
        return encode_ok(Command.ARM)

    def _start(self) -> bytes:
        if self.state is not BoxState.ARMED or self.timer is None:
            return encode_error(Command.START, ErrorCode.STATE, MESSAGE_NOT_ARMED)
        try:
            self._pulses.start(self.timer.achieved_rate_hz)
        except (RuntimeError, ValueError):
            logger.exception("the pulse source refused to start")
            return _error(Command.START, ErrorCode.SOURCE)
        self.state = BoxState.RUNNING
        return encode_ok(Command.START)

    def _stop(self) -> bytes:
        if self.state is BoxState.RUNNING:
            self._pulses.stop()
            self._held_count = self._pulses.count() % PULSE_COUNT_MODULUS
        self.state = BoxState.IDLE
        return encode_ok(Command.STOP, str(self._held_count))


def _error(command: str, code: ErrorCode) -> bytes:
    return encode_error(command, code, MESSAGES[code])
