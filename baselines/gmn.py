"""GMN: Graph Mechanics Network (Huang, Han, Rong, Xu, Sun, Huang, ICLR 2022), for molecules.

Generalized coordinates, the DiffMD paper's choice for molecules: bonds whose two atoms share no
common neighbour become *sticks*, chosen as a matching (no atom in two sticks) by
:func:`choose_sticks`; all other atoms are isolated particles; hydrogens are kept. The public GMN
code hard-codes the stick pairs per molecule and drops hydrogens; here the sticks are computed
from the batch's ``BOND_INDEX`` (bonds of the first frame) for any molecule and cached per
molecule topology.

One layer (GMN, Sec. 3, Eqs. 6-12), with unit masses as in the public code:

* EGNN-style messages on the 2-hop graph: m_ij = phi_e(h_i, h_j, |x_ij|^2, e_ij),
  f_i = mean_j x_ij phi_x(m_ij) (an equivariant per-atom "force"), h_i += phi_h(h_i, sum_j m_ij);
* isolated atom: v_i <- phi_v(h_i) v_i + f_i, x_i <- x_i + v_i;
* stick (p, q), centre c, half-vector r = x_p - c: generalized accelerations
  a_c = (f_p + f_q) / 2 and alpha = sum_k r_k x f_k / sum_k |r_k|^2 (torque over inertia), angular
  velocity w = sum_k r_k x v_k / sum_k |r_k|^2; v_c <- phi_s(h_p + h_q) v_c + a_c,
  w <- phi_w(h_p + h_q) w + alpha, c <- c + v_c, r <- Rot(w) r (Rodrigues), x_{p,q} = c +- r,
  v_{p,q} = v_c +- w x r (the forward kinematics). Rot is a rotation, so |x_p - x_q| is kept by
  construction in every layer.

Cross products make w and alpha pseudovectors; Rot(w) r is then a true vector, so the model is
E(3)-equivariant (reflections included) and permutation-equivariant (the stick choice depends on
the bond graph only, through permutation-invariant keys). Output: x(t+1) (n_atoms, 3) Å.

Options (issue 13; measured effects in docs/reproduction_notes_baselines.md):

* ``sticks``: ``"bonds"`` (default, the paper's choice above), ``"heavy"`` (sticks only among bonds
  between heavy atoms, Z > 1: X-H bonds stay free) or ``"none"`` (every atom isolated: GMN reduces
  to an EGNN-like network with per-layer velocity updates). At 0.5 fs MD17 bond lengths change by
  0.006-0.007 Å per step, so rigid X-H sticks cost more than constant velocity's error: the
  table's row keeps ``bonds`` (faithful), the study reports a stick-free variant beside it.
* ``unit_inputs`` (default True; False is the public code): phi_e reads a Gaussian radial basis of
  |x_ij| (:class:`~diffmd.models.egnn.GaussianRBF`) instead of |x_ij|² in Å², and the node input the
  speed in units of :data:`~diffmd.models.egnn.SPEED_UNIT` instead of Å/step.
* ``velocity_residual`` (default True; False is the public code): each layer is a sub-step of
  1/n_layers of the model step, with residual velocity updates v <- v + phi_v(h) v + f (phi_v,
  phi_s, phi_w starting near zero, xavier gain 1e-3) and x <- x + v / n_layers (sticks: c <- c +
  v_c / n_layers, r <- Rot(w / n_layers) r), so an untrained GMN is a constant-velocity step (with
  rigid sticks) and the layers learn the correction. The public code moves x by the full new
  velocity in every layer, with v <- phi_v(h) v + f from a random phi_v.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from baselines.common import EDGE_SCALARS, AtomEmbedding, edge_scalars, mlp, require, scatter_mean
from diffmd import batch as B
from diffmd.graph import scatter_sum
from diffmd.models.egnn import SPEED_UNIT, GaussianRBF, small_last_layer
from diffmd.registry import TrajectoryModel, register_model


def _wl_colours(z: np.ndarray, nbrs: list[set[int]], rounds: int = 3) -> np.ndarray:
    """Weisfeiler-Lehman colours of the atoms (ids from sorted signatures, so permutation-invariant)."""
    col = np.asarray(z, dtype=np.int64)
    for _ in range(rounds):
        sigs = [(int(col[i]),) + tuple(sorted(int(col[j]) for j in nbrs[i])) for i in range(len(z))]
        ids = {s: k for k, s in enumerate(sorted(set(sigs)))}
        col = np.array([ids[s] for s in sigs], dtype=np.int64)
    return col


def choose_sticks(z: np.ndarray, bond_index: np.ndarray) -> np.ndarray:
    """Sticks of one molecule: (2, n_sticks) local atom pairs, a matching of the bond graph.

    Candidates are bonds whose atoms share no common bonded neighbour. They are taken greedily
    in the order of the key (deg_i + deg_j, -(Z_i + Z_j), WL colours) where deg counts candidate
    bonds (a min-degree greedy matching, heavy atoms first). Candidates with equal keys are
    symmetry-equivalent; when such bonds compete for one atom none of them is taken, so no
    arbitrary choice makes the result depend on atom order.
    """
    n = len(z)
    pairs = sorted({(min(a, b), max(a, b)) for a, b in np.asarray(bond_index).T.tolist() if a != b})
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for a, b in pairs:
        nbrs[a].add(b)
        nbrs[b].add(a)
    cand = [(a, b) for a, b in pairs if not (nbrs[a] & nbrs[b])]
    deg = np.zeros(n, dtype=np.int64)
    for a, b in cand:
        deg[a] += 1
        deg[b] += 1
    col = _wl_colours(z, nbrs)

    def key(p: tuple[int, int]) -> tuple[int, ...]:
        a, b = p
        return (int(deg[a] + deg[b]), -int(z[a] + z[b])) + tuple(sorted((int(col[a]), int(col[b]))))

    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for p in cand:
        groups.setdefault(key(p), []).append(p)
    used = np.zeros(n, dtype=bool)
    sticks: list[tuple[int, int]] = []
    for k in sorted(groups):
        free = [(a, b) for a, b in groups[k] if not used[a] and not used[b]]
        count = np.bincount(np.array(free, dtype=np.int64).reshape(-1), minlength=n) if free else None
        for a, b in free:
            if count[a] == 1 and count[b] == 1:
                sticks.append((a, b))
                used[a] = used[b] = True
    return np.array(sticks, dtype=np.int64).reshape(-1, 2).T


#: The values of GMN's ``sticks`` option (module docstring).
STICK_MODES = ("bonds", "heavy", "none")


def stick_bonds(z: np.ndarray, bond_index: np.ndarray, mode: str) -> np.ndarray:
    """The bonds that may become sticks under ``mode`` (one of :data:`STICK_MODES`): (2, n) local pairs."""
    bond_index = np.asarray(bond_index).reshape(2, -1)
    if mode == "bonds":
        return bond_index
    if mode == "heavy":
        z = np.asarray(z)
        return bond_index[:, (z[bond_index[0]] > 1) & (z[bond_index[1]] > 1)]
    if mode == "none":
        return bond_index[:, :0]
    raise ValueError(f"gmn: sticks must be one of {', '.join(STICK_MODES)}, got {mode!r}")


def _rotate(w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotate r (S, 3) by the angle |w| about w (S, 3) (w is a rotation vector, rad)."""
    theta2 = (w * w).sum(dim=1, keepdim=True)
    theta = theta2.clamp_min(torch.finfo(w.dtype).tiny).sqrt()
    sinc = torch.sinc(theta / torch.pi)  # sin(theta) / theta
    half = 0.5 * torch.sinc(theta / (2 * torch.pi)) ** 2  # (1 - cos theta) / theta^2
    cross = torch.cross(w, r, dim=1)
    return r * torch.cos(theta) + cross * sinc + w * (w * r).sum(dim=1, keepdim=True) * half


class GMNLayer(nn.Module):
    """One GMN layer on atoms (messages) and objects (isolated atoms, sticks)."""

    def __init__(self, hidden: int, edge_dim: int, rbf: GaussianRBF | None = None, dt: float | None = None) -> None:
        """``rbf``: the distance basis (None: raw |x_ij|²); ``dt``: the sub-step of the residual form (None:
        the public code's full-velocity moves with v <- phi(h) v + f)."""
        super().__init__()
        self.rbf, self.dt = rbf, dt
        radial_dim = rbf.n if rbf is not None else 1
        self.phi_e = mlp([2 * hidden + radial_dim + edge_dim, hidden, hidden], last_act=True)
        self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), small_last_layer(hidden))
        self.phi_h = mlp([2 * hidden, hidden, hidden])

        def gate() -> nn.Module:
            if dt is None:
                return mlp([hidden, hidden, 1])
            return nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), small_last_layer(hidden))

        self.phi_v = gate()  # isolated atoms
        self.phi_s = gate()  # stick centre velocity
        self.phi_w = gate()  # stick angular velocity

    def forward(self, h, x, v, edge_index, e, iso, sticks):  # noqa: ANN001 (shapes in the docstring)
        """h (n, H), x and v (n, 3), edge_index (2, E), e (E, 4), iso (n_iso,), sticks (2, S)."""
        n = x.shape[0]
        i, j = edge_index
        diff = x[i] - x[j]
        d2 = (diff * diff).sum(1, keepdim=True)
        m = self.phi_e(torch.cat([h[i], h[j], self.rbf(d2.sqrt()) if self.rbf is not None else d2, e], dim=1))
        f = scatter_mean(diff * self.phi_x(m), i, n)
        h_new = h + self.phi_h(torch.cat([h, scatter_sum(m, i, n)], dim=1))
        keep, dt = (0.0, 1.0) if self.dt is None else (1.0, self.dt)  # v <- (keep + phi) v + f; x <- x + dt v

        v_iso = (keep + self.phi_v(h[iso])) * v[iso] + f[iso]
        x_iso = x[iso] + dt * v_iso

        p, q = sticks
        c, v_c = 0.5 * (x[p] + x[q]), 0.5 * (v[p] + v[q])
        r = x[p] - c  # x[q] - c = -r
        inertia = 2.0 * (r * r).sum(1, keepdim=True)
        w = (torch.cross(r, v[p], dim=1) - torch.cross(r, v[q], dim=1)) / inertia
        alpha = (torch.cross(r, f[p], dim=1) - torch.cross(r, f[q], dim=1)) / inertia
        hs = h[p] + h[q]
        v_c = (keep + self.phi_s(hs)) * v_c + 0.5 * (f[p] + f[q])
        w = (keep + self.phi_w(hs)) * w + alpha
        c = c + dt * v_c
        r = _rotate(dt * w, r)
        spin = torch.cross(w, r, dim=1)

        idx = torch.cat([iso, p, q])
        x_new = torch.zeros_like(x).index_copy(0, idx, torch.cat([x_iso, c + r, c - r]))
        v_new = torch.zeros_like(v).index_copy(0, idx, torch.cat([v_iso, v_c + spin, v_c - spin]))
        return h_new, x_new, v_new


@register_model("gmn")
class GMN(TrajectoryModel):
    """GMN with sticks from the bond graph; ``forward(batch)`` -> x(t+1) (n_atoms, 3) Å."""

    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same
    param_schema = {"sticks": {"enum": list(STICK_MODES)}}

    def __init__(self, n_layers: int = 4, hidden: int = 64, sticks: str = "bonds", unit_inputs: bool = True,
                 velocity_residual: bool = True, n_rbf: int = 16, r_max: float = 5.0) -> None:  # fmt: skip
        super().__init__()
        if n_layers < 1 or hidden < 1:
            raise ValueError(f"gmn: n_layers and hidden must be >= 1, got {n_layers}, {hidden}")
        if sticks not in STICK_MODES:
            raise ValueError(f"gmn: sticks must be one of {', '.join(STICK_MODES)}, got {sticks!r}")
        self.stick_mode, self.unit_inputs = sticks, unit_inputs
        self.embed = AtomEmbedding(hidden)
        self.h_in = nn.Linear(hidden + 1, hidden)
        rbf = GaussianRBF(n_rbf, r_max) if unit_inputs else None
        dt = 1.0 / n_layers if velocity_residual else None
        self.layers = nn.ModuleList(GMNLayer(hidden, EDGE_SCALARS, rbf, dt) for _ in range(n_layers))
        self._stick_cache: dict[bytes, np.ndarray] = {}

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """One molecule's isolated atoms (n_iso,) and sticks (2, S), local indices, chosen once (the batch
        builders gather them with the batch, so a forward never reads the device to choose them)."""
        z = np.asarray(numbers, dtype=np.int64)
        sticks = choose_sticks(z, stick_bonds(z, np.asarray(graph["bond_index"], dtype=np.int64), self.stick_mode))
        free = np.ones(len(z), dtype=bool)
        free[sticks.reshape(-1)] = False
        return {"gmn_iso": np.nonzero(free)[0].astype(np.int64), "gmn_sticks": sticks.astype(np.int64)}

    def objects(self, batch: B.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(isolated atoms, sticks) of the batch: the batch builders' (built once per molecule), else
        :meth:`sticks` (host reads)."""
        iso = batch.get(B.STRUCTURE + "gmn_iso")
        sticks = batch.get(B.STRUCTURE + "gmn_sticks")
        if iso is None or sticks is None:
            return self.sticks(batch)
        return iso, sticks

    def sticks(self, batch: B.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (isolated atoms (n_iso,), sticks (2, S)) of the batch, per molecule from a cache (reads the
        batch's graph on the host: for batches built by hand)."""
        z = batch[B.ATOMIC_NUMBERS].cpu().numpy()
        bonds = batch[B.BOND_INDEX].cpu().numpy()
        sizes = batch[B.NUM_ATOMS].cpu().numpy()
        starts = np.cumsum(sizes) - sizes
        mol = batch[B.BATCH].cpu().numpy()[bonds[0]] if bonds.size else np.zeros(0, dtype=np.int64)
        order = np.argsort(mol, kind="stable")
        per_mol = np.split(bonds[:, order], np.cumsum(np.bincount(mol, minlength=len(sizes)))[:-1], axis=1)
        out = []
        for k, (s, size) in enumerate(zip(starts, sizes)):
            zk, bk = z[s : s + size], per_mol[k] - s
            key = zk.tobytes() + b"|" + bk.tobytes()
            if key not in self._stick_cache:
                self._stick_cache[key] = choose_sticks(zk, stick_bonds(zk, bk, self.stick_mode))
            out.append(self._stick_cache[key] + s)
        sticks = np.concatenate(out, axis=1) if out else np.zeros((2, 0), dtype=np.int64)
        free = np.ones(len(z), dtype=bool)
        free[sticks.reshape(-1)] = False
        device = batch[B.POSITIONS].device
        return torch.as_tensor(np.nonzero(free)[0], device=device), torch.as_tensor(sticks, device=device)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        require(batch, (B.POSITIONS, B.VELOCITIES, B.EDGE_INDEX, B.EDGE_ATTR, B.BOND_INDEX), "gmn")
        x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
        iso, sticks = self.objects(batch)
        speed = v.norm(dim=1, keepdim=True) / (SPEED_UNIT if self.unit_inputs else 1.0)
        h = self.h_in(torch.cat([self.embed(batch[B.ATOMIC_NUMBERS]), speed], dim=1))
        e = edge_scalars(batch)
        for layer in self.layers:
            h, x, v = layer(h, x, v, batch[B.EDGE_INDEX], e, iso, sticks)
        return x


@register_model("gmn_nosticks")
class GMNNoSticks(GMN):
    """GMN without rigid sticks (``sticks: none`` by default): every atom is an isolated object. The study's
    variant beside the paper's GMN row (issue 13): with 0.5 fs frames, bond lengths change by 0.006-0.007 Å
    per step, so rigid bonds alone put GMN's one-step error above constant velocity's."""

    def __init__(self, n_layers: int = 4, hidden: int = 64, sticks: str = "none", unit_inputs: bool = True,
                 velocity_residual: bool = True, n_rbf: int = 16, r_max: float = 5.0) -> None:  # fmt: skip
        super().__init__(n_layers, hidden, sticks, unit_inputs, velocity_residual, n_rbf, r_max)
