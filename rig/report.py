"""`rig report FILE`: the plots a scientist looks at after a trial, one PNG each.

1. ``<trial_id>_force_emg.png``: platform forces and EMG (raw, with its rectified and smoothed
   envelope) aligned to take-off, with crouch onset, take-off, landing and each muscle's EMG onset
   marked; one figure per jump (``_force_emg_jump<n>.png`` when there are several).
2. ``<trial_id>_trajectory.png``: every body part's 3D path seen from the side (x-z) and from
   above (x-y), and the speed of the body centre and a few parts over time.
3. ``<trial_id>_frame_accounting.png``: per camera, pulses against frames written, the dropped
   trigger indices on the trial's time axis, and the inter-frame intervals.
4. ``<trial_id>_summary.png``: a table of each jump's numbers.

The numbers behind the plots come from functions that return plain arrays (:func:`aligned_traces`,
:func:`body_speed`, :func:`frame_accounting`, :func:`summary_rows`), so they can be checked
against the file and reused in notebooks. Plots are drawn on :class:`matplotlib.figure.Figure`
with the Agg canvas: no pyplot, no global state shared between calls. docs/report.md describes
the figures.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from rig.accounting import account_camera
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, TrialFileError, open_trial
from tracking.jump_detection import (
    EMG_ONSET_PREFIX,
    EVENTS_TABLE_DTYPE,
    JumpDetectorSettings,
    JumpEvent,
    events_from_table,
)

# matplotlib 3.9 calls pyparsing names that pyparsing 3.3 deprecates, when imported and when it
# parses font names while drawing: warnings about those packages, not the rig, that the tests
# would turn into errors. Only these are silenced, and only around matplotlib's own work.
_PYPARSING_DEPRECATION = r"'\w+' deprecated - use '\w+'"

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", _PYPARSING_DEPRECATION, DeprecationWarning)
    from matplotlib import colormaps
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, StrMethodFormatter
    from matplotlib.transforms import Bbox

# Exit codes, the same as `rig inspect` gives for the same outcomes.
EXIT_OK = 0
EXIT_FAILED = 1

EVENTS_PATH = "/events"
POSE3D_POINTS_PATH = "/pose3d/points"
POSE3D_TRIGGER_INDEX_PATH = "/pose3d/trigger_index"
DROPPED_TRIGGER_INDICES = "dropped_trigger_indices"

# EMG envelope: rectified about the channel's median (its DC offset), then a centred moving
# mean this long. 10 ms shows the burst's shape; the detector's own 2 ms mean is too ragged to read.
EMG_ENVELOPE_MS = 10.0
# The force/EMG window around take-off: at least this much before and after, and always this
# margin beyond crouch onset and landing.
WINDOW_BEFORE_TAKEOFF_MS = 600.0
WINDOW_AFTER_TAKEOFF_MS = 300.0
WINDOW_MARGIN_MS = 150.0
# Parts whose speed is drawn beside the body centre's (those the file has).
SPEED_PARTS: tuple[str, ...] = ("nose", "forepaw", "hip", "toe")
# A trace drawn with more points than this is drawn as per-bin minima and maxima instead: the
# same picture at a fraction of the cost.
MAX_DRAWN_POINTS = 20_000
DPI = 100

_CROUCH_STYLE: dict[str, Any] = {"color": "tab:green", "linestyle": "--", "linewidth": 1.2}
_TAKEOFF_STYLE: dict[str, Any] = {"color": "tab:red", "linestyle": "-", "linewidth": 1.4}
_LANDING_STYLE: dict[str, Any] = {"color": "tab:blue", "linestyle": "-.", "linewidth": 1.2}
_EMG_ONSET_STYLE: dict[str, Any] = {"color": "tab:orange", "linestyle": ":", "linewidth": 2.0}


# --- what the report reads -----------------------------------------------------------------------


@dataclass(frozen=True)
class JumpMarks:
    """One jump's events on the DAQ's sample clock: fractional DAQ sample indices, NaN where
    the event is unknown (no crouch before a push, no landing), and the jump's values."""

    number: int  # 1, 2, ... in the order of the file
    takeoff_sample: float
    crouch_onset_sample: float
    landing_sample: float
    emg_onset_from_takeoff_s: dict[str, float]
    values: dict[str, float]


@dataclass(frozen=True)
class Pose3d:
    points_mm: np.ndarray  # (M, K, 3) float64, rows sorted by trigger index
    trigger_index: np.ndarray  # (M,) int64, strictly increasing, each with a recorded pulse
    body_parts: tuple[str, ...]  # (K,)


@dataclass(frozen=True)
class CameraRecord:
    name: str
    trigger_index: np.ndarray  # (N,) int64, committed frames
    t_host_ns: np.ndarray  # (N,) int64
    t_device_ns: np.ndarray  # (N,) int64, -1 where the camera has no clock
    dropped_trigger_indices: np.ndarray | None  # (D,) int64 as the rig recorded it, if it did


@dataclass(frozen=True)
class TrialData:
    """What the report needs from one trial file, committed rows only."""

    path: Path
    trial_id: str
    subject: str
    daq_rate_hz: float
    analog: np.ndarray  # (S, C) float32
    channel_names: tuple[str, ...]  # (C,)
    channel_kinds: tuple[str, ...]  # (C,) "emg", "force", ...
    channel_units: tuple[str, ...]  # (C,)
    pulse_samples: np.ndarray  # (P,) int64, DAQ sample of every trigger pulse
    cameras: tuple[CameraRecord, ...]
    events: tuple[JumpEvent, ...] | None  # None: the file has no /events
    pose3d: Pose3d | None  # None: the file has no /pose3d
    jumps: tuple[JumpMarks, ...] = field(default=())

    @property
    def pulse0_sample(self) -> int:
        """Event times in the file count from pulse 0; without pulses, from DAQ sample 0."""
        return int(self.pulse_samples[0]) if self.pulse_samples.size else 0

    def channels_of_kind(self, kind: str) -> list[int]:
        return [c for c, channel_kind in enumerate(self.channel_kinds) if channel_kind == kind]


def load_trial(path: Path) -> TrialData:
    """Read a trial file for the report; TrialFileError when it cannot be read as one."""
    path = Path(path)
    with open_trial(path) as trial:
        extras = _read_group_attributes(path, trial.camera_names, trial.opened_in_swmr_mode)
        analog = trial.daq_analog()
        pulses = trial.trigger_sample_index().astype(np.int64)
        cameras = tuple(
            _camera_record(trial, name, extras.has_dropped[name]) for name in trial.camera_names
        )
        events = _read_events(trial) if extras.has_events else None
        pose3d = _read_pose3d(trial, extras.body_parts, pulses.size) if extras.has_pose3d else None
        channel_names = tuple(str(name) for name in trial.daq_channel_names)
        units = tuple(str(unit) for unit in trial.daq_channel_units)
        if len(units) != len(channel_names):
            units = ("",) * len(channel_names)
        data = TrialData(
            path=path,
            trial_id=str(trial.attrs.get(layout.ATTR_TRIAL_ID) or path.stem),
            subject=str(trial.attrs.get(layout.ATTR_SUBJECT, "")),
            daq_rate_hz=trial.daq_rate_hz,
            analog=analog,
            channel_names=channel_names,
            channel_kinds=_channel_kinds(extras.kinds, channel_names, units),
            channel_units=units,
            pulse_samples=pulses,
            cameras=cameras,
            events=events,
            pose3d=pose3d,
        )
    if not (data.daq_rate_hz > 0 and math.isfinite(data.daq_rate_hz)):
        raise TrialFileError(path, layout.DAQ_ANALOG, f"rate_hz is {data.daq_rate_hz}, not > 0")
    if data.analog.ndim != 2 or data.analog.shape[1] != len(channel_names):
        raise TrialFileError(
            path,
            layout.DAQ_ANALOG,
            f"shape {data.analog.shape} does not match {len(channel_names)} channel names",
        )
    jumps = jumps_from_events(data.events or (), data.pulse0_sample, data.daq_rate_hz)
    return dataclasses.replace(data, jumps=jumps)


@dataclass(frozen=True)
class _GroupAttributes:
    kinds: tuple[str, ...] | None
    body_parts: tuple[str, ...] | None
    has_events: bool
    has_pose3d: bool
    has_dropped: dict[str, bool]


def _read_group_attributes(path: Path, cameras: Sequence[str], swmr: bool) -> _GroupAttributes:
    """Attributes of groups and datasets, which the reader does not offer (it offers the root's),
    and which optional datasets exist. The reader holds the file open: HDF5 opens it a second
    time only with the same SWMR and locking flags, so both lockings are tried."""
    failures: list[Exception] = []
    for locking in (False, True):
        try:
            return _group_attributes(path, cameras, swmr=swmr, locking=locking)
        except (OSError, KeyError, RuntimeError) as error:
            failures.append(error)
    raise TrialFileError(path, "/", f"attributes cannot be read: {failures[0]}") from failures[0]


def _group_attributes(
    path: Path, cameras: Sequence[str], *, swmr: bool, locking: bool
) -> _GroupAttributes:
    with h5py.File(path, "r", swmr=swmr, locking=locking) as h5file:
        analog = h5file[layout.DAQ_ANALOG]
        kinds = analog.attrs.get(layout.ATTR_KINDS)
        body_parts = None
        if POSE3D_POINTS_PATH in h5file:
            body_parts = h5file[POSE3D_POINTS_PATH].attrs.get("body_parts")
        return _GroupAttributes(
            kinds=None if kinds is None else tuple(_text(kind) for kind in kinds),
            body_parts=None if body_parts is None else tuple(_text(p) for p in body_parts),
            has_events=EVENTS_PATH in h5file,
            has_pose3d=POSE3D_POINTS_PATH in h5file and POSE3D_TRIGGER_INDEX_PATH in h5file,
            has_dropped={
                camera: layout.camera_dataset(camera, DROPPED_TRIGGER_INDICES) in h5file
                for camera in cameras
            },
        )


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _channel_kinds(
    kinds: tuple[str, ...] | None, names: tuple[str, ...], units: tuple[str, ...]
) -> tuple[str, ...]:
    if kinds is not None and len(kinds) == len(names):
        return kinds
    # Files without the kinds attribute: a channel in newtons is a force, the rest EMG.
    return tuple("force" if unit == "N" else "emg" for unit in units)


def _camera_record(trial: TrialFile, camera: str, has_dropped: bool) -> CameraRecord:
    table = trial.frame_table(camera)
    dropped = None
    if has_dropped:
        dropped = trial.read(layout.camera_dataset(camera, DROPPED_TRIGGER_INDICES))
        dropped = np.asarray(dropped, dtype=np.int64).ravel()
    return CameraRecord(
        name=camera,
        trigger_index=table[layout.TRIGGER_INDEX].astype(np.int64),
        t_host_ns=table[layout.T_HOST_NS].astype(np.int64),
        t_device_ns=table[layout.T_DEVICE_NS].astype(np.int64),
        dropped_trigger_indices=dropped,
    )


def _read_events(trial: TrialFile) -> tuple[JumpEvent, ...]:
    table = trial.read(EVENTS_PATH)
    if table.dtype != EVENTS_TABLE_DTYPE:
        raise TrialFileError(trial.path, EVENTS_PATH, f"not an events table: dtype {table.dtype}")
    return tuple(events_from_table(table))


def _read_pose3d(trial: TrialFile, body_parts: tuple[str, ...] | None, pulses: int) -> Pose3d:
    points = trial.read(POSE3D_POINTS_PATH).astype(np.float64)
    trigger_index = trial.read(POSE3D_TRIGGER_INDEX_PATH).astype(np.int64)
    if points.ndim != 3 or points.shape[2] != 3 or trigger_index.shape != (points.shape[0],):
        raise TrialFileError(
            trial.path,
            POSE3D_POINTS_PATH,
            f"shape {points.shape} with trigger_index {trigger_index.shape}: expected (M, K, 3) "
            "and (M,)",
        )
    parts = body_parts or ()
    if len(parts) != points.shape[1]:
        parts = tuple(f"part_{k}" for k in range(points.shape[1]))
    # Only rows whose pulse was recorded have a time; one row per trigger index, in order.
    known = (trigger_index >= 0) & (trigger_index < pulses)
    trigger_index, rows = np.unique(trigger_index[known], return_index=True)
    return Pose3d(points[known][rows], trigger_index, parts)


def jumps_from_events(
    events: Sequence[JumpEvent], pulse0_sample: int, daq_rate_hz: float
) -> tuple[JumpMarks, ...]:
    """The jumps of an event list. A "jump" event carries everything; a file whose jump summary
    never came (a trial cut short after take-off) still has "takeoff" events, which are paired
    with the landing and crouch onset around them."""

    def sample(t_s: float) -> float:
        return pulse0_sample + t_s * daq_rate_hz if math.isfinite(t_s) else math.nan

    # An event has no time when the trial recorded no pulse: nothing to place it on.
    summaries = [
        event
        for event in events
        if event.name == "jump" and math.isfinite(event.values.get("takeoff_s", event.t_s))
    ]
    if summaries:
        return tuple(
            JumpMarks(
                number=number,
                takeoff_sample=sample(event.values.get("takeoff_s", event.t_s)),
                crouch_onset_sample=sample(event.values.get("crouch_onset_s", math.nan)),
                landing_sample=sample(event.values.get("landing_s", math.nan)),
                emg_onset_from_takeoff_s=_emg_onsets(event.values),
                values=dict(event.values),
            )
            for number, event in enumerate(summaries, start=1)
        )
    takeoffs = [event for event in events if event.name == "takeoff" and math.isfinite(event.t_s)]
    jumps = []
    for number, takeoff in enumerate(takeoffs, start=1):
        next_t_s = takeoffs[number].t_s if number < len(takeoffs) else math.inf
        previous_t_s = takeoffs[number - 2].t_s if number > 1 else -math.inf
        landing = [e for e in events if e.name == "landing" and takeoff.t_s < e.t_s < next_t_s]
        crouch = [
            e for e in events if e.name == "crouch_onset" and previous_t_s < e.t_s < takeoff.t_s
        ]
        values = dict(takeoff.values)
        if landing:
            values.update(landing[0].values)
        jumps.append(
            JumpMarks(
                number=number,
                takeoff_sample=sample(takeoff.t_s),
                crouch_onset_sample=sample(crouch[-1].t_s) if crouch else math.nan,
                landing_sample=sample(landing[0].t_s) if landing else math.nan,
                emg_onset_from_takeoff_s={},
                values=values,
            )
        )
    return tuple(jumps)


def _emg_onsets(values: dict[str, float]) -> dict[str, float]:
    return {
        name[len(EMG_ONSET_PREFIX) :]: value
        for name, value in values.items()
        if name.startswith(EMG_ONSET_PREFIX)
    }


# --- the numbers behind the plots ----------------------------------------------------------------


@dataclass(frozen=True)
class AlignedTraces:
    """Analog channels over a window, on a time axis relative to an origin sample."""

    first_sample: int  # DAQ sample index of row 0
    origin_sample: float  # the (fractional) DAQ sample at time 0: take-off, or pulse 0
    time_ms: np.ndarray  # (n,) float64, ms from the origin
    raw: np.ndarray  # (n, C) float64, each channel in its unit
    envelope: np.ndarray  # (n, C) float64: EMG envelope; NaN for channels that are not EMG


def emg_envelope(values: np.ndarray, rate_hz: float) -> np.ndarray:
    """Envelope (S,) of one EMG channel (S,): rectified about its median, then a centred moving
    mean of EMG_ENVELOPE_MS (shorter at the ends, where fewer samples exist)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be (S,), got {values.shape}")
    if values.size == 0:
        return values.copy()
    rectified = np.abs(values - np.median(values))
    width = max(1, round(EMG_ENVELOPE_MS * 1e-3 * rate_hz))
    sums = np.concatenate(([0.0], np.cumsum(rectified)))
    index = np.arange(values.size)
    start = np.clip(index - width // 2, 0, values.size)
    stop = np.clip(index - width // 2 + width, 0, values.size)
    return (sums[stop] - sums[start]) / (stop - start)


def aligned_traces(data: TrialData, jump: JumpMarks | None) -> AlignedTraces:
    """Every analog channel around ``jump``'s take-off (time 0), or the whole trial from pulse 0
    when there is no jump."""
    samples = data.analog.shape[0]
    if jump is None:
        first, stop, origin = 0, samples, float(data.pulse0_sample)
    else:
        origin = jump.takeoff_sample
        per_ms = data.daq_rate_hz / 1000.0
        before_ms = WINDOW_BEFORE_TAKEOFF_MS
        if math.isfinite(jump.crouch_onset_sample):
            before_ms = max(before_ms, (origin - jump.crouch_onset_sample) / per_ms)
        after_ms = WINDOW_AFTER_TAKEOFF_MS
        if math.isfinite(jump.landing_sample):
            after_ms = max(after_ms, (jump.landing_sample - origin) / per_ms)
        first = max(0, math.floor(origin - (before_ms + WINDOW_MARGIN_MS) * per_ms))
        stop = min(samples, math.ceil(origin + (after_ms + WINDOW_MARGIN_MS) * per_ms) + 1)
        stop = max(stop, first)
    raw = data.analog[first:stop].astype(np.float64)
    envelope = np.full(raw.shape, np.nan)
    for channel in data.channels_of_kind("emg"):
        # The envelope of the whole channel, then cut: no edge effects inside the window.
        envelope[:, channel] = emg_envelope(data.analog[:, channel], data.daq_rate_hz)[first:stop]
    time_ms = (np.arange(first, stop) - origin) * (1000.0 / data.daq_rate_hz)
    return AlignedTraces(first, origin, time_ms, raw, envelope)


@dataclass(frozen=True)
class SpeedSeries:
    """Body-part positions and speeds per 3D row, timed by the row's trigger pulse."""

    trigger_index: np.ndarray  # (M,) int64
    time_ms: np.ndarray  # (M,) float64, ms from the origin (take-off of jump 1, or pulse 0)
    centre_mm: np.ndarray  # (M, 3) mean of the detector's centre parts; NaN where one is missing
    centre_speed_mm_per_s: np.ndarray  # (M,)
    part_speed_mm_per_s: np.ndarray  # (M, K)
    centre_parts: tuple[str, ...]


def body_speed(data: TrialData, pose3d: Pose3d, origin_sample: float) -> SpeedSeries:
    """Speeds as the central difference of positions over the pulses' DAQ times
    (``np.gradient``), unsmoothed: NaN next to a missing point."""
    pulse_samples = data.pulse_samples[pose3d.trigger_index].astype(np.float64)
    time_s = pulse_samples / data.daq_rate_hz
    time_ms = (pulse_samples - origin_sample) * (1000.0 / data.daq_rate_hz)
    centre_parts = (
        tuple(part for part in JumpDetectorSettings().centre_parts if part in pose3d.body_parts)
        or pose3d.body_parts
    )
    centre_columns = [pose3d.body_parts.index(part) for part in centre_parts]
    # Like the detector: a row has a centre only if every centre part is there.
    centre = pose3d.points_mm[:, centre_columns, :].mean(axis=1)
    rows = pose3d.points_mm.shape[0]
    if rows >= 2:
        centre_speed = np.linalg.norm(np.gradient(centre, time_s, axis=0), axis=-1)
        part_speed = np.linalg.norm(np.gradient(pose3d.points_mm, time_s, axis=0), axis=-1)
    else:
        centre_speed = np.full(rows, np.nan)
        part_speed = np.full(pose3d.points_mm.shape[:2], np.nan)
    return SpeedSeries(
        pose3d.trigger_index, time_ms, centre, centre_speed, part_speed, centre_parts
    )


@dataclass(frozen=True)
class CameraFrameAccounting:
    camera: str
    pulses: int
    frames_written: int
    dropped_trigger_indices: np.ndarray  # (D,) int64, sorted
    interframe_interval_ms: np.ndarray  # (N - 1,) float64, between consecutive frames
    interval_clock: str  # "device" or "host": the clock the intervals come from

    @property
    def frames_dropped(self) -> int:
        return int(self.dropped_trigger_indices.size)


def frame_accounting(data: TrialData) -> list[CameraFrameAccounting]:
    """Per camera: pulses, frames written, the trigger indices of dropped frames (as the rig
    recorded them, or from the frames' trigger indices in a file the rig never finished) and the
    intervals between frames (camera clock if it has one that only goes forward, else host)."""
    pulses = int(data.pulse_samples.size)
    accounts = []
    for camera in data.cameras:
        if camera.dropped_trigger_indices is not None:
            dropped = np.sort(camera.dropped_trigger_indices)
        else:
            dropped = account_camera(
                camera.name, camera.trigger_index, pulses
            ).dropped_trigger_indices
        device_steps = np.diff(camera.t_device_ns)
        # A camera without a clock stores -1; some clocks wrap (GenICam's simulator, every s).
        if (
            camera.t_device_ns.size >= 2
            and (camera.t_device_ns >= 0).all()
            and (device_steps > 0).all()
        ):
            intervals_ns, clock = device_steps, "device"
        else:
            intervals_ns, clock = np.diff(camera.t_host_ns), "host"
        accounts.append(
            CameraFrameAccounting(
                camera=camera.name,
                pulses=pulses,
                frames_written=int(camera.trigger_index.size),
                dropped_trigger_indices=dropped.astype(np.int64),
                interframe_interval_ms=intervals_ns.astype(np.float64) / 1e6,
                interval_clock=clock,
            )
        )
    return accounts


# The summary table: (label, value name, scale to the shown unit, decimals).
_SUMMARY_QUANTITIES: tuple[tuple[str, str, float, int], ...] = (
    ("take-off (s from pulse 0)", "takeoff_s", 1.0, 4),
    ("flight time (ms)", "flight_time_s", 1000.0, 1),
    ("jump height, 3D (mm)", "jump_height_mm", 1.0, 1),
    ("jump height, force (mm)", "jump_height_force_mm", 1.0, 1),
    ("jump distance (mm)", "jump_distance_mm", 1.0, 1),
    ("take-off speed (mm/s)", "takeoff_speed_mm_per_s", 1.0, 0),
    ("take-off angle (deg)", "takeoff_angle_deg", 1.0, 1),
    ("peak push-off force (N)", "peak_push_off_force_n", 1.0, 3),
    ("body weight (N)", "body_weight_n", 1.0, 3),
)


def summary_rows(jumps: Sequence[JumpMarks]) -> list[tuple[str, list[str]]]:
    """The summary table: (label, one formatted value per jump); "-" where a jump lacks it.
    EMG onsets are in ms relative to take-off (negative: before it)."""
    rows: list[tuple[str, list[str]]] = []
    for label, name, scale, decimals in _SUMMARY_QUANTITIES:
        if any(name in jump.values for jump in jumps):
            rows.append(
                (label, [_format(jump.values.get(name), scale, decimals) for jump in jumps])
            )
    if any("peak_push_off_force_n" in j.values and "body_weight_n" in j.values for j in jumps):
        rows.append(
            (
                "peak push-off force (x body weight)",
                [
                    _format(
                        j.values.get("peak_push_off_force_n", math.nan)
                        / j.values.get("body_weight_n", math.nan),
                        1.0,
                        2,
                    )
                    for j in jumps
                ],
            )
        )
    channels = list(dict.fromkeys(c for jump in jumps for c in jump.emg_onset_from_takeoff_s))
    for channel in channels:
        rows.append(
            (
                f"EMG onset {channel} (ms)",
                [_format(j.emg_onset_from_takeoff_s.get(channel), 1000.0, 1) for j in jumps],
            )
        )
    return rows


def _format(value: float | None, scale: float, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * scale:.{decimals}f}"


# --- drawing -------------------------------------------------------------------------------------


def _new_figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _PYPARSING_DEPRECATION, DeprecationWarning)
        figure.savefig(path, dpi=DPI, format="png")
    return path


def drawable_trace(time: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time, values), both (n,), as drawn: unchanged up to MAX_DRAWN_POINTS, else each run of
    consecutive samples reduced to its minimum and maximum (at the run's first time), so every
    sample still shapes the picture."""
    if time.shape != values.shape or time.ndim != 1:
        raise ValueError(f"time and values must both be (n,), got {time.shape}, {values.shape}")
    if time.size <= MAX_DRAWN_POINTS:
        return time, values
    per_bin = math.ceil(time.size / (MAX_DRAWN_POINTS // 2))
    bins = math.ceil(time.size / per_bin)
    padded = np.full(bins * per_bin, np.nan)
    padded[: values.size] = values
    shaped = padded.reshape(bins, per_bin)
    # fmin/fmax skip NaN (the padding, gaps) without warning; a bin of NaN stays NaN.
    low, high = np.fmin.reduce(shaped, axis=1), np.fmax.reduce(shaped, axis=1)
    return np.repeat(time[::per_bin], 2), np.column_stack((low, high)).ravel()


def _mark_events(
    axes: Axes, jump: JumpMarks | None, origin_sample: float, per_ms: float, labelled: bool = True
) -> None:
    """Vertical lines at the jump's crouch onset, take-off and landing; ``labelled``: with
    legend labels (once per axes, however many jumps it marks)."""
    if jump is None:
        return
    for sample, style, label in (
        (jump.crouch_onset_sample, _CROUCH_STYLE, "crouch onset"),
        (jump.takeoff_sample, _TAKEOFF_STYLE, "take-off"),
        (jump.landing_sample, _LANDING_STYLE, "landing"),
    ):
        if math.isfinite(sample):
            axes.axvline(
                (sample - origin_sample) / per_ms, label=label if labelled else None, **style
            )


def draw_force_emg(data: TrialData, jump: JumpMarks | None, path: Path) -> Path:
    traces = aligned_traces(data, jump)
    force = data.channels_of_kind("force")
    emg = data.channels_of_kind("emg")
    other = [c for c in range(len(data.channel_names)) if c not in force and c not in emg]
    channels = force + emg + other
    figure = _new_figure(11.0, 1.0 + 1.7 * max(1, len(channels)))
    axes_list = figure.subplots(max(1, len(channels)), 1, sharex=True, squeeze=False)[:, 0]
    per_ms = data.daq_rate_hz / 1000.0
    for axes, channel in zip(axes_list, channels, strict=False):
        name, unit = data.channel_names[channel], data.channel_units[channel]
        time, values = drawable_trace(traces.time_ms, traces.raw[:, channel])
        if channel in emg:
            axes.plot(time, values, color="0.7", linewidth=0.5, label="raw")
            time, envelope = drawable_trace(traces.time_ms, traces.envelope[:, channel])
            axes.plot(time, envelope, color="tab:purple", linewidth=1.2, label="envelope")
            onset_s = jump.emg_onset_from_takeoff_s.get(name) if jump is not None else None
            if onset_s is not None and math.isfinite(onset_s):
                axes.axvline(onset_s * 1000.0, label="EMG onset", **_EMG_ONSET_STYLE)
        else:
            axes.plot(time, values, color="black", linewidth=0.9)
        _mark_events(axes, jump, traces.origin_sample, per_ms)
        axes.set_ylabel(f"{name}\n({unit})" if unit else name, fontsize=8)
        axes.grid(alpha=0.3)
    if not channels:
        axes_list[0].text(0.5, 0.5, "no analog channels", ha="center", transform=figure.transFigure)
    axes_list[-1].set_xlabel("time from take-off (ms)" if jump else "time from pulse 0 (ms)")
    handles: dict[str, Any] = {}
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=6)
    title = f"{data.trial_id}: force and EMG"
    title += f", jump {jump.number} (aligned to take-off)" if jump else " (no jump events)"
    figure.suptitle(title, x=0.01, ha="left")
    return _save(figure, path)


def draw_trajectory(data: TrialData, pose3d: Pose3d, path: Path) -> Path:
    origin = data.jumps[0].takeoff_sample if data.jumps else float(data.pulse0_sample)
    speed = body_speed(data, pose3d, origin)
    per_ms = data.daq_rate_hz / 1000.0
    figure = _new_figure(12.0, 9.0)
    grid = figure.add_gridspec(2, 2, height_ratios=(1.2, 1.0))
    side, top, speed_axes = (
        figure.add_subplot(grid[0, 0]),
        figure.add_subplot(grid[0, 1]),
        figure.add_subplot(grid[1, :]),
    )
    colours = colormaps["tab10"]
    for k, part in enumerate(pose3d.body_parts):
        colour = colours(k % 10)
        side.plot(pose3d.points_mm[:, k, 0], pose3d.points_mm[:, k, 2], color=colour, lw=1)
        top.plot(
            pose3d.points_mm[:, k, 0], pose3d.points_mm[:, k, 1], color=colour, lw=1, label=part
        )
    for jump in data.jumps:
        for sample, style, label in (
            (jump.takeoff_sample, _TAKEOFF_STYLE, "take-off"),
            (jump.landing_sample, _LANDING_STYLE, "landing"),
        ):
            row = _nearest_row(speed.time_ms, (sample - origin) / per_ms)
            if row is None:
                continue
            marker = "o" if label == "take-off" else "s"
            for axes, vertical in ((side, 2), (top, 1)):
                axes.plot(
                    speed.centre_mm[row, 0],
                    speed.centre_mm[row, vertical],
                    marker=marker,
                    color=style["color"],
                    markersize=8,
                    linestyle="none",
                    label=f"centre at {label}" if jump.number == 1 else None,
                )
    side.set(xlabel="x (mm, along the jump)", ylabel="z (mm, up)", title="side view (x-z)")
    top.set(xlabel="x (mm, along the jump)", ylabel="y (mm)", title="top view (x-y)")
    for axes in (side, top):
        axes.set_aspect("equal", adjustable="datalim")
        axes.grid(alpha=0.3)
    top.legend(fontsize=7, loc="best", ncols=2)
    speed_axes.plot(
        speed.time_ms,
        speed.centre_speed_mm_per_s,
        color="black",
        lw=2,
        label=f"body centre ({', '.join(speed.centre_parts)})",
    )
    for part in SPEED_PARTS:
        if part in pose3d.body_parts:
            k = pose3d.body_parts.index(part)
            speed_axes.plot(
                speed.time_ms,
                speed.part_speed_mm_per_s[:, k],
                color=colours(k % 10),
                lw=0.9,
                label=part,
            )
    for jump in data.jumps:
        _mark_events(speed_axes, jump, origin, per_ms, labelled=jump is data.jumps[0])
    speed_axes.set(
        xlabel=_speed_time_label(len(data.jumps)),
        ylabel="speed (mm/s)",
        title="speed",
    )
    speed_axes.grid(alpha=0.3)
    speed_axes.legend(fontsize=8, loc="upper left", ncols=3)
    figure.suptitle(f"{data.trial_id}: 3D trajectories and speed", x=0.01, ha="left")
    return _save(figure, path)


def _speed_time_label(jumps: int) -> str:
    if jumps == 0:
        return "time from pulse 0 (ms)"
    return "time from take-off (ms)" if jumps == 1 else "time from the take-off of jump 1 (ms)"


def _nearest_row(times: np.ndarray, time: float) -> int | None:
    if times.size == 0 or not math.isfinite(time):
        return None
    return int(np.argmin(np.abs(times - time)))


def draw_frame_accounting(data: TrialData, path: Path) -> Path:
    accounts = frame_accounting(data)
    figure = _new_figure(12.0, 9.0)
    bars, drops, intervals = figure.subplots(3, 1)
    names = [account.camera for account in accounts]
    positions = np.arange(len(accounts))
    width = 0.27
    for offset, label, values, colour in (
        (-width, "pulses", [a.pulses for a in accounts], "0.6"),
        (0.0, "frames written", [a.frames_written for a in accounts], "tab:blue"),
        (width, "frames dropped", [a.frames_dropped for a in accounts], "tab:red"),
    ):
        drawn = bars.bar(positions + offset, values, width, label=label, color=colour)
        bars.bar_label(drawn, fontsize=8)
    bars.set_xticks(positions, names)
    bars.set(ylabel="count", title="pulses, frames written, frames dropped")
    bars.legend(fontsize=8, loc="lower right")
    pulse_s = (data.pulse_samples - data.pulse0_sample) / data.daq_rate_hz
    for row, account in enumerate(accounts):
        indices = account.dropped_trigger_indices
        recorded = indices[(indices >= 0) & (indices < pulse_s.size)]
        drops.plot(
            pulse_s[recorded], np.full(recorded.size, row), "|", color="tab:red", markersize=14
        )
        drops.text(
            0.005,
            row + 0.3,
            _dropped_label(indices),
            transform=drops.get_yaxis_transform(),
            va="center",
            fontsize=8,
            color="0.3",
        )
    if pulse_s.size:
        drops.set_xlim(-0.02 * max(pulse_s[-1], 1e-3), pulse_s[-1] * 1.02 + 1e-3)
    drops.set_yticks(positions, names)
    drops.set_ylim(-0.7, len(accounts) - 0.3)
    drops.set(xlabel="time from pulse 0 (s)", title="dropped trigger indices")
    drops.grid(axis="x", alpha=0.3)
    nominal_ms = _nominal_interval_ms(data.pulse_samples, data.daq_rate_hz)
    finite = [a.interframe_interval_ms for a in accounts if a.interframe_interval_ms.size]
    if finite:
        every = np.concatenate(finite)
        low, high = float(every.min()), float(every.max())
        edges = np.linspace(low, high + max(1e-3, 0.01 * (high - low)), 61)
        for k, account in enumerate(accounts):
            if account.interframe_interval_ms.size:
                intervals.hist(
                    account.interframe_interval_ms,
                    bins=edges,
                    histtype="step",
                    color=colormaps["tab10"](k % 10),
                    label=f"{account.camera} ({account.interval_clock} clock)",
                )
        intervals.set_yscale("log")
        # Plain numbers: the default 10^n labels go through mathtext, whose parser trips
        # pyparsing's deprecations (and is slow to build).
        intervals.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        intervals.yaxis.set_minor_formatter(NullFormatter())
    if nominal_ms is not None:
        intervals.axvline(nominal_ms, color="black", linestyle=":", label="pulse period")
    intervals.set(
        xlabel="interval between consecutive frames (ms)",
        ylabel="frames",
        title="inter-frame intervals",
    )
    intervals.legend(fontsize=8)
    figure.suptitle(f"{data.trial_id}: frame accounting", x=0.01, ha="left")
    return _save(figure, path)


# The dropped-frames panel names at most this many trigger indices per camera.
_LISTED_DROPS = 12


def _dropped_label(indices: np.ndarray) -> str:
    if indices.size == 0:
        return "none dropped"
    listed = ", ".join(str(int(i)) for i in indices[:_LISTED_DROPS])
    more = f", ... ({indices.size - _LISTED_DROPS} more)" if indices.size > _LISTED_DROPS else ""
    return f"{indices.size} dropped, trigger indices {listed}{more}"


def _nominal_interval_ms(pulse_samples: np.ndarray, rate_hz: float) -> float | None:
    if pulse_samples.size < 2:
        return None
    return float(np.median(np.diff(pulse_samples))) * 1000.0 / rate_hz


def draw_summary(data: TrialData, path: Path, notes: Sequence[str]) -> Path:
    rows = summary_rows(data.jumps)
    row_in, notes_in = 0.28, 0.2 * len(notes) + (0.2 if notes else 0.0)
    table_in = row_in * (len(rows) + 1) if rows else 1.0
    figure = _new_figure(9.0, 0.7 + table_in + notes_in)
    axes = figure.subplots()
    axes.axis("off")
    # Axes fractions: the table on top, the notes below it.
    notes_share = notes_in / (table_in + notes_in)
    if rows:
        label_share = 0.5
        table = axes.table(
            cellText=[[label, *values] for label, values in rows],
            colLabels=["", *(f"jump {jump.number}" for jump in data.jumps)],
            colWidths=[label_share] + [(1 - label_share) / len(data.jumps)] * len(data.jumps),
            cellLoc="right",
            bbox=Bbox.from_bounds(0.0, notes_share, 1.0, 1.0 - notes_share),
        )
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        for row in range(len(rows) + 1):
            table[row, 0].set_text_props(ha="left")
    else:
        axes.text(0.5, 0.5 + notes_share / 2, "no jump in this file", ha="center", fontsize=14)
    if notes:
        axes.text(0.0, 0.0, "\n".join(notes), fontsize=8, va="bottom", color="0.3")
    subject = f" ({data.subject})" if data.subject else ""
    figure.suptitle(f"{data.trial_id}{subject}: jump summary", x=0.01, ha="left")
    return _save(figure, path)


# --- the command ---------------------------------------------------------------------------------


def default_output_dir(path: Path, trial_id: str) -> Path:
    """Beside the trial file, a folder ``<trial_id>_report``."""
    return Path(path).parent / f"{_file_name_part(trial_id)}_report"


def _file_name_part(text: str) -> str:
    """``text`` safe as part of a file name: the trial id is whatever the rig's user chose."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text) or "trial"


def write_report(
    path: Path, output_dir: Path, on_note: Callable[[str], None] | None = None
) -> list[Path]:
    """Write the report's PNGs of the trial file ``path`` into ``output_dir`` (created if
    needed); returns their paths. Raises TrialFileError when the file cannot be read as a
    trial, OSError when the folder cannot be written. ``on_note`` hears what was skipped."""
    data = load_trial(Path(path))
    return _write(data, Path(output_dir), on_note or (lambda note: None))


def _write(data: TrialData, output_dir: Path, note: Callable[[str], None]) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def tell(text: str) -> None:
        notes.append(text)
        note(text)

    if data.events is None:
        tell("no /events in this file (run `rig track FILE`): plots have no jump marks")
    elif not data.jumps:
        tell("no jump among the file's events: plots have no jump marks")
    written: list[Path] = []
    prefix = output_dir / _file_name_part(data.trial_id)
    if len(data.jumps) <= 1:
        jump = data.jumps[0] if data.jumps else None
        written.append(draw_force_emg(data, jump, Path(f"{prefix}_force_emg.png")))
    else:
        for jump in data.jumps:
            written.append(
                draw_force_emg(data, jump, Path(f"{prefix}_force_emg_jump{jump.number}.png"))
            )
    if data.pose3d is None:
        tell("no /pose3d in this file (tracking was off): the trajectory plot is skipped")
    elif data.pose3d.trigger_index.size < 2:
        tell("/pose3d has fewer than 2 rows with a recorded pulse: the trajectory plot is skipped")
    else:
        written.append(draw_trajectory(data, data.pose3d, Path(f"{prefix}_trajectory.png")))
    written.append(draw_frame_accounting(data, Path(f"{prefix}_frame_accounting.png")))
    written.append(draw_summary(data, Path(f"{prefix}_summary.png"), notes))
    return written


def report_main(
    path: Path,
    output_dir: Path | None,
    stream: TextIO,
    error_stream: TextIO | None = None,
) -> int:
    """`rig report FILE [--output DIR]`: write the PNGs, print notes, the jump summary and the
    paths written to ``stream``; errors go to ``error_stream`` (default stderr). Returns the exit
    code: EXIT_OK, or EXIT_FAILED for a file that is not a readable trial file (as `rig inspect`)
    or a folder that cannot be written."""
    errors = error_stream if error_stream is not None else sys.stderr
    try:
        data = load_trial(Path(path))
    except TrialFileError as error:
        print(f"rig: {error}", file=errors)
        return EXIT_FAILED
    folder = Path(output_dir) if output_dir is not None else default_output_dir(path, data.trial_id)
    try:
        written = _write(data, folder, lambda note: print(f"note: {note}", file=stream))
    except OSError as error:
        print(f"rig: cannot write the report into {folder}: {error}", file=errors)
        return EXIT_FAILED
    rows = summary_rows(data.jumps)
    if rows:
        label_width = max(len(label) for label, _ in rows)
        header = "".join(f"{'jump ' + str(jump.number):>12}" for jump in data.jumps)
        print(f"{'':<{label_width}}{header}", file=stream)
        for label, values in rows:
            print(f"{label:<{label_width}}" + "".join(f"{v:>12}" for v in values), file=stream)
    print(f"wrote {len(written)} plots into {folder}:", file=stream)
    for png in written:
        print(f"  {png}", file=stream)
    return EXIT_OK
