"""Configs, the `rig` command and status lines for the fault-injection tests (imported, not
collected)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.trial_configs import config_with

CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")
FAULTS_ANCHOR = "slow_disk_ms_per_frame = 0.0"
# A status line of the rig console, e.g. "running 1.3 s | frames: cam_left 89  cam_right 94 ...
# | DAQ 12600 samples, 248 pulses | writer 80 frames, 12000 samples | still".
STATUS_LINE = re.compile(
    r"^(?P<state>\w+)\s+(?P<elapsed>[\d.]+) s \| frames: (?P<frames>.*?) \| "
    r"DAQ (?P<samples>\d+) samples, (?P<pulses>\d+) pulses"
    r"(?: \| writer (?P<writer_frames>\d+) frames, (?P<writer_samples>\d+) samples)?"
)
CAMERA_FRAMES = re.compile(r"(\w+) (\d+)(?: \((\d+) dropped\))?")


def fault_config(
    folder: Path,
    faults: str = "",
    extra: str = "",
    *,
    frame_size: tuple[int, int] | None = None,
) -> Path:
    """The default rig (tracking off) with ``faults`` lines in its ``[sim.faults]`` table,
    ``extra`` TOML appended, and, with ``frame_size`` (width, height), smaller frames for every
    camera (for tests where the size of a frame does not matter: they start faster)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = config_with(folder, extra)
    text = path.read_text()
    if FAULTS_ANCHOR not in text:
        raise ValueError(f"the default config has no {FAULTS_ANCHOR!r} line any more")
    # A slow disk among the faults replaces the default's line (a key may appear only once).
    keep_anchor = "slow_disk_ms_per_frame" not in faults
    text = text.replace(FAULTS_ANCHOR, f"{FAULTS_ANCHOR if keep_anchor else ''}\n{faults}", 1)
    if frame_size is not None:
        width, height = frame_size
        text = re.sub(
            r'(\[\[cameras\]\]\nname = "\w+"\n)', rf"\1width = {width}\nheight = {height}\n", text
        )
    path.write_text(text)
    return path


def only_trial_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.h5"))
    if len(files) != 1:
        raise AssertionError(f"expected one trial file in {folder}, found {files}")
    return files[0]


def rig_environment(tmp_folder: Path) -> dict[str, str]:
    """The environment of a `rig` process: its private temporary folders (the ZeroMQ ``ipc://``
    sockets of each trial) under ``tmp_folder``, so a killed trial leaves nothing elsewhere."""
    tmp_folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_folder)}


@dataclass(frozen=True)
class Status:
    """One status line of the rig console."""

    state: str
    elapsed_s: float
    frames: dict[str, int]
    daq_samples: int
    pulses: int
    # What the writer held: the fewest frames of any camera, and DAQ samples (0 before it says).
    writer_frames: int
    writer_samples: int

    @classmethod
    def parse(cls, line: str) -> Status | None:
        match = STATUS_LINE.match(line.strip())
        if match is None:
            return None
        frames = {name: int(count) for name, count, _ in CAMERA_FRAMES.findall(match["frames"])}
        return cls(
            state=match["state"],
            elapsed_s=float(match["elapsed"]),
            frames=frames,
            daq_samples=int(match["samples"]),
            pulses=int(match["pulses"]),
            writer_frames=int(match["writer_frames"] or 0),
            writer_samples=int(match["writer_samples"] or 0),
        )


@dataclass
class RigProcess:
    """`rig ARGS` running in its own session (process group), its stdout read line by line."""

    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    # Called with every line as it arrives (in the reading thread).
    on_line: Callable[[str], None] | None = None
    _reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        args: list[str],
        environment: dict[str, str],
        stderr_path: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> RigProcess:
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "rig.cli", *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=environment,
                start_new_session=True,
            )
        started = cls(process, on_line=on_line)
        started._reader = threading.Thread(target=started._read, daemon=True)
        started._reader.start()
        return started

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                if self.on_line is not None:
                    self.on_line(line)

    def wait_until_running(self, timeout_s: float = 180.0) -> Status:
        """The first status line showing every camera with frames (the trial is running)."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                status = Status.parse(self.lines[seen][1])
                seen += 1
                if status is not None and status.frames and min(status.frames.values()) > 0:
                    return status
            if self.process.poll() is not None and seen >= len(self.lines):
                raise AssertionError("rig ended before its cameras had frames:\n" + self.text())
            time.sleep(0.02)
        raise AssertionError(f"no frames within {timeout_s} s:\n" + self.text())

    def last_status(self) -> Status | None:
        for _, line in reversed(self.lines):
            status = Status.parse(line)
            if status is not None:
                return status
        return None

    def kill_group(self) -> None:
        """SIGKILL the whole trial: the `rig` process and every worker it started."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def finish(self, timeout_s: float) -> int:
        code = self.process.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (VmRSS in /proc), or None once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def fault_seed() -> int:
    """The seed of a test's random faults and moments: JUMPRIG_FAULT_SEED to repeat a run, else
    a fresh one (the tests print it)."""
    return int(os.environ.get("JUMPRIG_FAULT_SEED", str(random.SystemRandom().randrange(2**32))))
