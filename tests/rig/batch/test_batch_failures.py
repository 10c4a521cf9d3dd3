"""rig batch when things go wrong: a Dask worker killed in the middle of a replay, and inputs that
cannot be replayed. Both run the real command in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import pandas as pd
import psutil
import pytest
from distributed import LocalCluster

from rig.batch import PARTIAL_FOLDER
from rig.batch.runner import REPLAY_FOLDER, RESULT_NAME
from rig.trialfile.reader import open_trial
from tests.rig.batch.batch_trials import copy_trials, frames_equal, sha256
from tests.rig.replay.replay_recordings import ROOT

pytestmark = pytest.mark.timeout(300)


def start_batch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "batch", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_replay_file(output: Path, timeout_s: float) -> Path:
    """The first temporary replay file a replay's writer creates under ``output``/.partial."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted((output / PARTIAL_FOLDER).glob(f"*/{REPLAY_FOLDER}/*.h5"))
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no replay started under {output} within {timeout_s} s")


def runner_process(attempt_folder: Path) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "rig.batch.runner" in cmdline and str(attempt_folder) in cmdline:
            return process
    raise AssertionError(f"no runner process for {attempt_folder}")


def group_members(group_id: int) -> list[int]:
    """Live processes of the group (a zombie has ended: only its reaping is missing)."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == group_id and psutil.Process(pid).status() != "zombie":
                members.append(pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def test_a_worker_killed_mid_replay_loses_and_corrupts_nothing(
    recorded_trials: tuple[Path, ...], tmp_path: Path
) -> None:
    sources = copy_trials(recorded_trials, tmp_path / "trials")
    output = tmp_path / "out"
    batch = start_batch(str(tmp_path / "trials"), "--output", str(output), "--workers", "2")
    try:
        replay_file = wait_for_replay_file(output, timeout_s=120)
        attempt = replay_file.parent.parent
        killed_stem = attempt.name.rsplit(".", 1)[0]
        runner = runner_process(attempt)
        dask_worker = runner.parent()
        assert dask_worker is not None
        # The runner leads the group of the replay's processes: kill once the writer, the four
        # cameras and the DAQ are running (with the runner and multiprocessing's tracker).
        deadline = time.monotonic() + 60
        while len(group_members(runner.pid)) < 8:
            assert time.monotonic() < deadline, group_members(runner.pid)
            time.sleep(0.02)
        # The file the killed replay was writing is not finished: its writer is mid-trial.
        assert not (output / replay_file.name).exists()
        os.kill(dask_worker.pid, signal.SIGKILL)
        killed_at_s = time.monotonic()
        # The runner notices its worker is gone (it looks every 0.2 s) and takes every replay
        # process with it at once: the replay does not go on to its end (a replay left running
        # takes 5-7 s more here, and would write its result).
        while group_members(runner.pid) and time.monotonic() - killed_at_s < 10:
            assert not (attempt / RESULT_NAME).exists()
            time.sleep(0.02)
        gone_after_s = time.monotonic() - killed_at_s
        print(f"the killed replay's processes were gone {gone_after_s:.2f} s after the kill")
        assert group_members(runner.pid) == []
        assert gone_after_s < 3.0
        stdout, stderr = batch.communicate(timeout=240)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.communicate()
    print(stdout, stderr)
    assert batch.returncode == 0, stdout + stderr
    assert f"3/{len(sources)} trials done (3 replayed, 0 skipped, 0 failed)" in stdout
    # The killed trial was replayed again, by another worker process.
    [line] = [line for line in stdout.splitlines() if f"replayed {killed_stem}.h5" in line]
    assert f":{dask_worker.pid}]" not in line
    for source in sources:
        final = output / source.name
        with open_trial(final) as trial:
            assert trial.closed_cleanly
            assert trial.verify() == []
            assert trial.attrs["replay_of_sha256"] == sha256(source)
        assert frames_equal(source, final)
    # Only the outputs, the table and the lock: no temporary left, none with a final name.
    assert sorted(path.name for path in output.iterdir()) == sorted(
        [source.name for source in sources]
        + ["jump_metrics.parquet", "jump_metrics.csv", ".batch.lock"]
    )
    assert len(pd.read_parquet(output / "jump_metrics.parquet")) == len(sources)


@pytest.fixture
def one_worker_scheduler() -> Iterator[str]:
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_bad_inputs_are_reported_and_the_others_finish(
    recorded_trials: tuple[Path, ...], tmp_path: Path, one_worker_scheduler: str
) -> None:
    folder = tmp_path / "trials"
    [good] = copy_trials(recorded_trials[:1], folder)
    (folder / "notes.h5").write_text("not an HDF5 file\n")
    truncated = folder / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with h5py.File(folder / "other_tool.h5", "w") as other:
        other["x"] = [1, 2, 3]
    output = tmp_path / "out"
    batch = start_batch(str(folder), "--output", str(output), "--scheduler", one_worker_scheduler)
    stdout, stderr = batch.communicate(timeout=240)
    print(stdout, stderr)
    assert batch.returncode == 1, stdout + stderr
    assert f"left out {folder / 'other_tool.h5'}: not a trial file" in stdout
    assert "3/3 trials done (1 replayed, 0 skipped, 2 failed)" in stdout
    assert "FAILED notes.h5: " in stdout and "not an HDF5 file" in stdout
    assert "FAILED truncated.h5: " in stdout and "truncated" in stdout
    assert "on the Dask scheduler tcp://" in stdout
    assert sorted(path.name for path in output.glob("*.h5")) == [good.name]
    table = pd.read_parquet(output / "jump_metrics.parquet")
    assert list(table["source_file"]) == [str(good.resolve())]
    assert not (output / PARTIAL_FOLDER).exists()


def test_inputs_that_cannot_go_together_stop_the_batch_before_it_starts(
    recorded_trials: tuple[Path, ...], tmp_path: Path
) -> None:
    first = copy_trials(recorded_trials[:1], tmp_path / "a")
    second = copy_trials(recorded_trials[:1], tmp_path / "b")
    batch = start_batch(str(first[0]), str(second[0]), "--output", str(tmp_path / "out"))
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 2, stdout + stderr
    assert "trials with the same name would have the same output" in stderr
    assert not (tmp_path / "out").exists()
