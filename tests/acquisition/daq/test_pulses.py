from __future__ import annotations

import numpy as np
import pytest

from acquisition.daq.interface import rising_edges
from acquisition.daq.pulses import SampleClockPulses


def _run(pulses: SampleClockPulses, block_sizes: list[int]) -> np.ndarray:
    blocks, first = [], 0
    for n in block_sizes:
        blocks.append(pulses.levels(first, n))
        first += n
    return np.concatenate(blocks)


@pytest.mark.parametrize("block", [1, 7, 50, 100, 333])
def test_pulses_are_exactly_one_period_apart_whatever_the_block_size(block: int) -> None:
    pulses = SampleClockPulses(daq_rate_hz=10_000.0, duty_cycle=0.5)
    idle = _run(pulses, [block] * 3)
    assert not idle.any()
    pulses.start(200.0)
    line = np.concatenate([idle, _run_from(pulses, 3 * block, [block] * (10_000 // block))])
    edges = rising_edges(line, 0, 0)
    assert edges[0] == 3 * block
    assert set(np.diff(edges).tolist()) == {50}
    assert pulses.count() == edges.size
    assert line[edges[0] : edges[0] + 25].all() and not line[edges[0] + 25 : edges[0] + 50].any()


def _run_from(pulses: SampleClockPulses, first: int, block_sizes: list[int]) -> np.ndarray:
    blocks = []
    for n in block_sizes:
        blocks.append(pulses.levels(first, n))
        first += n
    return np.concatenate(blocks)


def test_non_integer_period_rounds_each_pulse_to_the_nearest_sample() -> None:
    pulses = SampleClockPulses(daq_rate_hz=1000.0)
    pulses.start(300.0)
    line = _run(pulses, [64] * 20)
    edges = rising_edges(line, 0, 0)
    expected = np.round(np.arange(edges.size) * 1000.0 / 300.0).astype(np.int64)
    np.testing.assert_array_equal(edges, expected)


def test_stop_ends_the_train_and_freezes_the_count() -> None:
    pulses = SampleClockPulses(daq_rate_hz=10_000.0)
    pulses.start(200.0)
    _run(pulses, [100] * 10)
    pulses.stop()
    count = pulses.count()
    after = _run_from(pulses, 1000, [100] * 10)
    assert count == 20
    assert pulses.count() == count
    assert not after.any()


def test_impossible_rates_and_restarts_are_refused() -> None:
    pulses = SampleClockPulses(daq_rate_hz=1000.0)
    with pytest.raises(ValueError, match="impossible"):
        pulses.start(600.0)
    pulses.start(100.0)
    with pytest.raises(RuntimeError, match="already started"):
        pulses.start(100.0)


def test_rising_edges_across_block_boundaries() -> None:
    line = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=np.uint8)
    whole = rising_edges(line, 0, 0)
    first = rising_edges(line[:4], 0, 0)
    second = rising_edges(line[4:], 4, int(line[3]))
    np.testing.assert_array_equal(whole, np.concatenate([first, second]))
    assert rising_edges(line[1:], 1, 1)[0] == 4  # a line already high is no edge


def test_start_and_stop_follow_the_sample_clock_even_when_blocks_come_late() -> None:
    clock = {"sample": 0}
    pulses = SampleClockPulses(10_000.0, sample_clock=lambda: clock["sample"])
    clock["sample"] = 1234
    pulses.start(200.0)  # the DAQ has produced nothing yet: pulse 0 at sample 1234
    clock["sample"] = 1234 + 10_000
    pulses.stop()  # one second of pulses, wherever the DAQ's blocks are
    assert pulses.count() == 200
    line = _run(pulses, [100] * 150)
    edges = rising_edges(line, 0, 0)
    assert edges[0] == 1234 and edges.size == 200
    assert set(np.diff(edges).tolist()) == {50}
