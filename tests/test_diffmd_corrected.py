"""DiffMD corrected: the thermal kernel, the prior, the sampler's exact pieces, the loss as Eq. 8, signed
Eq. 15 weights, and the Verlet equivalence of benchmarks/diffmd_static.py."""

from __future__ import annotations

import math

import pytest
import torch

from diffmd import batch as B
from diffmd.models.diffmd.egt import EGT
from diffmd.models.diffmd_corrected import (
    DiffMDCorrected,
    atomic_masses,
    exponential_ode_sampler,
    thermal_step_std,
    time_grid,
    unit_variance,
)
from diffmd.registry import build_model, get_model_class
from diffmd.testing import assert_equivariant, toy_batch

TINY = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_ffn": 32, "dropout": 0.0, "n_time_freq": 4}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**over) -> DiffMDCorrected:
    torch.manual_seed(0)
    return build_model("diffmd_corrected", {**TINY, **over}).double().eval()


def test_registered_as_a_tuned_proposed_model():
    cls = get_model_class("diffmd_corrected")
    assert cls is DiffMDCorrected and cls.role == "proposed" and cls.trainer == "engine"
    assert cls.tuning == "diffmd_grid" and cls.grid_train_keys == ("kernel_scale",)  # its own grid
    assert set(cls.data_params) == {"dt_fs", "temperature_K"} and not DiffMDCorrected().adaptive_solver


def test_thermal_std_matches_a_hand_computation_in_si_units():
    kb, u = 1.380649e-23, 1.66053906660e-27  # J/K, kg
    z = torch.tensor([1, 6, 8])
    masses = [1.008, 12.011, 15.999]
    got = thermal_step_std(z, 500.0, 0.5)
    for value, m in zip(got.tolist(), masses):
        hand = math.sqrt(2 * kb * 500.0 / (m * u)) * 1e10 * 0.5e-15  # m/s -> Å/fs, times 0.5 fs
        assert value == pytest.approx(hand, rel=1e-8)
    assert got[0] == pytest.approx(0.01436, abs=1e-5)  # H at 500 K, 0.5 fs


def test_kernel_std_per_atom_and_its_time_shape():
    model = tiny(kernel_scale=0.5, temperature_K=300.0, dt_fs=1.0)
    model.stride = 2
    batch = toy_batch(1)
    tau = model.thermal_std(batch)
    assert torch.allclose(tau, thermal_step_std(batch[B.ATOMIC_NUMBERS], 300.0, 2.0).double())
    one = model.kernel_std(torch.tensor(1.0, dtype=torch.float64), tau)
    assert torch.allclose(one, 0.5 * tau)
    h, c = (batch[B.ATOMIC_NUMBERS] == 1), (batch[B.ATOMIC_NUMBERS] == 6)
    assert float(one[h][0] / one[c][0]) == pytest.approx(math.sqrt(12.011 / 1.008), rel=1e-10)
    s = torch.tensor([1e-3, 0.3, 1.0], dtype=torch.float64)
    assert torch.allclose(unit_variance(s, 1.0), s)  # Brownian: var(s) = s
    sig = 0.01
    assert torch.allclose(unit_variance(s, sig), (sig ** (2 * s) - 1) / (sig**2 - 1))  # Eq. 9 over its s = 1 value


def test_time_grid_and_eps_checks():
    assert time_grid(1e-3, 1) == [1.0, 1e-3]
    grid = time_grid(1e-3, 3)
    assert grid[0] == 1.0 and grid[-1] == pytest.approx(1e-3) and grid[1] / grid[0] == pytest.approx(grid[2] / grid[1])
    with pytest.raises(ValueError, match="eps"):
        time_grid(1.0, 2)
    with pytest.raises(ValueError, match="n_steps"):
        time_grid(0.1, 0)
    with pytest.raises(ValueError, match="kernel_scale"):
        DiffMDCorrected(**TINY, kernel_scale=0.0)
    model = tiny()
    model.eps = 0.0  # settable after construction, checked where it is used
    with pytest.raises(ValueError, match="eps"):
        model.predict(toy_batch(1))


def test_zero_score_returns_the_prior_mean_x_plus_v():
    model = tiny(n_steps=3)
    batch = toy_batch(2)
    x, nfe = model.sample(batch, score_fn=lambda x, s: torch.zeros_like(x))
    assert nfe == 3 and torch.equal(x, batch[B.POSITIONS] + batch[B.VELOCITIES])


@pytest.mark.parametrize("n_steps", [1, 4])
@pytest.mark.parametrize("eps", [1e-3, 0.2])
def test_delta_score_is_integrated_exactly_down_to_eps(n_steps, eps):
    """For the score of a point mass at x*, (x* - x)/std(s)^2, the probability-flow ODE gives
    x(eps) = x* + (x(1) - x*) std(eps)/std(1): exact for every step count, and it depends on eps."""
    model = tiny(n_steps=n_steps, eps=eps, kernel_scale=2.0, denoise_last=False)
    batch = toy_batch(2)
    tau = model.thermal_std(batch)
    target = (
        batch[B.POSITIONS] + batch[B.VELOCITIES] + 0.003 * torch.randn(batch[B.POSITIONS].shape, dtype=torch.float64)
    )

    def delta_score(x, s):
        std = model.kernel_std(torch.tensor(s, dtype=torch.float64), tau)
        return (target - x) / (std * std)[:, None]

    x, _ = model.sample(batch, score_fn=delta_score)
    mu = batch[B.POSITIONS] + batch[B.VELOCITIES]
    expected = target + (mu - target) * math.sqrt(eps)  # sigma_base 1: std(eps)/std(1) = sqrt(eps)
    torch.testing.assert_close(x, expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("n_steps", [1, 2, 4])
@pytest.mark.parametrize("eps", [1e-3, 0.2])
def test_last_step_returns_the_denoised_frame_exactly(n_steps, eps):
    """With ``denoise_last`` (the default) the sampler returns x0_hat at its last step: for the score of a point mass
    at x* every step's x0_hat is x*, so the sample is x* to rounding, whatever eps; stepping on to std(eps) instead
    leaves sqrt(eps) of the prior mean's distance in it (the shrink toward constant velocity, issue 24)."""
    model = tiny(n_steps=n_steps, eps=eps, kernel_scale=2.0)
    assert model.denoise_last
    batch = toy_batch(2)
    tau = model.thermal_std(batch)
    mu = batch[B.POSITIONS] + batch[B.VELOCITIES]
    target = mu + 0.003 * torch.randn(mu.shape, dtype=torch.float64)

    def delta_score(x, s):
        std = model.kernel_std(torch.tensor(s, dtype=torch.float64), tau)
        return (target - x) / (std * std)[:, None]

    x, nfe = model.sample(batch, score_fn=delta_score)
    assert nfe == n_steps
    torch.testing.assert_close(x, target, atol=1e-14, rtol=0)
    model.denoise_last = False
    shrunk, _ = model.sample(batch, score_fn=delta_score)
    assert float((shrunk - target).abs().max()) > 0.1 * float((mu - target).abs().max()) * math.sqrt(eps)


def test_one_step_sampler_is_one_network_call_from_the_prior_mean():
    """n_steps 1 with denoise_last: the prediction is the network's x0_hat at the prior mean and s = 1 (a
    deterministic one-step model)."""
    model = tiny(n_steps=1)
    batch = toy_batch(2)
    n = batch[B.POSITIONS].shape[0]
    one = torch.ones(n, dtype=torch.float64)
    expected = model.denoise(batch, batch[B.POSITIONS] + batch[B.VELOCITIES], one)
    torch.testing.assert_close(model.predict(batch), expected, atol=1e-13, rtol=0)
    assert model.rollout_stats() == {"score_evals": 1}


def test_sampler_does_not_integrate_a_constant_score_exactly():
    """The exponential step is exact for a fixed denoised frame, not for a fixed score (a guard that the
    test above is not trivially true for any integrator)."""
    std = {1.0: torch.ones(2), 1e-2: torch.full((2,), 0.1)}
    x, _ = exponential_ode_sampler(lambda x, s: torch.ones_like(x), torch.zeros(2, 3), std.__getitem__, [1.0, 1e-2])
    exact = 0.5 * (1.0 - 0.1**2)  # -1/2 int g^2 ds = (var(1) - var(eps)) / 2
    assert torch.allclose(x, torch.full((2, 3), 0.9)) and not math.isclose(0.9, exact)


def test_loss_is_eq8_with_lambda_std4_over_scale2():
    model = tiny()
    model.loss_scale = 1.7e-3
    batch = toy_batch(3)
    s = torch.tensor([0.01, 0.5, 1.0], dtype=torch.float64)
    z = torch.randn(batch[B.POSITIONS].shape, dtype=torch.float64)
    loss = model.loss(batch, s=s, noise=z)
    s_atom = s[batch[B.BATCH]]
    std = model.kernel_std(s_atom, model.thermal_std(batch))[:, None]
    x_noisy = batch[B.TARGET_POSITIONS] + std * z
    true_score = -(x_noisy - batch[B.TARGET_POSITIONS]) / std**2  # grad log p_0s of Eq. 8
    lam = std**4 / model.loss_scale**2
    eq8 = (lam * (model.score(batch, x_noisy, s_atom) - true_score) ** 2).mean()
    torch.testing.assert_close(loss, eq8, rtol=1e-9, atol=0)
    # constant velocity (a zero displacement) scores the mean squared acceleration in units of loss_scale
    with torch.no_grad():
        for p in model.egt.layers.parameters():
            p.zero_()
    cv = (((batch[B.POSITIONS] + batch[B.VELOCITIES] - batch[B.TARGET_POSITIONS]) / 1.7e-3) ** 2).mean()
    torch.testing.assert_close(model.loss(batch, s=s, noise=z), cv)


def test_network_sees_x_t_and_the_implied_step_v_at_the_prior_mean():
    model = tiny()
    batch = toy_batch(2)
    n = batch[B.POSITIONS].shape[0]
    s = torch.full((n,), 1.0, dtype=torch.float64)
    x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
    tau = model.thermal_std(batch)
    std = model.kernel_std(s, tau)
    disp = model.egt(x, v, batch[B.ATOMIC_NUMBERS], batch[B.NUM_ATOMS], s, torch.log(std))
    torch.testing.assert_close(model.denoise(batch, x + v, s), x + v + tau[:, None] * disp, atol=1e-15, rtol=0)
    # the score depends on x(t) itself, at the same candidate and v(t) (the paper's network never sees x(t))
    earlier = {**batch, B.POSITIONS: x - 0.05 * torch.randn(x.shape, dtype=x.dtype)}
    assert not torch.allclose(model.score(batch, x + v, s), model.score(earlier, x + v, s))


def test_signed_weights_vanish_at_zero_logits_while_softmax_does_not():
    torch.manual_seed(0)
    nets = {kind: EGT(1, 2, 16, 32, 0.0, coord_weights=kind).double() for kind in ("softmax", "signed")}
    nets["signed"].load_state_dict(nets["softmax"].state_dict())
    batch = toy_batch(1)
    for net in nets.values():
        with torch.no_grad():
            for lin in (net.layers[0].w_sbf1, net.layers[0].w_sbf2):
                lin.weight.zero_()  # q = k = 0: every attention logit is 0
            net.layers[0].f_v[-1].weight.zero_()
            net.layers[0].f_v[-1].bias.zero_()  # no velocity term: the coordinate sum alone
    n = batch[B.POSITIONS].shape[0]
    args = (batch[B.POSITIONS], batch[B.VELOCITIES], batch[B.ATOMIC_NUMBERS], batch[B.NUM_ATOMS],
            torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))  # fmt: skip
    assert nets["signed"](*args).abs().max() == 0
    x = batch[B.POSITIONS]
    mean_pull = x - (x.sum(0) - x) / (n - 1)  # softmax of equal logits: x_i - mean over j != i of x_j
    torch.testing.assert_close(nets["softmax"](*args), mean_pull, atol=1e-12, rtol=0)
    assert EGT(1, 2, 16, 32).layers[0].coord_weights == "softmax"  # the published default
    with pytest.raises(ValueError, match="coord_weights"):
        EGT(1, 2, 16, 32, coord_weights="positive")


def test_signed_score_and_sample_are_equivariant():
    model = tiny()
    assert_equivariant(lambda b: model(b, s=0.3), toy_batch(3), kind="vector", atol=1e-9)
    assert_equivariant(lambda b: model.sample(b)[0], toy_batch(3), kind="position", atol=1e-9)


def test_rollout_stats_count_score_evaluations_and_reset():
    model = tiny(n_steps=3)
    batch = toy_batch(2)
    model.predict(batch)
    model.predict(batch)
    assert model.rollout_stats() == {"score_evals": 6}
    assert model.rollout_stats() == {"score_evals": 0}


def test_unknown_element_is_named():
    # checked once per molecule where it enters the engine (the batch builders call molecule_structures),
    # not in the forward (a lookup there would read the device every call)
    z = toy_batch(1)[B.ATOMIC_NUMBERS].numpy().copy()
    z[0] = 0  # not an element (every Z in 1..118 has ASE's mass)
    with pytest.raises(ValueError, match="atomic number 0"):
        tiny().molecule_structures(z, {})
    with pytest.raises(KeyError, match="atomic number 0"):
        atomic_masses(torch.as_tensor(z))


def test_boltzmann_ode_from_x_plus_v_is_position_verlet():
    pytest.importorskip("torchdiffeq")
    from benchmarks.diffmd_static import boltzmann_ode

    g = torch.Generator().manual_seed(0)
    x, v, f = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    tau = thermal_step_std(torch.tensor([1, 1, 6, 8, 6]), 500.0, 0.5).double()
    out = boltzmann_ode(x + v, 1e-3 * f, tau, 1e-3)
    torch.testing.assert_close(out, x + v + (1 - 1e-3) * 1e-3 * f, atol=1e-12, rtol=0)


def test_loss_is_at_unit_scale_on_a_real_ethanol_step():
    """On MD17 ethanol's real 0.5 fs step with the engine's loss_scale the initial loss is O(1) and the
    gradients sit above Adam's eps; with loss_scale 1 (the raw Å² loss) the loss is ~1e-6."""
    from pathlib import Path

    from diffmd.data.xyz import read_xyz
    from diffmd.graph import bonded_graph

    frames = read_xyz(Path(__file__).parent / "data" / "md17_ethanol_first3.xyz")
    x = torch.as_tensor(frames.positions, dtype=torch.float64)
    z = torch.as_tensor(frames.atomic_numbers, dtype=torch.long)
    graph = bonded_graph(frames.positions[1], frames.atomic_numbers)
    sample = {
        B.POSITIONS: x[1], B.VELOCITIES: x[1] - x[0], B.ACCELERATIONS: torch.zeros_like(x[1]),
        B.TARGET_POSITIONS: x[2], B.ATOMIC_NUMBERS: z, B.EDGE_INDEX: torch.as_tensor(graph["edge_index"]),
        B.EDGE_ATTR: torch.as_tensor(graph["edge_attr"], dtype=torch.float64),
        B.BOND_INDEX: torch.as_tensor(graph["bond_index"]),
    }  # fmt: skip
    batch = B.collate([sample, sample])
    scale = float((x[2] - 2 * x[1] + x[0]).pow(2).mean().sqrt())
    model = tiny().train()
    for loss_scale, low, high in ((scale, 0.1, 100.0), (1.0, 0.0, 1e-4)):
        model.loss_scale = loss_scale
        model.zero_grad()
        torch.manual_seed(0)
        loss = model.loss(batch)
        value = float(loss.detach())
        assert low <= value <= high, (loss_scale, value)
    model.loss_scale = scale
    model.zero_grad()
    torch.manual_seed(0)
    model.loss(batch).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    assert float((g[g != 0].abs() < 1e-8).double().mean()) < 0.05
