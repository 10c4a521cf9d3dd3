"""The table of every jump of a batch: one row per ``jump`` event of each output's ``/events``.

Each row names its trial (the source's trial id, subject, source and output files, the replay's
own trial id, where the events came from) and holds the jump's event (trigger index, DAQ sample
index, time in s from pulse 0) and every number the jump detector gives it
(docs/jump-detection.md: ``takeoff_s``, ``flight_time_s``, ``jump_height_mm``, ...,
``emg_onset_from_takeoff_s/<channel>``). A trial without a jump has no row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rig.batch import METRICS_STEM
from rig.replay import OPEN_TIMEOUT_S

EVENTS = "/events"
JUMP_EVENT = "jump"
# The columns every row has, in this order; the jump's numbers follow.
IDENTITY_COLUMNS = (
    "trial_id",  # of the replayed (source) trial
    "subject",
    "source_file",
    "output_file",
    "replay_trial_id",
    "events_source",  # "live" or "offline, complete 3D poses" (docs/format.md, /events)
    "jump_number",  # 1, 2, ... within the trial, as the console counts them
    "trigger_index",
    "daq_sample_index",
    "t_s",
)


def jump_rows(path: Path, timeout_s: float = OPEN_TIMEOUT_S) -> list[dict[str, Any]]:
    """The metrics rows of one batch output (or any replayed trial file); raises TrialFileError
    for a file that cannot be read."""
    from rig.trialfile.reader import TrialFileError, open_trial
    from tracking.jump_detection import events_from_table

    with open_trial(path, timeout_s=timeout_s) as trial:
        attrs = trial.attrs
        if EVENTS not in trial.dataset_paths():
            return []
        table = trial.read(EVENTS)
        events_source = str(trial.dataset_attrs(EVENTS).get("source", ""))
    try:
        events = events_from_table(table)
    except ValueError as error:
        raise TrialFileError(path, EVENTS, str(error)) from error
    identity = {
        "trial_id": str(attrs.get("replay_of_trial_id", attrs.get("trial_id", ""))),
        "subject": str(attrs.get("subject", "")),
        "source_file": str(attrs.get("replay_of", "")),
        "output_file": str(path),
        "replay_trial_id": str(attrs.get("trial_id", "")),
        "events_source": events_source,
    }
    jumps = [event for event in events if event.name == JUMP_EVENT]
    return [
        {
            **identity,
            "jump_number": number,
            "trigger_index": event.trigger_index,
            "daq_sample_index": event.daq_sample_index,
            "t_s": event.t_s,
            **event.values,
        }
        for number, event in enumerate(jumps, start=1)
    ]


def write_metrics_table(rows: Iterable[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """Write ``rows`` to ``folder``/jump_metrics.parquet and .csv; returns both paths.

    Columns: :data:`IDENTITY_COLUMNS`, then every jump number in the order first seen (a
    number a trial lacks, e.g. an EMG channel it did not record, is empty). Each file is written
    under a temporary name and renamed, so a reader never sees half a table.
    """
    import pandas as pd

    rows = list(rows)
    columns = list(IDENTITY_COLUMNS)
    for row in rows:
        columns += [name for name in row if name not in columns]
    frame = pd.DataFrame(rows, columns=columns)
    parquet = folder / f"{METRICS_STEM}.parquet"
    csv = folder / f"{METRICS_STEM}.csv"
    _write_replacing(parquet, lambda path: frame.to_parquet(path, index=False))
    _write_replacing(csv, lambda path: frame.to_csv(path, index=False))
    return parquet, csv


def metrics_rows_order(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in a stable order: by source file, then jump number."""
    return sorted(rows, key=lambda row: (row["source_file"], row["jump_number"]))


def _write_replacing(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)
