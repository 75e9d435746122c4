"""EGNN with velocities (Satorras, Hoogeboom & Welling, ICML 2021, "E(n) Equivariant Graph Neural
Networks", Eq. 3-7 and the velocity variant Eq. 7), as ``EGNN_vel`` / ``E_GCL_vel`` in the authors'
n-body code (vgsatorras/egnn, ``n_body_system/models/gcl.py``), on the bonded 2-hop graph.

Layer l, for the edge (i, j) (message from j to i, see :mod:`diffmd.graph`)::

    m_ij   = phi_e(h_i, h_j, ||x_i - x_j||^2, a_ij)                          (Eq. 3)
    x_i   <- x_i + C * mean_j (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i         (Eq. 4 / 7)
    h_i   <- h_i + phi_h(h_i, sum_j m_ij)                                    (Eq. 5-6, recurrent)

Node input: an atomic-number embedding and the speed |v_i| (the n-body code's node feature);
edge input ``a_ij``: the graph's edge features [hop, Z_i, Z_j, bond type]. The coordinates start
at x(t) and the last layer's coordinates are the prediction x(t+1) (Å). E(3) equivariant
(rotations, reflections, translations) and permutation equivariant by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from diffmd import batch as B
from diffmd.graph import scatter_sum
from diffmd.nn import AtomEmbedding
from diffmd.registry import TrajectoryModel, register_model


class EGCLVel(nn.Module):
    """One E_GCL_vel layer (hidden width ``hidden``, ``edge_dim`` edge features)."""

    def __init__(self, hidden: int, edge_dim: int, coords_weight: float = 1.0):
        super().__init__()
        act = nn.SiLU()
        self.coords_weight = coords_weight
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + 1 + edge_dim, hidden), act, nn.Linear(hidden, hidden), act)
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), act, nn.Linear(hidden, hidden))
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), act, last)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(hidden, hidden), act, nn.Linear(hidden, 1))

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, v: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (n, hidden), ``x`` (n, 3) Å, ``v`` (n, 3) Å/step -> updated (h, x)."""
        row, col = edge_index
        n = h.shape[0]
        diff = x[row] - x[col]
        radial = (diff**2).sum(dim=-1, keepdim=True)
        m = self.edge_mlp(torch.cat([h[row], h[col], radial, edge_attr], dim=-1))
        trans = (diff * self.coord_mlp(m)).clamp(-100.0, 100.0)
        count = scatter_sum(torch.ones_like(radial), row, n).clamp_min(1.0)
        x = x + self.coords_weight * scatter_sum(trans, row, n) / count
        x = x + self.coord_mlp_vel(h) * v
        h = h + self.node_mlp(torch.cat([h, scatter_sum(m, row, n)], dim=-1))
        return h, x


@register_model("egnn")
class EGNN(TrajectoryModel):
    """EGNN_vel predicting x(t+1) (n_atoms, 3) Å from x(t), v(t) on the 2-hop graph."""

    def __init__(self, hidden: int = 64, layers: int = 4, coords_weight: float = 1.0):
        super().__init__()
        self.embedding = AtomEmbedding(hidden)
        self.node_in = nn.Linear(hidden + 1, hidden)
        self.layers = nn.ModuleList(EGCLVel(hidden, B.EDGE_ATTR_DIM, coords_weight) for _ in range(layers))

    def forward(self, batch: B.Batch) -> torch.Tensor:
        x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
        speed = v.norm(dim=-1, keepdim=True)
        h = self.node_in(torch.cat([self.embedding(batch[B.ATOMIC_NUMBERS]), speed], dim=-1))
        edge_index, edge_attr = batch[B.EDGE_INDEX], batch[B.EDGE_ATTR].to(x.dtype)
        for layer in self.layers:
            h, x = layer(h, x, v, edge_index, edge_attr)
        return x
