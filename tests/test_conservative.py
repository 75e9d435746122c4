"""The energy-conserving head (diffmd/models/conservative.py): its step is velocity Verlet on -∇E of its own
network, so with its own force field a rollout conserves E + K to the integrator's order (no drift, fluctuation
~dt²), conserves linear and angular momentum, and the bond prior is a harmonic well at r0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd.elements import covalent_radius, masses
from diffmd.registry import build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z, make_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ethanol(seed: int = 0) -> B.Batch:
    return B.collate([make_sample(ETHANOL_X, ETHANOL_Z, torch.Generator().manual_seed(seed))])


SIZES = {"egnn_energy": {"hidden": 16, "layers": 2}, "diffmd_energy": {"n_layers": 2, "d_model": 16, "d_ffn": 32}}


def tiny(bond_prior: bool = True, seed: int = 0, name: str = "egnn_energy") -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, {**SIZES[name], "bond_prior": bond_prior}).double().eval()
    with torch.no_grad():  # a random network whose forces matter beside the prior's
        model.out[-1].weight.mul_(30.0)
    return model


def nve(model, batch: B.Batch, s: float, time: float) -> np.ndarray:
    """E + K (per unit of the time step², i.e. in physical units at dt = s) along a rollout of ``time / s`` steps of
    the model's own Verlet step with its energy scaled by s² (the same dynamics at time step s)."""
    energy = model.energy
    model.energy = lambda b, x=None: s**2 * energy(b, x)
    m = torch.as_tensor(masses(ETHANOL_Z))[:, None]
    x = batch[B.POSITIONS]
    v = s * batch[B.VELOCITIES]
    frames = [x - v, x]
    for _ in range(int(round(time / s)) + 1):
        prev, cur = frames[-2], frames[-1]
        vel = cur - prev
        frames.append(model.predict({**batch, B.POSITIONS: cur, B.VELOCITIES: vel, B.ACCELERATIONS: vel}))
    del model.energy
    out = []
    for t in range(1, len(frames) - 1):
        vc = (frames[t + 1] - frames[t - 1]) / (2 * s)
        e = float(energy({**batch, B.POSITIONS: frames[t]}).sum().detach())
        out.append(e + 0.5 * float((m * vc**2).sum()))
    return np.asarray(out)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_nve_conserves_energy_to_the_integrators_order(name):
    model, batch = tiny(name=name), ethanol()
    h1 = nve(model, batch, 1.0, 200.0)
    h2 = nve(model, batch, 0.5, 200.0)
    span1, span2 = np.ptp(h1), np.ptp(h2)
    kinetic = 0.5 * float((torch.as_tensor(masses(ETHANOL_Z))[:, None] * batch[B.VELOCITIES] ** 2).sum())
    assert span1 < 0.05 * (np.abs(h1).max() + kinetic)  # conserved, not merely bounded
    assert 3.0 < span1 / span2 < 5.0, (span1, span2)  # fluctuation ~ dt² (Verlet's order)
    # no drift: the second half's mean equals the first half's to within the fluctuation
    assert abs(h2[len(h2) // 2 :].mean() - h2[: len(h2) // 2].mean()) < 0.2 * span2


@pytest.mark.parametrize("name", sorted(SIZES))
def test_the_step_is_velocity_verlet_on_minus_the_energy_gradient(name):
    model, batch = tiny(name=name), ethanol()
    x = batch[B.POSITIONS]
    step = model.predict(batch) - x - batch[B.VELOCITIES]
    m = torch.as_tensor(masses(ETHANOL_Z))[:, None]
    # central differences of E
    grad = torch.zeros_like(x)
    h = 1e-5
    for i in range(x.shape[0]):
        for k in range(3):
            dx = torch.zeros_like(x)
            dx[i, k] = h
            grad[i, k] = (model.energy(batch, x + dx) - model.energy(batch, x - dx)).sum() / (2 * h)
    assert torch.allclose(step, -grad / m, rtol=1e-6, atol=1e-12)
    # invariant energy: the forces sum to zero and exert no torque, so the step conserves momentum
    force = step * m
    assert float(force.sum(0).abs().max()) < 1e-12 * float(force.abs().max()) * len(force)
    torque = torch.linalg.cross(x - x.mean(0), force).sum(0)
    assert float(torque.abs().max()) < 1e-11 * float(force.abs().max()) * len(force)


def test_bond_prior_is_half_k_stretch_squared_over_the_covalent_bonds():
    model, batch = tiny(), ethanol()
    x = batch[B.POSITIONS]
    src, dst = batch[B.BOND_INDEX]
    z = batch[B.ATOMIC_NUMBERS].tolist()
    by_hand = 0.0
    for i, j in zip(src.tolist(), dst.tolist()):
        if i < j:  # each bond once (both directions are listed)
            r0 = covalent_radius(z[i]) + covalent_radius(z[j])
            by_hand += 0.5 * model.bond_k * (float((x[i] - x[j]).norm()) - r0) ** 2
    assert float(model.prior_energy(batch, x).sum()) == pytest.approx(by_hand, rel=1e-6)
    no_prior = tiny(bond_prior=False)
    assert not any("radius" in name for name, _ in no_prior.named_parameters())
    assert float(no_prior.prior_energy(batch, x).abs().sum()) == 0.0


def test_training_needs_gradients_through_the_force():
    model = tiny()
    model.train()
    batch = ethanol()
    loss = model.loss(batch)
    loss.backward()
    grads = [p.grad for p in model.layers.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)  # the network learns through -∇E
    assert model.compile_targets() == []  # a double backward: left eager


def test_repulsion_is_zero_at_bond_lengths_and_pushes_a_clash_apart():
    torch.manual_seed(0)
    model = build_model("egnn_energy", {**SIZES["egnn_energy"], "repulsion": True, "repulsion_k": 0.5}).double()
    batch = ethanol()
    x = batch[B.POSITIONS]
    assert float(model.repulsion_energy(batch, x).abs().sum()) == 0.0  # every pair beyond 0.75 (R_i + R_j)
    z = batch[B.ATOMIC_NUMBERS].tolist()
    i, j = 0, 1  # move atom 1 onto atom 0 until 0.3 Å apart
    u = (x[j] - x[i]) / (x[j] - x[i]).norm()
    close = x.clone()
    close[j] = x[i] + 0.3 * u
    wall = 0.75 * (covalent_radius(z[i]) + covalent_radius(z[j]))
    by_hand = 0.5 * 0.5 * (wall - 0.3) ** 2
    for k in range(len(z)):  # other pairs the move brought inside their wall count too
        if k not in (i, j):
            r = float((close[j] - close[k]).norm())
            by_hand += 0.5 * 0.5 * max(0.0, 0.75 * (covalent_radius(z[j]) + covalent_radius(z[k])) - r) ** 2
    assert float(model.repulsion_energy(batch, close).sum()) == pytest.approx(by_hand, rel=1e-9)
    leaf = close.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.repulsion_energy(batch, leaf).sum(), leaf)
    assert float((-grad[j]) @ u) > 0 and float((-grad[i]) @ u) < 0  # the force pushes the two apart
    off = build_model("egnn_energy", SIZES["egnn_energy"]).double()
    assert float(off.repulsion_energy(batch, close).abs().sum()) == 0.0  # off by default
    with pytest.raises(ValueError, match="repulsion_k"):
        build_model("egnn_energy", {"repulsion_k": 0.0})
