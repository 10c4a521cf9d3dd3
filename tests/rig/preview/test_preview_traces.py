"""TraceWindow: min/max decimation of the DAQ's channels over the last seconds."""

from __future__ import annotations

import numpy as np
import pytest

from rig.preview.traces import TraceWindow


def brute_force(samples: np.ndarray, first_bin: int, n_bins: int, spb: int) -> np.ndarray:
    """(n_bins, C) min and max of samples (S, C) numbered from sample 0, bins from first_bin."""
    low = np.full((n_bins, samples.shape[1]), np.nan, dtype=np.float32)
    high = low.copy()
    for row in range(n_bins):
        start = (first_bin + row) * spb
        chunk = samples[max(start, 0) : max(start + spb, 0)]
        if chunk.size:
            low[row], high[row] = chunk.min(axis=0), chunk.max(axis=0)
    return np.stack((low, high))


@pytest.mark.parametrize("block_samples", [1, 7, 50, 100, 333])
def test_blocks_of_any_size_give_the_min_and_max_of_each_bin(block_samples: int) -> None:
    rng = np.random.default_rng(block_samples)
    samples = rng.standard_normal((2_345, 3)).astype(np.float32)
    window = TraceWindow(n_channels=3, samples_per_bin=50, n_bins=20)
    for start in range(0, samples.shape[0], block_samples):
        window.add(start, samples[start : start + block_samples])
    low, high = window.window()
    last_bin = (samples.shape[0] - 1) // 50
    expected = brute_force(samples, last_bin - 19, 20, 50)
    np.testing.assert_array_equal(low, expected[0])
    np.testing.assert_array_equal(high, expected[1])
    assert window.last_bin == last_bin
    assert window.end_sample == samples.shape[0]


def test_a_window_longer_than_the_acquisition_is_empty_before_it() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=8)
    window.add(0, np.arange(25, dtype=np.float32)[:, None])
    low, high = window.window()
    # Bins 0, 1, 2 hold data; the five before them in the window never existed.
    assert np.all(np.isnan(low[:5]))
    assert low[5:, 0].tolist() == [0.0, 10.0, 20.0]
    assert high[5:, 0].tolist() == [9.0, 19.0, 24.0]


def test_lost_blocks_leave_empty_bins_not_stale_ones() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=6)
    window.add(0, np.full((60, 1), 5.0, dtype=np.float32))  # fills the whole ring
    window.add(100, np.full((20, 1), 7.0, dtype=np.float32))  # samples 60..99 never came
    low, _ = window.window()
    # Bins 6..11: 6..9 were lost, 10 and 11 hold the new block.
    assert np.all(np.isnan(low[:4, 0]))
    assert low[4:, 0].tolist() == [7.0, 7.0]


def test_a_block_that_starts_in_a_filled_bin_extends_it() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=4)
    window.add(0, np.array([[1.0], [2.0], [3.0]], dtype=np.float32))
    window.add(3, np.array([[-4.0], [9.0]], dtype=np.float32))
    low, high = window.window()
    assert (low[-1, 0], high[-1, 0]) == (-4.0, 9.0)


def test_an_acquisition_that_starts_again_clears_the_window() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=4)
    window.add(0, np.full((40, 1), 3.0, dtype=np.float32))
    window.add(0, np.full((10, 1), -1.0, dtype=np.float32))
    low, _ = window.window()
    assert np.all(np.isnan(low[:3, 0]))
    assert low[3, 0] == -1.0


def test_the_page_gets_the_bins_it_lacks_to_four_significant_digits() -> None:
    window = TraceWindow(n_channels=2, samples_per_bin=2, n_bins=5)
    values = np.array(
        [[0.0, 1.0], [1.23456, 1.0], [2.0, 1.0], [-4.0, 1.0], [3.0, 1.0]], dtype=np.float32
    )
    window.add(0, values)  # bins 0, 1, 2 (the last one half full)
    whole = window.since(-1, [0, 1])
    assert (whole["first_bin"], whole["last_bin"]) == (0, 2)
    first, flat = whole["channels"]
    assert first["low"] == [0.0, -4.0, 3.0]
    assert first["high"] == [1.235, 2.0, 3.0]  # 4 digits of the window's largest value
    assert flat["low"] == flat["high"] == [1.0, 1.0, 1.0]
    # Later, the page asks from the (partly filled) bin it has last.
    window.add(5, np.array([[9.0, 1.0]] * 4, dtype=np.float32))  # bins 2 (rest), 3, 4
    newer = window.since(2, [0])
    assert (newer["first_bin"], newer["last_bin"]) == (2, 4)
    assert newer["channels"][0]["low"] == [3.0, 9.0, 9.0]
    assert newer["channels"][0]["high"] == [9.0, 9.0, 9.0]
    # A page far behind gets the window only.
    window.add(9, np.array([[5.0, 1.0]] * 10, dtype=np.float32))  # up to bin 9
    behind = window.since(1, [0])
    assert (behind["first_bin"], behind["last_bin"]) == (5, 9)


def test_missing_bins_are_none_and_a_page_ahead_gets_nothing() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=4)
    empty = window.since(-1, [0])
    assert empty["last_bin"] == -1 and empty["channels"] == [{"low": [], "high": []}]
    window.add(0, np.ones((10, 1), dtype=np.float32))
    window.add(30, np.ones((10, 1), dtype=np.float32))  # bins 1 and 2 were lost
    assert window.since(-1, [0])["channels"][0]["low"] == [1.0, None, None, 1.0]
    # A page that holds bins the window no longer has (the acquisition started again).
    ahead = window.since(7, [0])
    assert ahead["first_bin"] > ahead["last_bin"]
    assert ahead["channels"] == [{"low": [], "high": []}]


def test_clearing_starts_a_new_generation() -> None:
    window = TraceWindow(n_channels=1, samples_per_bin=10, n_bins=4)
    window.add(0, np.ones((10, 1), dtype=np.float32))
    generation = window.generation
    window.add(0, np.ones((10, 1), dtype=np.float32))  # the acquisition restarted
    assert window.generation == generation + 1


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="samples_per_bin"):
        TraceWindow(n_channels=1, samples_per_bin=0, n_bins=3)
    window = TraceWindow(n_channels=2, samples_per_bin=5, n_bins=3)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        window.add(0, np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="first_sample_index"):
        window.add(-1, np.zeros((4, 2), dtype=np.float32))
