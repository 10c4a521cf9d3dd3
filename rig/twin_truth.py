"""The digital twin's ground truth for a recorded trial: what really happened, to score against.

Computed after the trial from the pulses the DAQ recorded, with the same pure functions the twin
devices used live, so it matches the frames exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from acquisition.sim.faults import dropped_trigger_indices, limb_swapped_trigger_indices
from acquisition.sim.signals import AnalogTwin
from acquisition.sim.skeleton import BODY_PARTS, JumpModel
from rig.config import RigConfig

# Event values in seconds that are durations, not instants: they have no DAQ sample index.
DURATION_EVENTS = frozenset({"flight_time_s"})


def twin_truth_datasets(
    config: RigConfig, trigger_sample_index: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Datasets and group attributes of ``/sim`` for a twin trial.

    ``trigger_sample_index``: (P,) DAQ sample of every recorded pulse; pulse 0 is twin time 0.
    """
    pulses_sent = int(trigger_sample_index.size)
    jump = JumpModel(config.sim.jump)
    datasets: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, Any]] = {}
    rate_hz = config.daq.rate_hz
    first_pulse_sample = int(trigger_sample_index[0]) if pulses_sent else 0
    t_s = (trigger_sample_index - first_pulse_sample) / rate_hz
    datasets["/sim/truth/points"] = (
        jump.points_mm(t_s).astype(np.float32).reshape(pulses_sent, len(BODY_PARTS), 3)
    )
    datasets["/sim/truth/trigger_index"] = np.arange(pulses_sent, dtype=np.int64)
    for camera in config.camera_names:
        faults = config.sim.camera_faults(camera)
        datasets[f"/sim/dropped/{camera}"] = dropped_trigger_indices(
            faults, config.sim.seed, camera, pulses_sent
        )
        datasets[f"/sim/limbs_swapped/{camera}"] = limb_swapped_trigger_indices(
            faults, config.sim.seed, camera, pulses_sent
        )
    events = jump.true_events()
    truth_attrs: dict[str, Any] = {"body_parts": list(BODY_PARTS), "units": "mm"}
    for name, value in events.items():
        truth_attrs[name] = float(value)
        if name.endswith("_s") and name not in DURATION_EVENTS:
            sample = first_pulse_sample + round(value * rate_hz)
            truth_attrs[f"{name[:-2]}_daq_sample_index"] = int(sample)
    analog = AnalogTwin(
        jump, [(c.name, c.kind) for c in config.daq.channels], rate_hz, config.sim.seed
    )
    for channel, onset_s in analog.emg_onsets_s().items():
        truth_attrs[f"emg_onset_s/{channel}"] = float(onset_s)
    attrs["/sim/truth"] = truth_attrs
    attrs["/sim"] = {"seed": config.sim.seed}

    return datasets, attrs
