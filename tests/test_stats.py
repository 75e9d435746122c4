"""Percentile bootstrap: known distribution, coverage, determinism, NaN and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.stats import bootstrap_ci


def test_interval_on_known_normal_contains_mean_with_textbook_width():
    x = np.random.default_rng(42).normal(2.0, 1.0, size=400)
    est, low, high = bootstrap_ci(x)
    assert est == pytest.approx(x.mean())
    assert low < 2.0 < high
    assert low < est < high
    expected_width = 2 * 1.96 * 1.0 / np.sqrt(400)  # 0.196
    assert (high - low) == pytest.approx(expected_width, rel=0.2)


def test_coverage_over_repeated_small_samples():
    rng = np.random.default_rng(7)
    hits = 0
    trials = 1000
    for seed in range(trials):
        sample = rng.normal(2.0, 1.0, size=30)
        _, low, high = bootstrap_ci(sample, n_boot=1000, seed=seed)
        hits += low <= 2.0 <= high
    assert 0.90 <= hits / trials <= 0.99


def test_level_widens_the_interval():
    x = np.random.default_rng(1).exponential(1.0, size=50)
    _, low90, high90 = bootstrap_ci(x, level=0.90)
    _, low99, high99 = bootstrap_ci(x, level=0.99)
    assert low99 < low90 < high90 < high99


def test_deterministic_given_seed_and_changes_with_seed():
    x = np.random.default_rng(3).normal(size=25)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    assert bootstrap_ci(x, seed=5)[0] == bootstrap_ci(x, seed=6)[0]  # the estimate does not resample


def test_nan_values_are_dropped():
    x = np.random.default_rng(4).normal(size=20)
    with_nan = np.concatenate([x[:7], [np.nan], x[7:], [np.nan, np.nan]])
    assert bootstrap_ci(with_nan, seed=1) == bootstrap_ci(x, seed=1)


def test_empty_all_nan_and_single_value():
    for empty in ([], np.array([np.nan, np.nan])):
        est, low, high = bootstrap_ci(empty)
        assert np.isnan(est) and np.isnan(low) and np.isnan(high)
    assert bootstrap_ci([3.5]) == (3.5, 3.5, 3.5)
    assert bootstrap_ci([np.nan, 3.5]) == (3.5, 3.5, 3.5)
    assert bootstrap_ci([1.25] * 6) == (1.25, 1.25, 1.25)


def test_other_statistics_vectorised_and_per_row_agree():
    x = np.random.default_rng(8).normal(size=31)
    est, low, high = bootstrap_ci(x, statistic=np.median, n_boot=500)
    assert est == pytest.approx(np.median(x))
    assert low <= est <= high
    # A statistic without an ``axis`` argument takes the per-row path and gives the same numbers.
    per_row = bootstrap_ci(x, statistic=lambda v: float(np.median(v)), n_boot=500)
    assert per_row == pytest.approx((est, low, high))


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        bootstrap_ci(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], n_boot=0)
