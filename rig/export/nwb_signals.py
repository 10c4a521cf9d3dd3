"""EMG and force as NWB TimeSeries; trigger pulses and camera frames as NWB EventsTables; the
timing helpers the other NWB modules share."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rig.export.timing import RowTimes, regular_timing
from rig.export.trial_contents import CameraContents, DaqContents

# gzip level 4: HDF5's usual trade-off for numbers, readable by every HDF5 tool.
DATA_GZIP_LEVEL = 4
PULSES_TABLE = "camera_trigger_pulses"
UNIT_NAMES = {"V": "volts", "mV": "millivolts", "uV": "microvolts", "N": "newtons"}
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_]+")


def compressed(array: np.ndarray) -> Any:
    """``array`` wrapped for gzip compression in the NWB file."""
    from hdmf.backends.hdf5 import H5DataIO

    return H5DataIO(
        np.ascontiguousarray(array), compression="gzip", compression_opts=DATA_GZIP_LEVEL
    )


def safe_name(text: str) -> str:
    """A name safe for an HDF5 object and a MATLAB field: ``emg_onset_from_takeoff_s/emg_x`` ->
    ``emg_onset_from_takeoff_s__emg_x``."""
    return _NOT_A_NAME.sub("__", text).strip("_") or "value"


def series_timing(times_s: np.ndarray, rate_hz: float) -> dict[str, Any]:
    """A TimeSeries' timing arguments: ``starting_time`` and ``rate`` when the rows are regular
    on the DAQ's clock (NWB's preference), else their ``timestamps``."""
    regular = regular_timing(times_s, rate_hz)
    if regular is None:
        return {"timestamps": np.asarray(times_s, dtype=np.float64)}
    starting_time_s, series_rate_hz = regular
    return {"starting_time": starting_time_s, "rate": series_rate_hz}


def shared_timing(timing: dict[str, Any], series: Sequence[Any]) -> dict[str, Any]:
    """Timing for the next of ``series``: timestamps are stored once, by the first series, and
    linked from the others."""
    if "timestamps" in timing and series:
        return {"timestamps": series[0]}
    return timing


def add_analog_series(
    nwbfile: Any, daq: DaqContents, physical_channels: dict[str, str], notes: list[str]
) -> None:
    """One TimeSeries in ``acquisition`` per kind and unit of channel (``emg``, ``force``):
    (S, C) with the channels as columns, at the DAQ's rate from time 0."""
    from pynwb import TimeSeries

    if daq.analog.shape[0] == 0:
        notes.append("the trial has no DAQ samples: no EMG or force series")
        return
    groups: dict[tuple[str, str], list[int]] = {}
    for column, key in enumerate(zip(daq.channel_kinds, daq.channel_units, strict=True)):
        groups.setdefault(key, []).append(column)
    kinds = [kind for kind, _ in groups]
    for (kind, unit), columns in groups.items():
        name = safe_name(kind) if kinds.count(kind) == 1 else safe_name(f"{kind}_{unit}")
        names = [daq.channel_names[column] for column in columns]
        inputs = [physical_channels.get(channel, "") for channel in names]
        wired = f" (inputs {', '.join(inputs)})" if all(inputs) else ""
        nwbfile.add_acquisition(
            TimeSeries(
                name=name,
                data=compressed(daq.analog[:, columns]),
                unit=UNIT_NAMES.get(unit, unit or "n.a."),
                rate=daq.rate_hz,
                starting_time=0.0,
                description=(
                    f"{kind} channels, one column each, in this order: {', '.join(names)}"
                    f"{wired}; sampled on the DAQ's clock (the session's master clock)."
                ),
                comments="channel_names: " + json.dumps(names),
            )
        )


def add_events_table(
    nwbfile: Any,
    *,
    name: str,
    description: str,
    source: str,
    timestamps_s: np.ndarray,
    resolution_s: float,
    columns: dict[str, tuple[str, np.ndarray]],
) -> None:
    """An EventsTable: ``timestamp`` (s on the session's clock) and ``columns`` mapping a name to
    (description, (R,) values)."""
    from hdmf.common import VectorData
    from pynwb.event import EventsTable, TimestampVectorData

    vectors = [
        TimestampVectorData(
            name="timestamp",
            description="seconds from the session's time 0 (DAQ sample 0)",
            data=np.asarray(timestamps_s, dtype=np.float64),
            resolution=resolution_s,
        )
    ]
    vectors += [
        VectorData(name=column, description=text, data=np.asarray(values))
        for column, (text, values) in columns.items()
    ]
    nwbfile.add_events_table(
        EventsTable(name=name, description=description, source_description=source, columns=vectors)
    )


def add_pulse_table(nwbfile: Any, daq: DaqContents, notes: list[str]) -> None:
    """The camera trigger pulses recorded on the DAQ: the EventsTable ``camera_trigger_pulses``."""
    pulses = daq.trigger_sample_index
    if pulses.size == 0:
        notes.append("the trial recorded no trigger pulse: frames have no time")
        return
    add_events_table(
        nwbfile,
        name=PULSES_TABLE,
        description=(
            "Camera trigger pulses as recorded on the DAQ's trigger line (rising edges): frame k "
            "of every camera belongs to pulse k."
        ),
        source="DAQ digital input clocked by the analog sample clock",
        timestamps_s=pulses / daq.rate_hz,
        resolution_s=1.0 / daq.rate_hz,
        columns={
            "trigger_index": ("the pulse number", np.arange(pulses.size, dtype=np.int64)),
            "daq_sample_index": ("the DAQ sample of the pulse's rising edge", pulses),
        },
    )


def frame_table_name(camera: str) -> str:
    return f"{camera}_frames"


def add_frame_table(
    nwbfile: Any, camera: CameraContents, times: RowTimes, rate_hz: float, notes: list[str]
) -> np.ndarray:
    """The EventsTable ``<camera>_frames`` of every frame with a time; returns those frames' rows
    in the trial file (R,) int64, the rows of the video and of the 2D poses too."""
    rows = np.flatnonzero(times.known).astype(np.int64)
    if rows.size < camera.frame_count:
        notes.append(
            f"{camera.name}: {camera.frame_count - rows.size} frames without a known pulse left out"
        )
    if rows.size == 0:
        return rows
    add_events_table(
        nwbfile,
        name=frame_table_name(camera.name),
        description=(
            f"Every frame of {camera.name} that has a time: its trigger pulse's DAQ sample divided "
            "by the DAQ rate. Rows are in the order of the video and of the 2D poses."
        ),
        source="the camera's frame table in the trial file",
        timestamps_s=times.times_s[rows],
        resolution_s=1.0 / rate_hz,
        columns={
            "frame_row": ("row of the frame in the trial file", rows),
            "frame_id": ("the camera's own frame counter", camera.frame_id[rows]),
            "trigger_index": ("the trigger pulse of the frame", camera.trigger_index[rows]),
            "daq_sample_index": (
                "DAQ sample of that pulse, -1 if it was not recorded",
                camera.daq_sample_index[rows],
            ),
            "t_host_ns": (
                "host monotonic clock when the frame was read (ns), for latency only",
                camera.t_host_ns[rows],
            ),
            "t_device_ns": (
                "the camera's clock (ns), -1 where it has none",
                camera.t_device_ns[rows],
            ),
            "time_estimated": (
                "1 where the pulse was not recorded and its time is estimated from the recorded "
                "pulses' rate",
                times.estimated[rows].astype(np.uint8),
            ),
        },
    )
    return rows
