"""A GenICam camera, through ``harvesters`` (a GenTL consumer) and its vendor's GenTL producer.

``harvesters`` and ``genicam`` are imported here and nowhere else, and only when a camera opens:
a missing package, a missing or unloadable ``.cti`` file and a device that is not there all
raise :class:`~acquisition.errors.HardwareUnavailable` with a message that names what is missing.
A device that fails while in use (a disconnect, a refused setting) raises
:class:`~acquisition.errors.DeviceError`.

Frame numbering (``CameraFrame.frame_id``, which the rig takes as the trigger index):

- ``"chunk"``: the camera's FrameID chunk, relative to its value at the start of acquisition, so
  a frame the camera or the link lost is a gap.
- ``"pulse"`` (``trigger = "software_per_pulse"``): the number of the pulse whose software
  trigger produced the frame. Each frame is waited for (``fetch_timeout_s``) before the next
  trigger is fired, so a frame that never comes is a gap, not a shift of every later frame.
- ``"counted"``: frames received since ``arm``, for cameras without a FrameID chunk; a lost frame
  then shifts the numbering, and ``info()`` says so.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import zmq

from acquisition.cameras.genicam_settings import GenICamSettings
from acquisition.cameras.interface import Camera, CameraFrame
from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.transport import TOPIC_TRIGGER, TWIN_LINE_HWM, make_socket, recv_message

log = logging.getLogger(__name__)

GENTL_PATH_VARIABLE = "GENICAM_GENTL64_PATH"
# PFNC code of Mono8, as GenTL producers report a buffer's pixel format.
PFNC_MONO8 = 0x01080001
# harvesters treats a fetch timeout of 0 as "wait forever"; never ask it for less than this.
MIN_FETCH_TIMEOUT_S = 0.001
# SFNC timestamps count nanoseconds unless the camera states its tick frequency.
DEFAULT_TIMESTAMP_TICK_HZ = 1e9


class PulseSource(Protocol):
    """The pulses a software-triggered camera fires for: the next pulse number, or None."""

    def next_pulse(self, timeout_s: float) -> int | None: ...

    def close(self) -> None: ...


class TriggerLinePulses:
    """Pulse numbers from the twin's trigger line: the DAQ process's ZeroMQ PUB of rising edges.

    Connect it when the camera process starts: a SUB socket only sees messages published after
    it has connected, and the DAQ starts the pulse train only after every camera is armed.
    """

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        if not endpoint:
            raise ValueError("trigger line endpoint is empty")
        self._socket: zmq.Socket | None = make_socket(
            context, zmq.SUB, endpoint, bind=False, hwm=TWIN_LINE_HWM, subscribe=[TOPIC_TRIGGER]
        )

    def next_pulse(self, timeout_s: float) -> int | None:
        if self._socket is None:
            raise RuntimeError("trigger line pulses: next_pulse() after close()")
        timeout_ms = max(0, round(timeout_s * 1000))
        if not self._socket.poll(timeout_ms, zmq.POLLIN):
            return None
        return int(recv_message(self._socket).header.trigger_index)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


@dataclass(frozen=True)
class _Vendor:
    """The vendor packages, imported on first use."""

    harvester_class: Any
    gentl: ModuleType
    genapi: ModuleType

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Every error the GenICam libraries raise (GenTL and GenApi have separate bases)."""
        return (self.gentl.GenericException, self.genapi.GenericException)


def _import_vendor() -> _Vendor:
    try:
        from genicam import genapi, gentl
        from harvesters.core import Harvester
    except (ImportError, OSError) as error:
        raise HardwareUnavailable(
            f"GenICam cameras need the 'harvesters' and 'genicam' packages, which do not load "
            f"here: {error}"
        ) from error
    return _Vendor(harvester_class=Harvester, gentl=gentl, genapi=genapi)


def resolve_cti_files(settings: GenICamSettings) -> list[Path]:
    """The GenTL producer files to load: the configured ones, else those on GENICAM_GENTL64_PATH.

    Raises HardwareUnavailable when there are none, or one is missing or not a GenTL producer.
    """
    if settings.cti_files:
        paths = [Path(path).expanduser().absolute() for path in settings.cti_files]
    else:
        folders = [f for f in os.environ.get(GENTL_PATH_VARIABLE, "").split(os.pathsep) if f]
        paths = sorted(p for folder in folders for p in Path(folder).glob("*.cti"))
        if not paths:
            raise HardwareUnavailable(
                f"no GenTL producer: set cameras.genicam.cti_files, or {GENTL_PATH_VARIABLE} to "
                f"a folder of .cti files (now {os.environ.get(GENTL_PATH_VARIABLE, '')!r})"
            )
    for path in paths:
        if not path.is_file():
            raise HardwareUnavailable(f"GenTL producer file not found: {path}")
        try:
            library = ctypes.CDLL(str(path))
        except OSError as error:
            raise HardwareUnavailable(f"{path} is not a loadable GenTL producer: {error}") from None
        if not hasattr(library, "GCInitLib"):
            raise HardwareUnavailable(f"{path} is not a GenTL producer (it has no GCInitLib)")
    return paths


def _text(read: Any) -> str:
    """A device property as text; '' where the producer does not report it."""
    try:
        value = read()
    except Exception:  # Producers raise their own errors for properties they lack.
        return ""
    return "" if value is None else str(value)


def _describe_device(device_info: Any) -> dict[str, str]:
    return {
        "serial_number": _text(lambda: device_info.serial_number),
        "user_id": _text(lambda: device_info.user_defined_name),
        "model": _text(lambda: device_info.model),
        "vendor": _text(lambda: device_info.vendor),
        "version": _text(lambda: device_info.version),
        "device_id": _text(lambda: device_info.id_),
        "display_name": _text(lambda: device_info.display_name),
        "tl_type": _text(lambda: device_info.tl_type),
    }


def list_devices(settings: GenICamSettings) -> list[dict[str, str]]:
    """The devices the configured producers offer (serial_number, user_id, model, vendor, ...).

    A producer lists its devices to one Harvester per process at a time: call this where no
    camera of the same producer is open.
    """
    vendor = _import_vendor()
    cti_files = resolve_cti_files(settings)
    harvester = vendor.harvester_class()
    try:
        for path in cti_files:
            harvester.add_file(str(path))
        harvester.update()
        return [_describe_device(info) for info in harvester.device_info_list]
    finally:
        harvester.reset()


class _NodeWriter:
    """Sets GenICam nodes by their standard names and records every value it set, read back."""

    def __init__(
        self, camera_name: str, node_map: Any, settings: GenICamSettings, vendor: _Vendor
    ) -> None:
        self._camera_name = camera_name
        self._node_map = node_map
        self._settings = settings
        self._vendor = vendor
        self.applied: dict[str, Any] = {}

    def find(self, standard: str) -> Any | None:
        """The node, or None where the camera lacks it or it is not available now."""
        return self.find_by_name(self._settings.node_name(standard))

    def find_by_name(self, name: str) -> Any | None:
        try:
            node = getattr(self._node_map, name)
        except AttributeError:
            return None
        access = node.node.get_access_mode()
        if access in (self._vendor.genapi.EAccessMode.NI, self._vendor.genapi.EAccessMode.NA):
            return None
        return node

    def exists(self, standard: str) -> bool:
        """Whether the node is declared at all (chunk nodes are unavailable until a frame)."""
        try:
            getattr(self._node_map, self._settings.node_name(standard))
        except AttributeError:
            return False
        return True

    def entries(self, standard: str) -> tuple[str, ...]:
        node = self.find(standard)
        return tuple(node.symbolics) if node is not None else ()

    def write(
        self,
        standard: str,
        value: Any,
        required: bool,
        exact: bool = False,
        record_as: str = "",
    ) -> Any | None:
        """Set a node; returns the value read back (None where the node is absent and optional).

        A required node that is absent, an enumeration entry the camera does not offer, a value
        it refuses and (with ``exact``) a value it rounded all raise DeviceError naming the node.
        """
        name = self._settings.node_name(standard)
        node = self.find_by_name(name)
        if node is None:
            if required:
                raise DeviceError(
                    f"camera {self._camera_name}: has no writable node {name!r} (wanted "
                    f"{value!r}); if this camera calls it differently, map it in "
                    f'cameras.genicam.node_names ({standard!r} = "<its name>")'
                )
            return None
        genapi = self._vendor.genapi
        try:
            if isinstance(node, genapi.IEnumeration) and value not in node.symbolics:
                raise DeviceError(
                    f"camera {self._camera_name}: {name} has no entry {value!r} "
                    f"(it offers {', '.join(node.symbolics)})"
                )
            if node.node.get_access_mode() == genapi.EAccessMode.WO:
                node.value = value
                read_back = value
            else:
                # A node that already holds the value is left alone: read-only ones (a selector
                # with a single entry, a fixed format) refuse even a write that changes nothing.
                if node.value != value:
                    node.value = value
                read_back = node.value
        except self._vendor.errors as error:
            raise DeviceError(
                f"camera {self._camera_name}: cannot set {name} = {value!r}: {error}"
            ) from None
        if exact and read_back != value:
            raise DeviceError(
                f"camera {self._camera_name}: set {name} = {value!r} but it holds {read_back!r}"
            )
        self.applied[record_as or name] = _plain(read_back)
        return read_back

    def write_text(self, name: str, text: str) -> str:
        """Set a node by name from its GenICam string form (``node_values``)."""
        node = self.find_by_name(name)
        if node is None:
            raise DeviceError(
                f"camera {self._camera_name}: cameras.genicam.node_values.{name}: the camera has "
                f"no writable node {name!r}"
            )
        if isinstance(node, self._vendor.genapi.ICommand):
            raise DeviceError(
                f"camera {self._camera_name}: cameras.genicam.node_values.{name}: {name} is a "
                f"command, not a value"
            )
        try:
            node.from_string(text)
            read_back = str(node.to_string())
        except self._vendor.errors as error:
            raise DeviceError(
                f"camera {self._camera_name}: cannot set {name} = {text!r}: {error}"
            ) from None
        self.applied[name] = read_back
        return read_back

    def read(self, name: str) -> Any | None:
        node = self.find_by_name(name)
        if node is None:
            return None
        try:
            return _plain(node.value)
        except self._vendor.errors:
            return None


def _plain(value: Any) -> Any:
    """A node value as a plain JSON-able Python value."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class _Fetched:
    image: np.ndarray  # (height, width) uint8, a copy owned by this object
    chunk_frame_id: int | None
    t_device_ns: int
    t_host_ns: int


class GenICamCamera(Camera):
    """One GenICam camera through harvesters. ``close`` may be called twice; after it, make a new
    camera.

    ``pulse_source`` is required for ``trigger = "software_per_pulse"`` (and ignored otherwise);
    the camera closes it in ``close``.
    """

    def __init__(
        self,
        name: str,
        width: int,
        height: int,
        pixel_format: str,
        settings: GenICamSettings,
        pulse_source: PulseSource | None = None,
    ) -> None:
        if pixel_format != "Mono8":
            raise ValueError(f"camera {name}: pixel format {pixel_format!r}; only Mono8 is handled")
        if width <= 0 or height <= 0:
            raise ValueError(
                f"camera {name}: width and height must be positive, got {width}x{height}"
            )
        if settings.trigger == "software_per_pulse" and pulse_source is None:
            raise ValueError(f"camera {name}: trigger 'software_per_pulse' needs a pulse source")
        self.name = name
        self._width = width
        self._height = height
        self._pixel_format = pixel_format
        self._settings = settings
        self._pulses = pulse_source if settings.trigger == "software_per_pulse" else None
        self._vendor: _Vendor | None = None
        self._harvester: Any = None
        self._acquirer: Any = None
        self._closed = False
        self._armed = False
        self._cti_files: list[Path] = []
        self._device: dict[str, str] = {}
        self._device_nodes: dict[str, Any] = {}
        self._applied: dict[str, Any] = {}
        self._chunk_status = "not configured"
        self._frame_id_source = "pulse" if settings.trigger == "software_per_pulse" else "counted"
        self._timestamp_source = "none"
        self._timestamp_tick_hz = DEFAULT_TIMESTAMP_TICK_HZ
        # Node proxies used on every frame, looked up once.
        self._trigger_software: Any = None
        self._chunk_frame_id_node: Any = None
        self._chunk_timestamp_node: Any = None
        # Per arming.
        self._frames_received = 0
        self._chunk_frame_id_origin: int | None = None
        self._last_frame_id = -1
        self._pending_pulse: int | None = None
        self._pending_deadline_ns = 0
        self._last_pulse = -1
        self._may_hold_stray_frames = False
        self.pulses_without_frame: list[int] = []
        self.stray_frames_discarded = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        if self._closed:
            raise RuntimeError(f"camera {self.name}: open() after close(); make a new camera")
        if self._acquirer is not None:
            return
        vendor = _import_vendor()
        self._vendor = vendor
        self._cti_files = resolve_cti_files(self._settings)
        self._harvester = vendor.harvester_class()
        try:
            for path in self._cti_files:
                self._harvester.add_file(str(path))
            self._harvester.update()
            devices = [_describe_device(info) for info in self._harvester.device_info_list]
            index = self._select_device(devices)
            self._device = devices[index]
            open_errors: tuple[type[BaseException], ...] = (*vendor.errors, ValueError, IndexError)
            try:
                self._acquirer = self._harvester.create(index)
            except open_errors as error:
                raise HardwareUnavailable(
                    f"camera {self.name}: cannot open {self._describe_selected()}: {error!r} "
                    f"(is another program using it?)"
                ) from None
            self._acquirer.num_buffers = max(
                self._settings.num_buffers, self._acquirer.min_num_buffers
            )
            self._configure(self._acquirer.remote_device.node_map, vendor)
        except BaseException:
            self._release()
            raise

    def arm(self) -> None:
        if self._acquirer is None:
            raise RuntimeError(f"camera {self.name}: arm() before open()")
        if self._armed:
            self.disarm()
        self._frames_received = 0
        self._chunk_frame_id_origin = None
        self._last_frame_id = -1
        self._pending_pulse = None
        self._last_pulse = -1
        self._may_hold_stray_frames = False
        self.pulses_without_frame = []
        self.stray_frames_discarded = 0
        try:
            self._acquirer.start()
        except self._errors() as error:
            raise DeviceError(f"camera {self.name}: cannot start acquisition: {error}") from None
        self._armed = True

    def read(self, timeout_s: float) -> CameraFrame | None:
        if not self._armed:
            raise RuntimeError(f"camera {self.name}: read() before arm()")
        if timeout_s < 0:
            raise ValueError(f"camera {self.name}: timeout_s must be >= 0, got {timeout_s}")
        if self._settings.trigger == "software_per_pulse":
            return self._read_per_pulse(timeout_s)
        fetched = self._fetch(timeout_s)
        if fetched is None:
            return None
        if fetched.chunk_frame_id is not None:
            frame_id = self._frame_id_from_chunk(fetched.chunk_frame_id)
        else:
            frame_id = self._frames_received
        self._frames_received += 1
        return self._frame(fetched, frame_id)

    def disarm(self) -> None:
        if not self._armed:
            return
        self._armed = False
        if self._pending_pulse is not None:
            # Acquisition stops before its frame came: that pulse has no frame.
            self.pulses_without_frame.append(self._pending_pulse)
            self._pending_pulse = None
        try:
            self._acquirer.stop()
        except self._errors() as error:
            raise DeviceError(f"camera {self.name}: cannot stop acquisition: {error}") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._armed = False
        self._release()
        if self._pulses is not None:
            self._pulses.close()

    def info(self) -> dict[str, Any]:
        return {
            "backend": "genicam",
            "model": self._device.get("model", ""),
            "vendor": self._device.get("vendor", ""),
            "serial": self._device.get("serial_number", ""),
            "user_id": self._device.get("user_id", ""),
            "device": dict(self._device),
            "device_nodes": dict(self._device_nodes),
            "cti_files": [str(path) for path in self._cti_files],
            "width": self._width,
            "height": self._height,
            "pixel_format": self._pixel_format,
            "trigger": self._settings.trigger,
            "frame_id_source": self._frame_id_source,
            "device_timestamp_source": self._timestamp_source,
            "chunk_data": self._chunk_status,
            "nodes": dict(self._applied),
            "num_buffers": self._acquirer.num_buffers if self._acquirer is not None else None,
            "pulses_without_frame": list(self.pulses_without_frame),
            "stray_frames_discarded": self.stray_frames_discarded,
            "settings": self._settings.describe(),
        }

    # --- opening -----------------------------------------------------------------------------

    def _select_device(self, devices: Sequence[dict[str, str]]) -> int:
        wanted_serial = self._settings.serial_number
        wanted_user_id = self._settings.user_id
        listing = "; ".join(
            f"serial_number {d['serial_number']!r} user_id {d['user_id']!r} ({d['model']})"
            for d in devices
        )
        files = ", ".join(str(path) for path in self._cti_files)
        if not devices:
            raise HardwareUnavailable(
                f"camera {self.name}: no GenICam device found through {files} (is it connected "
                f"and powered, and not listed by another Harvester in this process?)"
            )
        matches = [
            i
            for i, device in enumerate(devices)
            if (not wanted_serial or device["serial_number"] == wanted_serial)
            and (not wanted_user_id or device["user_id"] == wanted_user_id)
        ]
        if not matches:
            raise HardwareUnavailable(
                f"camera {self.name}: no device with {self._describe_selected()} through "
                f"{files}; found: {listing}"
            )
        if len(matches) > 1:
            if wanted_serial or wanted_user_id:
                raise HardwareUnavailable(
                    f"camera {self.name}: {len(matches)} devices match "
                    f"{self._describe_selected()}; set serial_number: {listing}"
                )
            log.warning(
                "camera %s: no serial_number or user_id configured; took the first of %d "
                "devices (%s)",
                self.name,
                len(devices),
                listing,
            )
        return matches[0]

    def _describe_selected(self) -> str:
        parts = []
        if self._settings.serial_number:
            parts.append(f"serial_number {self._settings.serial_number!r}")
        if self._settings.user_id:
            parts.append(f"user_id {self._settings.user_id!r}")
        if self._device:
            parts.append(f"model {self._device.get('model', '')!r}")
        return " and ".join(parts) or "the first device"

    def _configure(self, node_map: Any, vendor: _Vendor) -> None:
        nodes = _NodeWriter(self.name, node_map, self._settings, vendor)
        settings = self._settings
        for standard in (
            "DeviceModelName",
            "DeviceVendorName",
            "DeviceSerialNumber",
            "DeviceVersion",
            "DeviceFirmwareVersion",
            "DeviceUserID",
        ):
            value = nodes.read(settings.node_name(standard))
            if value is not None:
                self._device_nodes[standard] = value
        nodes.write("PixelFormat", self._pixel_format, required=True, exact=True)
        # Offsets first to 0: a larger width or height is refused while the offset is set.
        nodes.write("OffsetX", 0, required=False)
        nodes.write("OffsetY", 0, required=False)
        nodes.write("Width", self._width, required=True, exact=True)
        nodes.write("Height", self._height, required=True, exact=True)
        nodes.write("OffsetX", settings.offset_x, required=settings.offset_x != 0, exact=True)
        nodes.write("OffsetY", settings.offset_y, required=settings.offset_y != 0, exact=True)
        if settings.exposure_us > 0:
            # A camera refuses an exposure time while its automatic exposure runs.
            nodes.write("ExposureAuto", "Off", required=False)
            nodes.write("ExposureTime", settings.exposure_us, required=True)
        if settings.gain_db >= 0:
            nodes.write("GainAuto", "Off", required=False)
            nodes.write("Gain", settings.gain_db, required=True)
        self._configure_trigger(nodes)
        self._configure_chunks(nodes, node_map)
        tick_hz = nodes.read(settings.node_name("GevTimestampTickFrequency"))
        if isinstance(tick_hz, int | float) and tick_hz > 0:
            self._timestamp_tick_hz = float(tick_hz)
        for name, text in settings.node_values.items():
            nodes.write_text(name, text)
        self._applied = nodes.applied

    def _configure_trigger(self, nodes: _NodeWriter) -> None:
        settings = self._settings
        frame_start = settings.node_name("FrameStart")
        selectors = nodes.entries("TriggerSelector")
        if selectors:
            if frame_start not in selectors:
                raise DeviceError(
                    f"camera {self.name}: TriggerSelector has no entry {frame_start!r} (it offers "
                    f"{', '.join(selectors)}); map it in cameras.genicam.node_names.FrameStart"
                )
            # Only the frame-start trigger may be on: an armed acquisition-start or burst trigger
            # would hold back frames that the pulses ask for.
            for selector in selectors:
                if selector != frame_start:
                    nodes.write("TriggerSelector", selector, required=True)
                    nodes.write(
                        "TriggerMode", "Off", required=False, record_as=f"TriggerMode[{selector}]"
                    )
            nodes.write("TriggerSelector", frame_start, required=True)
        if settings.trigger == "free_run":
            nodes.write("TriggerMode", "Off", required=False)
            return
        nodes.write("TriggerMode", "On", required=True)
        if settings.trigger == "line":
            nodes.write("TriggerSource", settings.trigger_line, required=True)
            nodes.write("TriggerActivation", settings.trigger_activation, required=False)
            return
        nodes.write("TriggerSource", settings.node_name("Software"), required=True)
        self._trigger_software = nodes.find("TriggerSoftware")
        if self._trigger_software is None:
            raise DeviceError(
                f"camera {self.name}: trigger 'software_per_pulse' needs the command "
                f"{settings.node_name('TriggerSoftware')!r}, which this camera lacks"
            )

    def _configure_chunks(self, nodes: _NodeWriter, node_map: Any) -> None:
        """Turn on the FrameID and Timestamp chunks where the camera has them, else chunks off.

        Chunk mode without those chunks buys nothing here, and some producers then deliver a
        chunk-only payload (TLSimu does).
        """
        settings = self._settings
        if not settings.chunk_data:
            nodes.write("ChunkModeActive", False, required=False)
            self._chunk_status = "off (chunk_data = false)"
            return
        if nodes.find("ChunkModeActive") is None or not nodes.exists("ChunkSelector"):
            nodes.write("ChunkModeActive", False, required=False)
            self._chunk_status = "unavailable (no ChunkModeActive or ChunkSelector)"
            return
        # Some cameras make ChunkSelector writable only once chunk mode is on.
        nodes.write("ChunkModeActive", True, required=True)
        entries = nodes.entries("ChunkSelector")
        wanted = {
            settings.node_name("FrameID"): "ChunkFrameID",
            settings.node_name("Timestamp"): "ChunkTimestamp",
        }
        enabled: list[str] = []
        for entry, value_node in wanted.items():
            if entry not in entries:
                continue
            if not nodes.exists(value_node):
                raise DeviceError(
                    f"camera {self.name}: ChunkSelector offers {entry!r} but the camera has no "
                    f"node {settings.node_name(value_node)!r} to read it; map it in "
                    f"cameras.genicam.node_names.{value_node}"
                )
            nodes.write("ChunkSelector", entry, required=True, record_as="ChunkSelector")
            nodes.write("ChunkEnable", True, required=True, record_as=f"ChunkEnable[{entry}]")
            enabled.append(value_node)
        if not enabled:
            nodes.write("ChunkModeActive", False, required=False)
            self._chunk_status = (
                f"unavailable (ChunkSelector offers {', '.join(entries) or 'nothing'}, "
                f"no {' or '.join(wanted)})"
            )
            return
        # Chunk value nodes become readable only once a buffer is attached; keep the proxies.
        if "ChunkFrameID" in enabled:
            self._chunk_frame_id_node = getattr(node_map, settings.node_name("ChunkFrameID"))
            if settings.trigger != "software_per_pulse":
                self._frame_id_source = "chunk"
        if "ChunkTimestamp" in enabled:
            self._chunk_timestamp_node = getattr(node_map, settings.node_name("ChunkTimestamp"))
        self._chunk_status = f"on ({', '.join(enabled)})"

    def _release(self) -> None:
        """Destroy the ImageAcquirer and reset the Harvester; never raises.

        Node proxies are dropped first: touching a node after its acquirer is destroyed crashes
        the process.
        """
        self._trigger_software = None
        self._chunk_frame_id_node = None
        self._chunk_timestamp_node = None
        acquirer, self._acquirer = self._acquirer, None
        harvester, self._harvester = self._harvester, None
        if acquirer is not None:
            try:
                acquirer.destroy()
            except Exception:
                log.warning(
                    "camera %s: destroying the image acquirer failed", self.name, exc_info=True
                )
        if harvester is not None:
            try:
                harvester.reset()
            except Exception:
                log.warning("camera %s: resetting the harvester failed", self.name, exc_info=True)

    # --- reading -----------------------------------------------------------------------------

    def _errors(self) -> tuple[type[BaseException], ...]:
        return self._vendor.errors if self._vendor is not None else ()

    def _pulse_source(self) -> PulseSource:
        if self._pulses is None:
            raise RuntimeError(f"camera {self.name}: no pulse source")
        return self._pulses

    def _read_per_pulse(self, timeout_s: float) -> CameraFrame | None:
        """Fire one software trigger per pulse and wait for its frame before the next pulse."""
        deadline_ns = time.monotonic_ns() + round(timeout_s * 1e9)
        while True:
            pulse = self._pending_pulse
            if pulse is None:
                remaining_s = max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
                pulse = self._pulse_source().next_pulse(remaining_s)
                if pulse is None:
                    return None
                if pulse <= self._last_pulse:
                    raise DeviceError(
                        f"camera {self.name}: pulse numbers went backwards ({self._last_pulse} "
                        f"then {pulse})"
                    )
                if self._may_hold_stray_frames:
                    self._discard_stray_frames()
                self._fire_software_trigger(pulse)
            wait_until_ns = min(deadline_ns, self._pending_deadline_ns)
            fetched = self._fetch(max(0.0, (wait_until_ns - time.monotonic_ns()) / 1e9))
            if fetched is not None:
                self._pending_pulse = None
                return self._frame(fetched, pulse)
            now_ns = time.monotonic_ns()
            if now_ns >= self._pending_deadline_ns:
                log.warning(
                    "camera %s: no frame for pulse %d within %.3f s",
                    self.name,
                    pulse,
                    self._settings.fetch_timeout_s,
                )
                self.pulses_without_frame.append(pulse)
                self._pending_pulse = None
                # Its frame may still turn up; it must not be taken for the next pulse's.
                self._may_hold_stray_frames = True
                continue
            if now_ns >= deadline_ns:
                return None

    def _fire_software_trigger(self, pulse: int) -> None:
        try:
            self._trigger_software.execute()
        except self._errors() as error:
            raise DeviceError(
                f"camera {self.name}: software trigger for pulse {pulse} failed: {error}"
            ) from None
        self._pending_pulse = pulse
        self._last_pulse = pulse
        self._pending_deadline_ns = time.monotonic_ns() + round(
            self._settings.fetch_timeout_s * 1e9
        )

    def _discard_stray_frames(self) -> None:
        for _ in range(self._acquirer.num_buffers + 1):
            if self._fetch(0.0) is None:
                break
            self.stray_frames_discarded += 1
            log.warning(
                "camera %s: discarded a frame that came after its pulse timed out", self.name
            )
        self._may_hold_stray_frames = False

    def _fetch(self, timeout_s: float) -> _Fetched | None:
        """The next frame, copied out of the producer's buffer, or None after ``timeout_s``."""
        vendor = self._vendor
        if vendor is None or self._acquirer is None:
            raise RuntimeError(f"camera {self.name}: fetch before open()")
        try:
            buffer = self._acquirer.fetch(timeout=max(timeout_s, MIN_FETCH_TIMEOUT_S))
        except vendor.gentl.TimeoutException:
            return None
        except vendor.errors as error:
            raise DeviceError(
                f"camera {self.name}: lost the device while waiting for a frame: {error}"
            ) from None
        t_host_ns = time.monotonic_ns()
        if buffer is None:
            # harvesters re-queued a buffer it could not read; the frame is lost.
            return None
        try:
            # The buffer goes back to the producer when the block ends: copy everything inside.
            with buffer:
                image = self._copy_image(buffer.module)
                chunk_frame_id = self._read_chunk_frame_id()
                t_device_ns = self._device_time_ns(buffer.module)
        except vendor.errors as error:
            raise DeviceError(
                f"camera {self.name}: lost the device while reading a frame: {error}"
            ) from None
        return _Fetched(image, chunk_frame_id, t_device_ns, t_host_ns)

    def _copy_image(self, raw: Any) -> np.ndarray:
        """(height, width) uint8 copy of a Mono8 image, from the raw GenTL buffer.

        Read from the raw buffer rather than harvesters' payload view: it also serves chunk-only
        payloads and honours line padding.
        """
        errors = self._errors()
        try:
            width, height = int(raw.width), int(raw.height)
        except errors:
            width, height = self._width, self._height
        if (height, width) != (self._height, self._width):
            raise DeviceError(
                f"camera {self.name}: delivered a {width}x{height} image, configured "
                f"{self._width}x{self._height}"
            )
        try:
            pixel_format = int(raw.pixel_format)
        except errors:
            pixel_format = PFNC_MONO8
        if pixel_format != PFNC_MONO8:
            raise DeviceError(
                f"camera {self.name}: delivered pixel format 0x{pixel_format:08x}, not Mono8"
            )
        try:
            padding_x = int(raw.padding_x)
        except errors:
            padding_x = 0
        try:
            offset = int(raw.image_offset)
        except errors:
            offset = 0
        stride = width + padding_x
        data = raw.raw_buffer
        if len(data) < offset + stride * height:
            raise DeviceError(
                f"camera {self.name}: buffer of {len(data)} bytes is too small for a "
                f"{width}x{height} image"
            )
        rows = np.frombuffer(data, dtype=np.uint8, count=stride * height, offset=offset)
        return rows.reshape(height, stride)[:, :width].copy()

    def _read_chunk_frame_id(self) -> int | None:
        if self._chunk_frame_id_node is None:
            return None
        return int(self._chunk_frame_id_node.value)

    def _device_time_ns(self, raw: Any) -> int:
        """The frame's device timestamp in ns: from its chunk, else the GenTL buffer; -1: none."""
        if self._chunk_timestamp_node is not None:
            ticks = int(self._chunk_timestamp_node.value)
            self._timestamp_source = "chunk"
            return round(ticks * (1e9 / self._timestamp_tick_hz))
        try:
            t_device_ns = int(raw.timestamp_ns)
        except self._errors():
            t_device_ns = 0
        # Producers without a clock report 0 (viky).
        if t_device_ns > 0:
            self._timestamp_source = "buffer"
            return t_device_ns
        return -1

    def _frame_id_from_chunk(self, chunk_frame_id: int) -> int:
        if self._chunk_frame_id_origin is None:
            start = self._settings.chunk_frame_id_at_start
            self._chunk_frame_id_origin = chunk_frame_id if start < 0 else start
        frame_id = chunk_frame_id - self._chunk_frame_id_origin
        if frame_id < 0:
            raise DeviceError(
                f"camera {self.name}: FrameID chunk {chunk_frame_id} is below "
                f"cameras.genicam.chunk_frame_id_at_start = {self._chunk_frame_id_origin}"
            )
        if frame_id <= self._last_frame_id:
            # A counter that wrapped or restarted would silently renumber every later frame.
            raise DeviceError(
                f"camera {self.name}: FrameID chunk went from frame {self._last_frame_id} to "
                f"frame {frame_id} (raw {chunk_frame_id}): the camera's frame counter did not "
                f"advance, restarted or wrapped"
            )
        return frame_id

    def _frame(self, fetched: _Fetched, frame_id: int) -> CameraFrame:
        self._last_frame_id = frame_id
        return CameraFrame(
            image=fetched.image,
            frame_id=frame_id,
            t_device_ns=fetched.t_device_ns,
            t_host_ns=fetched.t_host_ns,
        )
