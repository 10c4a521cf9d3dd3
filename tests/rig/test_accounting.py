from __future__ import annotations

import numpy as np

from rig.accounting import account_camera


def test_every_pulse_with_a_frame_balances() -> None:
    account = account_camera("cam", np.arange(100), pulses_sent=100)
    assert account.balanced
    assert account.frames_written == 100
    assert account.frames_dropped == 0


def test_missing_trigger_indices_are_the_dropped_frames() -> None:
    written = np.array([k for k in range(50) if k not in (0, 7, 8, 49)])
    account = account_camera("cam", written, pulses_sent=50, dropped_by_pipeline=[7])
    assert account.balanced
    assert account.dropped_trigger_indices.tolist() == [0, 7, 8, 49]
    assert account.frames_written + account.frames_dropped == account.pulses_sent
    assert account.dropped_by_pipeline == (7,)


def test_frame_without_a_recorded_pulse_is_a_problem() -> None:
    account = account_camera("cam", np.arange(11), pulses_sent=10)
    assert not account.balanced
    assert "belong to no recorded pulse" in account.problems[0]


def test_repeated_trigger_index_is_a_problem() -> None:
    account = account_camera("cam", np.array([0, 1, 1, 2]), pulses_sent=3)
    assert not account.balanced
    assert "not strictly increasing" in account.problems[0]


def test_lost_messages_and_false_drop_reports_are_problems() -> None:
    lost = account_camera("cam", np.arange(5), pulses_sent=5, messages_lost=2)
    assert "2 frame messages lost" in lost.problems[0]
    false_report = account_camera("cam", np.arange(5), pulses_sent=5, dropped_by_pipeline=[3])
    assert "reported dropped were written" in false_report.problems[0]
