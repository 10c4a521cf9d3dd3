"""The trigger box firmware emulated on a pseudo-terminal, for the digital twin and for tests.

The client cannot tell it from the box: it opens :attr:`TriggerBoxEmulator.port_path` with
pyserial like a USB serial port. The protocol rules live in :class:`FirmwareModel`; this module
adds the pseudo-terminal, a background thread, the pulse sources and the fault knobs.

Run ``python -m acquisition.triggerbox.emulator`` to serve one on the host clock until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import select
import signal
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from acquisition.triggerbox.firmware_model import FirmwareModel
from acquisition.triggerbox.protocol import MAX_REQUEST_BYTES, LineAssembler, encode_banner

logger = logging.getLogger(__name__)

_READ_BYTES = 4096


class PulseSource(Protocol):
    """What generates the pulses. In the twin it is the simulated DAQ's pulse generator, so each
    pulse lands on a DAQ sample; standalone it is :class:`HostClockPulseSource`.

    ``start`` begins a train with pulse 0 and may raise RuntimeError or ValueError to refuse;
    ``count`` is the pulses sent since ``start`` (final after ``stop``). Called from the
    emulator's thread.
    """

    def start(self, rate_hz: float) -> None: ...

    def stop(self) -> None: ...

    def count(self) -> int: ...


class HostClockPulseSource:
    """Pulses counted off the host's monotonic clock: pulse k at ``t_start_ns + k * 1e9 / rate_hz``.

    No line is driven; it only answers how many pulses a box would have sent by now.
    """

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._rate_hz = 0.0
        self._start_ns: int | None = None
        self._stop_ns: int | None = None

    def start(self, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise ValueError(f"pulse rate must be positive, got {rate_hz}")
        with self._lock:
            self._rate_hz = rate_hz
            self._start_ns = self._clock_ns()
            self._stop_ns = None

    def stop(self) -> None:
        with self._lock:
            if self._start_ns is not None and self._stop_ns is None:
                self._stop_ns = self._clock_ns()

    def count(self) -> int:
        with self._lock:
            if self._start_ns is None:
                return 0
            end_ns = self._clock_ns() if self._stop_ns is None else self._stop_ns
            # Pulse 0 goes out at start, so a started train has sent at least one.
            return int((end_ns - self._start_ns) * self._rate_hz // 1e9) + 1


@dataclass(frozen=True)
class ReplyFaults:
    """How the emulated box misbehaves when it answers (replace the whole object to change it).

    ``garbage_before_reply`` is written before every reply, as it is (add a ``\\n`` to make it a
    line of its own); ``reply_pieces`` > 1 splits each reply into that many writes with
    ``pause_between_pieces_s`` between them; ``silent`` swallows replies, as a hung box would.
    """

    garbage_before_reply: bytes = b""
    reply_pieces: int = 1
    pause_between_pieces_s: float = 0.0
    silent: bool = False

    def __post_init__(self) -> None:
        if self.reply_pieces < 1:
            raise ValueError(f"reply_pieces must be at least 1, got {self.reply_pieces}")
        if self.pause_between_pieces_s < 0:
            raise ValueError(
                f"pause_between_pieces_s must not be negative, got {self.pause_between_pieces_s}"
            )


class TriggerBoxEmulator:
    """The firmware's behaviour served on a pseudo-terminal from a background thread.

    ``start`` opens the pseudo-terminal and serves; ``close`` stops the pulses and the thread
    and may be called twice. ``unplug`` is the cable pulled: the pseudo-terminal goes away, the
    client's next read or write fails, and (the box being USB-powered) the pulses stop.
    """

    def __init__(
        self, pulses: PulseSource | None = None, faults: ReplyFaults | None = None
    ) -> None:
        self._model = FirmwareModel(pulses if pulses is not None else HostClockPulseSource())
        self.faults = faults if faults is not None else ReplyFaults()
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._port_path: str | None = None
        self._wake_read_fd: int | None = None
        self._wake_write_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._unplug_requested = threading.Event()
        self._closed = False
        self._lifecycle_lock = threading.Lock()

    @property
    def port_path(self) -> str:
        """The pseudo-terminal's path (``/dev/pts/N``) to open with the serial client."""
        if self._port_path is None:
            raise RuntimeError("emulator not started")
        return self._port_path

    def start(self) -> None:
        with self._lifecycle_lock:
            if self._closed:
                raise RuntimeError("emulator closed; make a new one")
            if self._thread is not None:
                raise RuntimeError("emulator already started")
            self._master_fd, self._slave_fd = os.openpty()
            # Raw mode: without it the terminal would echo every reply back to the box as a
            # request, and turn "\n" into "\r\n".
            tty.setraw(self._slave_fd)
            # Holding the slave open keeps the master readable while no client is connected.
            self._port_path = os.ttyname(self._slave_fd)
            self._wake_read_fd, self._wake_write_fd = os.pipe()
            self._write(encode_banner())
            self._thread = threading.Thread(
                target=self._serve, name="triggerbox-emulator", daemon=True
            )
            self._thread.start()

    def unplug(self) -> None:
        """Pull the cable: close the pseudo-terminal; the client's next I/O fails."""
        self._unplug_requested.set()
        self._wake_and_join()

    def close(self) -> None:
        with self._lifecycle_lock:
            if self._closed:
                return
            self._closed = True
        self._stop_requested.set()
        self._wake_and_join()
        self._model.shutdown()
        for fd_name in ("_master_fd", "_slave_fd", "_wake_read_fd", "_wake_write_fd"):
            self._close_fd(fd_name)

    def _wake_and_join(self) -> None:
        if self._wake_write_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_write_fd, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _close_fd(self, fd_name: str) -> None:
        fd = getattr(self, fd_name)
        setattr(self, fd_name, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _serve(self) -> None:
        if self._master_fd is None or self._wake_read_fd is None:
            raise RuntimeError("emulator thread started before the pseudo-terminal")
        master_fd, wake_fd = self._master_fd, self._wake_read_fd
        lines = LineAssembler(MAX_REQUEST_BYTES)
        try:
            while True:
                readable, _, _ = select.select([master_fd, wake_fd], [], [])
                if self._stop_requested.is_set() or self._unplug_requested.is_set():
                    break
                if master_fd not in readable:
                    continue
                try:
                    data = os.read(master_fd, _READ_BYTES)
                except OSError as error:
                    # EIO: no client holds the terminal open; cannot happen while we hold it.
                    if error.errno != errno.EIO:
                        raise
                    time.sleep(0.01)
                    continue
                for line in lines.feed(data):
                    reply = self._model.handle(line)
                    if reply is not None:
                        self._send_reply(reply)
        except OSError:
            logger.exception("trigger box emulator stopped on an I/O error")
        finally:
            if self._unplug_requested.is_set():
                self._model.shutdown()
                # Closing both ends removes the /dev/pts node, like a USB port that disappears.
                self._close_fd("_master_fd")
                self._close_fd("_slave_fd")

    def _send_reply(self, reply: bytes) -> None:
        faults = self.faults
        if faults.silent:
            return
        if faults.garbage_before_reply:
            self._write(faults.garbage_before_reply)
        piece_bytes = -(-len(reply) // faults.reply_pieces)
        for offset in range(0, len(reply), piece_bytes):
            if offset and faults.pause_between_pieces_s:
                time.sleep(faults.pause_between_pieces_s)
            self._write(reply[offset : offset + piece_bytes])

    def _write(self, data: bytes) -> None:
        if self._master_fd is None:
            return
        view = memoryview(data)
        while view:
            written = os.write(self._master_fd, view)
            view = view[written:]

    def __enter__(self) -> TriggerBoxEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """Serve an emulated trigger box on the host clock; print its port; stop on Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m acquisition.triggerbox.emulator",
        description="Emulate the jumprig trigger box on a pseudo-terminal until Ctrl-C.",
    )
    parser.add_argument(
        "--garbage",
        default="",
        help="text written before every reply (to try a client's recovery from noise)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    faults = ReplyFaults(garbage_before_reply=args.garbage.encode("ascii"))
    stop = threading.Event()
    # Ctrl-C (and SIGTERM) end the wait; a handler rather than KeyboardInterrupt, which could
    # land anywhere in the shutdown below.
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with TriggerBoxEmulator(HostClockPulseSource(), faults) as emulator:
        print(emulator.port_path, flush=True)
        while not stop.wait(0.2):
            pass


if __name__ == "__main__":
    main()
