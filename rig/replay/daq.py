"""The replay DAQ: the recorded samples and trigger line, block by block, at the chosen pace.

The DAQ process finds the trigger pulses in each block's trigger line exactly as it does live, so
replaying the recorded line reproduces every pulse at its recorded sample index, and the twin
trigger line built from it drives the replay cameras. Pulses are in the recording: starting and
stopping the pulse train does nothing here.

Every recorded sample not yet replayed counts as due (:meth:`ReplayDaq.samples_due`), so when the
supervisor stops the DAQ the DAQ process drains the rest of the recording: the replay always
reaches the recording's end, however its running time compares with the supervisor's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from acquisition.daq.interface import Daq, DaqBlock
from acquisition.settings import DaqConfig, SimConfig, TriggerConfig
from rig.replay import OPEN_TIMEOUT_S
from rig.replay.pacing import CAMERA_STALL_S, PULSE_WINDOW, decode_credit_message
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, open_trial

log = logging.getLogger("daq")

# Samples read from the file at once (the DAQ datasets are chunked by ~0.1 s).
READ_AHEAD_SAMPLES = 65_536


class ReplayDaq(Daq):
    """The DAQ of a recorded trial.

    ``speed_factor``: blocks come at the recorded pace times this (``math.inf``: no pacing).
    ``credit_endpoint`` (empty: no credit) is bound here: the replay cameras report their
    progress to it and the replay command the writer's backlog (:mod:`rig.replay.pacing`).
    """

    def __init__(
        self,
        recording: Path | str,
        config: DaqConfig,
        speed_factor: float = math.inf,
        credit_endpoint: str = "",
        context: zmq.Context | None = None,
    ) -> None:
        if not speed_factor > 0:
            raise ValueError(f"speed_factor must be positive, got {speed_factor!r}")
        self._recording = Path(recording)
        self._config = config
        self._speed_factor = float(speed_factor)
        self._credit_endpoint = credit_endpoint
        self._own_context = context is None
        self._context = context
        self._credit: zmq.Socket | None = None
        self._trial: TrialFile | None = None
        self._samples = 0
        self._pulse_sample_index = np.zeros(0, dtype=np.int64)
        # Per camera: the recorded trigger index of every frame, and frames delivered so far.
        self._camera_trigger_index: dict[str, np.ndarray] = {}
        self._camera_frames: dict[str, int] = {}
        self._camera_progress_s: dict[str, float] = {}
        self._lagging_since_s: dict[str, float] = {}
        self._writer_backlog = False
        self._start_ns: int | None = None
        self._next_sample = 0
        self._cache_start = 0
        self._cache_analog = np.zeros((0, len(config.channels)), dtype=np.float32)
        self._cache_line = np.zeros(0, dtype=np.uint8)
        self.credit_waits = 0

    @property
    def samples_recorded(self) -> int:
        return self._samples

    def open(self) -> None:
        if self._trial is not None:
            return
        trial = open_trial(self._recording, timeout_s=OPEN_TIMEOUT_S)
        try:
            self._check_matches_config(trial)
            self._samples = trial.committed_rows(layout.DAQ_ANALOG) or 0
            self._pulse_sample_index = trial.trigger_sample_index()
            for camera in trial.camera_names:
                self._camera_trigger_index[camera] = trial.frame_table(camera)[layout.TRIGGER_INDEX]
                self._camera_frames[camera] = 0
        except BaseException:
            trial.close()
            raise
        self._trial = trial
        if self._credit_endpoint:
            if self._context is None:
                self._context = zmq.Context()
            self._credit = self._context.socket(zmq.PULL)
            self._credit.setsockopt(zmq.LINGER, 0)
            self._credit.bind(self._credit_endpoint)

    def _check_matches_config(self, trial: TrialFile) -> None:
        names = tuple(channel.name for channel in self._config.channels)
        if trial.daq_channel_names != names:
            raise ValueError(
                f"{self._recording}: recorded channels {list(trial.daq_channel_names)}, "
                f"the config has {list(names)}"
            )
        if trial.daq_rate_hz != self._config.rate_hz:
            raise ValueError(
                f"{self._recording}: recorded at {trial.daq_rate_hz:g} Hz, "
                f"the config says {self._config.rate_hz:g} Hz"
            )

    def start(self) -> None:
        if self._trial is None:
            raise RuntimeError("replay DAQ: start() before open()")
        if self._start_ns is not None:
            raise RuntimeError("replay DAQ already started")
        self._start_ns = time.monotonic_ns()

    def read_block(self, timeout_s: float) -> DaqBlock | None:
        if self._start_ns is None:
            raise RuntimeError("read_block() before start()")
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            self._take_credit_messages(0)
            if self._next_sample >= self._samples:
                _sleep_until(deadline_ns)
                return None
            first = self._next_sample
            stop = self._block_stop(first)
            ready_ns = self._ready_ns(stop)
            now_ns = time.monotonic_ns()
            if not self._has_credit(first, stop):
                self.credit_waits += 1
                if now_ns >= deadline_ns:
                    return None
                self._take_credit_messages((deadline_ns - now_ns) / 1e9)
                continue
            if ready_ns > deadline_ns:
                _sleep_until(deadline_ns)
                return None
            _sleep_until(ready_ns)
            analog, line = self._samples_between(first, stop)
            self._next_sample = stop
            return DaqBlock(
                first_sample_index=first,
                analog=analog,
                trigger_line=line,
                t_host_ns=time.monotonic_ns(),
            )

    def _block_stop(self, first: int) -> int:
        """End of the block starting at ``first``; a short tail joins the block before it, so the
        DAQ process, which stops once fewer than a block's samples are due, takes every sample."""
        block = self._config.block_samples
        stop = min(first + block, self._samples)
        if self._samples - stop < block:
            stop = self._samples
        return stop

    def _ready_ns(self, stop: int) -> int:
        """When the block ending at sample ``stop`` is due at the chosen pace."""
        if self._start_ns is None or math.isinf(self._speed_factor):
            return 0
        elapsed_s = stop / self._config.rate_hz / self._speed_factor
        return self._start_ns + round(elapsed_s * 1e9)

    def _has_credit(self, first: int, stop: int) -> bool:
        """Whether the block's pulses are within PULSE_WINDOW of every camera that is keeping up,
        and the writer is not behind."""
        if self._credit is None:
            return True
        if self._writer_backlog:
            return False
        pulses_before_stop = int(np.searchsorted(self._pulse_sample_index, stop))
        if pulses_before_stop == int(np.searchsorted(self._pulse_sample_index, first)):
            return True  # no pulse in this block: nothing for a camera to fall behind on
        now_s = time.monotonic()
        lagging = []
        for camera, trigger_index in self._camera_trigger_index.items():
            delivered = self._camera_frames[camera]
            if delivered >= trigger_index.size:
                continue
            # The camera has taken every pulse before the one its next recorded frame needs.
            waiting_for = int(trigger_index[delivered])
            if pulses_before_stop - waiting_for > PULSE_WINDOW:
                lagging.append(camera)
        for camera in set(self._lagging_since_s) - set(lagging):
            del self._lagging_since_s[camera]
        for camera in list(lagging):
            # Stalled: lagging, and no progress since it began to lag (or since its last frame).
            since_s = self._lagging_since_s.setdefault(camera, now_s)
            stalled_s = now_s - max(since_s, self._camera_progress_s.get(camera, since_s))
            if stalled_s > CAMERA_STALL_S:
                log.warning(
                    "replay camera %s made no progress for %.0f s; not waiting for it",
                    camera,
                    stalled_s,
                )
                delivered = self._camera_frames[camera]
                self._camera_trigger_index[camera] = self._camera_trigger_index[camera][:delivered]
                lagging.remove(camera)
        return not lagging

    def _take_credit_messages(self, timeout_s: float) -> None:
        """Apply every credit message waiting (after up to ``timeout_s`` for the first)."""
        if self._credit is None:
            if timeout_s > 0:
                time.sleep(timeout_s)
            return
        if timeout_s > 0 and not self._credit.poll(max(1, int(timeout_s * 1000)), zmq.POLLIN):
            return
        while True:
            try:
                raw = self._credit.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            message = decode_credit_message(raw)
            if "camera" in message:
                camera = str(message["camera"])
                frames = int(message["frames"])
                if camera in self._camera_frames and frames > self._camera_frames[camera]:
                    self._camera_frames[camera] = frames
                    self._camera_progress_s[camera] = time.monotonic()
            if "writer_backlog" in message:
                self._writer_backlog = bool(message["writer_backlog"])

    def _samples_between(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(analog (n, C) float32, trigger_line (n,) uint8) of samples [first, stop)."""
        if self._trial is None:
            raise RuntimeError("replay DAQ: not open")
        cache_stop = self._cache_start + self._cache_line.size
        if first < self._cache_start or stop > cache_stop:
            read_stop = max(stop, min(self._samples, first + READ_AHEAD_SAMPLES))
            self._cache_analog = self._trial.daq_analog(first, read_stop)
            self._cache_line = self._trial.daq_trigger_line(first, read_stop)
            self._cache_start = first
        begin, end = first - self._cache_start, stop - self._cache_start
        return (
            np.ascontiguousarray(self._cache_analog[begin:end]),
            np.ascontiguousarray(self._cache_line[begin:end]),
        )

    def samples_due(self) -> int:
        """Recorded samples not replayed yet: all of them are "produced" already."""
        return self._samples - self._next_sample if self._start_ns is not None else 0

    def start_pulses(self, rate_hz: float) -> None:
        """The pulses are in the recorded trigger line; nothing to start."""

    def stop_pulses(self) -> None:
        """The recorded trigger line plays to its end."""

    def stop(self) -> None:
        """Nothing runs on a clock here: the replay simply ends where it is."""

    def close(self) -> None:
        if self._credit is not None:
            self._credit.close()
            self._credit = None
        if self._own_context and self._context is not None:
            self._context.term()
            self._context = None
        if self._trial is not None:
            self._trial.close()
            self._trial = None

    def info(self) -> dict[str, Any]:
        return {
            "model": "jumprig replay DAQ",
            "replay_of": str(self._recording),
            "rate_hz": self._config.rate_hz,
            "channels": [channel.name for channel in self._config.channels],
            "samples_recorded": self._samples,
            "speed_factor": "max" if math.isinf(self._speed_factor) else self._speed_factor,
        }


def _sleep_until(deadline_ns: int) -> None:
    wait_ns = deadline_ns - time.monotonic_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9)


@dataclass(frozen=True)
class ReplayDaqFactory:
    """The DAQ factory of a replay (picklable: it travels to the DAQ process)."""

    recording: str
    speed_factor: float = math.inf
    credit_endpoint: str = ""

    def __call__(self, config: DaqConfig, trigger: TriggerConfig, sim: SimConfig) -> Daq:
        return ReplayDaq(self.recording, config, self.speed_factor, self.credit_endpoint)
