"""Fixtures for the trial file tests: a deterministic synthetic trial and a writer factory."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helper module sits beside this file; subprocesses of the crash tests import it too.
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from trialfile_synthetic import SyntheticTrial, create_writer  # noqa: E402

from rig.trialfile.writer import TrialFileWriter  # noqa: E402


@pytest.fixture
def trial_path(tmp_path: Path) -> Path:
    return tmp_path / "trial_0001.h5"


@pytest.fixture
def synthetic() -> SyntheticTrial:
    return SyntheticTrial(seed=1234, block_count=5)


@pytest.fixture
def open_writer(trial_path: Path) -> Iterator[Callable[..., TrialFileWriter]]:
    """Factory for a writer on ``trial_path``; every writer made is closed after the test."""
    writers: list[TrialFileWriter] = []

    def make(**overrides: object) -> TrialFileWriter:
        writer = create_writer(trial_path, **overrides)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()
