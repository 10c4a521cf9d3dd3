"""A pose process killed mid-trial (issue 7, fault 3: the worker kill not covered elsewhere; the
camera, writer and jump detector kills are in tests/rig/test_run_trial.py).

The supervisor notices within a second, ends the trial with the reason in the file, and the
file holds everything the other workers produced: every frame and sample, and the poses
inferred before the kill.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.faults.fault_trials import CAMERAS, FAULTS_ANCHOR, only_trial_file
from tests.rig.trial_configs import rig, tracked_config_with

POSE_ROLE = "pose:" + "+".join(CAMERAS)  # one shared inference process (sim.toml)
KILL_AFTER_S = 1.5


@pytest.mark.timeout(600)
def test_a_pose_process_killed_mid_trial_ends_it_and_keeps_everything_else(
    tmp_path: Path,
) -> None:
    config = tracked_config_with(tmp_path, "")
    text = config.read_text()
    for old, new in (
        (
            FAULTS_ANCHOR,
            f'{FAULTS_ANCHOR}\nkill_worker = "{POSE_ROLE}"\nkill_worker_after_s = {KILL_AFTER_S}',
        ),
        # Completing the tracking offline after the trial is not what this tests (and is slow).
        ("complete_after_trial = true", "complete_after_trial = false"),
    ):
        if old not in text:
            raise AssertionError(f"the default config has no {old!r} any more")
        text = text.replace(old, new, 1)
    config.write_text(text)
    out = tmp_path / "out"
    started = time.monotonic()
    result = rig(
        "run", "--config", str(config), "--duration-s", "10", "--output", str(out), timeout_s=560
    )
    print(f"rig run took {time.monotonic() - started:.1f} s")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    with h5py.File(only_trial_file(out), "r") as f:
        end_reason = f.attrs["end_reason"]
        print(
            f"end_reason: {end_reason}; stop decided {f.attrs['stop_requested_after_s']:.2f} s in"
        )
        assert f.attrs["closed_cleanly"]
        assert f"{POSE_ROLE} process died (exit code -9)" in end_reason
        assert "no end-of-stream" not in end_reason  # its streams were let go
        # Noticed within a second of the kill (the heartbeat timeout would take 5 s).
        assert f.attrs["stop_requested_after_s"] < KILL_AFTER_S + 1.0
        pulses = f["daq/trigger_sample_index"].shape[0]
        assert pulses > 0
        assert f["daq/analog"].shape[0] == f.attrs["daq_samples"]
        assert f.attrs["accounting_balanced"]
        for camera in CAMERAS:
            group = f[f"cameras/{camera}"]
            np.testing.assert_array_equal(group["trigger_index"][:], np.arange(pulses))
            # The poses inferred before the kill are there, each marked on its frame.
            live = f[f"tracking_live/pose2d/{camera}/trigger_index"][:]
            inferred = f[f"tracking/inferred_live/{camera}"][:]
            assert inferred.shape == (pulses,)
            np.testing.assert_array_equal(np.flatnonzero(inferred), np.unique(live))
            assert np.all(live % 10 == 0)  # infer_every_n_frames = 10
            print(f"{camera}: {pulses} frames, {live.size} poses inferred live before the kill")
        assert "pose3d" in f
