"""DiffMD's conditional SDE (Eq. 5-9): kernel vs Monte Carlo, sigma limits, samplers on a Gaussian target."""

from __future__ import annotations

import math

import pytest
import torch

from diffmd.models.diffmd.samplers import available_samplers, get_sampler
from diffmd.models.diffmd.sde import ConditionalVESDE

F64 = torch.float64


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_variance_limits_and_positivity():
    var = ConditionalVESDE.marginal_var
    s = torch.tensor([0.05, 0.5, 1.0], dtype=F64)
    for sig in (1e-6, 1e-3, 0.5, 1.0 - 1e-12, 1.0, 1.0 + 1e-12, 3.0):
        v = var(s, torch.tensor(sig, dtype=F64))
        assert torch.isfinite(v).all() and (v > 0).all()
        exact = s if abs(math.log(sig)) < 1e-9 else (sig ** (2 * s) - 1) / (2 * math.log(sig))
        assert torch.allclose(v, exact, rtol=1e-9)
    v32 = var(torch.tensor(0.3), torch.tensor(1.0 + 1e-7))  # float32 near sigma = 1: limit s
    assert abs(float(v32) - 0.3) < 1e-6


def test_sigma_from_acceleration_eq6():
    sde = ConditionalVESDE(sigma_s=0.1, a_bar=1.0, eta_sigma=2.0)
    acc = torch.tensor([[0.5, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
    sigma = sde.sigma_from_accel(acc, torch.zeros(3, dtype=torch.long), 1)
    # |a|^2 = 0.25 < 1: 0.1 * 2 * 0.75^2; |a|^2 = 4 >= 1: sigma_s; |a|^2 = 1: threshold -> sigma_s
    assert torch.allclose(sigma, torch.tensor([0.1 * 2 * 0.75**2, 0.1, 0.1], dtype=F64))
    per_mol = ConditionalVESDE(sigma_s=0.1, a_bar=1.0, eta_sigma=2.0, accel_norm="molecule")
    sig_m = per_mol.sigma_from_accel(acc[:2], torch.zeros(2, dtype=torch.long), 1)
    assert torch.allclose(sig_m, torch.full((2,), 0.1, dtype=F64))  # mean |a|^2 = 2.125 >= 1
    low = ConditionalVESDE(sigma_s=0.1, a_bar=0.25 + 1e-9, eta_sigma=2.0, sigma_floor=1e-6)  # sigma ~ 2e-19
    assert float(low.sigma_from_accel(acc[:1], torch.zeros(1, dtype=torch.long), 1)[0]) == low.sigma_floor


@pytest.mark.parametrize("sigma", [1e-3, 0.3, 1.0, 4.0])
def test_kernel_matches_monte_carlo(sigma):
    g = torch.Generator().manual_seed(0)
    n_paths, n_steps, s_end = 20000, 200, 0.7
    x = torch.zeros(n_paths, dtype=F64)
    ds = s_end / n_steps
    for k in range(n_steps):
        s_mid = (k + 0.5) * ds
        x = x + sigma**s_mid * math.sqrt(ds) * torch.randn(n_paths, generator=g, dtype=F64)
    expected = float(
        ConditionalVESDE.marginal_var(torch.tensor(s_end, dtype=F64), torch.tensor(sigma, dtype=F64))
    )
    assert abs(float(x.var()) / expected - 1) < 0.04
    assert abs(float(x.mean())) < 4 * math.sqrt(expected / n_paths)


def gaussian_score(mu: float, c2: float, sigma: torch.Tensor, scale: float = 1.0):
    """Score of N(mu, (c^2 + scale^2 var(s)) I): data N(mu, c^2 I) pushed through the forward SDE."""

    def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        var = scale**2 * ConditionalVESDE.marginal_var(s, sigma)[:, None]
        return -(x - mu) / (c2 + var)

    return score_fn


@pytest.mark.parametrize(
    "name,options,tol",
    [
        ("ode", {}, 0.03),
        ("euler_maruyama", {"n_steps": 200}, 0.06),
        ("pc", {"n_steps": 100, "n_corrector": 1, "snr": 0.16}, 0.08),
    ],
)
@pytest.mark.parametrize("sigma_value,scale", [(0.05, 1.0), (3.0, 0.1)])
def test_sampler_lands_on_gaussian_marginal(name, options, tol, sigma_value, scale):
    n, mu, c2, eps = 3000, 1.5, 0.04, 0.1
    sigma = torch.full((n,), sigma_value, dtype=F64)
    g = torch.Generator().manual_seed(1)
    var1 = scale**2 * ConditionalVESDE.marginal_var(torch.tensor(1.0, dtype=F64), sigma)[:, None]
    # 'molecules' of 30 atoms: the Langevin step uses per-molecule norms (concentrated in 90 dims)
    x_init = mu + torch.sqrt(c2 + var1) * torch.randn(n, 3, generator=g, dtype=F64)
    sampler = get_sampler(name)
    x, nfe = sampler(
        gaussian_score(mu, c2, sigma, scale),
        x_init,
        ConditionalVESDE(noise_scale=scale),
        sigma,
        eps,
        batch_index=torch.arange(n) // 30,
        generator=g,
        **options,
    )
    target_var = c2 + scale**2 * float(ConditionalVESDE.marginal_var(torch.tensor(eps, dtype=F64), sigma[:1]))
    assert nfe > 0
    assert abs(float(x.mean()) - mu) < 0.05 * math.sqrt(target_var) + 4 * math.sqrt(target_var / x.numel())
    assert abs(float(x.var()) / target_var - 1) < tol, (float(x.var()), target_var)
    assert abs(float(x_init.var()) / target_var - 1) > 3 * tol  # the sampler had work to do


@pytest.mark.parametrize("n_steps,n_corrector", [(1, 1), (5, 1), (5, 2), (4, 0)])
def test_pc_sampler_returns_denoised_mean_and_counts_evaluations(n_steps, n_corrector):
    """The last predictor step is noise-free with no corrector after it (score_sde's denoise): the output
    is x + g^2(s) score(x, s) ds at the last evaluation's x and s = eps + ds; the count is exact."""
    n, mu, c2, eps, scale = 300, 1.5, 0.04, 0.1, 0.1
    sigma = torch.full((n,), 3.0, dtype=F64)
    sde = ConditionalVESDE(noise_scale=scale)
    score = gaussian_score(mu, c2, sigma, scale)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def counted(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        calls.append((x.clone(), s.clone()))
        return score(x, s)

    x_init = mu + torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    outs = []
    for seed in (3, 4):
        calls.clear()
        x, nfe = get_sampler("pc")(
            counted, x_init, sde, sigma, eps, batch_index=torch.arange(n) // 30,
            generator=torch.Generator().manual_seed(seed), n_steps=n_steps, n_corrector=n_corrector,
        )
        assert nfe == len(calls) == n_steps + (n_steps - 1) * n_corrector
        ds = (1.0 - eps) / n_steps
        x_last, s_last = calls[-1]
        assert abs(float(s_last) - (eps + ds)) < 1e-12  # the last evaluation is the last predictor's
        g2 = sde.g2(s_last, torch.log(sigma)[:, None])
        assert torch.allclose(x, x_last + g2 * score(x_last, s_last) * ds, rtol=0, atol=1e-12)
        outs.append(x)
    if n_steps == 1:  # one noise-free predictor step and nothing after it: no randomness at all
        assert torch.equal(outs[0], outs[1])


def test_registry():
    assert set(available_samplers()) == {"ode", "euler_maruyama", "pc"}
    with pytest.raises(KeyError, match="unknown diffmd sampler"):
        get_sampler("ddim")
