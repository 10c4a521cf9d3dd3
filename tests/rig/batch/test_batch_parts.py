"""The parts of rig batch without Dask or replays: inputs and output names, temporaries, the
metrics table, the runner's watch on its parent."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest

from rig.batch.inputs import (
    BatchInputError,
    default_output_folder,
    find_inputs,
    not_a_trial_file,
    output_paths,
)
from rig.batch.jobs import ReplaySettings, TrialJob
from rig.batch.metrics import IDENTITY_COLUMNS, write_metrics_table
from rig.batch.tasks import remove_stale_temporaries
from tests.rig.batch.batch_trials import copy_trials


def test_a_folder_gives_its_trial_files_and_leaves_out_other_hdf5_files(
    recorded_trials: tuple[Path, ...], tmp_path: Path
) -> None:
    folder = tmp_path / "trials"
    copied = copy_trials(recorded_trials[:2], folder)
    with h5py.File(folder / "export.h5", "w") as other:
        other["x"] = [1.0]
    (folder / "broken.h5").write_bytes(b"\x00" * 100)
    (folder / "sub").mkdir()
    copy_trials(recorded_trials[2:], folder / "sub" / "older")
    inputs = find_inputs([folder])
    # A file that is not HDF5 stays in: its replay reports why it cannot be read.
    assert inputs.sources == tuple(sorted([*copied, folder / "broken.h5"]))
    assert inputs.left_out == (
        (folder / "export.h5", "not a trial file (no 'schema_version' attribute)"),
    )
    assert not_a_trial_file(copied[0]) is None
    # A file named on the command line is always in, and once.
    assert find_inputs([folder / "export.h5", folder / "export.h5"]).sources == (
        (folder / "export.h5").resolve(),
    )


def test_inputs_that_cannot_be_used(recorded_trials: tuple[Path, ...], tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="no such file or folder"):
        find_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="no trial files in"):
        find_inputs([tmp_path / "empty"])
    a = copy_trials(recorded_trials[:1], tmp_path / "a")
    b = copy_trials(recorded_trials[:1], tmp_path / "b")
    with pytest.raises(BatchInputError, match="the same name would have the same output"):
        output_paths([*a, *b], tmp_path / "out")
    with pytest.raises(BatchInputError, match="give --output"):
        default_output_folder([*a, *b])
    with pytest.raises(BatchInputError, match="would replace its source"):
        output_paths(a, tmp_path / "a")


def test_outputs_are_named_after_their_sources(tmp_path: Path) -> None:
    sources = [tmp_path / "t" / "20261125T165647_m1.h5", tmp_path / "t" / "x.y.h5"]
    assert default_output_folder(sources) == tmp_path / "t" / "batch"
    assert output_paths(sources, tmp_path / "out") == (
        (tmp_path / "out").resolve() / "20261125T165647_m1.h5",
        (tmp_path / "out").resolve() / "x.y.h5",
    )


def test_stale_temporaries_of_a_trial_and_only_of_it_are_removed(tmp_path: Path) -> None:
    partial = tmp_path / ".partial"
    for name in ("a.x1y2", "a.b.z9", "ab.q", "b.r"):
        (partial / name / "replay").mkdir(parents=True)
    removed = remove_stale_temporaries(partial, "a")
    assert [path.name for path in removed] == ["a.x1y2"]
    assert sorted(path.name for path in partial.iterdir()) == ["a.b.z9", "ab.q", "b.r"]
    assert remove_stale_temporaries(tmp_path / "none", "a") == []


def test_job_and_settings() -> None:
    job = TrialJob("/d/s.h5", "/o/s.h5", ReplaySettings(model="/m", tracking=True), 5.0)
    assert TrialJob.from_json(job.to_json()) == job
    assert job.stem == "s"
    assert ReplaySettings().to_attribute() == (
        '{"calibration": null, "model": null, "tracking": null}'
    )
    with pytest.raises(ValueError, match="without tracking cannot take a model"):
        ReplaySettings(model="/m", tracking=False)


def test_metrics_table_has_every_column_of_every_row(tmp_path: Path) -> None:
    identity = {column: 0 for column in IDENTITY_COLUMNS}
    rows = [
        {**identity, "source_file": "/a.h5", "takeoff_s": 1.5, "emg_onset_from_takeoff_s/a": -0.04},
        {**identity, "source_file": "/b.h5", "takeoff_s": 1.25, "emg_onset_from_takeoff_s/b": 0.5},
    ]
    parquet, csv = write_metrics_table(rows, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "jump_metrics.csv",
        "jump_metrics.parquet",
    ]
    for table in (pd.read_parquet(parquet), pd.read_csv(csv)):
        assert list(table.columns) == [
            *IDENTITY_COLUMNS,
            "takeoff_s",
            "emg_onset_from_takeoff_s/a",
            "emg_onset_from_takeoff_s/b",
        ]
        assert list(table["takeoff_s"]) == [1.5, 1.25]
        assert table["emg_onset_from_takeoff_s/a"][0] == -0.04
        assert math.isnan(table["emg_onset_from_takeoff_s/a"][1])
        assert math.isnan(table["emg_onset_from_takeoff_s/b"][0])
    # No jump at all: an empty table with the identity columns.
    parquet, _ = write_metrics_table([], tmp_path)
    empty = pd.read_parquet(parquet)
    assert list(empty.columns) == list(IDENTITY_COLUMNS)
    assert len(empty) == 0


def test_the_runner_group_dies_with_its_parent(tmp_path: Path) -> None:
    """A stand-in for a Dask worker starts a group as the task starts the runner: its leader
    watches the stand-in, with a child of its own. Killing the stand-in ends the whole group."""
    pid_file = tmp_path / "pids"
    leader = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        from rig.batch.runner import watch_parent
        watch_parent(int(sys.argv[1]), poll_s=0.05)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(60)
        """
    )
    worker = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {leader!r}, str(os.getpid())],
                         start_new_session=True)
        time.sleep(60)
        """
    )
    stand_in = subprocess.Popen([sys.executable, "-c", worker])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or len(pid_file.read_text().split()) != 2:
            assert time.monotonic() < deadline, "the group did not start"
            time.sleep(0.05)
        leader_pid, child_pid = (int(text) for text in pid_file.read_text().split())
        assert os.getpgid(child_pid) == leader_pid
        stand_in.kill()
        stand_in.wait()
        deadline = time.monotonic() + 10
        while _alive(leader_pid) or _alive(child_pid):
            assert time.monotonic() < deadline, "the group outlived its parent"
            time.sleep(0.05)
    finally:
        stand_in.kill()
        stand_in.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # A zombie has exited: only its parent's wait is missing.
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
