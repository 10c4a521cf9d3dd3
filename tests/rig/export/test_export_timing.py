"""Times on the DAQ's clock: recorded pulses exact, unrecorded ones estimated, unknown ones NaN."""

from __future__ import annotations

import numpy as np
import pytest

from rig.export.timing import frame_times, pulse_times, regular_timing, sample_times_s

RATE_HZ = 10_000.0
PULSES = 7 + 20 * np.arange(10, dtype=np.int64)  # pulse p at sample 7 + 20 p


def test_sample_times_divide_by_the_rate_and_mark_unknown_samples() -> None:
    times = sample_times_s(np.array([0, 5, 10_000, -1]), RATE_HZ)
    np.testing.assert_array_equal(times[:3], [0.0, 0.0005, 1.0])
    assert np.isnan(times[3])


def test_recorded_pulses_are_exact_and_later_ones_estimated_on_the_pulse_line() -> None:
    times = pulse_times(np.array([0, 3, 9, 12, -1]), PULSES, RATE_HZ)
    np.testing.assert_allclose(times.times_s[:3], PULSES[[0, 3, 9]] / RATE_HZ, rtol=0, atol=0)
    # Pulse 12 was never recorded: on the line through the recorded ones, 7 + 20 * 12.
    assert times.times_s[3] == pytest.approx((7 + 20 * 12) / RATE_HZ, abs=1e-12)
    assert np.isnan(times.times_s[4])
    np.testing.assert_array_equal(times.estimated, [False, False, False, True, False])
    np.testing.assert_array_equal(times.known, [True, True, True, True, False])


def test_without_two_recorded_pulses_nothing_can_be_estimated() -> None:
    times = pulse_times(np.array([0, 1]), PULSES[:1], RATE_HZ)
    assert times.times_s[0] == PULSES[0] / RATE_HZ
    assert np.isnan(times.times_s[1]) and not times.estimated.any()


def test_frame_times_prefer_the_frames_own_sample_index() -> None:
    # Row 1's sample (50) differs from its pulse's on purpose: the frame's own column wins.
    times = frame_times(
        trigger_index=np.array([0, 1, 11, -1]),
        daq_sample_index=np.array([7, 50, -1, -1]),
        trigger_sample_index=PULSES,
        rate_hz=RATE_HZ,
    )
    np.testing.assert_allclose(times.times_s[:3], [7 / RATE_HZ, 50 / RATE_HZ, 227 / RATE_HZ])
    assert np.isnan(times.times_s[3])
    np.testing.assert_array_equal(times.estimated, [False, False, True, False])


def test_regular_rows_become_a_start_and_a_rate_irregular_ones_do_not() -> None:
    assert regular_timing(PULSES / RATE_HZ, RATE_HZ) == pytest.approx((7 / RATE_HZ, 500.0))
    with_gap = np.delete(PULSES, 4) / RATE_HZ
    assert regular_timing(with_gap, RATE_HZ) is None
    off_sample = (PULSES + 0.5) / RATE_HZ
    assert regular_timing(off_sample, RATE_HZ) is None
    assert regular_timing(PULSES[:1] / RATE_HZ, RATE_HZ) is None


@pytest.mark.parametrize("rate_hz", [0.0, -1.0, float("nan")])
def test_a_rate_that_is_not_positive_is_refused(rate_hz: float) -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        pulse_times(np.array([0]), PULSES, rate_hz)
