"""Score Dynamics: schedule closed form, samplers on an analytic Gaussian, batching, equivariance, overfit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd.models.score_dynamics_sampling import (
    VPSchedule,
    ancestral,
    dpm_orders,
    dpm_solver3,
    gaussian_eps_fn,
)
from diffmd.registry import build_model
from diffmd.testing import assert_batching, assert_equivariant, toy_batch, toy_samples

torch.set_num_threads(1)

SMALL = {"hidden": 16, "layers": 2, "time_features": 4, "displacement_scale": 0.05, "stride": 5}


def small_model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("score_dynamics", {**SMALL, **kw}).double().eval()


# --- schedule ---------------------------------------------------------------------------------------


def test_schedule_closed_form_against_integrated_beta():
    sch = VPSchedule(0.1, 20.0, 1e-3)
    t = torch.linspace(1e-3, 1.0, 50, dtype=torch.float64)
    # alpha(t) = exp(-1/2 int_0^t beta(s) ds) with beta(s) = 0.1 + 19.9 s, integrated numerically
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
    beta = 0.1 + 19.9 * grid
    steps = 0.5 * (beta[1:] + beta[:-1]) * (grid[1:] - grid[:-1])
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)])
    alpha_num = torch.exp(-0.5 * torch.from_numpy(np.interp(t.numpy(), grid.numpy(), cum.numpy())))
    assert torch.allclose(sch.alpha(t), alpha_num, atol=1e-8)
    assert torch.allclose(sch.alpha(t) ** 2 + sch.sigma(t) ** 2, torch.ones_like(t), atol=1e-12)
    assert torch.allclose(sch.t_of_lambda(sch.lam(t)), t, atol=1e-9)


def test_forward_noising_mean_and_variance():
    sch = VPSchedule()
    g = torch.Generator().manual_seed(1)
    z0 = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    for tv in (0.05, 0.3, 0.9):
        t = torch.tensor(tv, dtype=torch.float64)
        eps = torch.randn(200000, 3, generator=g, dtype=torch.float64)
        zt = sch.noise(z0.expand(200000, 3), t, eps)
        assert torch.allclose(zt.mean(0), sch.alpha(t) * z0, atol=0.01)
        assert torch.allclose(zt.var(0), sch.sigma(t) ** 2 * torch.ones(3, dtype=torch.float64), rtol=0.02)


def test_training_times_are_log_snr_uniform():
    sch = VPSchedule()
    torch.manual_seed(0)
    t = sch.sample_t(100000, torch.zeros(1, dtype=torch.float64))
    assert float(t.min()) >= 1e-3 - 1e-9 and float(t.max()) <= 1.0 + 1e-9
    lo, hi = sch.lambda_bounds(t)
    u = (sch.lam(t) - lo) / (hi - lo)
    hist = torch.histc(u, bins=10, min=0, max=1) / len(u)
    assert torch.allclose(hist, torch.full_like(hist, 0.1), atol=0.01)


# --- samplers on an analytic Gaussian target ------------------------------------------------------------

MEAN = torch.tensor([0.4, -1.0, 2.0], dtype=torch.float64)
STD = torch.tensor([0.5, 1.5, 0.2], dtype=torch.float64)


@pytest.mark.parametrize("nfe", [20, 21, 22])
def test_dpm_solver3_matches_gaussian_target(nfe):
    sch = VPSchedule()
    calls = []
    exact = gaussian_eps_fn(sch, MEAN, STD)

    def eps_fn(z, t):
        calls.append(float(t))
        return exact(z, t)

    g = torch.Generator().manual_seed(2)
    x = dpm_solver3(eps_fn, torch.randn(40000, 3, generator=g, dtype=torch.float64), sch, nfe)
    assert len(calls) == nfe == sum(dpm_orders(nfe))
    # the ODE maps N(0, I) at t=1 onto the marginal at t_min: N(alpha mean, alpha^2 std^2 + sigma^2)
    tmin = torch.tensor(sch.t_min, dtype=torch.float64)
    want_std = torch.sqrt(sch.alpha(tmin) ** 2 * STD**2 + sch.sigma(tmin) ** 2)
    assert torch.allclose(x.mean(0), sch.alpha(tmin) * MEAN, atol=0.02)
    assert torch.allclose(x.std(0), want_std, rtol=0.02)


def test_dpm_solver3_low_order_is_worse_than_third_order():
    """With 3 evaluations one order-3 step beats three Euler (order-1) steps on the exact ODE."""
    sch = VPSchedule()
    exact = gaussian_eps_fn(sch, MEAN, STD)
    x_T = torch.randn(4000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = dpm_solver3(exact, x_T, sch, 60)
    third = dpm_solver3(exact, x_T, sch, 4)  # orders [3, 1]
    first = dpm_solver3(exact, x_T, sch, 2)  # orders [1, 1]
    assert (third - ref).abs().max() < (first - ref).abs().max()


def test_ancestral_matches_gaussian_target():
    sch = VPSchedule()
    g = torch.Generator().manual_seed(4)
    x = ancestral(gaussian_eps_fn(sch, MEAN, STD), torch.randn(40000, 3, generator=g, dtype=torch.float64),
                  sch, steps=300, generator=g)
    assert torch.allclose(x.mean(0), MEAN, atol=0.03)
    assert torch.allclose(x.std(0), STD, rtol=0.04)


# --- the model ----------------------------------------------------------------------------------------


def noise_of(batch: B.Batch) -> torch.Tensor:
    """A fixed 'noise' carried as VELOCITIES so that the shared helpers rotate and permute it."""
    v = batch[B.VELOCITIES]
    return v / v.norm() * v.shape[0] ** 0.5  # the Frobenius norm is invariant, an element std is not


@pytest.mark.parametrize("equivariant", [False, True])
def test_batching(equivariant):
    model = small_model(equivariant=equivariant)
    t = torch.tensor(0.4, dtype=torch.float64)
    samples = toy_samples(3)
    assert_batching(lambda b: model.eps(b, b[B.VELOCITIES] * 50, t), samples, atol=1e-10)
    # the untrained network amplifies round-off along the 20 solver evaluations: compare relative to the output
    size = float(model.sample_displacement(B.collate(samples), noise=B.collate(samples)[B.VELOCITIES] * 50).abs().max())
    assert_batching(lambda b: model.sample_displacement(b, noise=b[B.VELOCITIES] * 50), samples, atol=1e-12 * size)


@pytest.mark.parametrize("use_velocities", [False, True])
def test_equivariant_denoiser_and_dpm_step(use_velocities):
    model = small_model(equivariant=True, use_velocities=use_velocities)
    batch = toy_batch(3)
    t = torch.tensor(0.3, dtype=torch.float64)
    assert_equivariant(lambda b: model.eps(b, noise_of(b), t), batch, kind="vector", atol=1e-10)
    # a whole deterministic DPM-Solver-3 sample from a fixed noise input that rotates with the molecule
    size = float(model.sample_displacement(batch, noise=noise_of(batch)).abs().max())
    assert_equivariant(lambda b: model.sample_displacement(b, noise=noise_of(b)), batch, kind="vector",
                       atol=1e-12 * size)


def test_original_denoiser_is_not_equivariant():
    model = small_model(equivariant=False)
    t = torch.tensor(0.3, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda b: model.eps(b, noise_of(b), t), toy_batch(3), kind="vector", atol=1e-6)


@pytest.mark.parametrize("equivariant", [False, True])
def test_overfit_one_batch(equivariant):
    """Noise-prediction loss on two molecules drops well below its start (> 6x) (and below the eps = z_t guess)."""
    torch.manual_seed(0)
    model = build_model("score_dynamics", {**SMALL, "hidden": 32, "equivariant": equivariant}).double()
    batch = toy_batch(2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(400):
        torch.manual_seed(step % 8)  # a fixed set of 8 (t, eps) draws: a finite, memorisable objective
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.15 * first, (first, last)


def test_predict_shape_counts_and_reset():
    model = small_model(sampling_steps=6, bond_check=False)
    batch = toy_batch(2)
    out = model.predict(batch)
    assert out.shape == batch[B.POSITIONS].shape
    assert model.rollout_stats() == {"score_evals": 6, "resamples": 0, "bond_check_failures": 0}
    assert model.rollout_stats()["score_evals"] == 0
    model.sampler = "ancestral"
    model.ancestral_steps = 5
    model.predict(batch)
    assert model.rollout_stats()["score_evals"] == 5


def test_bond_check_fires_and_is_counted():
    strict = small_model(sampling_steps=3, bond_tolerance=1e-6, max_resamples=2, displacement_scale=0.5)
    strict.predict(toy_batch(2))
    stats = strict.rollout_stats()
    assert stats["resamples"] > 0 and stats["bond_check_failures"] == 2
    assert stats["score_evals"] == 3 * 3
    loose = small_model(sampling_steps=3, bond_tolerance=1e9)
    loose.predict(toy_batch(2))
    assert loose.rollout_stats() == {"score_evals": 3, "resamples": 0, "bond_check_failures": 0}


def test_bond_check_accepts_real_geometries():
    model = small_model()
    for with_index in (True, False):
        batch = toy_batch(3)
        if not with_index:
            batch.pop(B.BOND_INDEX)
        bonds = model.bonds(batch)
        assert bonds[0].shape[1] == toy_batch(3)[B.BOND_INDEX].shape[1]
        assert not model.bad_molecules(batch, batch[B.POSITIONS], bonds).any()
        stretched = batch[B.POSITIONS] * 1.5  # every bond 50 % too long
        assert model.bad_molecules(batch, stretched, bonds).all()


def test_bond_check_passes_real_md17_frames():
    """All 200 rMD17 ethanol frames (DFT, 500 K) pass the default 30 % check against nominal lengths."""
    data = np.load(Path(__file__).parent / "data" / "rmd17_ethanol_sample200.npz")
    pos = torch.as_tensor(data["coords"], dtype=torch.float64)
    z = torch.as_tensor(data["nuclear_charges"], dtype=torch.long)
    model = small_model()
    batch = {B.POSITIONS: pos[0], B.ATOMIC_NUMBERS: z, B.BATCH: torch.zeros(len(z), dtype=torch.long),
             B.NUM_ATOMS: torch.tensor([len(z)])}  # fmt: skip
    bonds = model.bonds(batch)
    assert bonds[0].shape[1] == 16  # 8 bonds, both directions
    assert not any(bool(model.bad_molecules(batch, x, bonds).any()) for x in pos)


def test_scale_is_estimated_from_data_and_saved():
    torch.manual_seed(0)
    model = build_model("score_dynamics", {"hidden": 8, "layers": 1, "time_features": 2}).double()
    batch = toy_batch(2)
    with pytest.raises(RuntimeError, match="displacement scale"):
        model.predict(batch)
    model.loss(batch)
    rms = float((batch[B.TARGET_POSITIONS] - batch[B.POSITIONS]).pow(2).mean().sqrt())
    assert float(model.state_dict()["dx_scale"]) == pytest.approx(rms)


def test_bad_parameters_name_the_key():
    with pytest.raises(ValueError, match="sampler"):
        build_model("score_dynamics", {"sampler": "euler"})
    with pytest.raises(ValueError, match="beta_min"):
        build_model("score_dynamics", {"beta_min": 30.0})


# --- diffusion-time features (issue 13) ---------------------------------------------------------------


def test_time_feature_scale_sets_the_frequency_std():
    """W ~ N(0, scale^2): the buffer's std follows ``time_feature_scale``; 1 by default and in the YAML."""
    from diffmd.config import resolve_model_config

    assert resolve_model_config("score_dynamics")["time_feature_scale"] == 1.0
    freqs = {
        scale: small_model(time_features=256, time_feature_scale=scale).denoiser.freqs for scale in (1.0, 16.0)
    }
    assert torch.allclose(freqs[16.0], 16.0 * freqs[1.0])  # the same seeded draws, scaled
    assert abs(float(freqs[1.0].std()) - 1.0) < 0.15
    assert torch.equal(small_model(time_features=256).denoiser.freqs, freqs[1.0])  # the default is 1
    with pytest.raises(ValueError, match="time_feature_scale"):
        build_model("score_dynamics", {**SMALL, "time_feature_scale": 0.0})


def test_time_features_vary_smoothly_in_t():
    """At scale 1 features at t and t + 1e-3 are nearly equal (RMS change ~2 pi |W| 1e-3); at 16 they are not."""
    from diffmd.models.score_dynamics_sampling import fourier_features

    t = torch.linspace(1e-3, 0.99, 200, dtype=torch.float64)

    def rms_change(model: torch.nn.Module) -> float:
        freqs = model.denoiser.freqs
        return float((fourier_features(t + 1e-3, freqs) - fourier_features(t, freqs)).pow(2).mean().sqrt())

    default = rms_change(small_model(time_features=16))
    assert default < 0.015, default
    assert rms_change(small_model(time_features=16, time_feature_scale=16.0)) > 0.04
