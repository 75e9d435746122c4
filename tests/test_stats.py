"""Intervals (diffmd.stats): Student t for the mean of few values, scipy's BCa bootstrap otherwise; coverage,
determinism, NaN and edge cases, and the method and n reported with every interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from diffmd.stats import SMALL_N, bootstrap_ci, interval


def test_few_values_get_the_student_t_interval_of_scipy():
    x = np.array([0.081, 0.065, 0.091, 0.072])
    iv = interval(x)
    low, high = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert (iv.method, iv.n) == ("t", 4)
    assert (iv.low, iv.high) == pytest.approx((low, high), rel=1e-12)
    assert iv.estimate == pytest.approx(x.mean())


def test_the_t_interval_of_non_negative_values_stays_non_negative():
    iv = interval([0.000128, 0.000786, 0.000012, 0.00089])  # an oracle's ARMSE at 5 fs: spread wider than the mean
    assert iv.method == "t" and iv.low == 0.0 and iv.high > iv.estimate
    assert interval([-1.0, 0.5, 2.0]).low < -1.0  # with negative values nothing is clipped


def test_many_values_get_scipys_bca_bootstrap():
    x = np.random.default_rng(42).exponential(1.0, size=60)
    iv = interval(x, n_boot=999, seed=3)
    ref = st.bootstrap((x,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(3)).confidence_interval
    assert (iv.method, iv.n) == ("BCa", 60)
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high), rel=1e-12)


def test_interval_on_known_normal_contains_mean_with_textbook_width():
    x = np.random.default_rng(42).normal(2.0, 1.0, size=400)
    est, low, high = bootstrap_ci(x)
    assert est == pytest.approx(x.mean())
    assert low < 2.0 < high
    assert (high - low) == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.2)


def test_four_starts_cover_the_mean_at_the_nominal_level():
    """With 4 values a 95% percentile bootstrap covers ~77% (the method before); the interval here ~95%."""
    rng = np.random.default_rng(7)
    trials = 2000
    hits = sum(lo <= 2.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(2.0, 1.0, 4))[1:] for _ in range(trials)))
    assert 0.93 <= hits / trials <= 0.97


def test_bca_coverage_over_repeated_samples():
    rng = np.random.default_rng(7)
    trials = 200
    hits = 0
    for seed in range(trials):
        _, low, high = bootstrap_ci(rng.normal(2.0, 1.0, size=SMALL_N + 10), n_boot=999, seed=seed)
        hits += low <= 2.0 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_level_widens_the_interval():
    for n in (5, 50):
        x = np.random.default_rng(1).normal(1.0, 1.0, size=n)
        _, low90, high90 = bootstrap_ci(x, level=0.90)
        _, low99, high99 = bootstrap_ci(x, level=0.99)
        assert low99 < low90 < high90 < high99


def test_deterministic_given_seed_and_changes_with_seed():
    x = np.random.default_rng(3).normal(size=45)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    assert bootstrap_ci(x, seed=5)[0] == bootstrap_ci(x, seed=6)[0]  # the estimate does not resample


def test_nan_values_are_dropped_and_n_counts_the_rest():
    x = np.random.default_rng(4).normal(size=40)
    with_nan = np.concatenate([x[:7], [np.nan], x[7:], [np.nan, np.nan]])
    assert interval(with_nan, seed=1) == interval(x, seed=1)
    assert interval(with_nan).n == 40


def test_empty_all_nan_single_and_constant_values():
    for empty in ([], np.array([np.nan, np.nan])):
        iv = interval(empty)
        assert np.isnan(iv.estimate) and np.isnan(iv.low) and np.isnan(iv.high) and iv.n == 0
    assert bootstrap_ci([3.5]) == (3.5, 3.5, 3.5)
    assert bootstrap_ci([np.nan, 3.5]) == (3.5, 3.5, 3.5)
    assert bootstrap_ci([1.25] * 6) == (1.25, 1.25, 1.25)
    assert bootstrap_ci([1.25] * 60) == (1.25, 1.25, 1.25)  # BCa of a constant sample is degenerate in scipy
    assert interval([1.25] * 6).method == "exact"
    iv = interval([1.0, np.inf, 2.0])
    assert iv.estimate == np.inf and np.isnan(iv.low) and np.isnan(iv.high)


def test_other_statistics_use_bca_vectorised_or_per_row_alike():
    x = np.random.default_rng(8).normal(size=21)
    est, low, high, n, method = interval(x, statistic=np.median, n_boot=500)
    assert method == "BCa" and n == 21  # t is for the mean only
    assert est == pytest.approx(np.median(x))
    assert low <= est <= high
    # A statistic without an ``axis`` argument is called once per resample and gives the same numbers.
    per_row = bootstrap_ci(x, statistic=lambda v: float(np.median(v)), n_boot=500)
    assert per_row == pytest.approx((est, low, high))


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        bootstrap_ci(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], n_boot=0)
