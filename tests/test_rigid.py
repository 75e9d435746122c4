"""Rigid-body motion of a step (diffmd/engine/rigid.py) and its removal in the rollout (``rollout.rigid_motion``):
an internal motion is left alone, a translation and a rotation are removed, both are recorded, no host read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_pairs import toy_md17

from diffmd import batch as B
from diffmd.data.pairs import load_split, split_segments
from diffmd.elements import masses
from diffmd.engine.rigid import conserves_momentum, remove_rigid_motion
from diffmd.engine.rollout import rollout_copies
from diffmd.profiling import count
from diffmd.registry import TrajectoryModel, build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z, FORMALDEHYDE_X, FORMALDEHYDE_Z

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_molecules():
    x = torch.as_tensor(np.concatenate([ETHANOL_X, FORMALDEHYDE_X]), dtype=torch.float64)
    z = np.concatenate([ETHANOL_Z, FORMALDEHYDE_Z])
    mol = torch.as_tensor(np.repeat([0, 1], [len(ETHANOL_Z), len(FORMALDEHYDE_Z)]))
    return x, torch.as_tensor(masses(z)), mol


def internal_motion(x: torch.Tensor, m: torch.Tensor, mol: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """d_i = F_i / m_i for random central pair forces within each molecule (Newton's third law): zero linear and
    angular momentum by construction, without the code under test."""
    g = torch.Generator().manual_seed(seed)
    f = torch.zeros_like(x)
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            if mol[i] == mol[j]:
                pair = float(torch.randn((), generator=g, dtype=torch.float64)) * (x[i] - x[j])
                f[i] += pair
                f[j] -= pair
    return 1e-3 * f / m[:, None]


def test_an_internal_motion_is_unchanged_and_records_no_rigid_part():
    x, m, mol = two_molecules()
    d = internal_motion(x, m, mol)
    out, parts = remove_rigid_motion(x, x + d, m, mol, 2)
    assert torch.allclose(out, x + d, atol=1e-15, rtol=0)
    scale = float(d.abs().max())  # round-off of sums of that size only
    assert float(parts.com_velocity.abs().max()) < 1e-13 * scale
    assert float(parts.angular_momentum.abs().max()) < 1e-12 * scale
    assert float((parts.ke_rigid / parts.ke_total).max()) < 1e-24


def test_a_translation_and_an_angular_velocity_are_removed_exactly():
    x, m, mol = two_molecules()
    d = internal_motion(x, m, mol)
    shift = torch.tensor([[1e-3, -2e-3, 5e-4], [0.0, 3e-3, 0.0]], dtype=torch.float64)
    omega = torch.tensor([[2e-3, 1e-3, -1e-3], [-1e-3, 0.0, 4e-3]], dtype=torch.float64)
    centre = torch.stack([(m[mol == k, None] * x[mol == k]).sum(0) / m[mol == k].sum() for k in (0, 1)])
    rigid = shift[mol] + torch.linalg.cross(omega[mol], x - centre[mol])
    out, parts = remove_rigid_motion(x, x + d + rigid, m, mol, 2)
    # exact up to the inertia floor's relative 1e-9 (diffmd.engine.rigid.INERTIA_FLOOR)
    assert torch.allclose(out, x + d, atol=1e-11, rtol=0)
    assert torch.allclose(parts.com_velocity, shift, atol=1e-15)
    assert torch.allclose(parts.omega, omega, atol=1e-11)
    assert float((parts.ke_rigid / parts.ke_total).min()) > 0.5


def test_a_finite_rotation_is_removed_to_second_order():
    x, m, mol = two_molecules()
    eth = mol == 0
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.linalg.cross(axis.expand(3, 3), torch.eye(3, dtype=torch.float64)).T  # k @ r = axis x r
    theta = 1e-3  # rad per step (a fast molecular rotation at 0.5 fs steps)
    small = torch.eye(3, dtype=torch.float64) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k  # Rodrigues
    centre = x[eth].mean(0)
    nxt = x.clone()
    nxt[eth] = (x[eth] - centre) @ small.T + centre + torch.tensor([1e-3, 0.0, 0.0], dtype=torch.float64)
    out, parts = remove_rigid_motion(x, nxt, m, mol, 2)
    moved = float((nxt - x)[eth].norm(dim=-1).max())
    left = float((out - x)[eth].norm(dim=-1).max())
    assert moved > 1e-3 and left < 5e-3 * moved  # what stays is the rotation's O(angle²) centripetal part


def test_momentum_conserving_models_are_the_ones_not_trained_by_the_engine():
    assert not conserves_momentum(build_model("egnn", {"hidden": 8, "layers": 1}))
    assert conserves_momentum(build_model("constant_velocity"))
    assert conserves_momentum(build_model("egnn_energy", {"hidden": 8, "layers": 1}))  # declared: forces of an E(x)


class Drifting(TrajectoryModel):
    """Constant velocity plus a spin and a push: a step that creates momentum."""

    conserves_momentum = False  # not registered (no card): declared here

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch: B.Batch) -> torch.Tensor:
        x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
        centre = torch.zeros((int(batch[B.NUM_ATOMS].shape[0]), 3), dtype=x.dtype).index_add_(0, batch[B.BATCH], x)
        centre = centre / batch[B.NUM_ATOMS][:, None].to(x.dtype)
        spin = torch.tensor([0.0, 0.0, 2e-3], dtype=x.dtype)
        return x + v + torch.linalg.cross(spin.expand_as(x), x - centre[batch[B.BATCH]]) + 1e-3


def test_the_rollout_records_the_rigid_motion_and_removes_it_when_asked(tmp_path):
    seg = split_segments(load_split(toy_md17(tmp_path)), "test")[0]
    model = Drifting()
    starts = np.array([seg.start, seg.start + 20])
    keep = rollout_copies(model, [seg, seg], starts, 30)
    removed = rollout_copies(model, [seg, seg], starts, 30, rigid="remove")
    assert keep.rigid["ke_share"].min() > 0.5 and (keep.rigid["removed"] == 0.0).all()
    assert (removed.rigid["removed"] == 1.0).all()
    # measured on the model's own step, before any removal: one push per step once removed, pushes piling up if not
    push = 1e-3 * np.sqrt(3)
    assert removed.rigid["com_speed"] == pytest.approx(np.full(2, push), rel=0.5)  # + the toy data's own drift
    assert keep.rigid["com_speed"].min() > 10 * push
    assert keep.stats == removed.stats == {}  # the model's own counters only
    w = masses(seg.atomic_numbers)[:, None] / masses(seg.atomic_numbers).sum()
    drift = [np.abs((w * (r.positions[0][-1] - r.positions[0][1])).sum(0)).max() for r in (keep, removed)]
    assert drift[0] > 0.1 and drift[1] < 1e-5  # the centre of mass stands still once its velocity is removed
    with pytest.raises(ValueError, match="rollout.rigid_motion"):
        rollout_copies(model, [seg], starts[:1], 3, rigid="strip")


def test_removal_reads_nothing_from_the_device():
    x, m, mol = two_molecules()
    d = internal_motion(x, m, mol)
    assert count(lambda: remove_rigid_motion(x, x + d, m, mol, 2)).syncs == 0
