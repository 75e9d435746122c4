"""Confidence intervals for the benchmark's per-start (and per-frame) metrics.

Every rollout metric is computed once per start frame, giving one value per start; the table reports
the statistic over starts (the mean by default) and a 95% interval for it:

* The mean of fewer than :data:`SMALL_N` values: the Student t interval ``mean ± t_{n-1} s/√n`` (its lower
  end clipped at 0 when no value is negative: a mean error cannot be below 0).
* Every other case (the mean of :data:`SMALL_N` or more values, any other statistic at n >= 2): the
  bias-corrected and accelerated (BCa) bootstrap of ``scipy.stats.bootstrap`` (Efron & Tibshirani 1993,
  ch. 14).

Why t below 30: a bootstrap of a few values cannot see the tails of their distribution (4 values have
35 distinct resamples). Measured coverage of nominal 95% intervals for the mean, 1000 samples each
(``python -m benchmarks.interval_coverage``, docs/intervals.md): with 4 normal values the percentile
bootstrap (this module before) covers 80%, BCa 80%, t 94%; with 16, 93% / 92% / 95%; with 30, 92% / 92% /
93%; on skewed (lognormal) values t is closer to 95% than either bootstrap at every n up to 30.

The interval's method and its n travel with it (:class:`Interval`), and the tables print both.

What it covers, and what it does not: the starts are treated as independent units. Starts taken from
one trajectory are correlated (nearby starts share history), so the interval measures the spread over
*these* starts of *this* segment, not over independent trajectories or training runs, and it is too
narrow when starts are closer together than the trajectory's decorrelation time. Frames *within* one
rollout are never resampled (they are strongly autocorrelated); each start's metric enters as one value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import stats as _st

#: Below this many values the mean's interval is Student's t, from here on BCa (docs/intervals.md).
SMALL_N = 30
#: Upper bound on the number of resampled values held in memory at once (scipy's ``batch``).
_CHUNK_ELEMENTS = 4_000_000


class Interval(NamedTuple):
    """A statistic and its interval: ``estimate``, ``low``, ``high`` (the sample's unit), the number of
    values ``n`` it came from (NaN dropped) and the ``method``: ``"BCa"``, ``"t"``, ``"exact"`` (one value
    or all equal: the interval is the value) or ``""`` (no values: everything NaN)."""

    estimate: float
    low: float
    high: float
    n: int
    method: str


def _vectorised(statistic: Callable[..., np.ndarray], x: np.ndarray) -> bool:
    """Whether ``statistic(sample, axis=-1)`` reduces each row of a 2-D array (``np.mean``, ``np.median``)."""
    try:
        out = np.asarray(statistic(np.stack([x, x]), axis=-1))
    except TypeError:
        return False
    return out.shape == (2,)


def interval(
    values: np.ndarray | list[float],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> Interval:
    """Statistic of a 1-D sample and its ``level`` interval (Student t for the mean of fewer than
    :data:`SMALL_N` values, else BCa via ``scipy.stats.bootstrap``).

    Args:
        values: (n,) sample, e.g. one metric value per rollout start (any unit; the interval has the same
            unit). NaN values (diverged or missing starts) are dropped first; a sample holding +-inf has
            an undefined interval (NaN bounds).
        n_boot: bootstrap resamples (each of size n, drawn with replacement).
        level: coverage of the interval, in (0, 1).
        seed: seed of the resampling (``numpy.random.default_rng``); the result is a deterministic
            function of ``(values, n_boot, level, seed, statistic)``.
        statistic: reduces a sample to a number; called as ``statistic(x, axis=-1)`` on stacked resamples
            when it accepts ``axis`` (``np.mean``, ``np.median``), else once per resample.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim > 1:
        raise ValueError(f"interval needs a 1-D sample, got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = x.reshape(-1)
    x = x[~np.isnan(x)]
    n = int(x.size)
    nan = float("nan")
    if n == 0:
        return Interval(nan, nan, nan, 0, "")
    vectorised = _vectorised(statistic, x)
    estimate = float(statistic(x, axis=-1) if vectorised else statistic(x))
    if not np.isfinite(x).all():
        return Interval(estimate, nan, nan, n, "")
    if n == 1 or np.all(x == x[0]):
        return Interval(estimate, estimate, estimate, n, "exact")
    if statistic is np.mean and n < SMALL_N:
        half = float(_st.t.ppf(0.5 + level / 2.0, n - 1)) * float(np.std(x, ddof=1)) / np.sqrt(n)
        low = estimate - half
        if x.min() >= 0.0:  # errors, distances: the mean of non-negative values is not negative either
            low = max(low, 0.0)
        return Interval(estimate, low, estimate + half, n, "t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_st.DegenerateDataWarning)
        res = _st.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=level, method="BCa",
                            vectorized=vectorised, batch=max(1, _CHUNK_ELEMENTS // n),
                            rng=np.random.default_rng(seed))  # fmt: skip
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Interval(estimate, low, high, n, "BCa")


def bootstrap_ci(
    values: np.ndarray | list[float],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of :func:`interval` (the same arguments): the statistic of the sample
    and its interval. An empty sample (or all NaN) gives ``(nan, nan, nan)``; a single value ``v``
    (or n equal values) gives ``(v, v, v)``."""
    est, low, high, _, _ = interval(values, n_boot, level, seed, statistic)
    return (est, low, high)
