"""The trial file a replay reads: checked completely before anything starts.

A replay that found a damaged chunk halfway through would leave a half-made output, so
:func:`check_recording` reads every committed row the replay will use (frames of every camera,
the per-frame columns, the DAQ samples, the trigger line and the pulses) and checks that they fit
together. Every problem is a :class:`~rig.trialfile.reader.TrialFileError` naming the file and
the dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acquisition.daq.interface import rising_edges
from rig.replay import OPEN_TIMEOUT_S
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, TrialFileError, open_trial

CONFIG_ATTRIBUTE = f"/ (attribute {layout.ATTR_CONFIG})"
_HASH_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RecordedCamera:
    name: str
    height: int
    width: int
    frames: int  # committed frames
    pulses_without_frame: int


@dataclass(frozen=True)
class RecordedTrial:
    """What a replay needs to know about the file before it starts."""

    path: Path
    trial_id: str
    subject: str
    started_utc: str
    closed_cleanly: bool
    config_toml: str
    daq_rate_hz: float
    daq_channel_names: tuple[str, ...]
    samples: int  # committed DAQ samples
    pulses: int  # committed trigger pulses
    pulse_span_samples: int  # from the first pulse to the last
    cameras: tuple[RecordedCamera, ...]
    has_twin_truth: bool

    @property
    def duration_s(self) -> float:
        """Recorded length: committed samples over the sample rate."""
        return self.samples / self.daq_rate_hz

    @property
    def pulse_span_s(self) -> float:
        """Recorded seconds from the first trigger pulse to the last."""
        return self.pulse_span_samples / self.daq_rate_hz

    @property
    def frames(self) -> int:
        return sum(camera.frames for camera in self.cameras)


def check_recording(path: Path | str, timeout_s: float = OPEN_TIMEOUT_S) -> RecordedTrial:
    """Open ``path`` and read everything a replay uses; raises TrialFileError on any problem."""
    path = Path(path)
    with open_trial(path, timeout_s=timeout_s) as trial:
        config_toml = trial.attrs.get(layout.ATTR_CONFIG)
        if not isinstance(config_toml, str) or not config_toml.strip():
            raise TrialFileError(
                path, CONFIG_ATTRIBUTE, "missing: the file does not keep the rig config it used"
            )
        samples, pulse_sample_index = _check_daq(trial)
        pulses = int(pulse_sample_index.size)
        cameras = tuple(_check_camera(trial, name, pulses) for name in trial.camera_names)
        return RecordedTrial(
            path=path,
            trial_id=str(trial.attrs.get(layout.ATTR_TRIAL_ID, path.stem)),
            subject=str(trial.attrs.get(layout.ATTR_SUBJECT, "unknown")),
            started_utc=str(trial.attrs.get(layout.ATTR_STARTED_UTC, "")),
            closed_cleanly=trial.closed_cleanly,
            config_toml=config_toml,
            daq_rate_hz=trial.daq_rate_hz,
            daq_channel_names=trial.daq_channel_names,
            samples=samples,
            pulses=pulses,
            pulse_span_samples=int(pulse_sample_index[-1] - pulse_sample_index[0]) if pulses else 0,
            cameras=cameras,
            has_twin_truth=any(path.startswith("/sim/") for path in trial.dataset_paths()),
        )


def _check_daq(trial: TrialFile) -> tuple[int, np.ndarray]:
    """(committed samples, (P,) sample index of every pulse), the DAQ datasets read and
    cross-checked."""
    for path in (layout.DAQ_ANALOG, layout.DAQ_TRIGGER_LINE, layout.DAQ_TRIGGER_SAMPLE_INDEX):
        trial.check_readable(path)
    if not trial.daq_rate_hz > 0:
        raise TrialFileError(
            trial.path, layout.DAQ_ANALOG, f"attribute {layout.ATTR_RATE_HZ!r} missing or not > 0"
        )
    samples = trial.committed_rows(layout.DAQ_ANALOG) or 0
    line_samples = trial.committed_rows(layout.DAQ_TRIGGER_LINE) or 0
    if samples != line_samples:
        raise TrialFileError(
            trial.path,
            layout.DAQ_TRIGGER_LINE,
            f"{line_samples} committed samples, but {layout.DAQ_ANALOG} has {samples}",
        )
    analog_shape = trial.daq_analog(0, 1).shape
    if len(analog_shape) != 2 or analog_shape[1] != len(trial.daq_channel_names):
        raise TrialFileError(
            trial.path,
            layout.DAQ_ANALOG,
            f"rows of shape {analog_shape[1:]} do not match its "
            f"{len(trial.daq_channel_names)} channel names",
        )
    line = trial.daq_trigger_line()
    if line.size and int(line.max()) > 1:
        raise TrialFileError(trial.path, layout.DAQ_TRIGGER_LINE, "holds values other than 0 and 1")
    pulses = trial.trigger_sample_index()
    edges = rising_edges(line, 0, 0)
    if not np.array_equal(edges, pulses):
        mismatch = _first_mismatch(edges, pulses)
        raise TrialFileError(
            trial.path,
            layout.DAQ_TRIGGER_SAMPLE_INDEX,
            f"does not match the rising edges of {layout.DAQ_TRIGGER_LINE} "
            f"({pulses.size} pulses stored, {edges.size} edges; "
            f"first mismatch at pulse {mismatch})",
        )
    return samples, pulses


def _check_camera(trial: TrialFile, name: str, pulses: int) -> RecordedCamera:
    for column in layout.CAMERA_DATASETS:
        trial.check_readable(layout.camera_dataset(name, column))
    counts = {
        column: trial.committed_rows(layout.camera_dataset(name, column))
        for column in layout.CAMERA_DATASETS
    }
    frames = counts[layout.FRAMES] or 0
    for column, count in counts.items():
        if count != frames:
            raise TrialFileError(
                trial.path,
                layout.camera_dataset(name, column),
                f"{count} committed rows, but {layout.camera_dataset(name, layout.FRAMES)} "
                f"has {frames}",
            )
    table = trial.frame_table(name)
    trigger_index = table[layout.TRIGGER_INDEX]
    increasing = np.diff(trigger_index) > 0
    if not increasing.all():
        row = int(np.flatnonzero(~increasing)[0]) + 1
        raise TrialFileError(
            trial.path,
            layout.camera_dataset(name, layout.TRIGGER_INDEX),
            f"does not strictly increase (row {row}: {int(trigger_index[row])} after "
            f"{int(trigger_index[row - 1])}): the frames cannot be matched to pulses",
        )
    if trigger_index.size and trigger_index[0] < 0:
        raise TrialFileError(
            trial.path,
            layout.camera_dataset(name, layout.TRIGGER_INDEX),
            "holds -1 (unknown pulse): such frames cannot be replayed",
        )
    height, width = trial.frames(name, 0, 1).shape[1:]
    with_pulse = int(np.count_nonzero(trigger_index < pulses))
    return RecordedCamera(
        name=name,
        height=int(height),
        width=int(width),
        frames=frames,
        pulses_without_frame=pulses - with_pulse,
    )


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int:
    common = min(a.size, b.size)
    differing = np.flatnonzero(a[:common] != b[:common])
    return int(differing[0]) if differing.size else common


def file_sha256(path: Path | str) -> str:
    """SHA-256 of the file's bytes, hex (hashlib releases the GIL while it hashes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
