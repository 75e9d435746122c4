"""Radial Field (Köhler, Klein and Noé 2019), the velocity variant ``RF_vel`` of the EGNN paper.

Follows ``GCL_rf_vel`` / ``RF_vel`` in vgsatorras/egnn (``models/gcl.py``, n-body experiment): each
of ``n_layers`` layers moves every atom along its relative positions, weighted by a radial network
of the distance and the edge features, plus a learned multiple of its velocity:

    x_i <- x_i + mean_j (x_i - x_j) phi(|x_i - x_j|, e_ij) + psi(|v_i|) v_i          (EGNN paper, Eq. 13)

with ``phi = Linear -> LeakyReLU(0.2) -> Linear(no bias, xavier gain 1e-3) -> tanh`` and
``psi = Linear -> LeakyReLU(0.2) -> Linear``. ``e_ij`` are the batch's 2-hop edge features
[hop, Z_i, Z_j, type] (the n-body code used the charge product). No node features and no atom
embedding: Z enters only through the edge features, as in the original. The prediction is the
final x: x(t+1). E(3)- and permutation-equivariant. No clamping: a diverging rollout stays diverged.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.common import EDGE_SCALARS, edge_scalars, require, scatter_mean
from diffmd import batch as B
from diffmd.registry import TrajectoryModel, register_model


class RadialFieldLayer(nn.Module):
    """One ``GCL_rf_vel`` layer: positions (n, 3) Å -> updated positions (n, 3) Å."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__()
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.phi = nn.Sequential(nn.Linear(1 + edge_dim, hidden), nn.LeakyReLU(0.2), last, nn.Tanh())
        self.psi = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(
        self,
        x: torch.Tensor,
        vel: torch.Tensor,
        vel_norm: torch.Tensor,
        edge_index: torch.Tensor,
        e: torch.Tensor,
    ) -> torch.Tensor:
        i, j = edge_index
        diff = x[i] - x[j]
        radial = diff.norm(dim=1, keepdim=True)
        m = diff * self.phi(torch.cat([radial, e], dim=1))
        return x + scatter_mean(m, i, x.shape[0]) + self.psi(vel_norm) * vel


@register_model("rf")
class RadialField(TrajectoryModel):
    """RF_vel on the 2-hop bonded graph; ``forward(batch)`` -> x(t+1) (n_atoms, 3) Å."""

    def __init__(self, n_layers: int = 4, hidden: int = 64) -> None:
        super().__init__()
        if n_layers < 1 or hidden < 1:
            raise ValueError(f"rf: n_layers and hidden must be >= 1, got {n_layers}, {hidden}")
        self.layers = nn.ModuleList(RadialFieldLayer(hidden, EDGE_SCALARS) for _ in range(n_layers))

    def forward(self, batch: B.Batch) -> torch.Tensor:
        require(batch, (B.POSITIONS, B.VELOCITIES, B.EDGE_INDEX, B.EDGE_ATTR), "rf")
        x, vel = batch[B.POSITIONS], batch[B.VELOCITIES]
        vel_norm = vel.norm(dim=1, keepdim=True)
        e = edge_scalars(batch)
        for layer in self.layers:
            x = layer(x, vel, vel_norm, batch[B.EDGE_INDEX], e)
        return x
