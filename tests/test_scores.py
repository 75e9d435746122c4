"""Proper scores (diffmd/scores.py) against closed forms on Gaussians."""

import numpy as np
import pytest

from diffmd import scores as S


def test_energy_score_of_a_gaussian_at_its_mean_matches_the_closed_form():
    rng = np.random.default_rng(0)
    d, sigma = 6, 0.3
    x = sigma * rng.standard_normal((4000, d))
    got = S.energy_score(x, np.zeros((1, d)))
    want = S.gaussian_energy_score_at_mean(sigma, d)
    assert got == pytest.approx(want, rel=0.03)


def test_gaussian_mean_norm_is_the_chi_mean():
    assert S.gaussian_mean_norm(1) == pytest.approx(np.sqrt(2 / np.pi))
    assert S.gaussian_mean_norm(3) == pytest.approx(2 * np.sqrt(2 / np.pi))


@pytest.mark.parametrize("y", [0.0, 0.4, -1.3])
def test_crps_of_samples_matches_the_gaussian_closed_form(y):
    rng = np.random.default_rng(1)
    x = 0.5 + 0.7 * rng.standard_normal((6000, 1))
    assert S.crps(x, np.array([[y]])) == pytest.approx(S.gaussian_crps(0.5, 0.7, y), rel=0.03, abs=3e-3)


def test_point_mass_crps_is_the_absolute_error_and_energy_score_the_distance():
    x = np.tile(np.array([1.0, 2.0, 2.0]), (5, 1))
    y = np.array([[1.0, 0.0, 2.0]])
    assert S.crps(x, y) == pytest.approx(2.0 / 3.0)
    assert S.energy_score(x, y) == pytest.approx(2.0)


def test_the_energy_score_ranks_an_ideal_sampler_above_the_collapsed_mean():
    """The issue's point: by the one-sample error the mean wins, by the energy score the right distribution."""
    rng = np.random.default_rng(2)
    d, sigma = 9, 0.1
    outcomes = sigma * rng.standard_normal((400, d))  # the reference ensemble
    ideal = sigma * rng.standard_normal((64, d))
    wide = 1.5 * sigma * rng.standard_normal((64, d))
    mean = np.zeros((64, d))
    es = {k: S.energy_score(v, outcomes) for k, v in (("ideal", ideal), ("wide", wide), ("mean", mean))}
    assert es["ideal"] < es["wide"] < es["mean"] * 1.2 and es["ideal"] < es["mean"]
    # expected values: ideal sigma E||Z|| / sqrt(2), mean sigma E||Z||
    assert es["ideal"] == pytest.approx(sigma * S.gaussian_mean_norm(d) / np.sqrt(2), rel=0.06)
    assert es["mean"] == pytest.approx(sigma * S.gaussian_mean_norm(d), rel=0.06)
    rmse = {k: np.sqrt(((v[:1] - outcomes) ** 2).sum(-1).mean()) for k, v in (("ideal", ideal), ("mean", mean))}
    assert rmse["mean"] < rmse["ideal"]  # the one-sample error rewards collapse


def test_energy_distance_of_shifted_gaussians_matches_the_closed_form():
    from scipy.stats import norm

    delta, sigma = 0.8, 1.0
    q = norm.ppf((np.arange(2000) + 0.5) / 2000)[:, None]  # quantile samples: no Monte Carlo noise
    a, b = sigma * q, delta + sigma * q
    s = np.sqrt(2) * sigma

    def mean_abs(mu, sd):  # E|N(mu, sd^2)|
        return sd * np.sqrt(2 / np.pi) * np.exp(-(mu**2) / (2 * sd**2)) + mu * (1 - 2 * norm.cdf(-mu / sd))

    want = 2 * mean_abs(delta, s) - 2 * mean_abs(0.0, s)
    assert S.energy_distance(a, b) == pytest.approx(want, abs=0.005)


def test_split_half_null_is_near_zero_and_a_wrong_sampler_exceeds_it():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((32, 5))
    null = S.split_half_null(ref, rng)
    assert abs(null) < 0.5
    assert S.energy_distance(3.0 + rng.standard_normal((16, 5)), ref) > 5 * max(null, 0.1)
    with pytest.raises(ValueError, match=">= 4"):
        S.split_half_null(ref[:3])
