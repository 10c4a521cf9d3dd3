"""The twin's analog signals: EMG bursts before take-off and platform forces, per DAQ sample.

A sample's value is a pure function of its DAQ sample index (and of where trigger pulse 0 fell),
never of how samples are grouped into blocks: noise comes from tables indexed by sample index
modulo the table's length, and the signals are closed-form functions of twin time. So any split
of a recording into blocks concatenates to bit-identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acquisition.sim.skeleton import JumpModel

CHANNEL_KINDS = ("emg", "force", "other")

# Noise tables repeat after this many samples (26 s at 10 kHz); EMG bursts use band-limited ones.
NOISE_TABLE_SAMPLES = 1 << 18
EMG_BASELINE_RMS_V = 0.01
FORCE_NOISE_RMS_N = 0.002
OTHER_NOISE_RMS_V = 0.005
# EMG: each muscle's burst starts this long before take-off (drawn per channel from the seed)...
EMG_LEAD_RANGE_S = (0.025, 0.070)
# ...with this amplitude (RMS of the burst at take-off, volts after amplification).
EMG_AMPLITUDE_RANGE_V = (0.2, 0.5)
_EMG_BAND_HZ = (50.0, 1000.0)
_EMG_RISE_S = 0.002
_EMG_DECAY_AFTER_TAKEOFF_S = 0.015
# Activity grows through the burst from this share of the amplitude to all of it at take-off.
_EMG_START_SHARE = 0.75
# A smaller burst when the mouse lands and absorbs the impact.
_EMG_LANDING_SHARE = 0.3
_EMG_LANDING_LEAD_S = 0.005
_EMG_LANDING_DECAY_S = 0.04
# Twin time of samples recorded before the trigger pulses start: the mouse stands still then.
_BEFORE_PULSES_S = -1.0


@dataclass(frozen=True)
class _EmgBurst:
    onset_s: float
    amplitude_v: float


def _smooth_rise(u: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of u clipped to [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _band_limited_noise(
    rng: np.random.Generator, band_hz: tuple[float, float], rate_hz: float
) -> np.ndarray:
    """(NOISE_TABLE_SAMPLES,) float32 periodic noise with unit RMS, energy only in band_hz
    (filtered in the Fourier domain, so the table wraps around without a seam)."""
    spectrum = np.fft.rfft(rng.standard_normal(NOISE_TABLE_SAMPLES))
    frequency_hz = np.fft.rfftfreq(NOISE_TABLE_SAMPLES, d=1.0 / rate_hz)
    low, high = band_hz[0], min(band_hz[1], 0.4 * rate_hz)
    spectrum[(frequency_hz < low) | (frequency_hz > high)] = 0.0
    table = np.fft.irfft(spectrum, n=NOISE_TABLE_SAMPLES)
    rms = float(np.sqrt(np.mean(table * table)))
    return (table / rms).astype(np.float32) if rms > 0 else table.astype(np.float32)


class AnalogTwin:
    """EMG, platform forces and other channels of the twin, sample by sample.

    ``channels``: (name, kind) pairs, kind in CHANNEL_KINDS. The first "force" channel is the
    take-off platform, the second the landing platform (newtons); further force channels and
    "other" channels carry only noise. EMG channels are in volts after amplification.
    """

    def __init__(
        self, jump: JumpModel, channels: Sequence[tuple[str, str]], rate_hz: float, seed: int
    ) -> None:
        if not isinstance(jump, JumpModel):
            raise TypeError(f"AnalogTwin needs a JumpModel, got {type(jump).__name__}")
        if not channels:
            raise ValueError("AnalogTwin needs at least one channel")
        names = [name for name, _ in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        for name, kind in channels:
            if kind not in CHANNEL_KINDS:
                raise ValueError(
                    f"channel {name!r}: kind must be one of {CHANNEL_KINDS}, got {kind!r}"
                )
        if not math.isfinite(rate_hz) or rate_hz <= 0:
            raise ValueError(f"rate_hz must be finite and > 0, got {rate_hz!r}")
        self.jump = jump
        self.channels = tuple((str(name), str(kind)) for name, kind in channels)
        self.rate_hz = float(rate_hz)
        self.seed = int(seed)
        force_columns = [i for i, (_, kind) in enumerate(self.channels) if kind == "force"]
        # Column of the take-off and the landing platform's force, -1 where there is none.
        self._takeoff_column = force_columns[0] if force_columns else -1
        self._landing_column = force_columns[1] if len(force_columns) > 1 else -1
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xE36])
        events = jump.true_events()
        self._takeoff_s, self._landing_s = events["takeoff_s"], events["landing_s"]
        takeoff_s = self._takeoff_s
        self._bursts: dict[int, _EmgBurst] = {}
        for column, (_, kind) in enumerate(self.channels):
            if kind == "emg":
                lead_s = float(rng.uniform(*EMG_LEAD_RANGE_S))
                amplitude_v = float(rng.uniform(*EMG_AMPLITUDE_RANGE_V))
                self._bursts[column] = _EmgBurst(takeoff_s - lead_s, amplitude_v)
        # Built on first use: a process that only needs the onsets does not pay for them.
        self._white: np.ndarray | None = None  # (NOISE_TABLE_SAMPLES, C) unit RMS
        self._bursty: dict[int, np.ndarray] = {}  # column -> (NOISE_TABLE_SAMPLES,) band-limited

    def emg_onsets_s(self) -> dict[str, float]:
        """True onset of each EMG channel's burst, seconds from trigger pulse 0."""
        return {self.channels[column][0]: burst.onset_s for column, burst in self._bursts.items()}

    def emg_amplitudes_v(self) -> dict[str, float]:
        """RMS amplitude of each EMG channel's burst at take-off, volts."""
        return {
            self.channels[column][0]: burst.amplitude_v for column, burst in self._bursts.items()
        }

    def samples(
        self, first_sample_index: int, n_samples: int, pulse0_sample_index: int | None
    ) -> np.ndarray:
        """Samples ``first_sample_index`` .. ``+ n_samples - 1`` -> (n_samples, n_channels) float32.

        Twin time of sample s is (s - pulse0_sample_index) / rate_hz; with no pulse yet
        (``pulse0_sample_index`` None) the mouse stands still on the take-off platform.
        """
        for name, value in (("first_sample_index", first_sample_index), ("n_samples", n_samples)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if pulse0_sample_index is not None and (
            isinstance(pulse0_sample_index, bool)
            or not isinstance(pulse0_sample_index, int | np.integer)
        ):
            raise ValueError(
                f"pulse0_sample_index must be an integer or None, got {pulse0_sample_index!r}"
            )
        white_table = self._noise_table()
        sample_index = np.arange(first_sample_index, first_sample_index + n_samples, dtype=np.int64)
        if pulse0_sample_index is None:
            t_s = np.full(n_samples, _BEFORE_PULSES_S)
        else:
            t_s = (sample_index - int(pulse0_sample_index)) / self.rate_hz
        table_index = sample_index % NOISE_TABLE_SAMPLES
        out = np.empty((n_samples, len(self.channels)), dtype=np.float32)
        forces_n = self.jump.platform_forces_n(t_s) if self._takeoff_column >= 0 else None
        for column, (_, kind) in enumerate(self.channels):
            white = white_table[table_index, column].astype(np.float64)
            if kind == "emg":
                burst = self._bursts[column]
                envelope = self._emg_envelope(t_s, burst)
                value = (
                    EMG_BASELINE_RMS_V * white
                    + burst.amplitude_v * envelope * self._bursty[column][table_index]
                )
            elif kind == "force":
                value = FORCE_NOISE_RMS_N * white
                if forces_n is not None and column == self._takeoff_column:
                    value = value + forces_n[:, 0]
                elif forces_n is not None and column == self._landing_column:
                    value = value + forces_n[:, 1]
            else:
                value = OTHER_NOISE_RMS_V * white
            out[:, column] = value
        return out

    def _emg_envelope(self, t_s: np.ndarray, burst: _EmgBurst) -> np.ndarray:
        """Burst envelope (T,), 0 at rest, 1 at take-off."""
        takeoff_s, landing_s = self._takeoff_s, self._landing_s
        lead_s = takeoff_s - burst.onset_s
        rise = _smooth_rise((t_s - burst.onset_s) / _EMG_RISE_S)
        growth = _EMG_START_SHARE + (1.0 - _EMG_START_SHARE) * np.clip(
            (t_s - burst.onset_s) / lead_s, 0.0, 1.0
        )
        decay = 1.0 - _smooth_rise((t_s - takeoff_s) / _EMG_DECAY_AFTER_TAKEOFF_S)
        landing_start_s = landing_s - _EMG_LANDING_LEAD_S
        landing = (
            _EMG_LANDING_SHARE
            * _smooth_rise((t_s - landing_start_s) / _EMG_LANDING_LEAD_S)
            * (1.0 - _smooth_rise((t_s - landing_s) / _EMG_LANDING_DECAY_S))
        )
        return np.asarray(rise * growth * decay + landing, dtype=np.float64)

    def _noise_table(self) -> np.ndarray:
        """(NOISE_TABLE_SAMPLES, C) unit-RMS white noise; builds the burst tables too."""
        if self._white is not None:
            return self._white
        white = np.empty((NOISE_TABLE_SAMPLES, len(self.channels)), dtype=np.float32)
        for column, (_, kind) in enumerate(self.channels):
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, column, CHANNEL_KINDS.index(kind)])
            white[:, column] = rng.standard_normal(NOISE_TABLE_SAMPLES, dtype=np.float32)
            if kind == "emg":
                self._bursty[column] = _band_limited_noise(rng, _EMG_BAND_HZ, self.rate_hz)
        self._white = white
        return white
