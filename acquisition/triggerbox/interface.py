"""What every trigger box backend offers: a camera pulse train with a rate, a start and a count.

Pulse k of a run is frame k of every camera: the box counts rising edges from START, pulse 0
included, and the rig takes that count as the number of trigger indices the cameras were sent.

The public methods check the lifecycle and the arguments, then call the backend's ``_do_*`` hook;
``_do_close`` must be safe to call twice (it also runs after a failed ``_do_open``).
Lifecycle: ``open``, then any number of runs of ``set_rate``, ``arm``, ``start``, ``stop``;
``close`` may be called twice; after it, make a new object.
"""

from __future__ import annotations

import abc
import math
from types import TracebackType
from typing import Any

from acquisition.errors import DeviceError


class CommandRejected(DeviceError):
    """The box refused a command: the wrong state (START before ARM), a rate it cannot make.

    ``command`` is the command's name and ``reason`` the box's error code (``"STATE"``,
    ``"RANGE"``, ...).
    """

    def __init__(self, command: str, reason: str, message: str) -> None:
        super().__init__(f"trigger box refused {command}: {reason} ({message})")
        self.command = command
        self.reason = reason


class TriggerBox(abc.ABC):
    """A pulse generator wired to every camera's trigger input and to a DAQ input."""

    # The rates this backend can make; set_rate refuses others before talking to the device.
    min_rate_hz: float = 0.0
    max_rate_hz: float = math.inf

    def __init__(self) -> None:
        self._is_open = False
        self._is_closed = False

    def open(self) -> None:
        """Connect, check the firmware and leave the box idle (a run left going is stopped)."""
        if self._is_closed:
            raise RuntimeError("trigger box already closed; make a new one")
        if self._is_open:
            raise RuntimeError("trigger box already open")
        try:
            self._do_open()
        except BaseException:
            # Release whatever the failed open took (a port, a lock) now, not at collection.
            self._do_close()
            raise
        self._is_open = True

    def set_rate(self, rate_hz: float) -> float:
        """Ask for ``rate_hz`` pulses per second; returns the rate the box will actually make."""
        if not math.isfinite(rate_hz) or not self.min_rate_hz <= rate_hz <= self.max_rate_hz:
            raise ValueError(
                f"trigger rate must be {self.min_rate_hz:g} to {self.max_rate_hz:g} Hz, "
                f"got {rate_hz}"
            )
        self._require_open()
        return self._do_set_rate(rate_hz)

    def arm(self) -> None:
        """Get ready to start; the pulse count restarts at 0. Needs a rate."""
        self._require_open()
        self._do_arm()

    def start(self) -> None:
        """Start the pulse train: pulse 0 goes out now. Needs ``arm`` first."""
        self._require_open()
        self._do_start()

    def stop(self) -> int:
        """Stop the pulse train (a no-op when none runs); returns the pulses sent in the run."""
        self._require_open()
        return self._do_stop()

    def pulse_count(self) -> int:
        """Pulses sent since ``start`` (0 after ``arm``; frozen after ``stop``)."""
        self._require_open()
        return self._do_pulse_count()

    def firmware_version(self) -> str:
        """The box's firmware version, ``major.minor.patch``."""
        self._require_open()
        return self._do_firmware_version()

    def close(self) -> None:
        """Release the device; safe to call twice, and after a failed ``open``."""
        if self._is_closed:
            return
        self._is_closed = True
        self._is_open = False
        self._do_close()

    def info(self) -> dict[str, Any]:
        """Where the box is and what it runs; stored with the trial."""
        return {}

    def _require_open(self) -> None:
        if not self._is_open:
            state = "closed" if self._is_closed else "not open"
            raise RuntimeError(f"trigger box {state}")

    @abc.abstractmethod
    def _do_open(self) -> None: ...

    @abc.abstractmethod
    def _do_set_rate(self, rate_hz: float) -> float: ...

    @abc.abstractmethod
    def _do_arm(self) -> None: ...

    @abc.abstractmethod
    def _do_start(self) -> None: ...

    @abc.abstractmethod
    def _do_stop(self) -> int: ...

    @abc.abstractmethod
    def _do_pulse_count(self) -> int: ...

    @abc.abstractmethod
    def _do_firmware_version(self) -> str: ...

    @abc.abstractmethod
    def _do_close(self) -> None: ...

    def __enter__(self) -> TriggerBox:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
