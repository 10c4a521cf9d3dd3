"""Settings of a GenICam camera: the ``[cameras.genicam]`` table of one camera in the rig config.

Plain values only (the rig's config loader builds this frozen dataclass from TOML and enforces
the bounds in field ``metadata``). ``__post_init__`` checks what ties fields together and raises
``ValueError`` naming the field, so a bad table fails at start-up, before any device is opened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# The names the backend uses, from GenICam's Standard Features Naming Convention (SFNC). A camera
# that calls one of them differently gets an entry in ``node_names``: nodes ("ExposureTime" ->
# "ExposureTimeAbs") as well as the enumeration entries the backend selects ("FrameStart",
# "Software", "FrameID", "Timestamp").
STANDARD_NODE_NAMES = (
    "Width",
    "Height",
    "OffsetX",
    "OffsetY",
    "PixelFormat",
    "ExposureAuto",
    "ExposureTime",
    "GainAuto",
    "Gain",
    "TriggerSelector",
    "TriggerMode",
    "TriggerSource",
    "TriggerActivation",
    "TriggerSoftware",
    "ChunkModeActive",
    "ChunkSelector",
    "ChunkEnable",
    "ChunkFrameID",
    "ChunkTimestamp",
    "GevTimestampTickFrequency",
    "DeviceModelName",
    "DeviceVendorName",
    "DeviceSerialNumber",
    "DeviceVersion",
    "DeviceFirmwareVersion",
    "DeviceUserID",
)
STANDARD_ENTRY_NAMES = ("FrameStart", "Software", "FrameID", "Timestamp")

TriggerKind = Literal["line", "software_per_pulse", "free_run"]


@dataclass(frozen=True)
class GenICamSettings:
    """How to find, configure and trigger one GenICam camera through a GenTL producer.

    Selection: ``serial_number`` and ``user_id`` (the camera's DeviceUserID) as the producer
    reports them; when both are empty the only (or first) device is taken.

    ``trigger``:
      - ``"line"``: one frame per edge on the hardware line ``trigger_line`` (the rig's wiring).
      - ``"software_per_pulse"``: one ``TriggerSoftware`` per pulse of the twin's trigger line,
        each frame waited for before the next trigger; how a software-trigger simulator (TLSimu)
        stands in for a hardware line.
      - ``"free_run"``: no trigger at all (simulators without triggers, such as viky).
    """

    # GenTL producer files (.cti) of the camera's vendor. Empty: every .cti file in the folders of
    # the GENICAM_GENTL64_PATH environment variable (the GenTL convention).
    cti_files: tuple[str, ...] = ()
    serial_number: str = ""
    user_id: str = ""
    offset_x: int = field(default=0, metadata={"ge": 0})
    offset_y: int = field(default=0, metadata={"ge": 0})
    # 0: leave the camera's exposure as it is.
    exposure_us: float = field(default=0.0, metadata={"ge": 0.0})
    # -1: leave the camera's gain as it is.
    gain_db: float = field(default=-1.0, metadata={"ge": -1.0})
    trigger: TriggerKind = "line"
    trigger_line: str = "Line0"
    trigger_activation: str = "RisingEdge"
    # Ask for FrameID and Timestamp chunks, so every frame carries the camera's own counter and
    # clock; cameras without them fall back to counting frames (recorded in the camera's info).
    chunk_data: bool = True
    # The FrameID chunk of the first frame after AcquisitionStart on this camera model (0 on most
    # cameras, 1 on some GigE Vision ones). -1: take the first frame that arrives as frame 0, which
    # misnumbers every frame if that very first frame was lost.
    chunk_frame_id_at_start: int = field(default=-1, metadata={"ge": -1})
    # "software_per_pulse": how long to wait for the frame of one trigger before its pulse counts
    # as a frame the camera lost. Keep it well above the camera's trigger-to-frame latency (TLSimu
    # ~5.4 ms): a frame later than this would be taken for the next pulse's.
    fetch_timeout_s: float = field(default=0.5, metadata={"gt": 0.0, "le": 60.0})
    # Buffers announced to the producer: frames that can wait while this process is busy.
    num_buffers: int = field(default=16, metadata={"ge": 1, "le": 10_000})
    # Standard name -> this vendor's name, where they differ (see STANDARD_NODE_NAMES).
    node_names: dict[str, str] = field(default_factory=dict)
    # Further nodes set by name after the standard ones, in this order, as GenICam value strings
    # (e.g. {"AcquisitionFrameRateEnable" = "1", "AcquisitionFrameRate" = "200"}).
    node_values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = set(STANDARD_NODE_NAMES) | set(STANDARD_ENTRY_NAMES)
        for standard, vendor in self.node_names.items():
            if standard not in known:
                raise ValueError(
                    f"node_names.{standard}: not a name this backend uses "
                    f"(known: {', '.join(sorted(known))})"
                )
            if not vendor:
                raise ValueError(f"node_names.{standard}: the vendor's name is empty")
        for name in self.node_values:
            if not name:
                raise ValueError("node_values: a node name is empty")
        if self.trigger == "line" and not self.trigger_line:
            raise ValueError("trigger_line: required when trigger = 'line'")
        for i, path in enumerate(self.cti_files):
            if not path:
                raise ValueError(f"cti_files[{i}]: empty path")

    def node_name(self, standard: str) -> str:
        """The camera's name for a standard node or enumeration entry."""
        return self.node_names.get(standard, standard)

    def describe(self) -> dict[str, Any]:
        """The settings as plain values, for the trial file."""
        return dataclasses.asdict(self)
