"""What the preview page needs to know of the rig before any data arrives: cameras, body parts,
skeleton edges, DAQ channels, phases and the platforms' geometry.

It is taken from the rig's config once, when the preview starts, and served to the page as
``/api/layout``; the page hard-codes none of it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from acquisition.sim.skeleton import BODY_PARTS, SKELETON_EDGES
from rig.config import RigConfig
from tracking.jump_detection import EMG_ONSET_PREFIX, PHASES

log = logging.getLogger(__name__)

# Force and EMG traces scroll over this much time.
DEFAULT_TRACE_WINDOW_S = 3.0
# Each trace is decimated to this many min/max pairs per second (a screen shows no more).
DEFAULT_TRACE_BINS_PER_S = 100.0
# A 2D pose older than this (relative to the frame it is drawn on) is not drawn.
DEFAULT_POSE_MAX_AGE_S = 0.5


@dataclass(frozen=True)
class CameraView:
    name: str
    width: int
    height: int


@dataclass(frozen=True)
class TraceChannel:
    name: str
    kind: str  # "force", "emg" or "other"
    units: str
    column: int  # column in the DAQ block's analog array (n, C)


@dataclass(frozen=True)
class PreviewLayout:
    """The rig as the page draws it. Edges index ``body_parts``."""

    cameras: tuple[CameraView, ...]
    body_parts: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    channels: tuple[TraceChannel, ...]
    n_daq_channels: int
    daq_rate_hz: float
    trigger_rate_hz: float
    phases: tuple[str, ...]
    min_likelihood: float
    gap_mm: float
    trace_window_s: float
    trace_bins_per_s: float
    pose_max_age_s: float
    emg_onset_prefix: str

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def layout_from_config(
    config: RigConfig,
    *,
    trace_window_s: float = DEFAULT_TRACE_WINDOW_S,
    trace_bins_per_s: float = DEFAULT_TRACE_BINS_PER_S,
    pose_max_age_s: float = DEFAULT_POSE_MAX_AGE_S,
) -> PreviewLayout:
    """The preview's layout of this rig. Traces show the force and EMG channels, in config order."""
    if not trace_window_s > 0:
        raise ValueError(f"trace_window_s must be > 0, got {trace_window_s!r}")
    if not trace_bins_per_s > 0:
        raise ValueError(f"trace_bins_per_s must be > 0, got {trace_bins_per_s!r}")
    if not pose_max_age_s > 0:
        raise ValueError(f"pose_max_age_s must be > 0, got {pose_max_age_s!r}")
    parts = body_parts_of(config)
    index = {name: i for i, name in enumerate(parts)}
    # The twin's edges, between whichever of their parts the model has.
    edges = tuple((index[a], index[b]) for a, b in SKELETON_EDGES if a in index and b in index)
    channels = tuple(
        TraceChannel(name=channel.name, kind=channel.kind, units=channel.units, column=column)
        for column, channel in enumerate(config.daq.channels)
        if channel.kind in ("force", "emg")
    )
    return PreviewLayout(
        cameras=tuple(
            CameraView(name=camera.name, width=camera.width, height=camera.height)
            for camera in config.cameras
        ),
        body_parts=parts,
        edges=edges,
        channels=channels,
        n_daq_channels=len(config.daq.channels),
        daq_rate_hz=config.daq.rate_hz,
        trigger_rate_hz=config.trigger.rate_hz,
        phases=PHASES,
        min_likelihood=config.tracking.min_likelihood,
        gap_mm=config.sim.jump.gap_mm,
        trace_window_s=trace_window_s,
        trace_bins_per_s=trace_bins_per_s,
        pose_max_age_s=pose_max_age_s,
        emg_onset_prefix=EMG_ONSET_PREFIX,
    )


def body_parts_of(config: RigConfig) -> tuple[str, ...]:
    """The body parts the pose model finds, in its output order; the twin's without tracking.

    A model folder that cannot be read falls back on the twin's parts: the rig itself reports
    the broken model, and the preview still shows frames and traces.
    """
    if not config.tracking.enabled or not config.cameras:
        return BODY_PARTS
    from tracking.pose import PoseModelError, read_model_folder

    model = config.tracking.model_for(config.cameras[0].name)
    try:
        return read_model_folder(model).body_parts
    except PoseModelError as error:
        log.warning("preview: body parts of the twin used instead of the model's: %s", error)
        return BODY_PARTS
