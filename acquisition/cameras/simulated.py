"""The digital twin's camera: renders the jumping mouse at every pulse of the twin's trigger line.

The twin's trigger line is a ZeroMQ PUB socket of the DAQ process: one message per rising edge it
recorded, carrying the pulse number and its DAQ sample index. This camera stands where a real
camera's trigger input would be: each pulse exposes one frame, the frame counter counts every
pulse (so a dropped frame leaves a gap in ``frame_id``), and the camera's own clock may drift
against the DAQ's by ``drift_ppm``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

from acquisition.cameras.interface import Camera, CameraFrame
from acquisition.settings import CameraConfig, SimConfig
from acquisition.sim.camera_model import PinholeCamera, twin_cameras
from acquisition.sim.faults import (
    camera_drops_pulse,
    camera_fetch_fault,
    camera_swaps_limbs,
    swap_left_right_limbs,
)
from acquisition.sim.render import FrameRenderer
from acquisition.sim.skeleton import BODY_PARTS, JumpModel
from acquisition.transport import TOPIC_TRIGGER, TWIN_LINE_HWM, make_socket, recv_message

# The twin camera's clock starts at an arbitrary offset, as a real camera's does.
DEVICE_CLOCK_OFFSET_NS = 7_000_000_000


class SimulatedCamera(Camera):
    def __init__(
        self,
        config: CameraConfig,
        sim: SimConfig,
        all_camera_names: Sequence[str],
        context: zmq.Context,
        trigger_line_endpoint: str,
    ) -> None:
        self.name = config.name
        self._config = config
        self._sim = sim
        self._faults = sim.camera_faults(config.name)
        self._model: PinholeCamera = twin_cameras(
            all_camera_names, config.width, config.height, gap_mm=sim.jump.gap_mm
        )[list(all_camera_names).index(config.name)]
        self._jump = JumpModel(sim.jump)
        self._renderer = FrameRenderer(
            self._model,
            noise_dn=sim.noise_dn,
            blur_px=sim.blur_px,
            brightness=sim.brightness,
            seed=sim.seed + list(all_camera_names).index(config.name),
            gap_mm=sim.jump.gap_mm,
        )
        self._context = context
        self._endpoint = trigger_line_endpoint
        self._socket: zmq.Socket | None = None
        self._armed = False
        self.frames_lost_to_faults: list[int] = []
        # Trigger indices whose fetch timed out or returned an unreadable buffer (fault knobs).
        self.failed_fetches: list[int] = []

    @property
    def model(self) -> PinholeCamera:
        return self._model

    def open(self) -> None:
        if self._socket is None:
            self._socket = make_socket(
                self._context,
                zmq.SUB,
                self._endpoint,
                bind=False,
                hwm=TWIN_LINE_HWM,
                subscribe=[TOPIC_TRIGGER],
            )

    def arm(self) -> None:
        if self._socket is None:
            raise RuntimeError(f"camera {self.name}: arm() before open()")
        self._armed = True

    def read(self, timeout_s: float) -> CameraFrame | None:
        if self._socket is None or not self._armed:
            raise RuntimeError(f"camera {self.name}: read() before arm()")
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            remaining_ms = max(0, (deadline_ns - time.monotonic_ns()) // 1_000_000)
            if not self._socket.poll(remaining_ms, zmq.POLLIN):
                return None
            message = recv_message(self._socket)
            pulse = message.header
            trigger_index = pulse.trigger_index
            if camera_drops_pulse(self._faults, self._sim.seed, self.name, trigger_index):
                self.frames_lost_to_faults.append(trigger_index)
                continue
            fetch_fault = camera_fetch_fault(self._faults, self._sim.seed, self.name, trigger_index)
            if fetch_fault is not None:
                self.failed_fetches.append(trigger_index)
                if fetch_fault == "timeout":
                    # No frame comes: the fetch waits out its timeout, as a real one does.
                    time.sleep(max(0, deadline_ns - time.monotonic_ns()) * 1e-9)
                return None
            t_twin_ns = int(pulse.extra["t_twin_ns"])
            # The twin DAQ sends the body's pose with each pulse (computed once for all cameras).
            if pulse.shape == (len(BODY_PARTS), 3):
                points_mm = message.array()
            else:
                points_mm = self._jump.points_mm(np.array([t_twin_ns * 1e-9]))[0]
            if camera_swaps_limbs(self._faults, self._sim.seed, self.name, trigger_index):
                points_mm = swap_left_right_limbs(points_mm, BODY_PARTS)
            image = self._renderer.render(points_mm, trigger_index)
            drift = 1.0 + self._faults.drift_ppm * 1e-6
            return CameraFrame(
                image=image,
                frame_id=trigger_index,
                t_device_ns=DEVICE_CLOCK_OFFSET_NS + round(t_twin_ns * drift),
                t_host_ns=time.monotonic_ns(),
            )

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def info(self) -> dict[str, Any]:
        return {
            "model": "jumprig twin camera",
            "serial": f"twin-{self.name}",
            "frame_id_source": "hardware",
            "width": self._config.width,
            "height": self._config.height,
            "pixel_format": self._config.pixel_format,
            "drift_ppm": self._faults.drift_ppm,
        }
