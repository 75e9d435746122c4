"""SCFNN (Gao and Remsing, Nat. Commun. 2022; public code andy90/SCFNN) as a trajectory predictor.

SCFNN was built for liquid water: Behler-Parrinello symmetry functions in per-atom local frames
feed networks that predict forces, plus a *field-response* part (Wannier-centre response to an
electric field, iterated to self-consistency). For an isolated neutral molecule with no applied
field the response part has nothing to act on (no field, no periodic polarisation), so it is left
out; what remains is adapted faithfully:

1. per-atom local frame from the two nearest atoms of the same molecule (Gram-Schmidt):
   e1 = (x_j1 - x_i)/|.|, e2 = the part of (x_j2 - x_i) orthogonal to e1, normalised, e3 = e1 x e2.
   Degenerate cases: if j2 is collinear with e1 the third-nearest atom is used; if that fails too
   (linear molecule, or fewer than three atoms) e2 = e3 = 0, so only the e1 component is predicted;
2. invariant descriptors: Behler-Parrinello G2 (radial, Gaussian shells) and G4 (angular,
   zeta in {1, 4}, lambda = +-1), resolved by the neighbours' species (Behler 2011, Eqs. 6 and 9),
   with the cosine cutoff f_c(r) = (cos(pi r / r_c) + 1) / 2, plus the atom's own species one-hot;
3. an MLP maps the descriptors to the acceleration's components (a1, a2, a3) in the local frame,
   rotated back: a = accel_scale * (a1 e1 + a2 e2 + a3 e3) (Å/step²);
4. a Verlet step x(t+1) = 2 x(t) - x(t-1) + a(t) with x(t-1) = x(t) - v(t).

Training (:meth:`SCFNN.loss`) fits a(t) to the finite-difference acceleration
x(t+1) - 2 x(t) + x(t-1) from positions only; numerically this MSE equals the MSE of x(t+1).
The frame uses the right-handed e3 = e1 x e2, so the model is SO(3)- (not O(3)-) equivariant:
a reflection flips e3 relative to the reflected frame. Translation- and permutation-equivariant.
No bonded graph is used: SCFNN has its own all-pairs neighbour list within each molecule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from baselines.common import mlp, require
from diffmd import batch as B
from diffmd.graph import complete_pairs, full_edge_index, scatter_sum
from diffmd.registry import TrajectoryModel, register_model

SPECIES = (1, 6, 7, 8)  # H, C, N, O; any other element shares one extra species channel
N_SPECIES = len(SPECIES) + 1
PAIRS = [(a, b) for a in range(N_SPECIES) for b in range(a, N_SPECIES)]
G4_PARAMS = ((1.0, 1.0), (1.0, -1.0), (4.0, 1.0), (4.0, -1.0))  # (zeta, lambda)


def species_index(z: torch.Tensor) -> torch.Tensor:
    """Atomic numbers (n,) -> species channel (n,) in [0, N_SPECIES)."""
    out = torch.full_like(z, len(SPECIES))
    for k, zk in enumerate(SPECIES):  # selects, not boolean-mask writes (those read the device)
        out = torch.where(z == zk, torch.full_like(z, k), out)
    return out


def triplets(edge_index: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of edges (i, j), (i, k) with j != k sharing the receiver i: two (T,) edge-index tensors."""
    i = edge_index[0]
    deg = torch.bincount(i, minlength=n_atoms)
    start = torch.cumsum(deg, 0) - deg
    order = torch.argsort(i, stable=True)
    reps = deg[i[order]]
    e1 = torch.repeat_interleave(order, reps)
    first = torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
    e2 = order[start[i[e1]] + torch.arange(len(e1), device=i.device) - first]
    keep = e1 != e2
    return e1[keep], e2[keep]


def triplet_atoms(n_atoms: int) -> np.ndarray:
    """The triplets of one molecule as atoms (3, T): receiver i and neighbours j != k (i != j, i != k), in the
    order :func:`triplets` gives them on its complete graph, so a batch's triplets are its molecules' in turn."""
    edges = torch.as_tensor(complete_pairs(n_atoms))
    a, b = triplets(edges, n_atoms)
    return torch.stack([edges[0][a], edges[1][a], edges[1][b]]).numpy()


def batch_triplet_atoms(edge_index: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """:func:`triplet_atoms` of a whole batch from its complete graph (host reads: the batch builders give it)."""
    a, b = triplets(edge_index, n_atoms)
    return torch.stack([edge_index[0][a], edge_index[1][a], edge_index[1][b]])


def cosine_cutoff(r: torch.Tensor, r_c: float) -> torch.Tensor:
    return torch.where(r < r_c, 0.5 * (torch.cos(math.pi * r / r_c) + 1.0), torch.zeros_like(r))


def nearest_ranks(edge_index: torch.Tensor, dist: torch.Tensor, n_atoms: int, k: int) -> torch.Tensor:
    """Neighbour of each atom at distance rank 0..k-1: (n_atoms, k) atom indices, -1 where missing."""
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(edge_index[0][order], stable=True)]
    recv = edge_index[0][order]
    deg = torch.bincount(recv, minlength=n_atoms)
    rank = torch.arange(len(order), device=dist.device) - (torch.cumsum(deg, 0) - deg)[recv]
    # ranks >= k go to a spare column k, dropped after: no boolean mask, so no host read of the device
    out = torch.full((n_atoms, k + 1), -1, dtype=torch.long, device=dist.device)
    out[recv, rank.clamp(max=k)] = edge_index[1][order]
    return out[:, :k]


def local_frames(pos: torch.Tensor, near: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Frames (n, 3, 3), rows e1, e2, e3, from the nearest atoms ``near`` (n, 3) (see module docstring)."""
    have = near >= 0
    rel = torch.where(
        have[..., None], pos[near.clamp_min(0)] - pos[:, None, :], torch.zeros_like(pos)[:, None]
    )
    e1 = rel[:, 0] / rel[:, 0].norm(dim=1, keepdim=True).clamp_min(eps)
    e2 = torch.zeros_like(e1)
    for c in (2, 1):  # prefer the second-nearest atom; fall back to the third
        u = rel[:, c] - (rel[:, c] * e1).sum(1, keepdim=True) * e1
        norm = u.norm(dim=1, keepdim=True)
        ok = have[:, c : c + 1] & (norm > eps * rel[:, c].norm(dim=1, keepdim=True).clamp_min(eps))
        e2 = torch.where(ok, u / norm.clamp_min(eps), e2)
    e3 = torch.cross(e1, e2, dim=1)
    return torch.stack([e1, e2, e3], dim=1)


class SymmetryFunctions(nn.Module):
    """Behler-Parrinello G2 and G4 descriptors, species-resolved: (n_atoms, n_features), invariant."""

    def __init__(self, r_cut: float, n_radial: int, eta_angular: float) -> None:
        super().__init__()
        self.r_cut, self.eta_a = r_cut, eta_angular
        self.register_buffer("mu", torch.linspace(0.8, r_cut - 0.5, n_radial), persistent=False)
        self.eta_r = 1.0 / (2.0 * (float(self.mu[1] - self.mu[0]) if n_radial > 1 else 1.0) ** 2)
        self.dim = N_SPECIES * n_radial + len(PAIRS) * len(G4_PARAMS) + N_SPECIES

    def forward(self, pos: torch.Tensor, spec: torch.Tensor, edge_index: torch.Tensor,
                trip: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """``edge_index`` (2, E) the complete graph, ``trip`` (3, T) the triplets as atoms (i, j, k)."""
        n = pos.shape[0]
        i, j = edge_index
        vec = pos[j] - pos[i]
        r = vec.norm(dim=1)
        fc = cosine_cutoff(r, self.r_cut)
        g2 = torch.exp(-self.eta_r * (r[:, None] - self.mu.to(r.dtype)) ** 2) * fc[:, None]  # (E, R)
        g2 = scatter_sum(g2, i * N_SPECIES + spec[j], n * N_SPECIES)  # (n * species, R)
        ti, tj, k = trip
        v_ij, v_ik = pos[tj] - pos[ti], pos[k] - pos[ti]
        r_ij, r_ik = v_ij.norm(dim=1), v_ik.norm(dim=1)
        r_jk = (pos[tj] - pos[k]).norm(dim=1)
        cos = (v_ij * v_ik).sum(1) / (r_ij * r_ik)
        radial = torch.exp(-self.eta_a * (r_ij**2 + r_ik**2 + r_jk**2))
        radial = radial * cosine_cutoff(r_ij, self.r_cut) * cosine_cutoff(r_ik, self.r_cut) * cosine_cutoff(
            r_jk, self.r_cut)  # fmt: skip
        terms = torch.stack(
            [2 ** (1 - z) * (1 + lam * cos) ** z * radial for z, lam in G4_PARAMS], dim=1
        )  # (T, 4)
        sj, sk = spec[tj], spec[k]
        lo, hi = torch.minimum(sj, sk), torch.maximum(sj, sk)
        pair = lo * N_SPECIES - lo * (lo - 1) // 2 + (hi - lo)  # index into PAIRS
        g4 = scatter_sum(terms, ti * len(PAIRS) + pair, n * len(PAIRS))  # (n * pairs, 4)
        # one-hot by comparison (F.one_hot checks its range on the host)
        own = (spec[:, None] == torch.arange(N_SPECIES, device=spec.device)).to(r.dtype)
        return torch.cat([g2.reshape(n, -1), 0.5 * g4.reshape(n, -1), own], dim=1)


@register_model("scfnn")
class SCFNN(TrajectoryModel):
    """SCFNN force part as a Verlet integrator; ``forward(batch)`` -> x(t+1) (n_atoms, 3) Å."""

    symmetry = "SO3"  # right-handed local frames e3 = e1 x e2

    def __init__(
        self,
        n_layers: int = 4,
        hidden: int = 64,
        r_cut: float = 6.0,
        n_radial: int = 8,
        eta_angular: float = 0.05,
        accel_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        if n_layers < 1 or hidden < 1 or r_cut <= 0 or accel_scale <= 0:
            raise ValueError("scfnn: n_layers, hidden, r_cut and accel_scale must be positive")
        self.descriptors = SymmetryFunctions(r_cut, n_radial, eta_angular)
        self.net = mlp([self.descriptors.dim] + [hidden] * n_layers + [3])
        self.accel_scale = accel_scale

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """The complete graph and the triplets of one molecule, built once by the batch builders."""
        n = len(numbers)
        return {"complete": complete_pairs(n), "triplets": triplet_atoms(n)}

    def _graph(self, batch: B.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's complete graph and triplets (prebuilt by the batch builders; else built here)."""
        edges = B.structure(batch, "complete", lambda b: full_edge_index(b[B.NUM_ATOMS]))
        trip = B.structure(batch, "triplets", lambda b: batch_triplet_atoms(edges, b[B.POSITIONS].shape[0]))
        return edges, trip

    def acceleration(self, batch: B.Batch) -> torch.Tensor:
        """a(t) (n_atoms, 3) Å/step² from positions only (Verlet acceleration, one model step)."""
        require(batch, (B.POSITIONS, B.ATOMIC_NUMBERS, B.NUM_ATOMS), "scfnn")
        pos = batch[B.POSITIONS]
        edges, trip = self._graph(batch)
        spec = species_index(batch[B.ATOMIC_NUMBERS])
        feats = self.descriptors(pos, spec, edges, trip)
        near = nearest_ranks(edges, (pos[edges[1]] - pos[edges[0]]).norm(dim=1), pos.shape[0], 3)
        frames = local_frames(pos, near)  # (n, 3, 3), rows e1, e2, e3
        coeff = self.net(feats) * self.accel_scale  # (n, 3), local-frame components
        return torch.einsum("nk,nkd->nd", coeff, frames)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        require(batch, (B.VELOCITIES,), "scfnn")
        x = batch[B.POSITIONS]
        x_prev = x - batch[B.VELOCITIES]
        return 2.0 * x - x_prev + self.acceleration(batch)

    def loss(self, batch: B.Batch) -> torch.Tensor:
        """MSE of a(t) against the finite difference x(t+1) - 2 x(t) + x(t-1), in units of
        :attr:`loss_scale` squared (dimensionless; a zero acceleration scores about 1)."""
        x = batch[B.POSITIONS]
        target = batch[B.TARGET_POSITIONS] - 2.0 * x + (x - batch[B.VELOCITIES])
        return (((self.acceleration(batch) - target) / self.loss_scale) ** 2).mean()
