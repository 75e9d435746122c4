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

# deterministic sampling (DPM-Solver-3, 20 evaluations) for the batching and equivariance checks
SMALL = {"hidden": 16, "layers": 2, "time_features": 4, "displacement_scale": 0.05, "stride": 5, "sampler": "dpm3",
         "sampling_steps": 20}


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
                       atol=1e-10 * size)  # float64 round-off amplified over 20 evaluations; a break is O(size)


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
    assert model.rollout_stats() == {"score_evals": 6, "resamples": 0, "rejected": 0, "backoffs": 0, "held": 0,
                                     "input_failing": 0}  # fmt: skip
    assert model.rollout_stats()["score_evals"] == 0
    model.sampler = "ancestral"
    model.ancestral_steps = 5
    model.predict(batch)
    assert model.rollout_stats()["score_evals"] == 5


def test_bond_check_fires_and_is_counted():
    """A check no sample can pass (tolerance 1e-6 of the nominal lengths, which the toy frames miss too):
    every molecule is resampled, rejected, and held at x(t), which itself fails (``input_failing``)."""
    strict = small_model(sampler="dpm3", sampling_steps=3, bond_tolerance=1e-6, max_resamples=2,
                         displacement_scale=0.5)  # fmt: skip
    batch = toy_batch(2)
    out = strict.predict(batch)
    stats = strict.rollout_stats()
    assert stats["resamples"] == 2 * 2 and stats["rejected"] == 2
    assert stats["backoffs"] == 0 and stats["held"] == 2 and stats["input_failing"] == 2
    assert stats["score_evals"] == 3 * 3
    assert torch.equal(out, batch[B.POSITIONS])  # held: x(t), not the failing sample
    loose = small_model(sampler="dpm3", sampling_steps=3, bond_tolerance=1e9)
    loose.predict(toy_batch(2))
    assert loose.rollout_stats() == {"score_evals": 3, "resamples": 0, "rejected": 0, "backoffs": 0, "held": 0,
                                     "input_failing": 0}  # fmt: skip


class _FixedDisplacement:
    """A stand-in sampler: every draw returns ``dx`` (so every resample fails the same way)."""

    def __init__(self, dx: torch.Tensor):
        self.dx, self.calls = dx, 0

    def __call__(self, batch, noise=None, sampler=None, ema=True):
        self.calls += 1
        return self.dx


def test_back_off_never_returns_a_failing_sample():
    """Molecule 0's samples stretch one bond by 100 % (fails the 30 % check, passes after 2 halvings: 25 %);
    molecule 1's stretch every bond 10x (fails even at 1/16); molecule 2's pass. The result: 0 backed off to
    a quarter of its displacement, 1 held at x(t), 2 unchanged, and nothing returned fails the check."""
    model = small_model(max_resamples=2, max_backoffs=4)
    batch = toy_batch(3)
    pos, mol = batch[B.POSITIONS], batch[B.BATCH]
    bonds = model.bonds(batch)
    assert not model.bad_molecules(batch, pos, bonds).any()
    dx = torch.zeros_like(pos)
    i0, j0 = (int(k) for k in bonds[0][:, (mol[bonds[0][0]] == 0).nonzero()[0, 0]])
    dx[j0] = pos[j0] - pos[i0]  # bond i0-j0 of molecule 0 twice as long
    dx[mol == 1] = 9.0 * (pos[mol == 1] - pos[mol == 1].mean(0))  # molecule 1 blown up 10x
    dx[mol == 2] = 0.01
    fake = _FixedDisplacement(dx)
    model.sample_displacement = fake
    out = model.predict(batch)
    assert fake.calls == 1 + 2
    assert not model.bad_molecules(batch, out, bonds).any()
    assert torch.allclose(out[mol == 0], (pos + 0.25 * dx)[mol == 0])
    assert torch.equal(out[mol == 1], pos[mol == 1])
    assert torch.allclose(out[mol == 2], (pos + dx)[mol == 2])
    stats = model.rollout_stats()
    assert stats == {"score_evals": 0, "resamples": 2 * 2, "rejected": 2, "backoffs": 1, "held": 1,
                     "input_failing": 0}, stats  # fmt: skip
    # no back-off allowed: a rejected molecule stays at x(t)
    model = small_model(max_resamples=0, max_backoffs=0)
    model.sample_displacement = _FixedDisplacement(dx)
    out = model.predict(batch)
    assert torch.equal(out[mol == 0], pos[mol == 0]) and torch.equal(out[mol == 1], pos[mol == 1])
    assert model.rollout_stats()["held"] == 2


def test_resampling_replaces_only_failing_molecules():
    """A molecule that fails on the first draw and passes on the second takes the second draw; one that
    passed keeps its first."""
    model = small_model(max_resamples=3)
    batch = toy_batch(2)
    pos, mol = batch[B.POSITIONS], batch[B.BATCH]
    first = torch.zeros_like(pos)
    first[mol == 0] = 5.0 * (pos[mol == 0] - pos[mol == 0].mean(0))  # molecule 0 fails
    first[mol == 1] = 0.02
    second = torch.full_like(pos, 0.03)
    draws = iter([first, second])
    model.sample_displacement = lambda *a, **k: next(draws)
    out = model.predict(batch)
    assert torch.allclose(out[mol == 0], (pos + second)[mol == 0])
    assert torch.allclose(out[mol == 1], (pos + first)[mol == 1])
    assert model.rollout_stats() == {"score_evals": 0, "resamples": 1, "rejected": 0, "backoffs": 0, "held": 0,
                                     "input_failing": 0}  # fmt: skip


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
    with pytest.raises(ValueError, match="ema_decay"):
        build_model("score_dynamics", {**SMALL, "ema_decay": 1.0})
    with pytest.raises(ValueError, match="max_backoffs"):
        build_model("score_dynamics", {**SMALL, "max_backoffs": -1})


# --- EMA of the weights ---------------------------------------------------------------------------------


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: B.Batch) -> None:
    opt.zero_grad()
    model.loss(batch).backward()
    opt.step()
    model.after_optimizer_step()


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_update_maths(warmup):
    """First update copies the weights (as the original's AveragedModel); then ema = d ema + (1 - d) theta
    with d = ema_decay, or min(ema_decay, (1 + n) / (10 + n)) at update n with the warm-up."""
    torch.manual_seed(0)
    model = build_model("score_dynamics", {**SMALL, "ema_decay": 0.9, "ema_warmup": warmup}).double().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = toy_batch(2)
    names = dict(model.denoiser.named_parameters())
    assert set(model.ema_parameters()) == set(names) and not model.ema_active()
    _step(model, opt, batch)
    assert int(model.ema_updates) == 1 and model.ema_active()
    for name, value in model.ema_parameters().items():
        assert torch.equal(value, names[name])
    for n in (1, 2, 3):
        old = {k: v.clone() for k, v in model.ema_parameters().items()}
        _step(model, opt, batch)
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        assert model.ema_decay_at(n) == pytest.approx(d)
        moved = False
        for name, value in model.ema_parameters().items():
            assert torch.allclose(value, d * old[name] + (1 - d) * names[name].detach(), atol=1e-14), name
            moved |= not torch.equal(value, names[name])
        assert moved  # the EMA lags the raw weights
    state = model.state_dict()
    assert int(state["ema_updates"]) == 4
    assert torch.equal(state["ema__time_embed__0__weight"], model.ema_parameters()["time_embed.0.weight"])


def test_predict_uses_ema_weights_and_loss_the_raw_ones():
    torch.manual_seed(0)
    model = build_model("score_dynamics", {**SMALL, "ema_decay": 0.9, "ema_warmup": False}).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = toy_batch(2)
    for _ in range(5):
        _step(model, opt, batch)
    model.eval()
    noise = torch.randn_like(batch[B.POSITIONS])
    with_ema = model.sample_displacement(batch, noise=noise.clone())
    raw = model.sample_displacement(batch, noise=noise.clone(), ema=False)
    assert not torch.allclose(with_ema, raw)
    # the same sample from a copy whose raw weights are the EMA ones
    copy = build_model("score_dynamics", {**SMALL, "ema_decay": None}).double().eval()
    copy.dx_scale.copy_(model.dx_scale)
    copy.denoiser.load_state_dict({**model.denoiser.state_dict(), **model.ema_parameters()})
    assert torch.allclose(copy.sample_displacement(batch, noise=noise.clone()), with_ema, atol=1e-12)
    # predict samples with the EMA weights: the same draws as sample_displacement from the same seed
    model.bond_check = False
    torch.manual_seed(5)
    pred = model.predict(batch)
    torch.manual_seed(5)
    assert torch.allclose(pred, batch[B.POSITIONS] + model.sample_displacement(batch), atol=1e-12)
    # the loss trains the raw weights: its gradient reaches the parameters, never the EMA buffers
    model.train()
    opt.zero_grad()
    model.loss(batch).backward()
    assert all(p.grad is not None for p in model.denoiser.parameters() if p.requires_grad)
    assert all(not b.requires_grad for b in model.ema_parameters().values())


def test_ema_off_and_checkpoint_round_trip(tmp_path):
    off = build_model("score_dynamics", {**SMALL, "ema_decay": 0})
    assert not any(k.startswith("ema") for k in off.state_dict()) and not off.ema_active()
    off.after_optimizer_step()  # a no-op
    assert build_model("score_dynamics", {**SMALL, "ema_decay": None}).ema_decay == 0.0
    torch.manual_seed(0)
    model = build_model("score_dynamics", {**SMALL, "ema_decay": 0.99})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        _step(model, opt, toy_batch(2, dtype=torch.float32))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    state = torch.load(tmp_path / "sd.pt", weights_only=True)
    fresh = build_model("score_dynamics", {**SMALL, "ema_decay": 0.99})
    fresh.load_state_dict(state)
    assert int(fresh.ema_updates) == 3 and fresh.ema_active()
    for name, value in fresh.ema_parameters().items():
        assert torch.equal(value, model.ema_parameters()[name])



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


# --- the shared displacement-diffusion path (issue 24: diffmd_stochastic reuses it) ----------------------------

GOLDEN = Path(__file__).parent / "data" / "score_dynamics_golden.npz"


def golden_outputs() -> dict[str, np.ndarray]:
    """Loss, gradient (sum of squares, first and last 32 entries), one displacement per sampler and a bond-checked
    prediction of two small seeded models; tests/data/score_dynamics_golden.npz holds them as computed by the code
    before Score Dynamics' diffusion moved into :class:`~diffmd.models.score_dynamics.DisplacementDiffusion`
    (commit 63856ba)."""
    out = {}
    for eq in (False, True):
        torch.manual_seed(0)
        m = build_model("score_dynamics", {"hidden": 16, "layers": 2, "time_features": 8, "equivariant": eq}).double()
        batch = toy_batch(3, seed=4)
        torch.manual_seed(1)
        loss = m.loss(batch)
        loss.backward()
        out[f"loss_{eq}"] = loss.detach().numpy()
        g = np.concatenate([p.grad.detach().reshape(-1).numpy() for p in m.parameters()])
        out[f"grad_{eq}"] = np.array([np.sum(g * g), *g[:32], *g[-32:]])
        m.after_optimizer_step()
        m.eval()
        inp = B.inputs_only(batch)
        for sampler in ("ancestral", "dpm3"):
            torch.manual_seed(2)
            out[f"dx_{eq}_{sampler}"] = m.sample_displacement(inp, sampler=sampler).numpy()
        torch.manual_seed(3)
        out[f"pred_{eq}"] = m.predict(batch).numpy()
    return out


def test_shared_diffusion_path_leaves_score_dynamics_unchanged():
    """Bit for bit on this machine (checked when the base class was made); 1e-12 here, for other CPUs' kernels."""
    now = golden_outputs()
    with np.load(GOLDEN) as ref:
        assert sorted(ref.files) == sorted(now)
        for key in ref.files:
            np.testing.assert_allclose(now[key], ref[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_sampling_grid_is_built_once_and_samplers_then_read_nothing():
    from diffmd.graph import full_edge_index
    from diffmd.profiling import count

    model = small_model()
    batch = B.inputs_only(toy_batch(2))
    batch[B.STRUCTURE + "complete"] = full_edge_index(batch[B.NUM_ATOMS])  # as the engine's batches carry it
    model.sample_displacement(batch, sampler="ancestral")  # first call: builds the grids (two host reads each)
    model.sample_displacement(batch, sampler="dpm3")
    for sampler in ("ancestral", "dpm3"):
        c = count(lambda s=sampler: model.sample_displacement(batch, sampler=s))
        assert c.syncs == 0, c.sync_sites
