"""DiffMD's EGT score network and full model: symmetry, zero velocities, batching, overfitting."""

from __future__ import annotations

import pytest
import torch

from diffmd import batch as B
from diffmd.config import resolve_model_config
from diffmd.models.diffmd.sbf import SphericalFourierBessel, spherical_bessel
from diffmd.registry import build_model
from diffmd.testing import (
    assert_batching,
    assert_equivariant,
    random_orthogonal,
    toy_batch,
    toy_samples,
    transform_batch,
    within_molecule_permutation,
)

TINY = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_ffn": 32, "dropout": 0.0, "n_time_freq": 4}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def tiny_model(**over) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("diffmd", resolve_model_config("diffmd", {**TINY, **over})).double().eval()


def test_spherical_bessel_matches_scipy():
    from scipy import special

    x = torch.linspace(0.0, 8.0, 200, dtype=torch.float64)
    for o, j in enumerate(spherical_bessel(3, x)):
        assert torch.allclose(j, torch.as_tensor(special.spherical_jn(o, x.numpy())), atol=1e-7)


def test_sbf_invariant_under_rotation_reflection_translation():
    batch = toy_batch(2)
    sbf = SphericalFourierBessel(cutoff=1.6)
    edges = torch.tensor([[0, 1, 2, 1], [1, 0, 0, 2]])
    e1, e2 = sbf(batch[B.POSITIONS], batch[B.VELOCITIES], edges)
    q = random_orthogonal(torch.float64, reflect=True, seed=3)
    x_t = batch[B.POSITIONS] @ q.T + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    f1, f2 = sbf(x_t, batch[B.VELOCITIES] @ q.T, edges)
    assert torch.allclose(e1, f1, atol=1e-12) and torch.allclose(e2, f2, atol=1e-12)
    assert e1.shape == (4, sbf.n_basis) == (4, 6)
    assert not torch.allclose(e1, e2)  # the two angles differ, so do the two bases


def test_sbf_zero_beyond_cutoff():
    sbf = SphericalFourierBessel(cutoff=1.6)
    x = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64)
    v = torch.randn(2, 3, dtype=torch.float64)
    e1, e2 = sbf(x, v, torch.tensor([[0, 1], [1, 0]]))
    assert e1.abs().max() < 1e-12 and e2.abs().max() < 1e-12


@pytest.mark.parametrize("graph", ["full", "radius"])
def test_score_equivariant(graph):
    model = tiny_model(attention_graph=graph)
    assert_equivariant(lambda b: model(b, s=0.4), toy_batch(3), kind="vector", atol=1e-9)


def test_ode_sampling_step_equivariant():
    model = tiny_model(sampler_options={"ode": {"method": "rk4", "step_size": 0.2}}, eps=0.2)
    assert_equivariant(lambda b: model.sample(b)[0], toy_batch(2), kind="position", atol=1e-9)


def test_score_not_trivially_invariant():
    """The score must actually depend on orientation (guards against a test that cannot fail)."""
    model = tiny_model()
    batch = toy_batch(2)
    q = random_orthogonal(torch.float64, seed=1)
    perm = within_molecule_permutation(batch)
    out = model(batch, s=0.4)
    out_t = model(transform_batch(batch, q, torch.zeros(3, dtype=torch.float64), perm), s=0.4)
    assert (out_t - out[perm]).abs().max() > 1e-3


def test_zero_velocity_is_finite_with_gradients():
    model = tiny_model()
    model.train()
    batch = toy_batch(2)
    batch[B.VELOCITIES] = torch.zeros_like(batch[B.VELOCITIES])
    batch[B.ACCELERATIONS] = torch.zeros_like(batch[B.ACCELERATIONS])
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    assert torch.isfinite(model.predict(batch)).all()


def test_batching():
    model = tiny_model()
    assert_batching(lambda b: model(b, s=0.3), toy_samples(3), atol=1e-10)
    # a fixed-grid solver: the adaptive dopri5 error norm is taken over the whole batch, so its steps
    # (and its results, at the tolerance level) depend on what else is in the batch
    fixed = tiny_model(sampler_options={"ode": {"method": "rk4", "step_size": 0.2}}, eps=0.2)
    assert_batching(lambda b: fixed.sample(b)[0], toy_samples(2), atol=1e-10)


def test_overfit_fixed_noise():
    torch.manual_seed(0)
    model = build_model("diffmd", resolve_model_config("diffmd", {**TINY, "d_model": 32})).double()
    batch = toy_batch(2)
    g = torch.Generator().manual_seed(1)
    s = torch.tensor([0.3, 0.6], dtype=torch.float64)
    noise = torch.randn(batch[B.POSITIONS].shape, generator=g, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = model.loss(batch, s=s, noise=noise)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.1 * losses[0], (losses[0], min(losses[-10:]))


def test_rollout_stats_counts_and_resets():
    model = tiny_model(eps=0.5)
    batch = toy_batch(1)
    model.predict(batch)
    first = model.rollout_stats()["score_evals"]
    assert first > 0 and model.rollout_stats()["score_evals"] == 0


def test_bad_config_names_key():
    with pytest.raises(ValueError, match="attention_graph"):
        tiny_model(attention_graph="knn")
    with pytest.raises(ValueError, match="sampler must be one of"):  # declared choices (param_schema)
        tiny_model(sampler="ddim")
    with pytest.raises(ValueError, match="sampler_options.ode: unknown option"):
        tiny_model(sampler_options={"ode": {"n_steps": 3}})


@pytest.mark.parametrize(
    "sampler,options,evals",
    [("euler_maruyama", {"n_steps": 5}, 5), ("pc", {"n_steps": 4, "n_corrector": 2}, 10)],
)
def test_predict_with_each_sampler(sampler, options, evals):
    model = tiny_model(sampler=sampler, sampler_options={sampler: options}, eps=0.3)
    batch = toy_batch(2)
    torch.manual_seed(0)
    x = model.predict(batch)
    assert x.shape == batch[B.POSITIONS].shape and torch.isfinite(x).all()
    assert model.rollout_stats()["score_evals"] == evals
    torch.manual_seed(0)
    assert torch.equal(model.predict(batch), x)  # seeded: reproducible
