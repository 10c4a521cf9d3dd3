"""compare_arrays (the element-by-element part of the comparison), the replay speed and the
supervisor's running phase of a replay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rig.replay.compare import Status, compare_arrays
from rig.replay.pacing import ReplaySpeed, SpeedError


def test_identical_arrays_including_nan() -> None:
    a = np.array([[1.0, np.nan], [3.0, 4.0]], dtype=np.float32)
    assert compare_arrays(a, a.copy()) == (Status.IDENTICAL, "", None)


def test_first_difference_and_max_abs_difference() -> None:
    a = np.zeros((4, 3, 2), dtype=np.float32)
    b = a.copy()
    b[1, 2, 0] = 0.25
    b[3, 0, 1] = -2.0
    status, where, largest = compare_arrays(a, b)
    assert status is Status.DIFFERENT
    assert where == "at (1, 2, 0): 0 vs 0.25"
    assert largest == 2.0


def test_nan_against_a_number_is_an_infinite_difference() -> None:
    a = np.array([1.0, np.nan])
    b = np.array([1.0, 5.0])
    status, where, largest = compare_arrays(a, b)
    assert status is Status.DIFFERENT
    assert where == "at (1,): nan vs 5"
    assert largest == math.inf


def test_shape_mismatch_reports_the_common_rows() -> None:
    a = np.arange(6, dtype=np.int64)
    b = np.array([0, 1, 2, 3, 9], dtype=np.int64)
    status, where, largest = compare_arrays(a, b)
    assert status is Status.DIFFERENT
    assert where == "shape (6,) vs (5,)"
    assert largest == 5.0


def test_tables_compare_field_by_field() -> None:
    dtype = np.dtype([("name", "S8"), ("t_s", "<f8"), ("value", "<f8")])
    a = np.array([(b"takeoff", 1.5, np.nan), (b"landing", 1.7, 3.0)], dtype=dtype)
    assert compare_arrays(a, a.copy())[0] is Status.IDENTICAL
    b = a.copy()
    b["value"][1] = 3.5
    status, where, largest = compare_arrays(a, b)
    assert status is Status.DIFFERENT
    assert where.startswith("field 'value' at (1,)")
    assert largest == 0.5
    c = a.copy()
    c["name"][0] = b"jump"
    assert compare_arrays(a, c)[1].startswith("field 'name' at (0,)")


def test_booleans_and_text() -> None:
    a = np.array([True, False, True])
    status, where, _ = compare_arrays(a, np.array([True, True, True]))
    assert status is Status.DIFFERENT and where == "at (1,): False vs True"
    text = np.array(["cam_left", "cam_top"], dtype=object)
    assert compare_arrays(text, text.copy())[0] is Status.IDENTICAL
    assert compare_arrays(text, np.array(["cam_left", "cam_x"], dtype=object))[0] is (
        Status.DIFFERENT
    )


@pytest.mark.parametrize(
    ("text", "factor", "label"),
    [
        ("realtime", 1.0, "realtime"),
        ("max", math.inf, "max"),
        ("2", 2.0, "2"),
        ("0.5x", 0.5, "0.5"),
    ],
)
def test_speed_parses(text: str, factor: float, label: str) -> None:
    speed = ReplaySpeed.parse(text)
    assert speed.factor == factor
    assert speed.label == label
    assert speed.paced_seconds(4.0) == (0.0 if math.isinf(factor) else 4.0 / factor)


@pytest.mark.parametrize("text", ["fast", "0", "-1", "inf", "nan", ""])
def test_bad_speed_is_refused(text: str) -> None:
    with pytest.raises(SpeedError):
        ReplaySpeed.parse(text)


def test_running_phase_leaves_the_drain_within_its_budget() -> None:
    from rig.replay.run import DRAIN_BUDGET_S, SLOWEST_PACE, running_phase_s

    maximum = ReplaySpeed.parse("max")
    assert running_phase_s(maximum, 5.0) == 0.0
    for recorded_s in (5.0, 30.0, 120.0):
        for speed in (maximum, ReplaySpeed.parse("realtime"), ReplaySpeed.parse("0.5")):
            phase_s = running_phase_s(speed, recorded_s)
            assert phase_s >= speed.paced_seconds(recorded_s)
            # What a replay at the slowest pace planned for has left when the supervisor stops.
            assert recorded_s / SLOWEST_PACE - phase_s <= DRAIN_BUDGET_S
