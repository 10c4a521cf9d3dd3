"""Jump detection scored against the digital twin's ground truth: event times, kinematics, EMG
onsets; no jump when the mouse stays still; live and offline give identical events."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from acquisition.sim.signals import AnalogTwin
from acquisition.sim.skeleton import BODY_PARTS, JumpModel, JumpParameters
from tracking.jump_detection import (
    EMG_ONSET_PREFIX,
    JumpDetector,
    JumpDetectorSettings,
    JumpEvent,
    detect_jumps,
    events_from_table,
    events_table,
)

RATE_HZ = 10_000.0
PULSE0 = 2_500  # DAQ sample of trigger pulse 0
PULSE_PERIOD = 50  # samples: 200 pulses/s
CHANNELS = [
    ("emg_gastrocnemius", "emg"),
    ("force_takeoff_platform", "force"),
    ("emg_tibialis_anterior", "emg"),
    ("emg_vastus_lateralis", "emg"),
    ("force_landing_platform", "force"),
    ("emg_biceps_femoris", "emg"),
    ("thermistor", "other"),
]
FORCE_CHANNELS = (1, 4)
EMG_CHANNELS = {name: i for i, (name, kind) in enumerate(CHANNELS) if kind == "emg"}
SETTINGS = JumpDetectorSettings()

JUMPS = {
    "default": JumpParameters(),
    "low_slow_push": JumpParameters(height_mm=10.0, gap_mm=50.0, push_off_duration_s=0.15),
    "high_fast_crouch": JumpParameters(
        height_mm=60.0, gap_mm=120.0, crouch_duration_s=0.15, push_off_duration_s=0.05
    ),
    "late_long_crouch": JumpParameters(
        crouch_onset_s=2.2, crouch_duration_s=0.8, gap_mm=100.0, height_mm=40.0, body_mass_g=32.0
    ),
}


@dataclass(frozen=True)
class TwinTrial:
    jump: JumpModel
    analog: np.ndarray  # (S, C) float32
    pulses: np.ndarray  # (P,) int64 DAQ sample of every pulse
    points_mm: np.ndarray  # (M, K, 3) float32, noisy, NaN where not triangulated
    pose_trigger_index: np.ndarray  # (M,) int64
    emg_onsets_s: dict[str, float]


def make_trial(params: JumpParameters, seed: int, duration_s: float | None = None) -> TwinTrial:
    """A twin trial from sample 0: the analog channels, 200 Hz pulses from PULSE0, and the true
    3D points with 1 mm Gaussian noise, 10% of parts NaN and 3% of frames never delivered."""
    jump = JumpModel(params)
    if duration_s is None:
        duration_s = jump.true_events()["settled_s"] + 0.5
    n_samples = PULSE0 + round(duration_s * RATE_HZ)
    twin = AnalogTwin(jump, CHANNELS, RATE_HZ, seed)
    analog = twin.samples(0, n_samples, PULSE0)
    pulses = np.arange(PULSE0, n_samples, PULSE_PERIOD, dtype=np.int64)
    rng = np.random.default_rng(seed)
    points = jump.points_mm((pulses - PULSE0) / RATE_HZ)
    points = points + rng.normal(0.0, 1.0, points.shape)
    points[rng.random(points.shape[:2]) < 0.1] = np.nan
    delivered = rng.random(pulses.size) >= 0.03
    return TwinTrial(
        jump=jump,
        analog=analog,
        pulses=pulses,
        points_mm=points[delivered].astype(np.float32),
        pose_trigger_index=np.flatnonzero(delivered).astype(np.int64),
        emg_onsets_s=twin.emg_onsets_s(),
    )


def offline(trial: TwinTrial, block_samples: int = 100) -> list[JumpEvent]:
    return detect_jumps(
        trial.analog,
        RATE_HZ,
        trial.pulses,
        trial.points_mm,
        trial.pose_trigger_index,
        settings=SETTINGS,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
        block_samples=block_samples,
    )


def assert_same_events(first: list[JumpEvent], second: list[JumpEvent]) -> None:
    """Equal event by event, NaN equal to NaN, values bit for bit."""
    assert [e.name for e in first] == [e.name for e in second]
    for a, b in zip(first, second, strict=True):
        assert (a.trigger_index, a.daq_sample_index) == (b.trigger_index, b.daq_sample_index)
        np.testing.assert_array_equal(a.t_s, b.t_s)
        assert list(a.values) == list(b.values)
        np.testing.assert_array_equal(list(a.values.values()), list(b.values.values()))


def only(events: list[JumpEvent], name: str) -> JumpEvent:
    matching = [e for e in events if e.name == name]
    assert len(matching) == 1, f"expected one {name!r} event, got {[e.name for e in events]}"
    return matching[0]


@pytest.fixture(scope="module", params=list(JUMPS))
def scored(request: pytest.FixtureRequest) -> tuple[str, TwinTrial, list[JumpEvent]]:
    trial = make_trial(JUMPS[request.param], seed=7)
    return request.param, trial, offline(trial)


def test_events_come_in_order_with_the_jump_summary_last(
    scored: tuple[str, TwinTrial, list[JumpEvent]],
) -> None:
    _, _, events = scored
    assert [e.name for e in events] == ["crouch_onset", "takeoff", "landing", "jump"]
    takeoff, jump = only(events, "takeoff"), only(events, "jump")
    assert (jump.trigger_index, jump.daq_sample_index, jump.t_s) == (
        takeoff.trigger_index,
        takeoff.daq_sample_index,
        takeoff.t_s,
    )


def test_takeoff_and_landing_times_match_the_truth_to_a_fraction_of_a_ms(
    scored: tuple[str, TwinTrial, list[JumpEvent]],
) -> None:
    name, trial, events = scored
    truth = trial.jump.true_events()
    jump = only(events, "jump").values
    for event_name in ("takeoff", "landing"):
        event = only(events, event_name)
        true_s = truth[f"{event_name}_s"]
        error_ms = (event.t_s - true_s) * 1e3
        print(f"{name}: {event_name} error {error_ms:+.3f} ms")
        assert abs(error_ms) < 1.0
        assert jump[f"{event_name}_s"] == event.t_s
        true_sample = PULSE0 + true_s * RATE_HZ
        assert abs(event.daq_sample_index - true_sample) < 10.0  # within 1 ms
        nearest_pulse = int(np.argmin(np.abs(trial.pulses - (PULSE0 + event.t_s * RATE_HZ))))
        assert event.trigger_index == nearest_pulse
    flight_error_ms = (jump["flight_time_s"] - truth["flight_time_s"]) * 1e3
    print(f"{name}: flight time error {flight_error_ms:+.3f} ms")
    assert abs(flight_error_ms) < 1.0


def test_crouch_onset_matches_the_truth(scored: tuple[str, TwinTrial, list[JumpEvent]]) -> None:
    name, trial, events = scored
    onset = only(events, "crouch_onset")
    error_ms = (onset.t_s - trial.jump.true_events()["crouch_onset_s"]) * 1e3
    print(f"{name}: crouch onset error {error_ms:+.2f} ms")
    assert abs(error_ms) < 20.0
    assert only(events, "jump").values["crouch_onset_s"] == onset.t_s


def test_kinematics_match_the_truth(scored: tuple[str, TwinTrial, list[JumpEvent]]) -> None:
    name, trial, events = scored
    truth = trial.jump.true_events()
    jump = only(events, "jump").values
    height_error = jump["jump_height_mm"] - truth["jump_height_mm"]
    distance_error = jump["jump_distance_mm"] - truth["jump_distance_mm"]
    speed_error = jump["takeoff_speed_mm_per_s"] / truth["takeoff_speed_mm_per_s"] - 1.0
    force_error = jump["peak_push_off_force_n"] / truth["peak_push_off_force_n"] - 1.0
    weight_error = jump["body_weight_n"] / truth["body_weight_n"] - 1.0
    print(
        f"{name}: height {height_error:+.2f} mm, distance {distance_error:+.2f} mm, "
        f"take-off speed {100 * speed_error:+.1f}%, peak force {100 * force_error:+.2f}%, "
        f"body weight {100 * weight_error:+.2f}%, flight frames {jump['flight_frames']:.0f}"
    )
    assert abs(height_error) < 2.0
    # The force plate's own estimate: the vertical impulse from standing still to take-off.
    force_height_error = jump["jump_height_force_mm"] - truth["jump_height_mm"]
    print(f"{name}: height from the force impulse {force_height_error:+.2f} mm")
    assert abs(force_height_error) < 1.0
    assert abs(distance_error) < 5.0
    assert abs(speed_error) < 0.05
    assert abs(force_error) < 0.05
    assert abs(weight_error) < 0.01
    assert abs(jump["takeoff_angle_deg"] - truth["takeoff_angle_deg"]) < 5.0
    assert jump["flight_confirmed"] == 1.0 and jump["landed"] == 1.0
    assert jump["takeoff_platform"] == 0.0
    assert only(events, "takeoff").values["peak_push_off_force_n"] == jump["peak_push_off_force_n"]


def test_emg_onsets_match_the_truth(scored: tuple[str, TwinTrial, list[JumpEvent]]) -> None:
    name, trial, events = scored
    jump = only(events, "jump").values
    takeoff_s = trial.jump.true_events()["takeoff_s"]
    assert set(trial.emg_onsets_s) == set(EMG_CHANNELS)
    for channel, onset_s in trial.emg_onsets_s.items():
        measured_s = jump[EMG_ONSET_PREFIX + channel]
        error_ms = (measured_s - (onset_s - takeoff_s)) * 1e3
        print(f"{name}: EMG {channel} onset {1e3 * measured_s:+.2f} ms, error {error_ms:+.2f} ms")
        assert measured_s < 0.0
        assert abs(error_ms) < 5.0


def test_no_event_when_the_mouse_stays_still() -> None:
    trial = make_trial(JumpParameters(crouch_onset_s=100.0), seed=3, duration_s=4.0)
    detector = JumpDetector(
        SETTINGS,
        daq_rate_hz=RATE_HZ,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    detector.add_pulses(trial.pulses)
    events: list[JumpEvent] = []
    for start in range(0, trial.analog.shape[0], 100):
        events += detector.add_samples(start, trial.analog[start : start + 100])
        assert detector.phase == "still"
    events += detector.finish()
    assert events == []
    assert detector.last_jump is None
    assert offline(trial) == []


def live(trial: TwinTrial, seed: int) -> tuple[list[JumpEvent], list[str], int]:
    """The trial as the rig delivers it: blocks of 100 samples, each block's pulses after its
    samples, every pose 3-10 frames late and so a little out of order. Returns the events, the
    phases seen (in order, without repeats) and the poses dropped."""
    rng = np.random.default_rng(seed)
    detector = JumpDetector(
        SETTINGS,
        daq_rate_hz=RATE_HZ,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    lateness = rng.integers(3, 11, size=trial.pose_trigger_index.size) * PULSE_PERIOD
    arrival_sample = trial.pulses[trial.pose_trigger_index] + lateness
    order = np.argsort(arrival_sample, kind="stable")
    events: list[JumpEvent] = []
    phases = [detector.phase]
    next_pose = 0
    for start in range(0, trial.analog.shape[0], 100):
        stop = min(start + 100, trial.analog.shape[0])
        events += detector.add_samples(start, trial.analog[start:stop])
        detector.add_pulses(trial.pulses[(trial.pulses >= start) & (trial.pulses < stop)])
        while next_pose < order.size and arrival_sample[order[next_pose]] < stop:
            row = order[next_pose]
            events += detector.add_pose3d(int(trial.pose_trigger_index[row]), trial.points_mm[row])
            next_pose += 1
        if detector.phase != phases[-1]:
            phases.append(detector.phase)
    for row in order[next_pose:]:
        events += detector.add_pose3d(int(trial.pose_trigger_index[row]), trial.points_mm[row])
    events += detector.finish()
    return events, phases, detector.poses_dropped


@pytest.mark.parametrize("jump_name", ["default", "high_fast_crouch"])
def test_live_and_offline_give_identical_events(jump_name: str) -> None:
    trial = make_trial(JUMPS[jump_name], seed=11)
    live_events, phases, dropped = live(trial, seed=5)
    assert dropped == 0
    assert phases[0] == "still" and phases[-1] == "still"
    for phase in ("crouch", "push_off", "flight", "landing"):
        assert phase in phases
    assert phases.index("flight") < phases.index("landing")
    assert [e.name for e in live_events] == ["crouch_onset", "takeoff", "landing", "jump"]
    assert_same_events(live_events, offline(trial))


def test_any_block_size_gives_identical_events() -> None:
    trial = make_trial(JUMPS["default"], seed=13)
    reference = offline(trial, block_samples=100)
    assert len(reference) == 4
    for block_samples in (7, 333, 4096, trial.analog.shape[0]):
        assert_same_events(offline(trial, block_samples=block_samples), reference)


def test_events_table_round_trip() -> None:
    trial = make_trial(JUMPS["default"], seed=7)
    events = offline(trial)
    table = events_table(events)
    assert table.dtype.names == (
        "event_number",
        "name",
        "trigger_index",
        "daq_sample_index",
        "t_s",
        "value_name",
        "value",
    )
    assert table.shape == (sum(len(e.values) for e in events),)
    jump_rows = table[table["name"] == b"jump"]
    assert set(jump_rows["event_number"]) == {3}
    height = jump_rows[jump_rows["value_name"] == b"jump_height_mm"]["value"]
    assert height.tolist() == [only(events, "jump").values["jump_height_mm"]]
    assert_same_events(events_from_table(table), events)


def mirrored(trial: TwinTrial, gap_mm: float) -> TwinTrial:
    """The same trial with the mouse jumping back: forces on the other platform, x mirrored."""
    analog = trial.analog.copy()
    analog[:, FORCE_CHANNELS[0]] = trial.analog[:, FORCE_CHANNELS[1]]
    analog[:, FORCE_CHANNELS[1]] = trial.analog[:, FORCE_CHANNELS[0]]
    points = trial.points_mm.copy()
    points[..., 0] = gap_mm - points[..., 0]
    return TwinTrial(
        trial.jump, analog, trial.pulses, points, trial.pose_trigger_index, trial.emg_onsets_s
    )


def test_a_jump_there_and_back_gives_two_jumps() -> None:
    params = JUMPS["default"]
    there = make_trial(params, seed=17)
    back = mirrored(make_trial(params, seed=19), params.gap_mm)
    # The second trial follows the first without a gap in samples, pulses or poses.
    offset_samples = there.analog.shape[0]
    offset_pulses = there.pulses.size
    pulses = np.concatenate((there.pulses, back.pulses + offset_samples))
    events = detect_jumps(
        np.concatenate((there.analog, back.analog)),
        RATE_HZ,
        pulses,
        np.concatenate((there.points_mm, back.points_mm)),
        np.concatenate((there.pose_trigger_index, back.pose_trigger_index + offset_pulses)),
        settings=SETTINGS,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    jumps = [e for e in events if e.name == "jump"]
    assert len(jumps) == 2
    truth = there.jump.true_events()
    back_offset_s = offset_samples / RATE_HZ
    for jump, platform, shift_s in ((jumps[0], 0.0, 0.0), (jumps[1], 1.0, back_offset_s)):
        assert jump.values["takeoff_platform"] == platform
        assert abs(jump.values["takeoff_s"] - shift_s - truth["takeoff_s"]) < 1e-3
        assert abs(jump.values["landing_s"] - shift_s - truth["landing_s"]) < 1e-3
        assert abs(jump.values["jump_height_mm"] - truth["jump_height_mm"]) < 2.0
        assert abs(jump.values["jump_distance_mm"] - truth["jump_distance_mm"]) < 5.0


def test_a_jump_without_landing_is_reported_after_the_flight_timeout() -> None:
    trial = make_trial(JUMPS["default"], seed=23)
    analog = trial.analog.copy()
    analog[:, FORCE_CHANNELS[1]] = 0.0  # the mouse never reaches the landing platform
    events = detect_jumps(
        analog,
        RATE_HZ,
        trial.pulses,
        trial.points_mm,
        trial.pose_trigger_index,
        settings=SETTINGS,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    assert [e.name for e in events] == ["crouch_onset", "takeoff", "jump"]
    jump = only(events, "jump").values
    assert jump["landed"] == 0.0
    for key in ("landing_s", "flight_time_s", "jump_height_mm", "jump_distance_mm"):
        assert math.isnan(jump[key])
    assert abs(jump["takeoff_s"] - trial.jump.true_events()["takeoff_s"]) < 1e-3


def test_poses_too_late_are_dropped_and_the_force_events_stand() -> None:
    trial = make_trial(JUMPS["default"], seed=29)
    detector = JumpDetector(
        SETTINGS,
        daq_rate_hz=RATE_HZ,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    detector.add_pulses(trial.pulses)
    events = detector.add_samples(0, trial.analog)
    # Every pose arrives after the whole trial's samples: those more than 0.2 s before the end
    # are far past their wait (100 ms).
    late = trial.pulses[trial.pose_trigger_index] < trial.analog.shape[0] - 0.2 * RATE_HZ
    for trigger_index, points in zip(
        trial.pose_trigger_index[late], trial.points_mm[late], strict=True
    ):
        events += detector.add_pose3d(int(trigger_index), points)
    events += detector.finish()
    assert detector.poses_dropped == np.count_nonzero(late) > 400
    jump = only(events, "jump").values
    assert jump["flight_frames"] == 0.0 and math.isnan(jump["flight_confirmed"])
    assert math.isnan(jump["jump_height_mm"])
    assert abs(jump["takeoff_s"] - trial.jump.true_events()["takeoff_s"]) < 1e-3
    last_jump = detector.last_jump
    assert last_jump is not None and last_jump["takeoff_s"] == jump["takeoff_s"]


def test_poses_show_when_the_mouse_did_not_fly() -> None:
    """Forces that look like a jump while the 3D points stay on the platform: not confirmed."""
    trial = make_trial(JUMPS["default"], seed=31)
    standing = trial.jump.points_mm(np.zeros(trial.pose_trigger_index.size))
    events = detect_jumps(
        trial.analog,
        RATE_HZ,
        trial.pulses,
        standing.astype(np.float32),
        trial.pose_trigger_index,
        settings=SETTINGS,
        force_channels=FORCE_CHANNELS,
        emg_channels=EMG_CHANNELS,
        body_parts=BODY_PARTS,
    )
    jump = only(events, "jump").values
    assert jump["flight_confirmed"] == 0.0 and jump["airborne_frames"] == 0.0
    assert jump["flight_frames"] > 20
    # A ballistic fit to a body that stayed put would be meaningless.
    assert math.isnan(jump["jump_height_mm"]) and math.isnan(jump["takeoff_speed_mm_per_s"])
