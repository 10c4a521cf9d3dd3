"""Batch re-analysis: many recorded trials replayed at full speed as Dask tasks (``rig batch``).

:mod:`rig.batch.inputs` finds the trial files and names their outputs,
:mod:`rig.batch.jobs` says what one trial's replay is and when its output counts as finished,
:mod:`rig.batch.runner` replays one trial in a process group of its own,
:mod:`rig.batch.tasks` is the Dask task around it (skip, clean up, commit),
:mod:`rig.batch.metrics` makes the table of every jump, and :mod:`rig.batch.command` is
``rig batch``. docs/batch.md describes the outputs, resuming, failures and the measured scaling.
"""

# Temporaries of the replays in progress live in this folder inside the output folder: nothing in
# it is ever an output, and a name of the form <stem>.h5 directly in the output folder is only
# ever made by a rename of a checked file.
PARTIAL_FOLDER = ".partial"
# The table of every jump of every finished output: <output>/jump_metrics.parquet and .csv.
METRICS_STEM = "jump_metrics"
# Default output folder, beside the inputs (as `rig replay` puts its file in replays/).
DEFAULT_OUTPUT_FOLDER = "batch"
# Root attribute of a batch output: the replay settings it was made with (JSON), so a later
# batch knows whether the output is what it would make.
ATTR_BATCH_SETTINGS = "batch_settings"
