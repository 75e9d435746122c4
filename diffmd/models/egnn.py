"""EGNN with velocities (Satorras, Hoogeboom & Welling, ICML 2021, "E(n) Equivariant Graph Neural
Networks", Eq. 3-7 and the velocity variant Eq. 7), as ``EGNN_vel`` / ``E_GCL_vel`` in the authors'
n-body code (vgsatorras/egnn, ``n_body_system/models/gcl.py``), on the bonded 2-hop graph.

Layer l, for the edge (i, j) (message from j to i, see :mod:`diffmd.graph`)::

    m_ij   = phi_e(h_i, h_j, rho(||x_i - x_j||), a_ij)                       (Eq. 3)
    x_i   <- x_i + C * mean_j (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i         (Eq. 4 / 7)
    h_i   <- h_i + phi_h(h_i, sum_j m_ij)                                    (Eq. 5-6, recurrent)

Node input: an atomic-number embedding and the speed |v_i| (the n-body code's node feature);
edge input ``a_ij``: the graph's edge features [hop, Z_i, Z_j, bond type]. The coordinates start
at x(t). E(3) equivariant (rotations, reflections, translations) and permutation equivariant by
construction.

Two deviations from the public code (issue 13; docs/reproduction_notes_baselines.md has the measured
effect), each a constructor option whose ``False`` gives the original:

* ``unit_inputs`` (default True): rho is a Gaussian radial basis of the distance
  (:class:`GaussianRBF`, ``n_rbf`` centres on [0, ``r_max``] Å, width the spacing) instead of the raw
  ||x_ij||² in Å², and the speed enters in units of :data:`SPEED_UNIT` (0.01 Å/step, the thermal
  speed of a hydrogen at 500 K and 0.5 fs) instead of Å/step (~1e-2, so its input weight had to
  grow 100x). Both are fixed constants, not statistics of the data.
* ``velocity_residual`` (default True): x(t+1) = x_L + v(t), where x_L is the layers' output started
  at x(t), so the layers learn the correction Delta to a constant-velocity step and phi_v's last
  layer starts near zero (xavier gain 1e-3, as phi_x's). The original predicts x_L with the velocity
  term sum_l phi_v^l(h) v, which must learn to sum to 1 from a random start (error ~2x constant
  velocity's at initialisation).
"""

from __future__ import annotations

import torch
from torch import nn

from diffmd import batch as B
from diffmd.graph import scatter_sum
from diffmd.nn import AtomEmbedding
from diffmd.registry import TrajectoryModel, register_model

#: Å per step: the speed unit of the node inputs with ``unit_inputs`` (hydrogen's thermal speed per
#: coordinate, sqrt(kT/m), at 500 K is 0.020 Å/fs, 0.010 Å per 0.5 fs step).
SPEED_UNIT = 0.01


class GaussianRBF(nn.Module):
    """exp(-((d - mu_k) / w)² / 2) for ``n`` centres mu_k evenly on [0, ``r_max``] Å, width w = the spacing.

    (E,) or (E, 1) distances in Å -> (E, n) features in [0, 1]; the centres are a fixed buffer.
    """

    def __init__(self, n: int = 16, r_max: float = 5.0) -> None:
        super().__init__()
        if n < 2 or r_max <= 0:
            raise ValueError(f"GaussianRBF: need n >= 2 and r_max > 0, got n={n}, r_max={r_max}")
        self.register_buffer("centres", torch.linspace(0.0, r_max, n), persistent=False)
        self.width = r_max / (n - 1)
        self.n = n

    def forward(self, d: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d = d.reshape(-1, 1)
        return torch.exp(-0.5 * ((d - self.centres.to(d.dtype)) / self.width) ** 2)


def small_last_layer(hidden: int, gain: float = 0.001) -> nn.Linear:
    """A bias-free Linear(hidden, 1) with xavier gain ``gain``: a gate that starts near zero."""
    last = nn.Linear(hidden, 1, bias=False)
    nn.init.xavier_uniform_(last.weight, gain=gain)
    return last


class EGCLVel(nn.Module):
    """One E_GCL_vel layer (hidden width ``hidden``, ``edge_dim`` edge features, ``radial_dim`` distance
    features: 1 for the raw ||x_ij||², ``rbf.n`` with a radial basis)."""

    def __init__(self, hidden: int, edge_dim: int, coords_weight: float = 1.0, rbf: GaussianRBF | None = None,
                 small_velocity_gate: bool = False) -> None:  # fmt: skip
        super().__init__()
        act = nn.SiLU()
        self.coords_weight = coords_weight
        self.rbf = rbf
        radial_dim = rbf.n if rbf is not None else 1
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden + radial_dim + edge_dim, hidden), act, nn.Linear(hidden, hidden), act
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), act, nn.Linear(hidden, hidden))
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), act, small_last_layer(hidden))
        vel_last = small_last_layer(hidden) if small_velocity_gate else nn.Linear(hidden, 1)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(hidden, hidden), act, vel_last)

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, v: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (n, hidden), ``x`` (n, 3) Å, ``v`` (n, 3) Å/step -> updated (h, x)."""
        row, col = edge_index
        n = h.shape[0]
        diff = x[row] - x[col]
        radial = (diff**2).sum(dim=-1, keepdim=True)
        rho = self.rbf(radial.sqrt()) if self.rbf is not None else radial
        m = self.edge_mlp(torch.cat([h[row], h[col], rho, edge_attr], dim=-1))
        trans = (diff * self.coord_mlp(m)).clamp(-100.0, 100.0)
        count = scatter_sum(torch.ones_like(radial), row, n).clamp_min(1.0)
        x = x + self.coords_weight * scatter_sum(trans, row, n) / count
        x = x + self.coord_mlp_vel(h) * v
        h = h + self.node_mlp(torch.cat([h, scatter_sum(m, row, n)], dim=-1))
        return h, x


@register_model("egnn")
class EGNN(TrajectoryModel):
    """EGNN_vel predicting x(t+1) (n_atoms, 3) Å from x(t), v(t) on the 2-hop graph."""

    def __init__(self, hidden: int = 64, layers: int = 4, coords_weight: float = 1.0, unit_inputs: bool = True,
                 velocity_residual: bool = True, n_rbf: int = 16, r_max: float = 5.0) -> None:  # fmt: skip
        super().__init__()
        self.unit_inputs, self.velocity_residual = unit_inputs, velocity_residual
        self.embedding = AtomEmbedding(hidden)
        self.node_in = nn.Linear(hidden + 1, hidden)
        rbf = GaussianRBF(n_rbf, r_max) if unit_inputs else None
        self.layers = nn.ModuleList(
            EGCLVel(hidden, B.EDGE_ATTR_DIM, coords_weight, rbf, small_velocity_gate=velocity_residual)
            for _ in range(layers)
        )

    def forward(self, batch: B.Batch) -> torch.Tensor:
        x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
        speed = v.norm(dim=-1, keepdim=True) / (SPEED_UNIT if self.unit_inputs else 1.0)
        h = self.node_in(torch.cat([self.embedding(batch[B.ATOMIC_NUMBERS]), speed], dim=-1))
        edge_index, edge_attr = batch[B.EDGE_INDEX], batch[B.EDGE_ATTR].to(x.dtype)
        for layer in self.layers:
            h, x = layer(h, x, v, edge_index, edge_attr)
        return x + v if self.velocity_residual else x
