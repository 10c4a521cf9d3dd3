"""Recorded trials shared by the batch tests (batch_trials.py says which)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rig.batch.batch_trials import record_trials


@pytest.fixture(scope="session")
def recorded_trials(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    return record_trials(tmp_path_factory.mktemp("batch_recordings"))
