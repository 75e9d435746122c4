"""DiffMD stochastic (issue 24 item 3): DiffMD's EGT as the denoiser of Score Dynamics' conditional diffusion over a
large stride, x(t) only. Its shared path, its symmetry and batching sample by sample (with the noise transformed
too), no host read in its sampler, and the test of what makes it stochastic: trained on a Gaussian conditional of
known spread, its samples have that spread (not collapsed) and its energy score beats a point mass at the true mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd import scores as P
from diffmd.cards import card
from diffmd.config import resolve_model_config, split_train_overrides
from diffmd.graph import full_edge_index
from diffmd.models.score_dynamics import DisplacementDiffusion, ScoreDynamics
from diffmd.profiling import count
from diffmd.registry import build_model
from diffmd.testing import FORMALDEHYDE_X, FORMALDEHYDE_Z, assert_batching, assert_equivariant, make_sample, toy_samples

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_ffn": 32, "dropout": 0.0, "displacement_scale": 0.05,
         "sampler": "dpm3", "sampling_steps": 12}  # fmt: skip


def small_model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("diffmd_stochastic", {**SMALL, **kw}).double().eval()


def noise_of(batch: B.Batch) -> torch.Tensor:
    """A fixed 'noise' carried as VELOCITIES, so the shared helpers rotate and permute it with the atoms."""
    v = batch[B.VELOCITIES]
    return v / v.norm() * v.shape[0] ** 0.5


def with_graph(batch: B.Batch) -> B.Batch:
    """The complete graph the engine's batches carry (built once per molecule), so nothing is built per call."""
    return {**batch, B.STRUCTURE + "complete": full_edge_index(batch[B.NUM_ATOMS])}


def test_it_is_score_dynamics_diffusion_with_the_egt():
    model = small_model()
    assert isinstance(model, DisplacementDiffusion) and not isinstance(model, ScoreDynamics)
    for method in ("loss", "sample_displacement", "predict", "eps", "after_optimizer_step", "back_off"):
        assert getattr(type(model), method) is getattr(DisplacementDiffusion, method)  # one code path, not a copy
    assert type(model.denoiser.egt).__module__ == "diffmd.models.diffmd.egt"
    assert model.conditions_on == "x" and model.symmetry == "O3"  # scored against Maxwell-Boltzmann re-simulations
    c = card("diffmd_stochastic")
    assert c.stride == "config" and c.fit == "engine" and c.role == "proposed"
    params, train = split_train_overrides(resolve_model_config("diffmd_stochastic"))
    assert params["cutoff"] == 3.0 and params["n_degree"] * params["n_root"] == 8  # the 1-3 Å geometry
    assert train == {"select_by": "val_loss"}


def test_sampler_is_equivariant_and_batch_independent_with_its_noise():
    model = small_model()
    samples = toy_samples(3)
    batch = B.collate(samples)
    size = float(model.sample_displacement(batch, noise=noise_of(batch)).abs().max())
    assert size > 0
    for seed in (0, 1):
        assert_equivariant(lambda b: model.sample_displacement(b, noise=noise_of(b)), batch, kind="vector",
                           atol=1e-10 * size, seed=seed)  # fmt: skip
    t = torch.tensor(0.4, dtype=torch.float64)
    assert_batching(lambda b: model.eps(b, b[B.VELOCITIES] * 50, t), samples, atol=1e-10)
    assert_batching(lambda b: model.sample_displacement(b, noise=b[B.VELOCITIES] * 50), samples, atol=1e-10 * size)


def test_sampler_and_a_step_without_bond_check_read_nothing_from_the_device():
    batch = with_graph(B.inputs_only(B.collate(toy_samples(2))))
    for sampler in ("ancestral", "dpm3"):
        model = small_model(sampler=sampler, ancestral_steps=5, sampling_steps=6, bond_check=False)
        model.predict(batch)  # the first call builds the sampling grid
        c = count(lambda m=model: m.predict(batch))
        assert c.syncs == 0, c.sync_sites
        assert model.rollout_stats()["score_evals"] == 2 * (5 if sampler == "ancestral" else 6)


def test_bad_parameters_name_the_key():
    with pytest.raises(ValueError, match="diffmd_stochastic.sampler must be one of"):
        build_model("diffmd_stochastic", {"sampler": "euler"})
    with pytest.raises(ValueError, match="diffmd_stochastic.cutoff"):
        build_model("diffmd_stochastic", {"cutoff": 0.0})
    with pytest.raises(ValueError, match="diffmd_stochastic: max_resamples and max_backoffs must be >= 0"):
        build_model("diffmd_stochastic", {"max_resamples": -1})
    with pytest.raises(ValueError, match="diffmd_stochastic: need 0 < beta_min < beta_max"):
        build_model("diffmd_stochastic", {"beta_min": 30.0})


# --- what makes it stochastic --------------------------------------------------------------------------------

SIGMA, STRETCH = 0.05, 0.1  # Å; the conditional mean of the displacement: STRETCH (x_i - centroid)


def gaussian_pairs(n: int, g: torch.Generator) -> tuple[B.Batch, torch.Tensor]:
    """``n`` jittered formaldehydes with targets x + mu(x) + SIGMA eps, mu(x) = STRETCH (x - centroid): a
    displacement that x(t) does not determine (spread SIGMA per coordinate, known), with an equivariant mean."""
    batch = B.collate([make_sample(FORMALDEHYDE_X, FORMALDEHYDE_Z, generator=g, dtype=torch.float32)
                       for _ in range(n)])  # fmt: skip
    x, mol = batch[B.POSITIONS], batch[B.BATCH]
    centroid = torch.zeros(n, 3).index_add_(0, mol, x) / len(FORMALDEHYDE_Z)
    mu = STRETCH * (x - centroid[mol])
    batch[B.TARGET_POSITIONS] = x + mu + SIGMA * torch.randn(x.shape, generator=g)
    return with_graph(batch), mu


def test_trained_on_a_gaussian_conditional_it_samples_its_spread_and_beats_a_point_mass():
    """A collapsed (deterministic) sampler fails the spread check and loses to the point mass at the true mean on
    the energy score; a sampler too wide fails the spread check. Seeded; ~5 s on one core."""
    torch.manual_seed(0)
    model = build_model("diffmd_stochastic", {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ffn": 32, "dropout": 0.0,
                                              "bond_check": False, "ema_decay": None})  # fmt: skip
    g = torch.Generator().manual_seed(1)
    batches = [gaussian_pairs(64, g)[0] for _ in range(8)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(400):
        opt.zero_grad()
        model.loss(batches[step % 8]).backward()
        opt.step()
    model.eval()
    n_mol, k, n_atoms = 4, 48, len(FORMALDEHYDE_Z)
    test, mu = gaussian_pairs(n_mol, torch.Generator().manual_seed(9))
    copies = with_graph(B.inputs_only(B.collate(
        [{key: v[test[B.BATCH] == i] for key, v in test.items() if key in (B.POSITIONS, B.VELOCITIES,
          B.ATOMIC_NUMBERS)} for i in range(n_mol) for _ in range(k)])))  # fmt: skip
    torch.manual_seed(3)
    dx = model.sample_displacement(copies).reshape(n_mol, k, n_atoms, 3).detach()
    mu = mu.reshape(n_mol, 1, n_atoms, 3)
    spread = float(dx.std(dim=1).mean()) / SIGMA
    bias = float((dx.mean(dim=1, keepdim=True) - mu).abs().mean()) / SIGMA
    print(f"spread {spread:.3f} x sigma, bias {bias:.3f} x sigma")
    assert 0.75 < spread < 1.25, f"sample spread {spread:.2f} x the true one"
    assert bias < 0.3, f"sample mean off the true mean by {bias:.2f} x the spread"
    rng = np.random.default_rng(0)
    es_model, es_point, es_ideal = [], [], []
    for i in range(n_mol):
        truth = (mu[i].numpy() + SIGMA * rng.standard_normal((256, n_atoms, 3))).reshape(256, -1)
        ideal = (mu[i].numpy() + SIGMA * rng.standard_normal((k, n_atoms, 3))).reshape(k, -1)
        es_model.append(P.energy_score(dx[i].reshape(k, -1).numpy(), truth))
        es_point.append(P.energy_score(mu[i].reshape(1, -1).numpy(), truth))
        es_ideal.append(P.energy_score(ideal, truth))
    print(f"energy score: model {np.mean(es_model):.4f}, point mass at the true mean {np.mean(es_point):.4f}, "
          f"ideal sampler {np.mean(es_ideal):.4f}")
    assert np.mean(es_model) < 0.85 * np.mean(es_point), (es_model, es_point)
    assert np.mean(es_model) < 1.1 * np.mean(es_ideal), (es_model, es_ideal)


def test_its_loss_starts_at_unit_scale_on_real_frames():
    """GFN2-xTB ethanol at a 10 fs stride: the displacement scale is the pairs' RMS displacement (the first batch's),
    and the untrained model's noise-prediction loss is O(1) with gradients Adam can use (the engine's loss_scale is
    not used: the diffusion runs on dx / s)."""
    from pathlib import Path

    from diffmd.graph import bonded_graph

    with np.load(Path(__file__).parent / "data" / "xtb_ethanol_500K_100frames.npz") as d:
        x, numbers = torch.as_tensor(d["positions"]), torch.as_tensor(d["atomic_numbers"], dtype=torch.long)
    graph = bonded_graph(x[0].numpy(), numbers.numpy())
    k = 20
    samples = [{B.POSITIONS: x[t], B.VELOCITIES: x[t] - x[t - 1], B.TARGET_POSITIONS: x[t + k],
                B.ATOMIC_NUMBERS: numbers, B.BOND_INDEX: torch.as_tensor(graph["bond_index"])}
               for t in range(1, x.shape[0] - k, 5)]  # fmt: skip
    batch = with_graph(B.collate(samples))
    torch.manual_seed(0)
    model = build_model("diffmd_stochastic", {"n_layers": 2, "n_heads": 4, "d_model": 32, "d_ffn": 64,
                                              "dropout": 0.0}).double()  # fmt: skip
    dx = batch[B.TARGET_POSITIONS] - batch[B.POSITIONS]
    torch.manual_seed(1)
    loss = model.loss(batch)
    loss.backward()
    assert float(model.dx_scale) == pytest.approx(float(dx.pow(2).mean().sqrt()))
    assert 0.2 < float(loss.detach()) < 3.0
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    assert float((g[g != 0].abs() < 1e-8).double().mean()) < 0.05
