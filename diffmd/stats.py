"""Percentile-bootstrap confidence intervals for the benchmark's per-start metrics.

Every rollout metric is computed once per start frame, giving one value per start; the table
reports the statistic over starts (the mean by default) and a percentile-bootstrap interval
(Efron & Tibshirani 1993, ch. 13): resample the starts with replacement ``n_boot`` times, compute
the statistic of each resample, and take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
of those replicates. A 95% interval is a range that, over repeated draws of the starts, would
contain the statistic of the population of starts about 95% of the time (the percentile method
is approximate and slightly narrow for small samples: with 10 normal values it covers ~89%).

What it covers, and what it does not: the starts are treated as independent units. Starts taken
from one trajectory are correlated (nearby starts share history), so the interval measures the
spread over *these* starts of *this* segment, not over independent trajectories or training runs,
and it is too narrow when starts are closer together than the trajectory's decorrelation time.
Frames *within* one rollout are never resampled (they are strongly autocorrelated); each start's
metric enters as one value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Upper bound on the number of resampled values held in memory at once.
_CHUNK_ELEMENTS = 4_000_000


def _apply(statistic: Callable[..., np.ndarray], samples: np.ndarray) -> np.ndarray:
    """``statistic`` of each row of ``samples`` (rows, n) -> (rows,); vectorised when it takes ``axis``."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=np.float64)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(statistic(row)) for row in samples], dtype=np.float64)


def bootstrap_ci(
    values: np.ndarray | list[float],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float, float]:
    """Statistic of a 1-D sample and its percentile-bootstrap interval.

    Args:
        values: (n,) sample, e.g. one metric value per rollout start (any unit; the interval has
            the same unit). NaN values (diverged or missing starts) are dropped first; +-inf is kept.
        n_boot: number of bootstrap resamples (each of size n, drawn with replacement).
        level: coverage of the interval, in (0, 1).
        seed: seed of ``numpy.random.default_rng``; the result is a deterministic function of
            ``(values, n_boot, level, seed, statistic)``.
        statistic: reduces a sample to a number; called as ``statistic(x, axis=1)`` on a
            (resamples, n) array when it accepts ``axis`` (``np.mean``, ``np.median``), else per row.

    Returns:
        ``(estimate, low, high)`` as floats: ``estimate = statistic(values)`` on the full sample and
        the ``(1 - level) / 2``, ``(1 + level) / 2`` quantiles of the bootstrap replicates.
        An empty sample (or all NaN) gives ``(nan, nan, nan)``; a single value ``v`` gives ``(v, v, v)``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim > 1:
        raise ValueError(f"bootstrap_ci needs a 1-D sample, got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = x.reshape(-1)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (float("nan"), float("nan"), float("nan"))
    estimate = float(_apply(statistic, x[None, :])[0])
    if n == 1:
        return (estimate, estimate, estimate)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    replicates = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        replicates[start:stop] = _apply(statistic, x[idx])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return (estimate, float(low), float(high))
