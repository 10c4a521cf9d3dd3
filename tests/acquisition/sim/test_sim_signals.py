"""The twin's analog channels: block-split independence, forces that follow the jump, EMG bursts."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition.sim.signals import (
    EMG_BASELINE_RMS_V,
    FORCE_NOISE_RMS_N,
    NOISE_TABLE_SAMPLES,
    AnalogTwin,
)
from acquisition.sim.skeleton import JumpModel, JumpParameters

RATE_HZ = 10_000.0
PULSE0 = 2_500  # DAQ sample of trigger pulse 0
CHANNELS = [
    ("emg_gastrocnemius", "emg"),
    ("emg_tibialis_anterior", "emg"),
    ("emg_vastus_lateralis", "emg"),
    ("force_takeoff_platform", "force"),
    ("force_landing_platform", "force"),
    ("force_spare", "force"),
    ("thermistor", "other"),
]
COLUMN = {name: i for i, (name, _) in enumerate(CHANNELS)}


@pytest.fixture(scope="module")
def jump() -> JumpModel:
    return JumpModel(JumpParameters())


@pytest.fixture(scope="module")
def twin(jump: JumpModel) -> AnalogTwin:
    return AnalogTwin(jump, CHANNELS, RATE_HZ, seed=4)


@pytest.fixture(scope="module")
def trial(twin: AnalogTwin) -> np.ndarray:
    """4 s of samples: (40000, 7)."""
    return twin.samples(0, 40_000, PULSE0)


def _times_s(n_samples: int) -> np.ndarray:
    return (np.arange(n_samples) - PULSE0) / RATE_HZ


def test_shape_and_dtype(twin: AnalogTwin, trial: np.ndarray) -> None:
    assert trial.shape == (40_000, len(CHANNELS)) and trial.dtype == np.float32
    assert twin.samples(123, 0, None).shape == (0, len(CHANNELS))
    assert np.all(np.isfinite(trial))


@pytest.mark.parametrize("pulse0", [PULSE0, None])
def test_any_split_into_blocks_gives_identical_samples(
    twin: AnalogTwin, pulse0: int | None
) -> None:
    first, total = 15_000, 12_000  # spans the crouch, push-off, flight and landing
    whole = twin.samples(first, total, pulse0)
    rng = np.random.default_rng(11)
    for _ in range(3):
        blocks, start = [], first
        while start < first + total:
            size = int(min(rng.integers(1, 2_500), first + total - start))
            blocks.append(twin.samples(start, size, pulse0))
            start += size
        assert np.array_equal(np.concatenate(blocks), whole)
    # Past the noise table's length too.
    late = NOISE_TABLE_SAMPLES - 50
    assert np.array_equal(
        twin.samples(late, 100, pulse0),
        np.concatenate((twin.samples(late, 37, pulse0), twin.samples(late + 37, 63, pulse0))),
    )


def test_seed_decides_the_noise(jump: JumpModel, trial: np.ndarray) -> None:
    same = AnalogTwin(jump, CHANNELS, RATE_HZ, seed=4).samples(0, 40_000, PULSE0)
    assert np.array_equal(same, trial)
    other = AnalogTwin(jump, CHANNELS, RATE_HZ, seed=5).samples(0, 40_000, PULSE0)
    for column in range(len(CHANNELS)):
        assert not np.array_equal(other[:, column], trial[:, column])


def test_before_the_pulses_the_mouse_stands_on_the_takeoff_platform(
    twin: AnalogTwin, jump: JumpModel
) -> None:
    weight_n = jump.true_events()["body_weight_n"]
    idle = twin.samples(30_000, 5_000, None).astype(np.float64)
    assert idle[:, COLUMN["force_takeoff_platform"]].mean() == pytest.approx(weight_n, abs=2e-4)
    assert idle[:, COLUMN["force_landing_platform"]].mean() == pytest.approx(0.0, abs=2e-4)
    for name, kind in CHANNELS:
        if kind == "emg":
            rms = np.sqrt(np.mean(idle[:, COLUMN[name]] ** 2))
            assert rms == pytest.approx(EMG_BASELINE_RMS_V, rel=0.1)


def test_forces_follow_the_jump(twin: AnalogTwin, jump: JumpModel, trial: np.ndarray) -> None:
    events = jump.true_events()
    weight_n = events["body_weight_n"]
    t_s = _times_s(trial.shape[0])
    takeoff = trial[:, COLUMN["force_takeoff_platform"]].astype(np.float64)
    landing = trial[:, COLUMN["force_landing_platform"]].astype(np.float64)
    still = t_s < events["crouch_onset_s"]
    assert takeoff[still].mean() == pytest.approx(weight_n, abs=3e-4)
    assert landing[still].mean() == pytest.approx(0.0, abs=3e-4)
    in_air = (t_s >= events["takeoff_s"]) & (t_s < events["landing_s"])
    for force in (takeoff, landing):
        assert abs(force[in_air].mean()) < 5 * FORCE_NOISE_RMS_N / np.sqrt(in_air.sum())
        assert np.abs(force[in_air]).max() < 6 * FORCE_NOISE_RMS_N
    assert np.abs(takeoff[t_s >= events["takeoff_s"]]).max() < 6 * FORCE_NOISE_RMS_N
    settled = t_s >= events["settled_s"]
    assert landing[settled].mean() == pytest.approx(weight_n, abs=3e-4)
    peak = takeoff[(t_s >= events["push_off_onset_s"]) & (t_s < events["takeoff_s"])].max()
    assert peak == pytest.approx(events["peak_push_off_force_n"], abs=6 * FORCE_NOISE_RMS_N)
    assert 3.0 * weight_n <= peak <= 4.0 * weight_n
    # What remains after the model's forces is white noise of the stated size.
    expected = jump.platform_forces_n(t_s)
    residual = np.concatenate((takeoff - expected[:, 0], landing - expected[:, 1]))
    assert residual.std() == pytest.approx(FORCE_NOISE_RMS_N, rel=0.05)
    # Take-off is where the platform's force drops to about zero: a 5 %-of-weight threshold
    # finds it within a millisecond.
    push = (t_s >= events["push_off_onset_s"]) & (takeoff < 0.05 * weight_n)
    found_s = t_s[np.flatnonzero(push)[0]]
    assert abs(found_s - events["takeoff_s"]) < 1e-3
    arrival = np.flatnonzero((t_s >= events["takeoff_s"]) & (landing > 0.1 * weight_n))[0]
    assert 0.0 <= t_s[arrival] - events["landing_s"] < 2e-3


def test_spare_force_and_other_channels_are_noise_only(trial: np.ndarray) -> None:
    spare = trial[:, COLUMN["force_spare"]].astype(np.float64)
    assert abs(spare.mean()) < 1e-4 and spare.std() == pytest.approx(FORCE_NOISE_RMS_N, rel=0.05)
    other = trial[:, COLUMN["thermistor"]].astype(np.float64)
    assert abs(other.mean()) < 2e-4 and 0 < other.std() < 0.05


def test_emg_bursts_start_before_takeoff(
    twin: AnalogTwin, jump: JumpModel, trial: np.ndarray
) -> None:
    events = jump.true_events()
    onsets = twin.emg_onsets_s()
    assert set(onsets) == {name for name, kind in CHANNELS if kind == "emg"}
    leads_s = [events["takeoff_s"] - onset for onset in onsets.values()]
    assert all(0.025 <= lead <= 0.070 for lead in leads_s)
    assert len(set(np.round(leads_s, 6))) == len(leads_s), "each muscle has its own onset"
    t_s = _times_s(trial.shape[0])
    for name, onset_s in onsets.items():
        emg = trial[:, COLUMN[name]].astype(np.float64)
        quiet = (t_s > onset_s - 0.3) & (t_s < onset_s)
        active = (t_s > onset_s + 0.005) & (t_s < events["takeoff_s"])
        quiet_rms = np.sqrt(np.mean(emg[quiet] ** 2))
        active_rms = np.sqrt(np.mean(emg[active] ** 2))
        assert quiet_rms == pytest.approx(EMG_BASELINE_RMS_V, rel=0.15)
        assert 0.15 <= active_rms <= 0.5
        after = (t_s > events["takeoff_s"] + 0.02) & (t_s < events["landing_s"] - 0.01)
        assert np.sqrt(np.mean(emg[after] ** 2)) == pytest.approx(EMG_BASELINE_RMS_V, rel=0.2)
        # A plain detector (rectify, 2 ms moving average, 10 x baseline) finds the onset.
        window = int(0.002 * RATE_HZ)
        envelope = np.convolve(np.abs(emg), np.ones(window) / window, mode="full")[: emg.size]
        search = t_s > onset_s - 0.2
        crossing = np.flatnonzero(search & (envelope > 10 * EMG_BASELINE_RMS_V))[0]
        assert abs(t_s[crossing] - onset_s) < 0.005
        print(f"{name}: onset {onset_s:.4f} s, detected {t_s[crossing]:.4f} s")


def test_invalid_arguments(jump: JumpModel, twin: AnalogTwin) -> None:
    with pytest.raises(ValueError):
        AnalogTwin(jump, [], RATE_HZ, 0)
    with pytest.raises(ValueError):
        AnalogTwin(jump, [("a", "emg"), ("a", "force")], RATE_HZ, 0)
    with pytest.raises(ValueError):
        AnalogTwin(jump, [("a", "pressure")], RATE_HZ, 0)
    with pytest.raises(ValueError):
        AnalogTwin(jump, [("a", "emg")], 0.0, 0)
    with pytest.raises(ValueError):
        twin.samples(-1, 10, None)
    with pytest.raises(ValueError):
        twin.samples(0, -1, None)
    with pytest.raises(ValueError):
        twin.samples(0, 10, 2.5)  # type: ignore[arg-type]


def test_channel_order_is_kept(jump: JumpModel) -> None:
    swapped = [("force_b", "force"), ("emg_x", "emg"), ("force_a", "force")]
    twin = AnalogTwin(jump, swapped, RATE_HZ, seed=1)
    samples = twin.samples(0, 3_000, 0).astype(np.float64)
    weight_n = jump.true_events()["body_weight_n"]
    # The first force channel listed is the take-off platform, wherever it sits.
    assert samples[:, 0].mean() == pytest.approx(weight_n, abs=3e-4)
    assert samples[:, 2].mean() == pytest.approx(0.0, abs=3e-4)
