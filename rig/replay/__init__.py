"""Replay: a recorded trial file played back through the live pipeline, and compared.

The replay backends (:mod:`rig.replay.cameras`, :mod:`rig.replay.daq`) implement the acquisition
interfaces and read the trial file, so every process downstream of the devices runs unchanged.
:func:`~rig.replay.run.replay_trial` runs one replay, :func:`~rig.replay.compare.compare_trials`
compares two trial files dataset by dataset, and :mod:`rig.replay.command` is ``rig replay``.
docs/replay.md describes what is reproduced, how fast, and why.
"""
