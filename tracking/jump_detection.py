"""Online jump detection: the phases of a jump and its kinematics, from platform force, EMG and
3D poses, with the same code live and offline.

Inputs, all on the DAQ's sample clock:

- analog samples ``(n, C)`` in contiguous blocks: two platform forces (the platform the mouse
  starts on, "platform 0", and the other one, "platform 1") and any number of EMG channels;
- the DAQ sample index of every camera trigger pulse (pulse k -> frame k of every camera);
- 3D body-part positions ``(K, 3)`` in mm per trigger index (world frame: x along the jump, z up,
  platform tops at z = 0), arriving a little after the samples of their pulse.

The platform force drives the phase tracker (still -> crouch -> push_off -> flight -> landing ->
still on the other platform), and times take-off and landing to a fraction of a DAQ sample; the
3D poses give the flight's kinematics (a ballistic fit of the body centre) and confirm the flight;
the EMG gives each muscle's burst onset relative to take-off. docs/jump-detection.md has the rules,
the event table's layout and the accuracy measured on the digital twin.

Determinism: samples are processed in fixed chunks aligned to the DAQ sample index, smoothed
signals come from one sequential running sum, and a pose is used only if it arrives before the
samples ``pose_wait_ms`` past its pulse are processed. So the events depend on the data, never on
how the samples were cut into blocks or when exactly the poses arrived within that wait.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

PHASES: tuple[str, ...] = ("still", "crouch", "push_off", "flight", "landing")
EVENT_NAMES: tuple[str, ...] = ("crouch_onset", "takeoff", "landing", "jump")

GRAVITY_MM_PER_S2 = 9810.0

# The /events table: one row per (event, value); see events_table.
EVENT_NAME_BYTES = 32
VALUE_NAME_BYTES = 64
EVENTS_TABLE_DTYPE = np.dtype(
    [
        ("event_number", np.int64),
        ("name", f"S{EVENT_NAME_BYTES}"),
        ("trigger_index", np.int64),
        ("daq_sample_index", np.int64),
        ("t_s", np.float64),
        ("value_name", f"S{VALUE_NAME_BYTES}"),
        ("value", np.float64),
    ]
)

# Key prefix of the per-channel EMG onsets in the "jump" event's values.
EMG_ONSET_PREFIX = "emg_onset_from_takeoff_s/"

# How many recent pulses and matured pose frames are kept: far more than one jump spans at any
# camera rate a rig uses (16384 pulses are 82 s at 200 Hz, 16 s at 1 kHz).
_PULSE_HISTORY = 1 << 14
_POSE_HISTORY = 1 << 12
# Poses waiting for their pulse to mature; more than this means pulses stopped arriving.
_MAX_PENDING_POSES = 1 << 12
# Take-off and landing fits look this far around the detection for the force edge.
_EDGE_SEARCH_MS = 20.0
# The landing platform's unloaded level is its mean over this window before the edge.
_UNLOADED_LEVEL_MS = 20.0
# ...ending this long before the moving mean could have seen the edge.
_EDGE_MARGIN_MS = 1.0
# The force impulse of a jump starts this long before the crouch onset (or the push-off).
_REST_MARGIN_MS = 20.0


def _positive(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"JumpDetectorSettings.{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"JumpDetectorSettings.{name} must be finite, got {value!r}")


@dataclass(frozen=True)
class JumpDetectorSettings:
    """Thresholds of the jump detector. Force thresholds are fractions of the body weight, which
    is the mean force on the mouse's platform while it stands still; times in ms or s as named.
    """

    # Body weight: mean force over this window, ending this long before the sample judged, so
    # the start of a crouch never drags the reference down with it.
    body_weight_window_ms: float = 500.0
    body_weight_lag_ms: float = 500.0
    # Below this the platform is taken as empty and nothing is detected.
    min_body_weight_n: float = 0.05
    # Force sensor calibration per platform (N per unit of the analog channel).
    force_n_per_unit: tuple[float, float] = (1.0, 1.0)
    # Causal moving means: a short one for take-off and landing, a long one for the crouch dip.
    force_smoothing_ms: float = 1.0
    crouch_smoothing_ms: float = 10.0
    # Crouch: the long-smoothed force dips this far below body weight for this long...
    crouch_drop_fraction: float = 0.05
    crouch_confirm_ms: float = 5.0
    # ...or the hindquarters (these parts) are this far below their still height in this many
    # frames: a slow crouch barely dips the force.
    crouch_parts: tuple[str, ...] = ("iliac_crest", "hip")
    crouch_drop_mm: float = 3.0
    crouch_confirm_frames: int = 3
    # The onset is timed on the force dip found up to this long before the detection; a dip
    # shallower than this (x body weight) is not timed and the first lowered frame stands.
    crouch_search_ms: float = 1000.0
    crouch_min_dip_fraction: float = 0.005
    crouch_timeout_s: float = 2.0
    # Push-off: the short-smoothed force rises this far above body weight for this long...
    push_off_rise_fraction: float = 0.2
    push_off_confirm_ms: float = 2.0
    # ...and must peak at least this high (x body weight) before a take-off counts.
    push_off_peak_fraction: float = 1.3
    # A push-off whose force settles back within half the rise band for this long was not one.
    push_off_fallback_ms: float = 20.0
    push_off_timeout_s: float = 0.5
    # Take-off: the force on the take-off platform falls below this (x body weight) for this
    # long; the edge is then fitted on the raw samples between the upper level and this one.
    takeoff_force_fraction: float = 0.05
    takeoff_confirm_ms: float = 3.0
    takeoff_fit_upper_fraction: float = 0.15
    # Landing: the force on the other platform rises above this (x body weight) for this long.
    landing_force_fraction: float = 0.1
    landing_confirm_ms: float = 2.0
    landing_fit_upper_fraction: float = 0.3
    # No landing this long after take-off: the jump is reported without one.
    flight_timeout_s: float = 1.0
    # Landing ends when the long-smoothed force stays within this band of body weight this long.
    settle_band_fraction: float = 0.2
    settle_ms: float = 50.0
    landing_timeout_s: float = 1.0
    # EMG onset: rectified EMG, centred moving mean, above baseline mean + this many baseline
    # SDs for at least this long; the baseline is the window before the crouch (or push-off).
    emg_smoothing_ms: float = 2.0
    emg_threshold_sd: float = 5.0
    emg_min_duration_ms: float = 10.0
    emg_baseline_ms: float = 200.0
    emg_search_before_takeoff_ms: float = 300.0
    emg_search_after_takeoff_ms: float = 20.0
    # 3D: the body centre is the mean of these parts (a frame counts only if all are present).
    # The midpoint of the body axis stays close to the centre of mass as the trunk pitches.
    centre_parts: tuple[str, ...] = ("nose", "tail_base")
    # A frame is airborne when every present one of these parts is this high above z = 0.
    airborne_parts: tuple[str, ...] = ("forepaw", "ankle", "mtp", "toe")
    flight_clearance_mm: float = 2.0
    flight_confirm_frames: int = 2
    min_flight_frames: int = 4
    # A pose is used if it arrives before the samples this long after its pulse are processed.
    pose_wait_ms: float = 100.0
    # Samples are processed in chunks of this length, aligned to the DAQ sample index.
    processing_chunk_ms: float = 10.0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("centre_parts", "airborne_parts", "crouch_parts"):
                if not isinstance(value, tuple) or not all(isinstance(p, str) for p in value):
                    raise ValueError(
                        f"JumpDetectorSettings.{spec.name} must be a tuple of part names, "
                        f"got {value!r}"
                    )
                if len(set(value)) != len(value):
                    raise ValueError(f"JumpDetectorSettings.{spec.name} repeats a part: {value}")
            elif spec.name == "force_n_per_unit":
                if not isinstance(value, tuple) or len(value) != 2:
                    raise ValueError(
                        f"JumpDetectorSettings.force_n_per_unit must be a pair, got {value!r}"
                    )
                for scale in value:
                    _positive(scale, spec.name)
            elif spec.name in (
                "flight_confirm_frames",
                "min_flight_frames",
                "crouch_confirm_frames",
            ):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"JumpDetectorSettings.{spec.name} must be an integer >= 1, got {value!r}"
                    )
            else:
                _positive(value, spec.name)
        for name in ("centre_parts", "crouch_parts"):
            if not getattr(self, name):
                raise ValueError(f"JumpDetectorSettings.{name} must name at least one part")
        if self.min_flight_frames < 2:
            raise ValueError("JumpDetectorSettings.min_flight_frames must be >= 2 to fit a line")
        for name in ("crouch_drop_fraction", "takeoff_force_fraction", "landing_force_fraction"):
            if getattr(self, name) >= 1.0:
                raise ValueError(f"JumpDetectorSettings.{name} must be < 1")
        if self.takeoff_fit_upper_fraction <= self.takeoff_force_fraction:
            raise ValueError(
                "JumpDetectorSettings.takeoff_fit_upper_fraction must exceed takeoff_force_fraction"
            )
        if self.landing_fit_upper_fraction <= self.landing_force_fraction:
            raise ValueError(
                "JumpDetectorSettings.landing_fit_upper_fraction must exceed landing_force_fraction"
            )
        if self.push_off_peak_fraction <= 1.0:
            raise ValueError("JumpDetectorSettings.push_off_peak_fraction must be > 1")


@dataclass(frozen=True)
class JumpEvent:
    """One detected event. ``daq_sample_index`` is the DAQ sample nearest the event,
    ``trigger_index`` the nearest camera pulse (-1 when no pulse was ever recorded), ``t_s`` the
    event's time in s from pulse 0 to a fraction of a sample (NaN without pulses). ``values``:
    the event's measurements, names with their units (see docs/jump-detection.md)."""

    name: str
    trigger_index: int
    daq_sample_index: int
    t_s: float
    values: dict[str, float] = field(default_factory=dict)


# --- small exact helpers -------------------------------------------------------------------------


def _run_completion(cond: np.ndarray, run_before: int, needed: int) -> tuple[int | None, int]:
    """Where a run of True in ``cond`` (n,) first reaches ``needed`` samples, counting
    ``run_before`` Trues just before it; and the run length at the end of ``cond``."""
    n = cond.size
    if n == 0:
        return None, run_before
    # Most chunks are all one way.
    if not cond.any():
        return None, 0
    if cond.all():
        total = run_before + n
        return (max(needed - run_before, 1) - 1 if total >= needed else None), total
    positions = np.arange(n)
    last_false = np.maximum.accumulate(np.where(cond, -1, positions))
    runs = np.where(last_false < 0, positions + 1 + run_before, positions - last_false)
    runs = np.where(cond, runs, 0)
    reached = np.flatnonzero(runs >= needed)
    done = int(reached[0]) if reached.size else None
    return done, int(runs[-1])


def _fsum_mean(values: np.ndarray) -> float:
    """Mean of (n,) by exactly rounded summation: the same for the same numbers, wherever they
    sit in memory."""
    return math.fsum(values.tolist()) / values.size


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares intercept and slope of y (n,) on x (n,), n >= 2, x centred for accuracy."""
    x_mean = _fsum_mean(x)
    y_mean = _fsum_mean(y)
    dx = x - x_mean
    slope = math.fsum((dx * (y - y_mean)).tolist()) / math.fsum((dx * dx).tolist())
    return y_mean - slope * x_mean, slope


def _ballistic_fit(
    tau_s: np.ndarray, centre_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Position (3,) and velocity (3,) at tau = 0 of a body flying under gravity alone, fitted
    to its centre (n, 3) at times tau_s (n,); None when the times do not span an interval."""
    if np.ptp(tau_s) <= 0:
        return None
    position = np.empty(3)
    velocity = np.empty(3)
    for axis in range(3):
        along = centre_mm[:, axis]
        if axis == 2:
            along = along + 0.5 * GRAVITY_MM_PER_S2 * tau_s * tau_s
        position[axis], velocity[axis] = _line_fit(tau_s, along)
    return position, velocity


# --- bounded histories ---------------------------------------------------------------------------


class _SampleRing:
    """The last ``capacity`` rows (capacity, columns) of a stream indexed by DAQ sample."""

    def __init__(self, capacity: int, columns: int) -> None:
        self.capacity = capacity
        self.columns = columns
        self._rows = np.zeros((capacity, columns))
        self.first_index = -1  # first sample ever written
        self.end_index = -1  # one past the last sample written

    def append(self, first_index: int, rows: np.ndarray) -> None:
        if self.first_index < 0:
            self.first_index = first_index
            self.end_index = first_index
        begin = first_index % self.capacity
        head = min(rows.shape[0], self.capacity - begin)
        self._rows[begin : begin + head] = rows[:head]
        self._rows[: rows.shape[0] - head] = rows[head:]
        self.end_index = first_index + rows.shape[0]

    def oldest_index(self) -> int:
        return max(self.first_index, self.end_index - self.capacity)

    def rows(self, start: int, stop: int, column: int) -> np.ndarray:
        """Column values (stop - start,) of samples [start, stop), a copy; they must be held."""
        if start < self.oldest_index() or stop > self.end_index or stop < start:
            raise ValueError(
                f"samples [{start}, {stop}) are not held (held: "
                f"[{self.oldest_index()}, {self.end_index}))"
            )
        begin = start % self.capacity
        end = begin + (stop - start)
        if end <= self.capacity:
            return self._rows[begin:end, column].copy()
        return np.concatenate(
            (self._rows[begin:, column], self._rows[: end - self.capacity, column])
        )


class _PulseLog:
    """DAQ sample index of the recent trigger pulses, by trigger index."""

    def __init__(self) -> None:
        self._samples = np.zeros(_PULSE_HISTORY, dtype=np.int64)
        self.count = 0
        self.first_sample: int | None = None

    @property
    def last_sample(self) -> int | None:
        if self.count == 0:
            return None
        return int(self._samples[(self.count - 1) % _PULSE_HISTORY])

    def add(self, samples: np.ndarray) -> None:
        if self.count == 0 and samples.size:
            self.first_sample = int(samples[0])
        if samples.size > _PULSE_HISTORY:
            # Only the last ones can be held.
            self.count += samples.size - _PULSE_HISTORY
            samples = samples[-_PULSE_HISTORY:]
        positions = np.arange(self.count, self.count + samples.size) % _PULSE_HISTORY
        self._samples[positions] = samples
        self.count += samples.size

    def oldest_index(self) -> int:
        return max(0, self.count - _PULSE_HISTORY)

    def sample_of(self, trigger_index: int) -> int | None:
        if trigger_index < self.oldest_index() or trigger_index >= self.count:
            return None
        return int(self._samples[trigger_index % _PULSE_HISTORY])

    def first_at_or_after(self, sample: int) -> int:
        """Trigger index of the first held pulse at or after ``sample`` (count when none)."""
        return (
            bisect.bisect_left(
                range(self.oldest_index(), self.count),
                sample,
                key=lambda k: int(self._samples[k % _PULSE_HISTORY]),
            )
            + self.oldest_index()
        )

    def nearest(self, sample: float) -> int:
        """Trigger index of the held pulse nearest ``sample`` (the earlier one on a tie)."""
        first = self.oldest_index()
        ordered = self._samples[np.arange(first, self.count) % _PULSE_HISTORY]
        right = int(np.searchsorted(ordered, sample))
        if right == 0:
            return first
        if right == ordered.size:
            return first + ordered.size - 1
        before, after = float(ordered[right - 1]), float(ordered[right])
        return first + right - 1 if sample - before <= after - sample else first + right


@dataclass
class _PoseFrames:
    """Matured pose frames: trigger index, pulse sample, body centre (mm), the height of the
    lowest present airborne part and of the hindquarters (mm; NaN when not seen)."""

    trigger_index: np.ndarray = field(
        default_factory=lambda: np.full(_POSE_HISTORY, -1, dtype=np.int64)
    )
    pulse_sample: np.ndarray = field(default_factory=lambda: np.zeros(_POSE_HISTORY, np.int64))
    centre_mm: np.ndarray = field(default_factory=lambda: np.full((_POSE_HISTORY, 3), np.nan))
    lowest_mm: np.ndarray = field(default_factory=lambda: np.full(_POSE_HISTORY, np.nan))
    crouch_mm: np.ndarray = field(default_factory=lambda: np.full(_POSE_HISTORY, np.nan))

    def store(
        self,
        trigger_index: int,
        pulse_sample: int,
        centre_mm: np.ndarray,
        lowest_mm: float,
        crouch_mm: float,
    ) -> None:
        slot = trigger_index % _POSE_HISTORY
        self.trigger_index[slot] = trigger_index
        self.pulse_sample[slot] = pulse_sample
        self.centre_mm[slot] = centre_mm
        self.lowest_mm[slot] = lowest_mm
        self.crouch_mm[slot] = crouch_mm

    def crouch_heights(self, first_index: int, stop_index: int) -> np.ndarray:
        """Hindquarter heights (n,) of the held frames first_index <= k < stop_index."""
        wanted = np.arange(first_index, stop_index)
        slots = wanted % _POSE_HISTORY
        held = self.trigger_index[slots] == wanted
        return self.crouch_mm[slots[held]]

    def between(self, start_sample: float, stop_sample: float) -> np.ndarray:
        """Slots (n,) of frames whose pulse lies strictly inside (start, stop), by trigger index."""
        held = (self.trigger_index >= 0) & (self.pulse_sample > start_sample)
        slots = np.flatnonzero(held & (self.pulse_sample < stop_sample))
        return slots[np.argsort(self.trigger_index[slots], kind="stable")]


# --- the detector --------------------------------------------------------------------------------


@dataclass
class _Jump:
    """What is known of the jump in progress; sample positions are fractional DAQ samples."""

    takeoff_platform: int
    body_weight_n: float
    crouch_onset_sample: float | None = None
    # A sample before the jump where the mouse stood still: the force impulse starts there.
    rest_sample: int = 0
    peak_force_n: float = -math.inf
    emg_baseline: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    takeoff_sample: float = math.nan
    takeoff_vertical_speed_mm_per_s: float = math.nan
    landing_sample: float | None = None


@dataclass
class _PendingEvent:
    """An event waiting for the pulses around it; ``times`` are fractional DAQ samples that
    become seconds from pulse 0 on release."""

    name: str
    sample: float
    values: dict[str, float]
    times: dict[str, float]


class JumpDetector:
    """The online jump detector; feed it pulses, sample blocks and poses as they come.

    ``force_channels``: analog columns of the force on the platform the mouse starts on and on
    the other one. ``emg_channels``: name -> analog column. ``body_parts``: names of the K rows
    of every pose. Every ``add_*`` returns the events that became final, in order; ``finish``
    returns the rest at the end of the trial. Memory is bounded: a ring of recent samples, of
    recent pulses and of recent poses, plus the list of events handed out.
    """

    def __init__(
        self,
        settings: JumpDetectorSettings,
        *,
        daq_rate_hz: float,
        force_channels: tuple[int, int],
        emg_channels: Mapping[str, int],
        body_parts: Sequence[str],
    ) -> None:
        if not isinstance(settings, JumpDetectorSettings):
            raise TypeError(f"settings must be JumpDetectorSettings, got {type(settings).__name__}")
        if (
            isinstance(daq_rate_hz, bool)
            or not isinstance(daq_rate_hz, int | float)
            or not math.isfinite(daq_rate_hz)
            or daq_rate_hz <= 0
        ):
            raise ValueError(f"daq_rate_hz must be finite and > 0, got {daq_rate_hz!r}")
        if len(force_channels) != 2 or force_channels[0] == force_channels[1]:
            raise ValueError(f"force_channels must be two different columns, got {force_channels}")
        columns = [*force_channels, *emg_channels.values()]
        for column in columns:
            if isinstance(column, bool) or not isinstance(column, int | np.integer) or column < 0:
                raise ValueError(f"analog columns must be integers >= 0, got {column!r}")
        if len(set(columns)) != len(columns):
            raise ValueError(f"force and EMG columns must all differ, got {columns}")
        body_parts = tuple(body_parts)
        if len(set(body_parts)) != len(body_parts) or not body_parts:
            raise ValueError(f"body_parts must be unique names, got {body_parts}")
        for set_name in ("centre_parts", "airborne_parts", "crouch_parts"):
            missing = [p for p in getattr(settings, set_name) if p not in body_parts]
            if missing:
                raise ValueError(
                    f"JumpDetectorSettings.{set_name} names parts not in body_parts: {missing}"
                )
        self.settings = settings
        self.daq_rate_hz = float(daq_rate_hz)
        self.force_channels = (int(force_channels[0]), int(force_channels[1]))
        self.emg_channels = {str(name): int(column) for name, column in emg_channels.items()}
        self.body_parts = body_parts
        self._centre_rows = np.array([body_parts.index(p) for p in settings.centre_parts])
        self._crouch_rows = np.array([body_parts.index(p) for p in settings.crouch_parts])
        self._airborne_rows = np.array(
            [body_parts.index(p) for p in settings.airborne_parts], dtype=np.int64
        )
        self._columns_needed = max(columns) + 1
        # Columns of the sample ring: the forces (0, 1), their running sums, the EMG.
        self._sum_col = (2, 3)
        self._emg_col = {name: 4 + i for i, name in enumerate(self.emg_channels)}

        def samples(ms: float) -> int:
            return max(1, round(ms * 1e-3 * self.daq_rate_hz))

        s = settings
        self._chunk = samples(s.processing_chunk_ms)
        self._short = samples(s.force_smoothing_ms)
        self._long = samples(s.crouch_smoothing_ms)
        self._bw_window = samples(s.body_weight_window_ms)
        self._bw_lag = samples(s.body_weight_lag_ms)
        self._crouch_confirm = samples(s.crouch_confirm_ms)
        self._push_confirm = samples(s.push_off_confirm_ms)
        self._fallback = samples(s.push_off_fallback_ms)
        self._takeoff_confirm = samples(s.takeoff_confirm_ms)
        self._landing_confirm = samples(s.landing_confirm_ms)
        self._settle = samples(s.settle_ms)
        self._crouch_timeout = samples(s.crouch_timeout_s * 1e3)
        self._crouch_search = samples(s.crouch_search_ms)
        self._push_timeout = samples(s.push_off_timeout_s * 1e3)
        self._flight_timeout = samples(s.flight_timeout_s * 1e3)
        self._landing_timeout = samples(s.landing_timeout_s * 1e3)
        self._emg_smooth = samples(s.emg_smoothing_ms)
        self._emg_min = samples(s.emg_min_duration_ms)
        self._emg_baseline = samples(s.emg_baseline_ms)
        self._emg_before = samples(s.emg_search_before_takeoff_ms)
        self._emg_after = samples(s.emg_search_after_takeoff_ms)
        self._pose_wait = samples(s.pose_wait_ms)
        self._edge_search = samples(_EDGE_SEARCH_MS)
        self._level_window = samples(_UNLOADED_LEVEL_MS)
        self._margin = samples(_EDGE_MARGIN_MS)
        self._rest_margin = samples(_REST_MARGIN_MS)
        # Long enough for every look back: the body weight before the sample judged; the dip
        # search and EMG baseline before a crouch found in 3D a pose wait late; the force
        # impulse from the rest before a crouch to take-off; the EMG search around take-off
        # when the summary is made, a flight and a pose wait after it.
        ring_samples = max(
            self._bw_lag + self._bw_window + self._long,
            self._crouch_search + self._emg_baseline + self._long,
            self._rest_margin + self._crouch_timeout + self._push_timeout + self._edge_search,
            self._emg_before + self._flight_timeout + self._pose_wait + self._emg_after,
        ) + 2 * (self._chunk + self._edge_search + self._level_window + self._emg_smooth)
        self._ring = _SampleRing(ring_samples, 4 + len(self.emg_channels))
        self._running_sum = [0.0, 0.0]
        self._pulses = _PulseLog()
        self._pending_poses: dict[int, np.ndarray] = {}
        self._next_pose_index = 0
        self._frames = _PoseFrames()
        # Consecutive matured frames with the hindquarters lowered, and the first one's pulse.
        self._lowered_frames = 0
        self._first_lowered_sample = 0
        self.poses_dropped = 0
        # Samples waiting to complete a processing chunk: (n, 2 + E) float64.
        self._carry = np.zeros((0, 2 + len(self.emg_channels)))
        self._carry_first = -1
        self._next_sample: int | None = None
        self._finished = False

        self._phase = "still"
        self._platform = 0  # the platform the mouse stands on
        self._still_since: int | None = None
        self._state_since = 0
        self._runs: dict[str, int] = {}
        self._jump: _Jump | None = None
        self._summary_due: _Jump | None = None
        self._queue: list[_PendingEvent] = []
        self._last_jump: dict[str, float] | None = None

    # --- public ----------------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        """The current phase, one of PHASES, as of the last sample processed."""
        return self._phase

    @property
    def last_jump(self) -> dict[str, float] | None:
        """The values of the last "jump" event handed out, or None before the first."""
        return None if self._last_jump is None else dict(self._last_jump)

    def add_pulses(self, trigger_sample_index: np.ndarray) -> None:
        """Record new trigger pulses: (k,) DAQ sample indices, increasing, after those known."""
        self._check_open()
        pulses = np.asarray(trigger_sample_index)
        if pulses.ndim != 1 or (pulses.size and not np.issubdtype(pulses.dtype, np.integer)):
            raise ValueError(
                f"trigger_sample_index must be a 1-D integer array (k,), got "
                f"{pulses.dtype} {pulses.shape}"
            )
        pulses = pulses.astype(np.int64)
        if pulses.size == 0:
            return
        last = self._pulses.last_sample
        if (
            np.any(np.diff(pulses) <= 0)
            or (last is not None and pulses[0] <= last)
            or pulses[0] < 0
        ):
            raise ValueError("trigger pulses must be >= 0 and increase, after those already added")
        self._pulses.add(pulses)

    def add_samples(self, first_sample_index: int, analog: np.ndarray) -> list[JumpEvent]:
        """Process a block of samples (n, C) that starts at ``first_sample_index``; blocks must
        be contiguous. Returns the events that became final."""
        self._check_open()
        if isinstance(first_sample_index, bool) or not isinstance(
            first_sample_index, int | np.integer
        ):
            raise ValueError(f"first_sample_index must be an integer, got {first_sample_index!r}")
        first_sample_index = int(first_sample_index)
        if self._next_sample is not None and first_sample_index != self._next_sample:
            raise ValueError(
                f"blocks must be contiguous: expected sample {self._next_sample}, "
                f"got {first_sample_index}"
            )
        if first_sample_index < 0:
            raise ValueError(f"first_sample_index must be >= 0, got {first_sample_index}")
        analog = np.asarray(analog)
        if analog.ndim != 2 or analog.shape[1] < self._columns_needed:
            raise ValueError(
                f"analog must be (n, C) with C >= {self._columns_needed}, got {analog.shape}"
            )
        columns = [*self.force_channels, *self.emg_channels.values()]
        block = analog[:, columns].astype(np.float64)
        if not np.all(np.isfinite(block)):
            raise ValueError("force and EMG samples must be finite")
        block[:, 0] *= self.settings.force_n_per_unit[0]
        block[:, 1] *= self.settings.force_n_per_unit[1]
        if self._next_sample is None:
            self._carry_first = first_sample_index
            self._still_since = first_sample_index
        self._next_sample = first_sample_index + block.shape[0]
        self._carry = np.concatenate((self._carry, block)) if self._carry.size else block
        # Cut into chunks that end on multiples of the chunk length.
        while self._carry.shape[0]:
            start = self._carry_first
            stop = (start // self._chunk + 1) * self._chunk
            n = stop - start
            if self._carry.shape[0] < n:
                break
            self._process_chunk(start, self._carry[:n])
            self._carry = self._carry[n:]
            self._carry_first = stop
        return self._release(final=False)

    def add_pose3d(self, trigger_index: int, points_mm: np.ndarray) -> list[JumpEvent]:
        """Record the 3D pose (K, 3) in mm of one trigger index (NaN where a part is missing).
        Poses may come late and a little out of order; one arriving after its frame matured
        (``pose_wait_ms`` of samples past its pulse) is dropped and counted in
        ``poses_dropped``."""
        self._check_open()
        if isinstance(trigger_index, bool) or not isinstance(trigger_index, int | np.integer):
            raise ValueError(f"trigger_index must be an integer, got {trigger_index!r}")
        if trigger_index < 0:
            raise ValueError(f"trigger_index must be >= 0, got {trigger_index}")
        points = np.asarray(points_mm, dtype=np.float64)
        if points.shape != (len(self.body_parts), 3):
            raise ValueError(f"points_mm must be ({len(self.body_parts)}, 3), got {points.shape}")
        matured = trigger_index < self._next_pose_index
        full = len(self._pending_poses) >= _MAX_PENDING_POSES
        if matured or full or trigger_index in self._pending_poses:
            self.poses_dropped += 1
        else:
            self._pending_poses[int(trigger_index)] = points.copy()
        return self._release(final=False)

    def finish(self) -> list[JumpEvent]:
        """End of trial: process what is left, decide what can still be decided and return the
        remaining events. The detector takes no more data after this."""
        self._check_open()
        if self._carry.shape[0]:
            self._process_chunk(self._carry_first, self._carry)
            self._carry_first += self._carry.shape[0]
            self._carry = self._carry[:0]
        self._mature_poses(None)
        if self._summary_due is not None:
            self._queue_summary(self._summary_due)
            self._summary_due = None
        if self._phase == "flight" and self._jump is not None:
            # In the air when the trial ended: a jump without a landing.
            self._queue_summary(self._jump)
            self._jump = None
        self._finished = True
        return self._release(final=True)

    # --- processing ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("the detector has finished; make a new one for the next trial")

    def _process_chunk(self, start: int, block: np.ndarray) -> None:
        """Run the phase tracker over samples [start, start + n) of block (n, 2 + E)."""
        n = block.shape[0]
        ring = self._ring
        sums = np.empty((n, 2))
        for platform in (0, 1):
            # One sequential running sum from the first sample: the moving means below are
            # differences of it, bit-identical however the samples were cut into blocks.
            chain = np.add.accumulate(
                np.concatenate(([self._running_sum[platform]], block[:, platform]))
            )
            sums[:, platform] = chain[1:]
            self._running_sum[platform] = float(chain[-1])
        rows = np.empty((n, ring.columns))
        rows[:, 0:2] = block[:, 0:2]
        rows[:, 2:4] = sums
        rows[:, 4:] = block[:, 2:]
        ring.append(start, rows)
        stop = start + n
        position = start
        while position < stop:
            moved = self._advance(position, stop)
            if moved is None:
                break
            position = moved + 1
            self._runs = {}
        self._mature_poses(stop)
        self._check_summary_due(stop)

    def _moving_mean(self, platform: int, start: int, stop: int, width: int) -> np.ndarray:
        """Mean force (stop - start,) on a platform over the ``width`` samples ending at each
        sample of [start, stop), inclusive; NaN where they reach before the first sample."""
        ring = self._ring
        column = self._sum_col[platform]
        first = ring.first_index
        if start - width >= first:
            return (
                ring.rows(start, stop, column) - ring.rows(start - width, stop - width, column)
            ) / width
        # Near the first sample: the running sum before it is 0, and before that unknown.
        out = np.full(stop - start, np.nan)
        valid_from = max(start, first - 1 + width, first)
        if valid_from >= stop:
            return out
        upper = ring.rows(valid_from, stop, column)
        lower_start = valid_from - width
        lower = np.zeros(stop - valid_from)
        skip = first - lower_start  # 1 when the first lower sum is the one before the first sample
        lower[skip:] = ring.rows(lower_start + skip, stop - width, column)
        out[valid_from - start :] = (upper - lower) / width
        return out

    def _body_weight(self, start: int, stop: int) -> np.ndarray:
        return self._moving_mean(
            self._platform, start - self._bw_lag, stop - self._bw_lag, self._bw_window
        )

    def _first(self, key: str, cond: np.ndarray, needed: int) -> int | None:
        done, run = _run_completion(cond, self._runs.get(key, 0), needed)
        self._runs[key] = run
        return done

    def _advance(self, position: int, stop: int) -> int | None:
        """Look for the phase's next transition in samples [position, stop); make it and return
        its sample, or None when there is none (run lengths carry to the next chunk)."""
        samples = np.arange(position, stop)
        if self._phase == "still":
            return self._advance_still(samples)
        if self._phase == "crouch":
            return self._advance_crouch(samples)
        if self._phase == "push_off":
            return self._advance_push_off(samples)
        if self._phase == "flight":
            return self._advance_flight(samples)
        return self._advance_landing(samples)

    def _earliest(self, candidates: dict[str, int | None]) -> tuple[str, int] | None:
        found = [(index, name) for name, index in candidates.items() if index is not None]
        if not found:
            return None
        index, name = min(found)
        return name, index

    def _advance_still(self, samples: np.ndarray) -> int | None:
        start, stop = int(samples[0]), int(samples[-1]) + 1
        s = self.settings
        p = self._platform
        still_since = self._still_since if self._still_since is not None else int(samples[0])
        body_weight = self._body_weight(start, stop)
        # Armed once the body-weight window lies wholly inside this still phase.
        armed = (samples >= still_since + self._bw_lag + self._bw_window) & (
            body_weight >= s.min_body_weight_n
        )
        long_force = self._moving_mean(p, start, stop, self._long)
        short_force = self._moving_mean(p, start, stop, self._short)
        crouch = armed & (long_force < (1.0 - s.crouch_drop_fraction) * body_weight)
        push = armed & (short_force > (1.0 + s.push_off_rise_fraction) * body_weight)
        found = self._earliest(
            {
                "crouch": self._first("crouch", crouch, self._crouch_confirm),
                "push": self._first("push", push, self._push_confirm),
            }
        )
        if found is None:
            return None
        name, offset = found
        sample = int(samples[offset])
        body_weight_n = float(body_weight[offset])
        if name == "crouch":
            run_start = sample - self._crouch_confirm + 1
            self._start_crouch(sample, body_weight_n, float(run_start) - 0.5 * (self._long - 1))
        else:
            jump = _Jump(takeoff_platform=p, body_weight_n=body_weight_n)
            self._jump = jump
            run_start = sample - self._push_confirm + 1
            self._snapshot_emg_baseline(jump, run_start)
            self._start_push(jump, run_start, sample)
        return sample

    def _start_crouch(self, sample: int, body_weight_n: float, fallback_onset: float) -> None:
        """Enter the crouch at ``sample``; its onset is timed on the force dip before it (or is
        ``fallback_onset`` when the dip is too shallow to time)."""
        jump = _Jump(takeoff_platform=self._platform, body_weight_n=body_weight_n)
        self._jump = jump
        jump.crouch_onset_sample = self._dip_onset(sample, body_weight_n, fallback_onset)
        jump.rest_sample = math.floor(jump.crouch_onset_sample) - self._rest_margin
        self._snapshot_emg_baseline(jump, math.floor(jump.crouch_onset_sample))
        self._queue.append(
            _PendingEvent(
                "crouch_onset",
                jump.crouch_onset_sample,
                {"body_weight_n": jump.body_weight_n},
                {},
            )
        )
        self._enter("crouch", sample)

    def _advance_crouch(self, samples: np.ndarray) -> int | None:
        start, stop = int(samples[0]), int(samples[-1]) + 1
        jump = self._require_jump()
        s = self.settings
        short_force = self._moving_mean(self._platform, start, stop, self._short)
        push = short_force > (1.0 + s.push_off_rise_fraction) * jump.body_weight_n
        found = self._earliest(
            {
                "push": self._first("push", push, self._push_confirm),
                "timeout": self._timeout(samples, self._crouch_timeout),
            }
        )
        if found is None:
            return None
        name, offset = found
        sample = int(samples[offset])
        if name == "push":
            self._start_push(jump, sample - self._push_confirm + 1, sample)
        else:
            self._back_to_still(sample)
        return sample

    def _start_push(self, jump: _Jump, run_start: int, sample: int) -> None:
        if jump.crouch_onset_sample is None:
            jump.rest_sample = run_start - self._rest_margin
        jump.peak_force_n = float(
            np.max(self._moving_mean(self._platform, run_start, sample + 1, self._short))
        )
        self._enter("push_off", sample)

    def _advance_push_off(self, samples: np.ndarray) -> int | None:
        start, stop = int(samples[0]), int(samples[-1]) + 1
        jump = self._require_jump()
        s = self.settings
        bw = jump.body_weight_n
        short_force = self._moving_mean(self._platform, start, stop, self._short)
        long_force = self._moving_mean(self._platform, start, stop, self._long)
        peak_so_far = np.maximum.accumulate(np.maximum(short_force, jump.peak_force_n))
        unloaded = short_force < s.takeoff_force_fraction * bw
        settled = np.abs(long_force - bw) < 0.5 * s.push_off_rise_fraction * bw
        found = self._earliest(
            {
                "unloaded": self._first("unloaded", unloaded, self._takeoff_confirm),
                "settled": self._first("settled", settled, self._fallback),
                "timeout": self._timeout(samples, self._push_timeout),
            }
        )
        if found is None:
            jump.peak_force_n = float(peak_so_far[-1])
            return None
        name, offset = found
        sample = int(samples[offset])
        run_start = sample - self._takeoff_confirm + 1
        # The peak of the push: up to the sample where the force first dropped below the
        # take-off level (the rest of peak_so_far is the same value).
        jump.peak_force_n = float(peak_so_far[offset])
        if name == "unloaded" and jump.peak_force_n >= s.push_off_peak_fraction * bw:
            self._takeoff(jump, run_start, sample)
        elif name == "settled" and jump.crouch_onset_sample is not None:
            self._enter("crouch", sample)
        else:
            # Stepped off, no push, or a push that never ended in a take-off.
            self._back_to_still(sample)
        return sample

    def _takeoff(self, jump: _Jump, run_start: int, sample: int) -> None:
        p = self._platform
        level_n = _fsum_mean(self._ring.rows(run_start + self._short, sample + 1, p))
        jump.takeoff_sample = self._edge_sample(
            p,
            run_start,
            sample,
            level_n,
            self.settings.takeoff_force_fraction * jump.body_weight_n,
            self.settings.takeoff_fit_upper_fraction * jump.body_weight_n,
            rising=False,
        )
        jump.takeoff_vertical_speed_mm_per_s = self._impulse_vertical_speed(jump, sample)
        self._queue.append(
            _PendingEvent(
                "takeoff",
                jump.takeoff_sample,
                {
                    "peak_push_off_force_n": jump.peak_force_n,
                    "body_weight_n": jump.body_weight_n,
                    "takeoff_vertical_speed_force_mm_per_s": jump.takeoff_vertical_speed_mm_per_s,
                },
                {},
            )
        )
        self._enter("flight", sample)

    def _impulse_vertical_speed(self, jump: _Jump, last_sample: int) -> float:
        """Vertical speed (mm/s) of the centre of mass at take-off from the force impulse since
        the mouse stood still: v = g (integral of F dt / body weight - time), each sample
        standing for the interval centred on it (the force is ~0 after take-off)."""
        rest = max(jump.rest_sample, self._ring.oldest_index() + 1)
        column = self._sum_col[self._platform]
        running_sum = self._ring.rows(rest - 1, last_sample + 1, column)
        impulse_n_s = (running_sum[-1] - running_sum[0]) / self.daq_rate_hz
        duration_s = (jump.takeoff_sample - (rest - 0.5)) / self.daq_rate_hz
        return GRAVITY_MM_PER_S2 * (impulse_n_s / jump.body_weight_n - duration_s)

    def _advance_flight(self, samples: np.ndarray) -> int | None:
        start, stop = int(samples[0]), int(samples[-1]) + 1
        jump = self._require_jump()
        other = 1 - self._platform
        short_force = self._moving_mean(other, start, stop, self._short)
        loaded = short_force > self.settings.landing_force_fraction * jump.body_weight_n
        found = self._earliest(
            {
                "loaded": self._first("loaded", loaded, self._landing_confirm),
                "timeout": self._timeout(samples, self._flight_timeout),
            }
        )
        if found is None:
            return None
        name, offset = found
        sample = int(samples[offset])
        if name == "timeout":
            self._queue_summary(jump)
            self._jump = None
            self._back_to_still(sample)
            return sample
        run_start = sample - self._landing_confirm + 1
        # The unloaded level: the platform's mean force just before the moving mean could
        # have seen the edge.
        before = run_start - self._short - self._margin
        level_n = _fsum_mean(
            self._ring.rows(
                max(self._ring.oldest_index(), before - self._level_window), before, other
            )
        )
        jump.landing_sample = self._edge_sample(
            other,
            run_start,
            sample,
            level_n,
            self.settings.landing_force_fraction * jump.body_weight_n,
            self.settings.landing_fit_upper_fraction * jump.body_weight_n,
            rising=True,
        )
        self._queue.append(
            _PendingEvent(
                "landing",
                jump.landing_sample,
                {"flight_time_s": (jump.landing_sample - jump.takeoff_sample) / self.daq_rate_hz},
                {},
            )
        )
        self._summary_due = jump
        self._platform = other
        self._enter("landing", sample)
        return sample

    def _advance_landing(self, samples: np.ndarray) -> int | None:
        start, stop = int(samples[0]), int(samples[-1]) + 1
        jump = self._require_jump()
        s = self.settings
        long_force = self._moving_mean(self._platform, start, stop, self._long)
        settled = (
            np.abs(long_force - jump.body_weight_n) < s.settle_band_fraction * jump.body_weight_n
        )
        found = self._earliest(
            {
                "settled": self._first("settled", settled, self._settle),
                "timeout": self._timeout(samples, self._landing_timeout),
            }
        )
        if found is None:
            return None
        sample = int(samples[found[1]])
        self._back_to_still(sample)
        return sample

    def _timeout(self, samples: np.ndarray, limit: int) -> int | None:
        late = np.flatnonzero(samples >= self._state_since + limit)
        return int(late[0]) if late.size else None

    def _enter(self, phase: str, sample: int) -> None:
        self._phase = phase
        self._state_since = sample + 1

    def _back_to_still(self, sample: int) -> None:
        # A landed jump lives on in _summary_due until its summary is out.
        self._jump = None
        self._enter("still", sample)
        self._still_since = sample + 1
        self._lowered_frames = 0

    def _require_jump(self) -> _Jump:
        if self._jump is None:
            raise RuntimeError(f"phase {self._phase} without a jump in progress")
        return self._jump

    # --- timing on the force and EMG signals -----------------------------------------------------

    def _dip_onset(self, detected: int, body_weight_n: float, fallback: float) -> float:
        """Fractional sample where the force started to dip before a crouch detected at
        ``detected``: the long-smoothed force's descent through a quarter and a half of the
        deepest dip since, extrapolated back to no dip, less the moving mean's delay."""
        start = max(
            self._ring.oldest_index() + self._long,
            detected - self._crouch_search,
            (self._still_since or 0) + self._long,
        )
        if detected - start < 2:
            return fallback
        samples = np.arange(start, detected + 1)
        dip = 1.0 - self._moving_mean(self._platform, start, detected + 1, self._long) / (
            body_weight_n
        )
        deepest = int(np.argmax(dip))
        depth = float(dip[deepest])
        if not depth >= self.settings.crouch_min_dip_fraction:
            return fallback
        delay = 0.5 * (self._long - 1)
        below_half = np.flatnonzero(dip[:deepest] < 0.5 * depth)
        if below_half.size == 0:
            return fallback
        half = _crossing(samples, dip, 0.5 * depth, int(below_half[-1]) + 1)
        below_quarter = np.flatnonzero(dip[: int(below_half[-1]) + 1] < 0.25 * depth)
        if below_quarter.size == 0:
            return half - delay
        quarter = _crossing(samples, dip, 0.25 * depth, int(below_quarter[-1]) + 1)
        return min(quarter - (half - quarter), quarter) - delay

    def _edge_sample(
        self,
        platform: int,
        run_start: int,
        detected: int,
        level_n: float,
        low_n: float,
        high_n: float,
        *,
        rising: bool,
    ) -> float:
        """Fractional sample where the raw force on a platform crosses its unloaded
        ``level_n``: a line fitted to the raw samples of the edge between ``low_n`` and
        ``high_n`` above that level, extrapolated to it. ``run_start``: the first sample whose
        short moving mean passed ``low_n``; ``detected``: the last sample processed."""
        start = max(self._ring.oldest_index(), run_start - self._edge_search)
        force = self._ring.rows(start, detected + 1, platform) - level_n
        # Without a clean edge: the threshold crossing of the moving mean, less its delay.
        fallback = float(run_start) - 0.5 * (self._short - 1)
        if rising:
            highs = np.flatnonzero(force >= high_n)
            if highs.size == 0:
                return fallback
            top = int(highs[0])
            lows = np.flatnonzero(force[:top] <= low_n)
            if lows.size == 0:
                return fallback
            bottom = int(lows[-1])
            inner = np.arange(bottom + 1, top)
            ends = np.arange(bottom, top + 1)
        else:
            lows = np.flatnonzero(force <= low_n)
            if lows.size == 0:
                return fallback
            bottom = int(lows[0])
            highs = np.flatnonzero(force[:bottom] >= high_n)
            if highs.size == 0:
                return fallback
            top = int(highs[-1])
            inner = np.arange(top + 1, bottom)
            ends = np.arange(top, bottom + 1)
        # Samples strictly inside the band avoid the noise floor; a steep edge has too few.
        points = inner if inner.size >= 2 else ends
        intercept, slope = _line_fit(points.astype(np.float64), force[points])
        if slope == 0.0 or (slope > 0) != rising:
            return fallback
        crossing = -intercept / slope
        # A wild slope (a noisy, nearly flat edge) must not leave the window searched.
        crossing = min(max(crossing, 0.0), float(force.size - 1))
        return float(start) + crossing

    def _snapshot_emg_baseline(self, jump: _Jump, anchor: int) -> None:
        """EMG offset, envelope mean and envelope SD per channel over the baseline window that
        ends at ``anchor`` (the crouch onset, or the push-off when there was no crouch)."""
        start = max(self._ring.oldest_index(), anchor - self._emg_baseline)
        stop = min(anchor, self._ring.end_index)
        if stop - start < 2 * self._emg_smooth:
            return
        for name, column in self._emg_col.items():
            raw = self._ring.rows(start, stop, column)
            offset = _fsum_mean(raw)
            envelope = _centred_mean(np.abs(raw - offset), self._emg_smooth)
            mean = _fsum_mean(envelope)
            sd = math.sqrt(_fsum_mean((envelope - mean) ** 2))
            jump.emg_baseline[name] = (offset, mean, sd)

    def _emg_onsets(self, jump: _Jump) -> dict[str, float]:
        """Burst onset of each EMG channel in s relative to take-off (negative: before), NaN where
        no burst crossed the threshold for long enough within the search window."""
        onsets: dict[str, float] = {}
        takeoff = jump.takeoff_sample
        anchor = jump.crouch_onset_sample
        search_start = math.floor(takeoff) - self._emg_before
        if anchor is not None:
            search_start = max(search_start, math.floor(anchor))
        search_stop = math.floor(takeoff) + self._emg_after
        half = 0.5 * (self._emg_smooth - 1)
        start = max(self._ring.oldest_index(), search_start - self._emg_smooth)
        stop = min(self._ring.end_index, search_stop + self._emg_smooth + self._emg_min)
        for name, column in self._emg_col.items():
            onsets[EMG_ONSET_PREFIX + name] = math.nan
            if name not in jump.emg_baseline or stop - start < self._emg_smooth + self._emg_min:
                continue
            offset, mean, sd = jump.emg_baseline[name]
            raw = self._ring.rows(start, stop, column)
            envelope = _centred_mean(np.abs(raw - offset), self._emg_smooth)
            # envelope[i] averages samples start + i .. start + i + width - 1.
            centres = np.arange(envelope.size) + start + half
            threshold = mean + self.settings.emg_threshold_sd * sd
            above = envelope > threshold
            done, _ = _run_completion(above & (centres >= search_start), 0, self._emg_min)
            if done is None:
                continue
            first = done - self._emg_min + 1
            if centres[first] > search_stop:
                continue
            onset = float(centres[first])
            if first > 0 and envelope[first] > envelope[first - 1]:
                onset -= (envelope[first] - threshold) / (envelope[first] - envelope[first - 1])
            onsets[EMG_ONSET_PREFIX + name] = (onset - takeoff) / self.daq_rate_hz
        return onsets

    # --- poses -----------------------------------------------------------------------------------

    def _mature_poses(self, processed_stop: int | None) -> None:
        """Take in the frames whose wait is over (all known ones when ``processed_stop`` is
        None, at the end of the trial); a frame without a pose is kept as missing."""
        pulses = self._pulses
        matured: list[int] = []
        matured_pulses: list[int] = []
        while True:
            k = self._next_pose_index
            if k < pulses.oldest_index():
                k = self._next_pose_index = pulses.oldest_index()
            pulse = pulses.sample_of(k)
            if pulse is None:
                break
            if processed_stop is not None and pulse + self._pose_wait >= processed_stop:
                break
            matured.append(k)
            matured_pulses.append(pulse)
            self._next_pose_index = k + 1
        if matured:
            self._store_frames(matured, matured_pulses, processed_stop)
        if processed_stop is None:
            self.poses_dropped += len(self._pending_poses)
            self._pending_poses.clear()
        else:
            for stale in [k for k in self._pending_poses if k < self._next_pose_index]:
                del self._pending_poses[stale]
                self.poses_dropped += 1

    def _store_frames(
        self, trigger_indices: list[int], pulse_samples: list[int], processed_stop: int | None
    ) -> None:
        """Reduce the matured frames' poses to what the rules use, store them, and run the 3D
        crouch rule on them in order."""
        points = np.full((len(trigger_indices), len(self.body_parts), 3), np.nan)
        for row, k in enumerate(trigger_indices):
            pose = self._pending_poses.pop(k, None)
            if pose is not None:
                points[row] = pose
        trunk = points[:, self._centre_rows]
        centre = np.where(
            np.all(np.isfinite(trunk), axis=(1, 2))[:, None],
            trunk.sum(axis=1) / len(self._centre_rows),
            np.nan,
        )
        paws_z = points[:, self._airborne_rows, 2]
        lowest = np.where(np.isfinite(paws_z), paws_z, np.inf).min(axis=1, initial=np.inf)
        lowest[np.isinf(lowest)] = np.nan
        # NaN unless every hindquarter part is there.
        hindquarters = points[:, self._crouch_rows, 2].sum(axis=1) / len(self._crouch_rows)
        frames = self._frames
        baseline_mm: float | None = None
        for row, k in enumerate(trigger_indices):
            frames.store(k, pulse_samples[row], centre[row], lowest[row], hindquarters[row])
            if processed_stop is None or self._phase != "still":
                continue
            if baseline_mm is None:
                baseline_mm = self._still_height(pulse_samples[0])
            self._pose_crouch(pulse_samples[row], hindquarters[row], baseline_mm, processed_stop)

    def _still_height(self, pulse: int) -> float:
        """Median hindquarter height (mm) over the body-weight window before ``pulse``, NaN
        when that window is not wholly in the still phase or holds no such frame."""
        window_stop = pulse - self._bw_lag
        window_start = window_stop - self._bw_window
        if self._still_since is None or window_start < self._still_since:
            return math.nan
        pulses = self._pulses
        heights = self._frames.crouch_heights(
            pulses.first_at_or_after(window_start), pulses.first_at_or_after(window_stop)
        )
        heights = heights[np.isfinite(heights)]
        return float(np.median(heights)) if heights.size else math.nan

    def _pose_crouch(
        self, pulse: int, hindquarters_mm: float, baseline_mm: float, processed_stop: int
    ) -> None:
        """The 3D crouch rule, on one matured frame: the hindquarters stay ``crouch_drop_mm``
        below their still height for ``crouch_confirm_frames`` frames (frames without them
        neither count nor break the run)."""
        if not (math.isfinite(hindquarters_mm) and math.isfinite(baseline_mm)):
            return
        if hindquarters_mm >= baseline_mm - self.settings.crouch_drop_mm:
            self._lowered_frames = 0
            return
        self._lowered_frames += 1
        if self._lowered_frames == 1:
            self._first_lowered_sample = pulse
        if self._lowered_frames < self.settings.crouch_confirm_frames:
            return
        sample = processed_stop - 1
        body_weight_n = float(self._body_weight(sample, sample + 1)[0])
        if not body_weight_n >= self.settings.min_body_weight_n:
            return
        self._runs = {}
        self._start_crouch(sample, body_weight_n, float(self._first_lowered_sample))

    def _check_summary_due(self, processed_stop: int) -> None:
        jump = self._summary_due
        if jump is None or jump.landing_sample is None:
            return
        landing = math.ceil(jump.landing_sample)
        due = max(landing + self._pose_wait, math.ceil(jump.takeoff_sample) + self._emg_after)
        if processed_stop <= due:
            return
        # Every frame up to landing must have matured (it has, unless pulses lag the samples).
        next_pulse = self._pulses.sample_of(self._next_pose_index)
        if next_pulse is None or next_pulse <= jump.landing_sample:
            return
        self._queue_summary(jump)
        self._summary_due = None

    def _flight_kinematics(self, jump: _Jump) -> dict[str, float]:
        values = {
            "jump_height_mm": math.nan,
            "jump_distance_mm": math.nan,
            "takeoff_speed_mm_per_s": math.nan,
            "takeoff_angle_deg": math.nan,
            "flight_frames": 0.0,
            "airborne_frames": 0.0,
            "flight_confirmed": math.nan,
        }
        if jump.landing_sample is None:
            return values
        slots = self._frames.between(jump.takeoff_sample, jump.landing_sample)
        frames = self._frames
        lowest = frames.lowest_mm[slots]
        seen = lowest[np.isfinite(lowest)]
        airborne = int(np.count_nonzero(seen > self.settings.flight_clearance_mm))
        values["airborne_frames"] = float(airborne)
        if seen.size:
            values["flight_confirmed"] = float(airborne >= self.settings.flight_confirm_frames)
        centre = frames.centre_mm[slots]
        usable = np.all(np.isfinite(centre), axis=1)
        values["flight_frames"] = float(np.count_nonzero(usable))
        if np.count_nonzero(usable) < self.settings.min_flight_frames:
            return values
        if values["flight_confirmed"] == 0.0:
            # The poses saw the mouse on the platform: no ballistic flight to fit.
            return values
        tau_s = (frames.pulse_sample[slots][usable] - jump.takeoff_sample) / self.daq_rate_hz
        fit = _ballistic_fit(tau_s, centre[usable])
        if fit is None:
            return values
        _, velocity = fit
        horizontal = math.hypot(velocity[0], velocity[1])
        flight_s = (jump.landing_sample - jump.takeoff_sample) / self.daq_rate_hz
        rise = max(velocity[2], 0.0)
        values["jump_height_mm"] = rise * rise / (2.0 * GRAVITY_MM_PER_S2)
        values["jump_distance_mm"] = horizontal * flight_s
        values["takeoff_speed_mm_per_s"] = math.hypot(horizontal, velocity[2])
        values["takeoff_angle_deg"] = math.degrees(math.atan2(velocity[2], horizontal))
        return values

    def _queue_summary(self, jump: _Jump) -> None:
        landed = jump.landing_sample is not None
        flight_time_s = (
            (jump.landing_sample - jump.takeoff_sample) / self.daq_rate_hz
            if jump.landing_sample is not None
            else math.nan
        )
        values: dict[str, float] = {
            "flight_time_s": flight_time_s,
            "landed": float(landed),
            "takeoff_platform": float(jump.takeoff_platform),
            "peak_push_off_force_n": jump.peak_force_n,
            "body_weight_n": jump.body_weight_n,
            "takeoff_vertical_speed_force_mm_per_s": jump.takeoff_vertical_speed_mm_per_s,
            "jump_height_force_mm": max(jump.takeoff_vertical_speed_mm_per_s, 0.0) ** 2
            / (2.0 * GRAVITY_MM_PER_S2),
        }
        values.update(self._flight_kinematics(jump))
        values.update(self._emg_onsets(jump))
        times = {
            "takeoff_s": jump.takeoff_sample,
            "landing_s": jump.landing_sample if jump.landing_sample is not None else math.nan,
            "crouch_onset_s": (
                jump.crouch_onset_sample if jump.crouch_onset_sample is not None else math.nan
            ),
        }
        self._queue.append(_PendingEvent("jump", jump.takeoff_sample, values, times))

    # --- release ---------------------------------------------------------------------------------

    def _release(self, *, final: bool) -> list[JumpEvent]:
        """Hand out queued events, in order, once the pulses around them are known (all of them
        when ``final``)."""
        released: list[JumpEvent] = []
        pulses = self._pulses
        while self._queue:
            pending = self._queue[0]
            last = pulses.last_sample
            if not final and (last is None or last < pending.sample):
                break
            self._queue.pop(0)
            released.append(self._finalise(pending))
        return released

    def _finalise(self, pending: _PendingEvent) -> JumpEvent:
        pulse0 = self._pulses.first_sample
        values = {
            name: math.nan if pulse0 is None else (sample - pulse0) / self.daq_rate_hz
            for name, sample in pending.times.items()
        }
        values.update(pending.values)
        if pulse0 is None:
            trigger_index, t_s = -1, math.nan
        else:
            trigger_index = self._pulses.nearest(pending.sample)
            t_s = (pending.sample - pulse0) / self.daq_rate_hz
        event = JumpEvent(
            name=pending.name,
            trigger_index=int(trigger_index),
            daq_sample_index=math.floor(pending.sample + 0.5),
            t_s=float(t_s),
            values={key: float(value) for key, value in values.items()},
        )
        if event.name == "jump":
            self._last_jump = dict(event.values)
        return event


def _crossing(samples: np.ndarray, values: np.ndarray, level: float, index: int) -> float:
    """Fractional sample where ``values`` (n,) crosses ``level`` between index - 1 and index."""
    if index <= 0:
        return float(samples[0])
    before, after = values[index - 1], values[index]
    if not math.isfinite(before) or before == after:
        return float(samples[index])
    return float(samples[index - 1]) + float((before - level) / (before - after))


def _centred_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Means (n - width + 1,) of every ``width`` consecutive values of (n,), from one
    sequential running sum (so the same numbers give the same result anywhere)."""
    sums = np.add.accumulate(np.concatenate(([0.0], values)))
    return (sums[width:] - sums[:-width]) / width


# --- offline and the trial file ------------------------------------------------------------------


def detect_jumps(
    analog: np.ndarray,
    daq_rate_hz: float,
    trigger_sample_index: np.ndarray,
    pose3d_points: np.ndarray,
    pose3d_trigger_index: np.ndarray,
    *,
    settings: JumpDetectorSettings,
    force_channels: tuple[int, int],
    emg_channels: Mapping[str, int],
    body_parts: Sequence[str],
    block_samples: int = 100,
) -> list[JumpEvent]:
    """The events of a recorded trial: ``analog`` (S, C) from DAQ sample 0, the pulses (P,), and
    the poses (M, K, 3) mm with their trigger indices (M,). Feeds a JumpDetector block by block
    through the same calls as the live rig: a block's pulses, the poses of those pulses, then
    its samples. A pose that reaches the live detector within ``pose_wait_ms`` of its pulse
    counts the same as one given before its samples, so the events equal the live ones, and
    they do not depend on ``block_samples``."""
    analog = np.asarray(analog)
    pulses = np.asarray(trigger_sample_index, dtype=np.int64)
    points = np.asarray(pose3d_points)
    pose_index = np.asarray(pose3d_trigger_index, dtype=np.int64)
    if analog.ndim != 2:
        raise ValueError(f"analog must be (S, C), got {analog.shape}")
    if pulses.ndim != 1:
        raise ValueError(f"trigger_sample_index must be (P,), got {pulses.shape}")
    if points.ndim != 3 or points.shape[2] != 3 or pose_index.shape != (points.shape[0],):
        raise ValueError(
            f"pose3d_points must be (M, K, 3) with pose3d_trigger_index (M,), got "
            f"{points.shape} and {pose_index.shape}"
        )
    if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 1:
        raise ValueError(f"block_samples must be an integer >= 1, got {block_samples!r}")
    detector = JumpDetector(
        settings,
        daq_rate_hz=daq_rate_hz,
        force_channels=force_channels,
        emg_channels=emg_channels,
        body_parts=body_parts,
    )
    order = np.argsort(pose_index, kind="stable")
    pose_index, points = pose_index[order], points[order]
    # The pulse sample of every pose (poses whose pulse is unknown go in at the end).
    known = (pose_index >= 0) & (pose_index < pulses.size)
    pose_pulse = np.full(pose_index.size, np.iinfo(np.int64).max)
    pose_pulse[known] = pulses[pose_index[known]]
    events: list[JumpEvent] = []
    next_pulse = 0
    next_pose = 0
    for start in range(0, analog.shape[0], block_samples):
        stop = min(start + block_samples, analog.shape[0])
        pulse_stop = int(np.searchsorted(pulses, stop))
        detector.add_pulses(pulses[next_pulse:pulse_stop])
        next_pulse = pulse_stop
        pose_stop = int(np.searchsorted(pose_pulse, stop))
        for row in range(next_pose, pose_stop):
            events += detector.add_pose3d(int(pose_index[row]), points[row])
        next_pose = pose_stop
        events += detector.add_samples(start, analog[start:stop])
    detector.add_pulses(pulses[next_pulse:])
    for row in range(next_pose, pose_index.size):
        events += detector.add_pose3d(int(pose_index[row]), points[row])
    events += detector.finish()
    return events


def events_table(events: Sequence[JumpEvent]) -> np.ndarray:
    """The events as the trial file's /events table: one row per (event, value), with dtype
    EVENTS_TABLE_DTYPE. ``event_number`` counts the events from 0 in the order given; an event
    without values has one row with an empty ``value_name`` and a NaN ``value``. Values keep the
    event's own order; names are ASCII."""
    rows: list[tuple[int, bytes, int, int, float, bytes, float]] = []
    for number, event in enumerate(events):
        name = _ascii(event.name, EVENT_NAME_BYTES, "event name")
        items = list(event.values.items()) or [("", math.nan)]
        for value_name, value in items:
            rows.append(
                (
                    number,
                    name,
                    int(event.trigger_index),
                    int(event.daq_sample_index),
                    float(event.t_s),
                    _ascii(value_name, VALUE_NAME_BYTES, "value name"),
                    float(value),
                )
            )
    return np.array(rows, dtype=EVENTS_TABLE_DTYPE)


def events_from_table(table: np.ndarray) -> list[JumpEvent]:
    """The events back from an /events table written by :func:`events_table`."""
    if table.dtype != EVENTS_TABLE_DTYPE:
        raise ValueError(f"not an events table: dtype {table.dtype}")
    events: list[JumpEvent] = []
    current = -1
    for row in table:
        number = int(row["event_number"])
        if number != current:
            events.append(
                JumpEvent(
                    name=row["name"].decode("ascii"),
                    trigger_index=int(row["trigger_index"]),
                    daq_sample_index=int(row["daq_sample_index"]),
                    t_s=float(row["t_s"]),
                    values={},
                )
            )
            current = number
        value_name = row["value_name"].decode("ascii")
        if value_name:
            events[-1].values[value_name] = float(row["value"])
    return events


def _ascii(text: str, limit: int, what: str) -> bytes:
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} must be ASCII") from None
    if len(encoded) > limit:
        raise ValueError(f"{what} {text!r} is longer than {limit} bytes")
    return encoded
