"""Proper scores of a sampled forecast against a reference ensemble (numpy only).

A stochastic dynamics model (Score Dynamics, DiffMD with noise) does not predict *the* next frame: it
samples from a distribution of next frames given what it conditions on. Judging one sample by its error
against one realisation rewards collapse (the point mass at the ensemble mean beats an ideal sampler on
RMSE). A *proper* scoring rule is minimised in expectation only by the true distribution (Gneiting &
Raftery 2007, "Strictly Proper Scoring Rules, Prediction, and Estimation", JASA 102:359):

* energy score (multivariate; ``x`` the forecast, ``y`` an outcome, ``X, X'`` independent samples)::

      ES(F, y) = E||X - y|| - 1/2 E||X - X'||

  estimated from ``K`` samples with the unbiased ("fair") pair term ``1/(2K(K-1)) sum_{k != l} ||x_k - x_l||``
  (Ferro 2014; a point mass, ``K`` equal samples, has pair term 0);
* CRPS per coordinate: the energy score of each scalar coordinate, averaged over coordinates;
* energy distance between two sample sets (Székely & Rizzo 2013)::

      D(X, Y) = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||

  with unbiased within-set terms, so its expectation is 0 when X and Y come from one distribution; the
  split-half null (:func:`split_half_null`) is the value two halves of the reference ensemble give, the
  scale of "indistinguishable at this sample size".

The outcome here is itself an ensemble (physics re-simulations from the same start): a score "against the
ensemble" is the mean of the score over its members, the expected score under the reference distribution,
which is what a proper score ranks by. Vectors are flattened coordinates (atoms x 3, Å).
"""

from __future__ import annotations

import numpy as np


def _flat(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 1:
        raise ValueError(f"{name}: expected samples (K, ...), got a scalar")
    return a.reshape(a.shape[0], -1)


def _mean_dist(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between the rows of ``a`` (n, d) and those of ``b`` (m, d)."""
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).mean())


def _pair_term(a: np.ndarray) -> float:
    """Unbiased E||X - X'|| from the rows of ``a`` (K, d): mean over the K(K-1) ordered pairs k != l; 0 for K = 1."""
    k = a.shape[0]
    if k < 2:
        return 0.0
    d = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    return float(d.sum() / (k * (k - 1)))


def energy_score(samples: np.ndarray, outcomes: np.ndarray) -> float:
    """Energy score of the forecast ``samples`` (K, ...) against the outcome(s) ``outcomes`` (M, ...) (the
    mean over the M outcomes; pass one outcome as ``y[None]``). Lower is better; same unit as the data."""
    x, y = _flat(samples, "samples"), _flat(outcomes, "outcomes")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} coordinates, outcomes {y.shape[1]}")
    return _mean_dist(x, y) - 0.5 * _pair_term(x)


def crps(samples: np.ndarray, outcomes: np.ndarray) -> float:
    """CRPS per coordinate, averaged over coordinates and outcomes: the energy score of every scalar
    coordinate separately (``samples`` (K, ...), ``outcomes`` (M, ...))."""
    x, y = _flat(samples, "samples"), _flat(outcomes, "outcomes")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} coordinates, outcomes {y.shape[1]}")
    first = np.abs(x[:, None, :] - y[None, :, :]).mean(axis=(0, 1))  # (d,)
    k = x.shape[0]
    pair = np.abs(x[:, None, :] - x[None, :, :]).sum(axis=(0, 1)) / (k * (k - 1)) if k > 1 else 0.0
    return float(np.mean(first - 0.5 * pair))


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance between sample sets ``a`` (K, ...) and ``b`` (M, ...), unbiased within-set terms (each set
    needs >= 2 samples for its term; a single sample counts as a point mass, term 0). Expectation 0 when both
    come from one distribution (it can then be slightly negative)."""
    x, y = _flat(a, "a"), _flat(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a has {x.shape[1]} coordinates, b {y.shape[1]}")
    return 2.0 * _mean_dist(x, y) - _pair_term(x) - _pair_term(y)


def split_half_null(reference: np.ndarray, rng: np.random.Generator | None = None, repeats: int = 20) -> float:
    """The energy distance between two random halves of the ``reference`` ensemble (M >= 4), averaged over
    ``repeats`` splits: what a sampler of the reference distribution itself scores at half the size."""
    y = _flat(reference, "reference")
    m = y.shape[0]
    if m < 4:
        raise ValueError(f"a split-half null needs >= 4 reference members, got {m}")
    rng = np.random.default_rng(0) if rng is None else rng
    vals = []
    for _ in range(int(repeats)):
        perm = rng.permutation(m)
        vals.append(energy_distance(y[perm[: m // 2]], y[perm[m // 2 :]]))
    return float(np.mean(vals))


def gaussian_crps(mu: float, sigma: float, y: float) -> float:
    """Closed-form CRPS of N(mu, sigma²) at ``y`` (Gneiting et al. 2005): for tests and the docs."""
    from scipy.stats import norm

    z = (y - mu) / sigma
    return float(sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)))


def gaussian_mean_norm(d: int) -> float:
    """E||Z|| of a standard normal vector in ``d`` dimensions: sqrt(2) Γ((d+1)/2) / Γ(d/2)."""
    from scipy.special import gammaln

    return float(np.sqrt(2.0) * np.exp(gammaln((d + 1) / 2) - gammaln(d / 2)))


def gaussian_energy_score_at_mean(sigma: float, d: int) -> float:
    """Closed-form energy score of N(mu, sigma² I_d) at y = mu: sigma E||Z|| (1 - 1/sqrt(2))."""
    return float(sigma * gaussian_mean_norm(d) * (1.0 - 1.0 / np.sqrt(2.0)))


__all__ = ["energy_score", "crps", "energy_distance", "split_half_null", "gaussian_crps", "gaussian_mean_norm",
           "gaussian_energy_score_at_mean"]
