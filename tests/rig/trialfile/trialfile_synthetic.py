"""A small deterministic trial (2 cameras, 3 DAQ channels, 2 pose streams) for trial file tests.

Pulse k is at DAQ sample 7 + 20 k and frame k of every camera belongs to it; DAQ blocks of 200
samples hold 10 pulses each. ``write_block`` appends a block's frames before the DAQ block that
holds their pulses, as happens on the rig, so daq_sample_index must be filled in later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.frame_codec import encode_frame_chunk
from rig.trialfile.writer import CameraLayout, DaqLayout, StreamLayout, TrialFileWriter

CAMERAS = (CameraLayout("cam_left", 48, 64), CameraLayout("cam_right", 40, 56))
DAQ = DaqLayout(
    rate_hz=10_000.0,
    channel_names=("emg_gastrocnemius", "emg_tibialis", "force_takeoff"),
    channel_units=("V", "V", "N"),
    channel_kinds=("emg", "emg", "force"),
    trigger_line_name="camera_trigger",
)
STREAMS = (
    StreamLayout("/pose2d/cam_left", (10, 3), "float32"),
    StreamLayout("/pose3d/points", (10, 3), "float32"),
)
ROOT_ATTRS = {
    "trial_id": "trial_0001",
    "subject": "mouse_07",
    "started_utc": "2025-01-01T12:00:00.000+00:00",
    "software_versions": '{"jumprig": "0.1.0"}',
    "config": "[trial]\noutput_dir = 'trials'\n",
}
BLOCK_SAMPLES = 200
PULSE_PERIOD_SAMPLES = 20
FIRST_PULSE_SAMPLE = 7
PULSE_HIGH_SAMPLES = 5
PULSES_PER_BLOCK = BLOCK_SAMPLES // PULSE_PERIOD_SAMPLES


def create_writer(path: Path, **overrides: Any) -> TrialFileWriter:
    arguments: dict[str, Any] = {
        "root_attrs": ROOT_ATTRS,
        "cameras": CAMERAS,
        "daq": DAQ,
        "streams": STREAMS,
    }
    arguments.update(overrides)
    return TrialFileWriter.create(path, **arguments)


@dataclass
class SyntheticTrial:
    seed: int
    block_count: int

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.sample_count = self.block_count * BLOCK_SAMPLES
        self.pulse_count = self.block_count * PULSES_PER_BLOCK
        self.pulses = FIRST_PULSE_SAMPLE + PULSE_PERIOD_SAMPLES * np.arange(
            self.pulse_count, dtype=np.int64
        )
        self.trigger_line = np.zeros(self.sample_count, dtype=np.uint8)
        for pulse in self.pulses:
            self.trigger_line[pulse : pulse + PULSE_HIGH_SAMPLES] = 1
        self.analog = rng.normal(0.0, 1.0, (self.sample_count, len(DAQ.channel_names))).astype(
            np.float32
        )
        self.frames = {
            camera.name: np.clip(
                np.round(
                    100.0 + rng.normal(0.0, 2.0, (self.pulse_count, camera.height, camera.width))
                ),
                0,
                255,
            ).astype(np.uint8)
            for camera in CAMERAS
        }
        frame_numbers = np.arange(self.pulse_count, dtype=np.int64)
        self.columns = {
            camera.name: {
                "frame_id": frame_numbers + 1000 * (index + 1),
                "trigger_index": frame_numbers.copy(),
                "daq_sample_index": self.pulses.copy(),
                "t_host_ns": 5_000_000_000 + 2_000_000 * frame_numbers + index,
                "t_device_ns": 1_000_000 * frame_numbers,
            }
            for index, camera in enumerate(CAMERAS)
        }
        self.stream_rows = {
            stream.path: rng.normal(0.0, 50.0, (self.pulse_count, *stream.row_shape)).astype(
                np.float32
            )
            for stream in STREAMS
        }

    def write_block(self, writer: TrialFileWriter, block: int) -> None:
        """Frames of the block's pulses first, then the DAQ block, then the pose rows."""
        first_pulse, end_pulse = block * PULSES_PER_BLOCK, (block + 1) * PULSES_PER_BLOCK
        for frame in range(first_pulse, end_pulse):
            for camera in CAMERAS:
                columns = self.columns[camera.name]
                writer.append_frame(
                    camera.name,
                    encode_frame_chunk(self.frames[camera.name][frame]),
                    frame_id=int(columns["frame_id"][frame]),
                    trigger_index=int(columns["trigger_index"][frame]),
                    t_host_ns=int(columns["t_host_ns"][frame]),
                    t_device_ns=int(columns["t_device_ns"][frame]),
                )
        samples = slice(block * BLOCK_SAMPLES, (block + 1) * BLOCK_SAMPLES)
        writer.append_daq(
            self.analog[samples], self.trigger_line[samples], self.pulses[first_pulse:end_pulse]
        )
        for path, rows in self.stream_rows.items():
            writer.append_rows(path, rows[first_pulse:end_pulse])

    def frames_through(self, block_count: int) -> int:
        return block_count * PULSES_PER_BLOCK

    def samples_through(self, block_count: int) -> int:
        return block_count * BLOCK_SAMPLES


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes, to compare data across processes."""
    contiguous = np.ascontiguousarray(array)
    header = f"{contiguous.dtype.str}{contiguous.shape}".encode()
    return hashlib.sha256(header + contiguous.tobytes()).hexdigest()
