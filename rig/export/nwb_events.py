"""The jump detector's events in NWB.

Each kind of event but ``jump`` (``crouch_onset``, ``takeoff``, ``landing``) is an EventsTable
``jump_detector_<name>``: its time on the session's clock, the nearest pulse and DAQ sample, and
one column per measurement the detector gave (NaN where an event lacks it). Each ``jump`` event,
the detector's summary of one jump, is a row of the TimeIntervals ``jumps``: crouch onset (or
take-off) to landing (or take-off), with take-off, crouch onset and landing times on the
session's clock and every measurement.

The trial file counts event times (``t_s`` and the instants ``takeoff_s``, ``crouch_onset_s``,
``landing_s``) from trigger pulse 0; NWB times count from DAQ sample 0, so pulse 0's time is
added. Measurement names become column names with ``/`` written ``__``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rig.export.nwb_signals import add_events_table, safe_name
from tracking.jump_detection import JumpEvent

JUMP_EVENT = "jump"
JUMPS_TABLE = "jumps"
EVENTS_TABLE_PREFIX = "jump_detector_"
# Values of the jump event that are instants from pulse 0 -> their column on the session's clock.
JUMP_INSTANTS = {"crouch_onset_s": "crouch_onset_time", "landing_s": "landing_time"}


def add_jump_events(
    nwbfile: Any,
    events: Sequence[JumpEvent],
    pulse0_s: float,
    rate_hz: float,
    notes: list[str],
) -> None:
    """Add ``events`` (in the order of the trial file's /events table) to ``nwbfile``."""
    by_name: dict[str, list[tuple[int, JumpEvent]]] = {}
    for number, event in enumerate(events):
        if not math.isfinite(event.t_s):
            notes.append(f"event {number} ({event.name}) has no time: left out")
            continue
        by_name.setdefault(event.name, []).append((number, event))
    for name, numbered in by_name.items():
        if name == JUMP_EVENT:
            _add_jumps(nwbfile, numbered, pulse0_s)
        else:
            _add_events_of_one_kind(nwbfile, name, numbered, pulse0_s, rate_hz)


def _add_events_of_one_kind(
    nwbfile: Any,
    name: str,
    numbered: Sequence[tuple[int, JumpEvent]],
    pulse0_s: float,
    rate_hz: float,
) -> None:
    columns: dict[str, tuple[str, np.ndarray]] = {
        "event_number": (
            "the event's number in the trial file's /events table",
            np.array([number for number, _ in numbered], dtype=np.int64),
        ),
        "trigger_index": (
            "the camera pulse nearest the event, -1 if none",
            np.array([event.trigger_index for _, event in numbered], dtype=np.int64),
        ),
        "daq_sample_index": (
            "the DAQ sample nearest the event",
            np.array([event.daq_sample_index for _, event in numbered], dtype=np.int64),
        ),
    }
    for value_name in value_names(event for _, event in numbered):
        columns[safe_name(value_name)] = (
            f"the jump detector's {value_name!r} (docs/jump-detection.md)",
            np.array(
                [event.values.get(value_name, math.nan) for _, event in numbered],
                dtype=np.float64,
            ),
        )
    add_events_table(
        nwbfile,
        name=EVENTS_TABLE_PREFIX + safe_name(name),
        description=(
            f"The jump detector's {name!r} events (docs/jump-detection.md): when each happened on "
            "the session's clock, and the detector's measurements."
        ),
        source="jumprig's jump detector over platform force, EMG and 3D poses",
        timestamps_s=np.array([pulse0_s + event.t_s for _, event in numbered]),
        resolution_s=1.0 / rate_hz,
        columns=columns,
    )


def _add_jumps(nwbfile: Any, numbered: Sequence[tuple[int, JumpEvent]], pulse0_s: float) -> None:
    from pynwb.epoch import TimeIntervals

    jumps = TimeIntervals(
        name=JUMPS_TABLE,
        description=(
            "One row per jump the rig detected: from crouch onset (or take-off when the push had "
            "no crouch) to landing (or take-off when it never landed), with the jump detector's "
            "measurements (docs/jump-detection.md). Times are on the session's clock; "
            "measurements ending in _s that are instants (takeoff_s, crouch_onset_s, landing_s) "
            f"count from trigger pulse 0 as in the trial file, which is at {pulse0_s:.6f} s here."
        ),
    )
    names = value_names(event for _, event in numbered)
    extra = {
        "takeoff_time": "take-off on the session's clock (s)",
        "crouch_onset_time": "crouch onset on the session's clock (s), NaN if none",
        "landing_time": "landing on the session's clock (s), NaN if it never landed",
        "event_number": "the jump event's number in the trial file's /events table",
        "trigger_index": "the camera pulse nearest the take-off",
        "daq_sample_index": "the DAQ sample nearest the take-off",
    }
    for column, description in extra.items():
        jumps.add_column(name=column, description=description)
    for value_name in names:
        jumps.add_column(
            name=safe_name(value_name),
            description=f"the jump detector's {value_name!r} (docs/jump-detection.md)",
        )
    for number, event in numbered:
        takeoff_s = pulse0_s + event.values.get("takeoff_s", event.t_s)
        instants = {
            column: pulse0_s + event.values.get(value, math.nan)
            for value, column in JUMP_INSTANTS.items()
        }
        start_s, stop_s = instants["crouch_onset_time"], instants["landing_time"]
        jumps.add_interval(
            start_time=start_s if math.isfinite(start_s) else takeoff_s,
            stop_time=stop_s if math.isfinite(stop_s) else takeoff_s,
            takeoff_time=takeoff_s,
            event_number=number,
            trigger_index=event.trigger_index,
            daq_sample_index=event.daq_sample_index,
            **instants,
            **{safe_name(name): event.values.get(name, math.nan) for name in names},
        )
    nwbfile.add_time_intervals(jumps)


def value_names(events: Iterable[JumpEvent]) -> list[str]:
    """Every measurement name of ``events``, in first-seen order."""
    names: dict[str, None] = {}
    for event in events:
        for name in event.values:
            names.setdefault(name, None)
    return list(names)
