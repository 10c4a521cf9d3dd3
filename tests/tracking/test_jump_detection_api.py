"""Jump detector contract without the twin: settings and input checks, exact timing on a
noise-free synthetic jump, events without pulses, the /events table, bounded memory."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest

from tracking.jump_detection import (
    EVENTS_TABLE_DTYPE,
    JumpDetector,
    JumpDetectorSettings,
    JumpEvent,
    detect_jumps,
    events_from_table,
    events_table,
)

RATE_HZ = 10_000.0
BODY_WEIGHT_N = 0.25
PARTS = ("nose", "eye", "forepaw", "iliac_crest", "hip", "knee", "ankle", "mtp", "toe", "tail_base")
SETTINGS = JumpDetectorSettings()


def detector(**overrides: Any) -> JumpDetector:
    wiring: dict[str, Any] = {
        "daq_rate_hz": RATE_HZ,
        "force_channels": (0, 1),
        "emg_channels": {"emg_gastrocnemius": 2},
        "body_parts": PARTS,
    }
    wiring.update(overrides)
    return JumpDetector(SETTINGS, **wiring)


def synthetic_trial(takeoff_s: float, landing_s: float, duration_s: float) -> np.ndarray:
    """(S, 3) noise-free samples from t = 0: force on the take-off platform (body weight, a
    push rising to 3 body weights, then falling linearly to 0 at ``takeoff_s``), force on the
    landing platform (0 until ``landing_s``, then rising linearly to 2 body weights in 3 ms and
    settling to body weight), and a silent EMG channel."""
    t_s = np.arange(round(duration_s * RATE_HZ)) / RATE_HZ
    takeoff = np.full(t_s.size, BODY_WEIGHT_N)
    push = (t_s >= takeoff_s - 0.08) & (t_s < takeoff_s - 0.01)
    takeoff[push] = BODY_WEIGHT_N * (1.0 + 2.0 * (t_s[push] - (takeoff_s - 0.08)) / 0.07)
    falling = (t_s >= takeoff_s - 0.01) & (t_s < takeoff_s)
    takeoff[falling] = 3.0 * BODY_WEIGHT_N * (takeoff_s - t_s[falling]) / 0.01
    takeoff[t_s >= takeoff_s] = 0.0
    landing = np.zeros(t_s.size)
    since = t_s - landing_s
    rising = (since > 0) & (since < 0.003)
    landing[rising] = 2.0 * BODY_WEIGHT_N * since[rising] / 0.003
    settling = since >= 0.003
    landing[settling] = BODY_WEIGHT_N * (1.0 + np.exp(-(since[settling] - 0.003) / 0.02))
    emg = np.zeros(t_s.size)
    return np.stack((takeoff, landing, emg), axis=1).astype(np.float32)


def run_synthetic(pulses: np.ndarray) -> list[JumpEvent]:
    analog = synthetic_trial(takeoff_s=1.23456, landing_s=1.40012, duration_s=2.0)
    return detect_jumps(
        analog,
        RATE_HZ,
        pulses,
        np.zeros((0, len(PARTS), 3)),
        np.zeros(0, dtype=np.int64),
        settings=SETTINGS,
        force_channels=(0, 1),
        emg_channels={"emg_gastrocnemius": 2},
        body_parts=PARTS,
    )


def test_a_straight_force_edge_is_timed_to_the_microsecond() -> None:
    events = run_synthetic(np.arange(0, 20_000, 50, dtype=np.int64))
    assert [e.name for e in events] == ["takeoff", "landing", "jump"]
    takeoff, landing, jump = events
    print(
        f"take-off error {1e6 * (takeoff.t_s - 1.23456):+.3f} us, "
        f"landing error {1e6 * (landing.t_s - 1.40012):+.3f} us"
    )
    assert abs(takeoff.t_s - 1.23456) < 1e-6
    assert abs(landing.t_s - 1.40012) < 1e-6
    assert (takeoff.daq_sample_index, takeoff.trigger_index) == (12346, 247)
    assert (landing.daq_sample_index, landing.trigger_index) == (14001, 280)
    assert jump.values["peak_push_off_force_n"] == pytest.approx(3.0 * BODY_WEIGHT_N, rel=0.01)
    assert jump.values["body_weight_n"] == pytest.approx(BODY_WEIGHT_N, rel=1e-6)
    assert math.isnan(jump.values["crouch_onset_s"])  # this push had no crouch before it
    assert math.isnan(jump.values["emg_onset_from_takeoff_s/emg_gastrocnemius"])
    assert math.isnan(jump.values["jump_height_mm"]) and jump.values["flight_frames"] == 0.0
    # Impulse over the 80 ms push: a 1 -> 3 body weight ramp for 70 ms, 3 -> 0 over 10 ms,
    # so v = g (2 x 0.07 + 1.5 x 0.01 - 0.08) = g x 0.075.
    assert jump.values["takeoff_vertical_speed_force_mm_per_s"] == pytest.approx(
        9810.0 * 0.075, rel=1e-3
    )


def test_pulses_start_the_clock_and_without_them_times_are_unknown() -> None:
    shifted = run_synthetic(np.arange(1000, 20_000, 50, dtype=np.int64))
    assert abs(shifted[0].t_s - (1.23456 - 0.1)) < 1e-6
    assert shifted[0].trigger_index == 247 - 20
    no_pulses = run_synthetic(np.zeros(0, dtype=np.int64))
    assert [e.name for e in no_pulses] == ["takeoff", "landing", "jump"]
    for event in no_pulses:
        assert event.trigger_index == -1 and math.isnan(event.t_s)
    assert no_pulses[0].daq_sample_index == 12346
    assert math.isnan(no_pulses[2].values["takeoff_s"])
    assert no_pulses[2].values["flight_time_s"] == pytest.approx(1.40012 - 1.23456, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("force_smoothing_ms", 0.0),
        ("pose_wait_ms", math.nan),
        ("crouch_drop_fraction", 1.5),
        ("centre_parts", ()),
        ("centre_parts", ("nose", "nose")),
        ("crouch_parts", ["hip"]),
        ("min_flight_frames", 1),
        ("crouch_confirm_frames", 0),
        ("force_n_per_unit", (1.0,)),
        ("force_n_per_unit", (1.0, -2.0)),
        ("takeoff_fit_upper_fraction", 0.01),
        ("push_off_peak_fraction", 0.9),
        ("emg_threshold_sd", True),
    ],
)
def test_settings_reject_bad_values(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        JumpDetectorSettings(**{name: value})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"daq_rate_hz": 0.0}, "daq_rate_hz"),
        ({"force_channels": (1, 1)}, "force_channels"),
        ({"emg_channels": {"emg": 0}}, "must all differ"),
        ({"emg_channels": {"emg": -1}}, "integers >= 0"),
        ({"body_parts": ("nose", "eye")}, "centre_parts names parts not in body_parts"),
        ({"body_parts": (*PARTS, "nose")}, "unique"),
    ],
)
def test_detector_rejects_bad_wiring(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detector(**overrides)


def test_inputs_are_checked() -> None:
    jump_detector = detector()
    block = np.zeros((10, 3), dtype=np.float32)
    jump_detector.add_samples(0, block)
    with pytest.raises(ValueError, match="contiguous"):
        jump_detector.add_samples(20, block)
    with pytest.raises(ValueError, match="C >= 3"):
        jump_detector.add_samples(10, block[:, :2])
    with pytest.raises(ValueError, match="finite"):
        jump_detector.add_samples(10, np.full((10, 3), np.nan, dtype=np.float32))
    jump_detector.add_pulses(np.array([0, 50]))
    with pytest.raises(ValueError, match="increase"):
        jump_detector.add_pulses(np.array([50, 100]))
    with pytest.raises(ValueError, match="integer"):
        jump_detector.add_pulses(np.array([150.0]))
    with pytest.raises(ValueError, match=r"\(10, 3\)"):
        jump_detector.add_pose3d(0, np.zeros((9, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        jump_detector.add_pose3d(-1, np.zeros((10, 3)))
    assert jump_detector.finish() == []
    with pytest.raises(RuntimeError, match="finished"):
        jump_detector.add_samples(10, block)


def test_a_late_or_repeated_pose_is_dropped_and_counted() -> None:
    jump_detector = detector()
    jump_detector.add_pulses(np.arange(0, 5_000, 50))
    jump_detector.add_pose3d(3, np.zeros((10, 3)))
    jump_detector.add_pose3d(3, np.zeros((10, 3)))
    assert jump_detector.poses_dropped == 1
    # 200 ms of samples: the frames whose pulse is over 100 ms old (k < 20) have matured.
    jump_detector.add_samples(0, np.zeros((2_000, 3), dtype=np.float32))
    jump_detector.add_pose3d(5, np.zeros((10, 3)))
    jump_detector.add_pose3d(30, np.zeros((10, 3)))
    assert jump_detector.poses_dropped == 2


def test_memory_does_not_grow_with_trial_length() -> None:
    """A mouse standing still, pulses at 2 kHz (so the pulse and pose histories wrap around)
    and a pose every tenth pulse: the detector's memory after 3 s and after 9 s is the same."""
    rng = np.random.default_rng(0)
    jump_detector = detector()
    block_samples = 2_000
    pose = np.zeros((10, 3))
    pose[:, 2] = 20.0
    traced_kib = []
    tracemalloc.start()
    try:
        for start in range(0, 90_000, block_samples):
            block = np.zeros((block_samples, 3), dtype=np.float32)
            block[:, 0] = BODY_WEIGHT_N + 0.002 * rng.standard_normal(block_samples)
            pulses = np.arange(start, start + block_samples, 5)
            jump_detector.add_pulses(pulses)
            for trigger_index in pulses[::10] // 5:
                jump_detector.add_pose3d(int(trigger_index), pose)
            assert jump_detector.add_samples(start, block) == []
            if start + block_samples in (30_000, 90_000):
                traced_kib.append(tracemalloc.get_traced_memory()[0] / 1024)
    finally:
        tracemalloc.stop()
    print(f"traced memory after 3 s {traced_kib[0]:.0f} KiB, after 9 s {traced_kib[1]:.0f} KiB")
    assert traced_kib[1] - traced_kib[0] < 64
    assert jump_detector.phase == "still" and jump_detector.poses_dropped == 0
    assert jump_detector.finish() == []


def test_events_table_layout() -> None:
    events = [
        JumpEvent(
            "takeoff", 12, 2_400, 0.012, {"body_weight_n": 0.25, "peak_push_off_force_n": 0.8}
        ),
        JumpEvent("crouch_onset", -1, 100, math.nan, {}),
    ]
    table = events_table(events)
    assert table.dtype == EVENTS_TABLE_DTYPE
    assert table["event_number"].tolist() == [0, 0, 1]
    assert table["name"].tolist() == [b"takeoff", b"takeoff", b"crouch_onset"]
    assert table["value_name"].tolist() == [b"body_weight_n", b"peak_push_off_force_n", b""]
    assert table["value"][:2].tolist() == [0.25, 0.8] and math.isnan(table["value"][2])
    back = events_from_table(table)
    assert back[0] == events[0]
    assert (back[1].name, back[1].trigger_index, back[1].values) == ("crouch_onset", -1, {})
    assert events_table([]).shape == (0,)
    assert events_from_table(events_table([])) == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (JumpEvent("x" * 33, 0, 0, 0.0, {}), "longer than 32"),
        (JumpEvent("jump", 0, 0, 0.0, {"v" * 65: 1.0}), "longer than 64"),
        (JumpEvent("jump", 0, 0, 0.0, {"höhe_mm": 1.0}), "ASCII"),
    ],
)
def test_events_table_rejects_names_it_cannot_store(event: JumpEvent, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        events_table([event])


def test_events_from_table_rejects_other_tables() -> None:
    with pytest.raises(ValueError, match="not an events table"):
        events_from_table(np.zeros(3, dtype=[("name", "S32")]))
