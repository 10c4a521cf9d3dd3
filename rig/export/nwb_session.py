"""The NWB file's session, subject and devices, from the trial file, its config and what the
user adds (:class:`SessionMetadata`)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.export.trial_contents import CameraContents, TrialContents
from tracking.camera_group import Camera

# NWB's Subject.sex codes.
SEX_CODES = ("M", "F", "U", "O")
# The subject's age when nobody gave it: the open range "zero days or older". NWB writes
# ranges as "lower/upper" with either end open, so this states exactly what is known.
UNKNOWN_AGE = "P0D/"
_DURATION = re.compile(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?")
TWIN_MANUFACTURER = "jumprig digital twin"


@dataclass(frozen=True)
class SessionMetadata:
    """What the trial file does not know about the session; the defaults fit the rig's mice."""

    experimenters: tuple[str, ...] = ()  # "Last, First", as NWB asks
    lab: str | None = None
    institution: str | None = None
    experiment_description: str | None = None
    session_description: str | None = None  # None: composed from the trial
    species: str = "Mus musculus"
    sex: str = "U"  # M, F, U (unknown) or O (other)
    # ISO 8601 duration ("P90D") or range ("P60D/P90D", "P60D/"); None: unknown (UNKNOWN_AGE).
    age: str | None = None
    keywords: tuple[str, ...] = ("jumping", "pose estimation", "EMG", "force", "3D kinematics")

    def __post_init__(self) -> None:
        if self.sex not in SEX_CODES:
            raise ValueError(f"sex must be one of {', '.join(SEX_CODES)}, got {self.sex!r}")
        if self.age is not None and not is_age(self.age):
            raise ValueError(
                "age must be an ISO 8601 duration such as P90D, or a range such as P60D/P90D "
                f"or P60D/, got {self.age!r}"
            )
        if not self.species.strip():
            raise ValueError("species must not be empty")


def is_age(text: str) -> bool:
    """An ISO 8601 duration, or a range of two with one end possibly open (NWB's form)."""
    if "/" not in text:
        return _DURATION.fullmatch(text) is not None
    lower, _, upper = text.partition("/")
    if not (lower or upper):
        return False
    return all(not end or _DURATION.fullmatch(end) is not None for end in (lower, upper))


def new_nwbfile(contents: TrialContents, metadata: SessionMetadata, notes: list[str]) -> Any:
    """The NWBFile with the session and subject filled in. Its time 0 is DAQ sample 0; the
    reference time is the trial's ``started_utc`` (the host's clock when the trial started,
    shortly before the DAQ did)."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    if metadata.age is None:
        notes.append(f"subject age unknown: written as {UNKNOWN_AGE} (any age); give it with age")
    nwbfile = NWBFile(
        session_description=metadata.session_description or session_description(contents),
        identifier=str(uuid.uuid4()),
        session_start_time=contents.started_utc,
        timestamps_reference_time=contents.started_utc,
        session_id=contents.trial_id,
        experimenter=list(metadata.experimenters) or None,
        lab=metadata.lab,
        institution=metadata.institution,
        experiment_description=metadata.experiment_description,
        keywords=list(metadata.keywords) or None,
        # The resolved config is how the data were collected, word for word.
        data_collection=contents.config_text or None,
        notes=_provenance_notes(contents),
        was_generated_by=_generated_by(),
    )
    simulated = " (simulated by the rig's digital twin)" if contents.is_simulated else ""
    nwbfile.subject = Subject(
        subject_id=contents.subject,
        species=metadata.species,
        sex=metadata.sex,
        age=metadata.age or UNKNOWN_AGE,
        description=f"The animal of trial {contents.trial_id}{simulated}",
    )
    return nwbfile


def session_description(contents: TrialContents) -> str:
    trigger = contents.config.get("trigger", {})
    camera_rate = trigger.get("rate_hz") if isinstance(trigger, dict) else None
    at_rate = f" at {camera_rate:g} Hz" if isinstance(camera_rate, int | float) else ""
    origin = "the rig's digital twin (simulated)" if contents.is_simulated else "the rig"
    return (
        f"Jump trial {contents.trial_id} of subject {contents.subject}, recorded by jumprig on "
        f"{origin}: {len(contents.cameras)} hardware-triggered cameras{at_rate}, "
        f"{len(contents.daq.channel_names)} analog channels (EMG, platform force) at "
        f"{contents.daq.rate_hz:g} Hz, DeepLabCut-Live 2D poses triangulated to 3D, and the "
        "jumps detected in them."
    )


def _provenance_notes(contents: TrialContents) -> str:
    """The trial file's root attributes but the config (kept in data_collection) as JSON: end
    reason, frame accounting, host, software versions."""
    attrs = {key: value for key, value in contents.root_attrs.items() if key != "config"}
    attrs["source_file"] = contents.path.name
    return "jumprig trial file attributes (JSON):\n" + json.dumps(
        attrs, indent=1, sort_keys=True, default=str
    )


def _generated_by() -> list[list[str]]:
    generated = []
    for name in ("jumprig", "pynwb", "hdmf", "ndx-pose"):
        try:
            generated.append([name, importlib.metadata.version(name)])
        except importlib.metadata.PackageNotFoundError:
            continue
    return generated


# --- devices -------------------------------------------------------------------------------------


def add_devices(nwbfile: Any, contents: TrialContents) -> dict[str, Any]:
    """One device per camera (an ndx-pose CalibratedCamera where the trial has its calibration)
    and the DAQ; returns the cameras' devices by name."""
    from ndx_pose import CalibratedCamera
    from pynwb.device import Device

    devices: dict[str, Any] = {}
    for camera in contents.cameras:
        calibrated = (
            contents.calibration[camera.name]
            if contents.calibration is not None and camera.name in contents.calibration
            else None
        )
        description = _camera_description(camera, calibrated, contents.calibration_source)
        model = None
        if camera.backend == "sim":
            model = _device_model(
                nwbfile,
                "twin camera",
                "a simulated camera rendering the twin's mouse (acquisition.sim)",
                TWIN_MANUFACTURER,
            )
        if calibrated is None:
            device = Device(name=camera.name, description=description, model=model)
        else:
            device = CalibratedCamera(
                name=camera.name,
                description=description,
                model=model,
                intrinsic_matrix=np.asarray(calibrated.matrix, dtype=np.float64),
                rotation_matrix=calibrated.rotation_matrix,
                translation_vector=np.asarray(calibrated.translation_mm, dtype=np.float64),
                distortion_coefficients=np.asarray(calibrated.distortion, dtype=np.float64),
            )
        nwbfile.add_device(device)
        devices[camera.name] = device
    nwbfile.add_device(_daq_device(nwbfile, contents))
    return devices


def _daq_device(nwbfile: Any, contents: TrialContents) -> Any:
    from pynwb.device import Device

    daq = contents.config.get("daq", {})
    daq = daq if isinstance(daq, dict) else {}
    backend = str(daq.get("backend", ""))
    model = None
    if backend == "sim":
        model = _device_model(
            nwbfile,
            "twin DAQ",
            "the twin's simulated DAQ (acquisition.daq.simulated)",
            TWIN_MANUFACTURER,
        )
    elif backend == "nidaqmx":
        model = _device_model(
            nwbfile, "NI-DAQmx device", "a DAQ driven through NI-DAQmx", "National Instruments"
        )
    device_name = f", device {daq['device']}" if backend == "nidaqmx" and "device" in daq else ""
    return Device(
        name="daq",
        description=(
            f"Data acquisition device ({backend or 'backend not recorded'}{device_name}) "
            f"sampling the analog inputs at {contents.daq.rate_hz:g} Hz; its sample clock is the "
            "session's master clock (time 0 is its sample 0), and it records the camera trigger "
            "line."
        ),
        model=model,
    )


def _device_model(nwbfile: Any, name: str, description: str, manufacturer: str) -> Any:
    from pynwb.device import DeviceModel

    if name not in nwbfile.device_models:
        nwbfile.add_device_model(
            DeviceModel(name=name, manufacturer=manufacturer, description=description)
        )
    return nwbfile.device_models[name]


def _camera_description(camera: CameraContents, calibrated: Camera | None, source: str) -> str:
    text = (
        f"Camera {camera.name}: {camera.width_px}x{camera.height_px} px, Mono8, backend "
        f"{camera.backend or 'not recorded'}; frame k of every camera belongs to trigger pulse k."
    )
    if calibrated is None:
        return text + " No calibration in the trial file."
    return text + (
        " Calibration (OpenCV's and anipose's conventions): world -> camera is "
        "x_cam = R @ x_world + t with R = rotation_matrix and t = translation_vector in "
        "millimeters; intrinsic_matrix in pixels; distortion_coefficients are OpenCV's "
        f"(k1, k2, p1, p2, k3). Source: {source or 'not recorded'}."
    )
