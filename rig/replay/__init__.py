"""Replay: a recorded trial file played back through the live pipeline, and compared.

The replay backends (:mod:`rig.replay.cameras`, :mod:`rig.replay.daq`) implement the acquisition
interfaces and read the trial file, so every process downstream of the devices runs unchanged.
:func:`~rig.replay.run.replay_trial` runs one replay, :func:`~rig.replay.compare.compare_trials`
compares two trial files dataset by dataset, and :mod:`rig.replay.command` is ``rig replay``.
docs/replay.md describes what is reproduced, how fast, and why.
"""

# A trial file that cannot be opened and checked within this time is given up on (a stalled
# file system): an error, never a hang.
OPEN_TIMEOUT_S = 10.0
# Where a replay's trial file goes unless told: this folder beside the replayed file.
DEFAULT_OUTPUT_FOLDER = "replays"
