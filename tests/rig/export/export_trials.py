"""A small trial file for the export tests, written through the rig's own writer in well under a
second, with what real trials only sometimes have: a frame the camera dropped, frames whose
pulse the DAQ never recorded (their time is estimated), a frame without a pulse, and a 3D pose
past the last recorded pulse. (Imported, not collected.)

Two cameras of 40x56 px; 30 pulses at 500 Hz on a 10 kHz DAQ, pulse p at sample 7 + 20 p; three
analog channels (two EMG in V, one force in N); 2D poses for every frame, 3D poses for every
pulse; four jump events; the twin's calibration for these cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acquisition.frame_codec import encode_frame_chunk
from acquisition.sim.camera_model import twin_cameras
from acquisition.sim.skeleton import BODY_PARTS
from rig.calibration_record import calibration_datasets
from rig.trialfile.writer import CameraLayout, DaqLayout, TrialFileWriter
from tracking.camera_group import CameraGroup
from tracking.jump_detection import JumpEvent, events_table

CAMERAS = (CameraLayout("cam_left", 40, 56), CameraLayout("cam_right", 40, 56))
RATE_HZ = 10_000.0
PULSE_PERIOD_SAMPLES = 20
FIRST_PULSE_SAMPLE = 7
PULSE_COUNT = 30
SAMPLE_COUNT = FIRST_PULSE_SAMPLE + PULSE_COUNT * PULSE_PERIOD_SAMPLES
DAQ = DaqLayout(
    rate_hz=RATE_HZ,
    channel_names=("emg_gastrocnemius", "emg_tibialis_anterior", "force_takeoff_platform"),
    channel_units=("V", "V", "N"),
    channel_kinds=("emg", "emg", "force"),
    trigger_line_name="camera_trigger",
)
TRIAL_ID = "20250101T120000_mouse-07"
SUBJECT = "mouse-07"
STARTED_UTC = "2025-01-01T12:00:00.250000+00:00"
CONFIG_TEXT = """\
[trial]
subject = "mouse-07"

[trigger]
source = "triggerbox"
rate_hz = 500.0

[daq]
backend = "sim"
rate_hz = 10000.0

[[daq.channels]]
name = "emg_gastrocnemius"
kind = "emg"
physical = "Dev1/ai0"

[[daq.channels]]
name = "emg_tibialis_anterior"
kind = "emg"
physical = "Dev1/ai1"

[[daq.channels]]
name = "force_takeoff_platform"
kind = "force"
physical = "Dev1/ai2"

[[cameras]]
name = "cam_left"
backend = "sim"

[[cameras]]
name = "cam_right"
backend = "sim"
"""
MODEL = "/models/twin"
# cam_right dropped pulse 5's frame; cam_left's last two frames belong to pulses 30 and 31, which
# the DAQ never recorded; cam_left also wrote one frame with no pulse at all (trigger index -1).
CAM_RIGHT_DROPPED = 5
UNRECORDED_PULSES = (30, 31)
EVENTS = (
    JumpEvent("crouch_onset", 8, 167, 0.016, {"body_weight_n": 0.245}),
    JumpEvent("takeoff", 15, 307, 0.030, {"peak_push_off_force_n": 0.78, "body_weight_n": 0.245}),
    JumpEvent("landing", 22, 447, 0.044, {"flight_time_s": 0.014}),
    JumpEvent(
        "jump",
        15,
        307,
        0.030,
        {
            "takeoff_s": 0.030,
            "landing_s": 0.044,
            "crouch_onset_s": 0.016,
            "flight_time_s": 0.014,
            "jump_height_mm": 31.0,
            "emg_onset_from_takeoff_s/emg_gastrocnemius": -0.004,
        },
    ),
)


@dataclass
class SmallTrial:
    """What was written, to compare exports against."""

    path: Path
    pulses: np.ndarray  # (P,) int64 sample of each recorded pulse
    analog: np.ndarray  # (S, 3) float32
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # (N, 40, 56) uint8
    trigger_index: dict[str, np.ndarray] = field(default_factory=dict)  # (N,) int64
    pose2d: dict[str, np.ndarray] = field(default_factory=dict)  # (N, K, 3) float32
    pose3d_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 10, 3), np.float32))
    pose3d_trigger_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    calibration: CameraGroup | None = None


def write_small_trial(path: Path, *, seed: int = 7, tracked: bool = True) -> SmallTrial:
    """Write the small trial to ``path`` (which must not exist); ``tracked=False`` leaves out
    poses, events and calibration, as in a trial recorded with tracking off."""
    rng = np.random.default_rng(seed)
    pulses = FIRST_PULSE_SAMPLE + PULSE_PERIOD_SAMPLES * np.arange(PULSE_COUNT, dtype=np.int64)
    trigger_line = np.zeros(SAMPLE_COUNT, dtype=np.uint8)
    for pulse in pulses:
        trigger_line[pulse : pulse + 5] = 1
    analog = rng.normal(0.0, 0.1, (SAMPLE_COUNT, 3)).astype(np.float32)
    trial = SmallTrial(path=path, pulses=pulses, analog=analog)
    trial.trigger_index = {
        "cam_left": np.array([*range(PULSE_COUNT), -1, *UNRECORDED_PULSES], dtype=np.int64),
        "cam_right": np.array(
            [p for p in range(PULSE_COUNT) if p != CAM_RIGHT_DROPPED], dtype=np.int64
        ),
    }
    for camera in CAMERAS:
        count = trial.trigger_index[camera.name].size
        trial.frames[camera.name] = rng.integers(
            0, 256, (count, camera.height, camera.width), dtype=np.uint8
        )
    root_attrs = {
        "trial_id": TRIAL_ID,
        "subject": SUBJECT,
        "started_utc": STARTED_UTC,
        "config": CONFIG_TEXT,
        "version_jumprig": "0.1.0",
        "version_numpy": np.__version__,
        "host": "test-host",
    }
    writer = TrialFileWriter.create(path, root_attrs=root_attrs, cameras=CAMERAS, daq=DAQ)
    try:
        for camera in CAMERAS:
            for row, trigger_index in enumerate(trial.trigger_index[camera.name]):
                writer.append_frame(
                    camera.name,
                    encode_frame_chunk(trial.frames[camera.name][row]),
                    frame_id=row,
                    trigger_index=int(trigger_index),
                    t_host_ns=1_000_000 * row,
                    t_device_ns=-1,
                )
        writer.append_daq(analog, trigger_line, pulses)
        datasets: dict[str, np.ndarray] = {}
        group_attrs: dict[str, dict[str, object]] = {}
        if tracked:
            datasets, group_attrs = _tracking_datasets(trial, rng)
        writer.finalize(
            closed_cleanly=True,
            end_reason="completed",
            group_attrs=group_attrs,
            datasets=datasets,
        )
    finally:
        writer.close()
    return trial


def _tracking_datasets(
    trial: SmallTrial, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, object]]]:
    parts = list(BODY_PARTS)
    models = twin_cameras([camera.name for camera in CAMERAS], 56, 40)
    document: dict[str, object] = {
        f"cam_{index}": model.to_anipose() for index, model in enumerate(models)
    }
    document["metadata"] = {"source": "digital twin (exact)", "units": "mm"}
    group = CameraGroup.from_anipose(document)
    trial.calibration = group
    datasets, group_attrs = calibration_datasets(group, "digital twin (exact)")
    for camera in CAMERAS:
        count = trial.trigger_index[camera.name].size
        points = np.empty((count, len(parts), 3), dtype=np.float32)
        points[:, :, 0] = rng.uniform(0, 56, (count, len(parts)))
        points[:, :, 1] = rng.uniform(0, 40, (count, len(parts)))
        points[:, :, 2] = rng.uniform(0, 1, (count, len(parts)))
        points[3] = np.nan  # a frame not inferred
        trial.pose2d[camera.name] = points
        datasets[f"/pose2d/{camera.name}"] = points
        group_attrs[f"/pose2d/{camera.name}"] = {
            "body_parts": parts,
            "columns": ["x_px", "y_px", "likelihood"],
            "model": MODEL,
        }
    # One 3D pose per recorded pulse and one for pulse 31, which was never recorded.
    trial.pose3d_trigger_index = np.array([*range(PULSE_COUNT), 31], dtype=np.int64)
    rows = trial.pose3d_trigger_index.size
    trial.pose3d_points = rng.normal(0.0, 40.0, (rows, len(parts), 3)).astype(np.float32)
    datasets["/pose3d/points"] = trial.pose3d_points
    datasets["/pose3d/trigger_index"] = trial.pose3d_trigger_index
    datasets["/pose3d/reprojection_error"] = rng.uniform(0, 2, (rows, len(parts))).astype(
        np.float32
    )
    datasets["/pose3d/cameras_used"] = rng.uniform(0, 1, (rows, len(parts), 2)) > 0.3
    group_attrs["/pose3d/points"] = {"body_parts": parts, "units": "mm"}
    group_attrs["/pose3d/reprojection_error"] = {"units": "px"}
    group_attrs["/pose3d/cameras_used"] = {"cameras": [camera.name for camera in CAMERAS]}
    datasets["/events"] = events_table(EVENTS)
    group_attrs["/events"] = {"source": "offline, complete 3D poses"}
    return datasets, group_attrs
