"""The end-of-trial summary flags a camera whose pulses are not its frames written + dropped,
even when no problem was listed on the way."""

from __future__ import annotations

import io
from pathlib import Path

from rig.console import print_trial_summary
from rig.supervisor import TrialResult


def _result(written: int, problems: list[str]) -> TrialResult:
    account = {
        "camera": "cam_left",
        "pulses_sent": 100,
        "frames_written": written,
        "frames_dropped": 2,
        "dropped_trigger_indices": [10, 11],
        "balanced": written + 2 == 100 and not problems,
    }
    summary = {
        "daq_samples": 5000,
        "daq_rate_hz": 10000.0,
        "pulses_sent": 100,
        "accounting": [account],
        "problems": problems,
    }
    return TrialResult(Path("t.h5"), "t", "completed", True, summary, 0.5)


def test_a_balanced_trial_is_ok() -> None:
    out = io.StringIO()
    assert print_trial_summary(_result(98, []), out)
    assert "cam_left" in out.getvalue() and " ok" in out.getvalue()
    assert "MISMATCH" not in out.getvalue()


def test_an_unbalanced_camera_is_a_mismatch_without_listed_problems() -> None:
    out = io.StringIO()
    assert not print_trial_summary(_result(97, []), out)
    assert "!!! FRAME ACCOUNTING MISMATCH !!!" in out.getvalue()
    assert "pulses != written + dropped for cam_left" in out.getvalue()
