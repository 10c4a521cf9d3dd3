"""Errors every device backend raises: a missing driver is not a failing device."""


class HardwareUnavailable(RuntimeError):
    """A driver, vendor library or device that this backend needs is not present on this machine."""


class DeviceError(RuntimeError):
    """A device that was present failed during use (disconnect, buffer overrun, timeout)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        # The vendor's error code where there is one (NI-DAQmx: -200279 is a buffer overrun).
        self.code = code
