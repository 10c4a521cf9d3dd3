"""The replay camera: hands out the recorded frames, one per pulse of the twin trigger line.

It stands where the twin camera stands (the DAQ process publishes one message per rising edge of
the trigger line, here the recorded one) and answers each pulse with the frame the recording has
for that trigger index, with its recorded frame id and device time; a pulse the recording has no
frame for (a frame the camera or the pipeline dropped) gives nothing, so the drop is reproduced.
The camera process then treats the frame as it treats any camera's: compressed, sent to the
writer, offered to tracking and to the preview.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from acquisition.cameras.interface import Camera, CameraFrame
from acquisition.settings import CameraConfig, SimConfig
from acquisition.transport import (
    TOPIC_TRIGGER,
    TWIN_LINE_HWM,
    Endpoints,
    make_socket,
    recv_message,
)
from rig.replay import OPEN_TIMEOUT_S
from rig.replay.pacing import CreditSender, camera_progress_message
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, open_trial

# Frames read from the file at once (decompressed together: fewer HDF5 calls per frame).
READ_AHEAD_FRAMES = 16


class ReplayCamera(Camera):
    """One camera of a recorded trial. ``credit_endpoint`` (empty: none) is the replay DAQ's."""

    def __init__(
        self,
        recording: Path | str,
        config: CameraConfig,
        context: zmq.Context,
        trigger_line_endpoint: str,
        credit_endpoint: str = "",
    ) -> None:
        self.name = config.name
        self._recording = Path(recording)
        self._config = config
        self._context = context
        self._trigger_line_endpoint = trigger_line_endpoint
        self._credit_endpoint = credit_endpoint
        self._trial: TrialFile | None = None
        self._socket: zmq.Socket | None = None
        self._credit: CreditSender | None = None
        self._armed = False
        self._trigger_index = np.zeros(0, dtype=np.int64)
        self._frame_id = np.zeros(0, dtype=np.int64)
        self._t_device_ns = np.zeros(0, dtype=np.int64)
        self._next_row = 0
        self._cache_start = 0
        self._cache = np.zeros((0, config.height, config.width), dtype=np.uint8)
        self.pulses_without_frame = 0

    @property
    def frames_recorded(self) -> int:
        return int(self._trigger_index.size)

    @property
    def frames_delivered(self) -> int:
        return self._next_row

    def open(self) -> None:
        if self._trial is not None:
            return
        trial = open_trial(self._recording, timeout_s=OPEN_TIMEOUT_S)
        try:
            if self.name not in trial.camera_names:
                raise ValueError(
                    f"{self._recording}: no camera {self.name!r} to replay "
                    f"(the file has {', '.join(trial.camera_names)})"
                )
            table = trial.frame_table(self.name)
            shape = trial.frames(self.name, 0, 1).shape[1:]
            if tuple(shape) != (self._config.height, self._config.width):
                raise ValueError(
                    f"{self._recording}: camera {self.name!r} recorded {shape[1]}x{shape[0]} "
                    f"frames, the config says {self._config.width}x{self._config.height}"
                )
        except BaseException:
            trial.close()
            raise
        self._trial = trial
        self._trigger_index = table[layout.TRIGGER_INDEX]
        self._frame_id = table[layout.FRAME_ID]
        self._t_device_ns = table[layout.T_DEVICE_NS]
        self._socket = make_socket(
            self._context,
            zmq.SUB,
            self._trigger_line_endpoint,
            bind=False,
            hwm=TWIN_LINE_HWM,
            subscribe=[TOPIC_TRIGGER],
        )
        if self._credit_endpoint:
            self._credit = CreditSender(self._context, self._credit_endpoint)

    def arm(self) -> None:
        if self._socket is None:
            raise RuntimeError(f"camera {self.name}: arm() before open()")
        self._next_row = 0
        self._armed = True
        self._report_progress()

    def read(self, timeout_s: float) -> CameraFrame | None:
        if self._socket is None or not self._armed:
            raise RuntimeError(f"camera {self.name}: read() before arm()")
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            remaining_ms = max(0, (deadline_ns - time.monotonic_ns()) // 1_000_000)
            if not self._socket.poll(remaining_ms, zmq.POLLIN):
                if self._credit is not None:
                    self._credit.retry()
                return None
            pulse = recv_message(self._socket).header.trigger_index
            row = self._next_row
            if row >= self._trigger_index.size or pulse < self._trigger_index[row]:
                # The recording has no frame for this pulse: the drop happens again.
                self.pulses_without_frame += 1
                continue
            if pulse > self._trigger_index[row]:
                raise RuntimeError(
                    f"camera {self.name}: pulse {pulse} arrived while the recorded frame of pulse "
                    f"{int(self._trigger_index[row])} was still due: the replayed trigger line "
                    "lost a pulse"
                )
            image = self._frame(row)
            # The stored chunk goes to the writer as it is: the same bytes, without encoding
            # the frame again (a chunk stored without its filters is encoded afresh).
            filter_mask, chunk = self._require_trial().raw_frame_chunk(self.name, row)
            self._next_row = row + 1
            self._report_progress()
            return CameraFrame(
                image=image,
                frame_id=int(self._frame_id[row]),
                t_device_ns=int(self._t_device_ns[row]),
                t_host_ns=time.monotonic_ns(),
                chunk=chunk if filter_mask == 0 else None,
            )

    def _require_trial(self) -> TrialFile:
        if self._trial is None:
            raise RuntimeError(f"camera {self.name}: not open")
        return self._trial

    def _frame(self, row: int) -> np.ndarray:
        """Recorded frame ``row``: (height, width) uint8, read a few frames ahead."""
        trial = self._require_trial()
        offset = row - self._cache_start
        if not 0 <= offset < self._cache.shape[0]:
            self._cache = trial.frames(self.name, row, row + READ_AHEAD_FRAMES)
            self._cache_start = row
            offset = 0
        return self._cache[offset]

    def _report_progress(self) -> None:
        if self._credit is not None:
            self._credit.send(camera_progress_message(self.name, self._next_row))

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._credit is not None:
            self._credit.close()
            self._credit = None
        if self._trial is not None:
            self._trial.close()
            self._trial = None

    def info(self) -> dict[str, Any]:
        return {
            "model": "jumprig replay camera",
            "serial": f"replay-{self.name}",
            "replay_of": str(self._recording),
            "frame_id_source": "recording",
            "width": self._config.width,
            "height": self._config.height,
            "pixel_format": self._config.pixel_format,
            "frames_recorded": self.frames_recorded,
        }


@dataclass(frozen=True)
class ReplayCameraFactory:
    """The camera factory of a replay (picklable: it travels to each camera process)."""

    recording: str
    credit_endpoint: str = ""

    def __call__(
        self,
        config: CameraConfig,
        sim: SimConfig,
        all_camera_names: Sequence[str],
        context: zmq.Context,
        endpoints: Endpoints,
    ) -> Camera:
        return ReplayCamera(
            self.recording, config, context, endpoints.trigger_line, self.credit_endpoint
        )
