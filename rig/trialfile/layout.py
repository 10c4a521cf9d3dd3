"""Names of every group, dataset and attribute in a trial file, so writer, reader and docs agree.

docs/format.md describes each of them for users. A name here never changes without a bump of
:data:`SCHEMA_VERSION`; readers refuse files from a newer schema.
"""

from __future__ import annotations

import re
from typing import Final

SCHEMA_VERSION: Final = 1
FILE_FORMAT: Final = "jumprig-trial"

# --- root attributes -----------------------------------------------------------------------------
ATTR_SCHEMA_VERSION: Final = "schema_version"
ATTR_FORMAT: Final = "format"
ATTR_CLOSED_CLEANLY: Final = "closed_cleanly"  # uint8 0/1; 1 only once the trial was finalized
ATTR_END_REASON: Final = "end_reason"  # "" until finalized
ATTR_CLOSED_UTC: Final = "closed_utc"  # ISO 8601, written at finalize (the caller may give it)
# Written by the rig at creation (the writer stores whatever root attributes it is given).
ATTR_TRIAL_ID: Final = "trial_id"
ATTR_SUBJECT: Final = "subject"
ATTR_STARTED_UTC: Final = "started_utc"
ATTR_CONFIG: Final = "config"
# The writer owns these; callers may not set them through root attributes.
RESERVED_ROOT_ATTRS: Final = frozenset(
    {ATTR_SCHEMA_VERSION, ATTR_FORMAT, ATTR_CLOSED_CLEANLY, ATTR_END_REASON}
)

# --- cameras -------------------------------------------------------------------------------------
CAMERAS_GROUP: Final = "/cameras"
ATTR_CAMERA_NAMES: Final = "names"  # on /cameras: camera names in the order they were declared
FRAMES: Final = "frames"  # (N, H, W) uint8, one frame per chunk, Blosc + fletcher32
FRAME_ID: Final = "frame_id"  # (N,) int64 hardware frame counter
TRIGGER_INDEX: Final = "trigger_index"  # (N,) int64 pulse number the frame belongs to
DAQ_SAMPLE_INDEX: Final = "daq_sample_index"  # (N,) int64 DAQ sample of that pulse, -1 unknown
T_HOST_NS: Final = "t_host_ns"  # (N,) int64 host monotonic clock when the frame was read
T_DEVICE_NS: Final = "t_device_ns"  # (N,) int64 camera clock, -1 where the camera has none
FRAME_COLUMNS: Final = (FRAME_ID, TRIGGER_INDEX, DAQ_SAMPLE_INDEX, T_HOST_NS, T_DEVICE_NS)
CAMERA_DATASETS: Final = (FRAMES, *FRAME_COLUMNS)
ATTR_HEIGHT: Final = "height"
ATTR_WIDTH: Final = "width"
ATTR_FRAMES_COMMITTED: Final = "frames_committed"  # written at finalize
ATTR_FRAMES_DROPPED: Final = "frames_dropped"  # written at finalize by the rig

# --- DAQ -----------------------------------------------------------------------------------------
DAQ_GROUP: Final = "/daq"
DAQ_ANALOG: Final = "/daq/analog"  # (S, C) float32
DAQ_TRIGGER_LINE: Final = "/daq/trigger_line"  # (S,) uint8
DAQ_TRIGGER_SAMPLE_INDEX: Final = "/daq/trigger_sample_index"  # (P,) int64
ATTR_RATE_HZ: Final = "rate_hz"
ATTR_CHANNEL_NAMES: Final = "channel_names"
ATTR_UNITS: Final = "units"
ATTR_KINDS: Final = "kinds"
ATTR_LINE_NAME: Final = "name"
ATTR_SAMPLES_COMMITTED: Final = "samples_committed"  # on /daq, written at finalize
ATTR_PULSES_COMMITTED: Final = "pulses_committed"  # on /daq, written at finalize

# --- committed counters --------------------------------------------------------------------------
COMMIT_GROUP: Final = "/commit"
# (K,) int64: rows of each appendable dataset that were flushed to disk. A reader trusts these
# over dataset sizes. Its attribute "datasets" names the dataset each entry counts.
COMMITTED_ROWS: Final = "/commit/committed_rows"
ATTR_COMMITTED_DATASETS: Final = "datasets"
# (2,) int64: number of flushes that advanced the counters, and the host monotonic time (ns) of
# the last one, so a live reader can tell that the writer is still making progress.
COMMIT_CLOCK: Final = "/commit/flush_clock"

_NAME_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def camera_group(camera: str) -> str:
    return f"{CAMERAS_GROUP}/{camera}"


def camera_dataset(camera: str, dataset: str) -> str:
    """Absolute path of one of a camera's datasets, e.g. ``/cameras/cam_left/frames``."""
    return f"{CAMERAS_GROUP}/{camera}/{dataset}"


def check_camera_name(camera: str) -> None:
    """Camera names become group names: letters, digits, '_' and '-', starting with a letter."""
    if not isinstance(camera, str) or not _NAME_PATTERN.match(camera):
        raise ValueError(
            f"camera name {camera!r} must start with a letter and hold only letters, digits, _ or -"
        )


def check_dataset_path(path: str) -> None:
    """An absolute HDF5 path made of names like camera names, e.g. ``/pose2d/cam_left``."""
    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise ValueError(
            f"dataset path {path!r} must be absolute (start with /) and name a dataset"
        )
    for part in path[1:].split("/"):
        if not _NAME_PATTERN.match(part):
            raise ValueError(
                f"dataset path {path!r}: part {part!r} must start with a letter and hold only "
                "letters, digits, _ or -"
            )
