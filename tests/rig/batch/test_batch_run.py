"""rig batch on a folder of recorded trials: one checked output per trial, the metrics table, and
a second batch that skips what is finished (and redoes what is not)."""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import pandas as pd
import pytest

from rig.batch import ATTR_BATCH_SETTINGS, PARTIAL_FOLDER
from rig.batch.command import EXIT_OK, BatchReport, run_batch
from rig.batch.jobs import ReplaySettings
from rig.batch.metrics import IDENTITY_COLUMNS
from rig.trialfile.reader import open_trial
from tests.rig.batch.batch_trials import copy_trials, frames_equal, jump_events, sha256

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class FirstBatch:
    sources: tuple[Path, ...]
    output: Path
    report: BatchReport
    printed: str


@pytest.fixture(scope="module")
def first_batch(
    recorded_trials: tuple[Path, ...], tmp_path_factory: pytest.TempPathFactory
) -> FirstBatch:
    folder = tmp_path_factory.mktemp("batch_run")
    sources = copy_trials(recorded_trials, folder / "trials")
    printed = io.StringIO()
    report = run_batch([folder / "trials"], workers=2, out=printed)
    print(printed.getvalue())
    return FirstBatch(sources, folder / "trials" / "batch", report, printed.getvalue())


def test_one_checked_output_per_trial(first_batch: FirstBatch) -> None:
    report = first_batch.report
    assert report.exit_code == EXIT_OK
    assert [outcome.status for outcome in report.outcomes] == ["done"] * len(first_batch.sources)
    assert report.output_folder == first_batch.output.resolve()
    outputs = sorted(path.name for path in first_batch.output.glob("*.h5"))
    assert outputs == sorted(source.name for source in first_batch.sources)
    for source in first_batch.sources:
        output = first_batch.output / source.name
        with open_trial(output) as trial:
            assert trial.closed_cleanly
            assert trial.verify() == []
            assert trial.attrs["accounting_balanced"]
            assert trial.attrs["replay_of"] == str(source.resolve())
            assert trial.attrs["replay_of_sha256"] == sha256(source)
            assert trial.attrs["replay_speed"] == "max"
            assert trial.attrs[ATTR_BATCH_SETTINGS] == ReplaySettings().to_attribute()
        assert frames_equal(source, output)
    # Nothing temporary is left, and the progress said what happened to each trial.
    assert not (first_batch.output / PARTIAL_FOLDER).exists()
    assert "3/3 trials done (3 replayed, 0 skipped, 0 failed)" in first_batch.printed
    for source in first_batch.sources:
        assert f"replayed {source.name}" in first_batch.printed


def test_metrics_table_holds_every_jump_of_the_outputs(first_batch: FirstBatch) -> None:
    report = first_batch.report
    assert report.metrics_parquet == first_batch.output.resolve() / "jump_metrics.parquet"
    assert report.metrics_csv is not None
    table = pd.read_parquet(report.metrics_parquet)
    from_csv = pd.read_csv(report.metrics_csv)
    assert list(table.columns[: len(IDENTITY_COLUMNS)]) == list(IDENTITY_COLUMNS)
    assert list(from_csv.columns) == list(table.columns)
    expected_rows = 0
    for source in first_batch.sources:
        output = first_batch.output / source.name
        jumps = jump_events(output)
        # The twin jumps once in each recording.
        assert len(jumps) == 1
        rows = table[table["source_file"] == str(source.resolve())]
        csv_rows = from_csv[from_csv["source_file"] == str(source.resolve())]
        assert len(rows) == len(csv_rows) == len(jumps)
        with h5py.File(output, "r") as trial:
            source_trial_id = trial.attrs["replay_of_trial_id"]
            replay_trial_id = trial.attrs["trial_id"]
        for (trigger_index, values), (_, row), (_, csv_row) in zip(
            jumps, rows.iterrows(), csv_rows.iterrows(), strict=True
        ):
            assert row["trial_id"] == source_trial_id == source.stem
            assert row["replay_trial_id"] == replay_trial_id
            assert row["subject"] == "sim-mouse"
            assert row["output_file"] == str(output.resolve())
            assert row["events_source"] == "live"
            assert row["trigger_index"] == trigger_index
            assert values, "a jump event has its numbers"
            for name, value in values.items():
                for stored in (row[name], csv_row[name]):
                    if math.isnan(value):
                        assert math.isnan(stored), name
                    else:
                        assert stored == pytest.approx(value, rel=1e-12, abs=0.0), name
        expected_rows += len(jumps)
    assert len(table) == report.jumps == expected_rows


def test_second_batch_skips_finished_trials_and_redoes_an_unfinished_one(
    first_batch: FirstBatch,
) -> None:
    output = first_batch.output
    before = {path.name: (path.stat().st_mtime_ns, sha256(path)) for path in output.glob("*.h5")}
    table_before = pd.read_parquet(output / "jump_metrics.parquet")
    # What a worker killed long ago may have left: a temporary replay that looks like a whole
    # trial file. It must not be taken for an output, and it goes.
    stale = output / PARTIAL_FOLDER / f"{first_batch.sources[0].stem}.stale1" / "replay"
    stale.mkdir(parents=True)
    shutil.copy2(output / first_batch.sources[0].name, stale / "looks_finished.h5")

    printed = io.StringIO()
    again = run_batch([first_batch.sources[0].parent], workers=2, out=printed)
    print(printed.getvalue())
    assert again.exit_code == EXIT_OK
    assert [outcome.status for outcome in again.outcomes] == ["skipped"] * len(before)
    after = {path.name: (path.stat().st_mtime_ns, sha256(path)) for path in output.glob("*.h5")}
    assert after == before
    assert not (output / PARTIAL_FOLDER).exists()
    pd.testing.assert_frame_equal(pd.read_parquet(output / "jump_metrics.parquet"), table_before)
    assert "3/3 trials done (0 replayed, 3 skipped, 0 failed)" in printed.getvalue()

    # An output that is not finished (here: marked as not closed cleanly) is replayed again and
    # replaced; the others stay as they are.
    damaged = output / first_batch.sources[1].name
    with h5py.File(damaged, "r+") as trial:
        trial.attrs["closed_cleanly"] = 0
    third = run_batch([first_batch.sources[0].parent], workers=2, out=io.StringIO())
    statuses = {Path(outcome.source).name: outcome.status for outcome in third.outcomes}
    assert statuses == {
        source.name: "done" if source.name == damaged.name else "skipped"
        for source in first_batch.sources
    }
    [redone] = [outcome for outcome in third.outcomes if outcome.status == "done"]
    assert "replaced an unfinished output (not closed cleanly" in redone.message
    with open_trial(damaged) as trial:
        assert trial.closed_cleanly
    for name, (mtime_ns, digest) in before.items():
        if name != damaged.name:
            assert output.joinpath(name).stat().st_mtime_ns == mtime_ns
            assert sha256(output / name) == digest
    assert len(pd.read_parquet(output / "jump_metrics.parquet")) == len(table_before)


def test_other_settings_make_a_finished_output_unfinished(first_batch: FirstBatch) -> None:
    from rig.batch.jobs import output_problems

    output = first_batch.output / first_batch.sources[2].name
    source_sha = sha256(first_batch.sources[2])
    assert output_problems(output, ReplaySettings(), source_sha, 10.0) == []
    [other] = output_problems(output, ReplaySettings(tracking=False), source_sha, 10.0)
    assert "made with other settings" in other
    [changed] = output_problems(output, ReplaySettings(), "0" * 64, 10.0)
    assert "replayed another version of the source" in changed
