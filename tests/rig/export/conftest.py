"""Trials for the export tests: a small one written directly (fast), and one default simulated
trial with tracking, recorded once per session through `rig run` as a user records one (the
default config, 2.6 s: the jump takes off at about 1.9 s and has settled by 2.3 s)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.rig.export.export_trials import SmallTrial, write_small_trial
from tests.rig.trial_configs import rig, tracked_config_with

TRACKED_TRIAL_S = 2.6
# Recording plus completing the tracking of every frame takes 1-4 min on the 2-core development
# machine, depending on its load.
TRACKED_TRIAL_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def small_trial(tmp_path_factory: pytest.TempPathFactory) -> SmallTrial:
    return write_small_trial(tmp_path_factory.mktemp("small_trial") / "trial.h5")


@pytest.fixture(scope="session")
def untracked_trial(tmp_path_factory: pytest.TempPathFactory) -> SmallTrial:
    return write_small_trial(tmp_path_factory.mktemp("untracked_trial") / "trial.h5", tracked=False)


@pytest.fixture(scope="session")
def tracked_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tracked_trial")
    config = tracked_config_with(folder, "")
    started_s = time.monotonic()
    result = rig(
        *("run", "--config", str(config)),
        *("--duration-s", str(TRACKED_TRIAL_S), "--output", str(folder)),
        timeout_s=TRACKED_TRIAL_TIMEOUT_S,
    )
    print(f"tracked {TRACKED_TRIAL_S} s trial recorded in {time.monotonic() - started_s:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = folder.glob("*.h5")
    return path
