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

Deviations from the public code (issue 13; measured in docs/reproduction_notes_baselines.md), each an
option whose ``False`` gives the original, as for EGNN (:mod:`diffmd.models.egnn`):

* ``unit_inputs`` (default True): phi reads a Gaussian radial basis of |x_i - x_j|
  (:class:`~diffmd.models.egnn.GaussianRBF`, ``n_rbf`` centres on [0, ``r_max``] Å) instead of the
  distance in Å, and psi reads |v_i| / :data:`~diffmd.models.egnn.SPEED_UNIT` instead of Å/step;
* ``velocity_residual`` (default True): x(t+1) = x_L + v(t), psi's last layer starting near zero
  (xavier gain 1e-3), so the layers learn the correction to a constant-velocity step.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.common import EDGE_SCALARS, edge_scalars, require, scatter_mean
from diffmd import batch as B
from diffmd.models.egnn import SPEED_UNIT, GaussianRBF, small_last_layer
from diffmd.registry import TrajectoryModel, register_model


class RadialFieldLayer(nn.Module):
    """One ``GCL_rf_vel`` layer: positions (n, 3) Å -> updated positions (n, 3) Å."""

    def __init__(self, hidden: int, edge_dim: int, rbf: GaussianRBF | None = None,
                 small_velocity_gate: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.rbf = rbf
        radial_dim = rbf.n if rbf is not None else 1
        self.phi = nn.Sequential(
            nn.Linear(radial_dim + edge_dim, hidden), nn.LeakyReLU(0.2), small_last_layer(hidden), nn.Tanh()
        )
        psi_last = small_last_layer(hidden) if small_velocity_gate else nn.Linear(hidden, 1)
        self.psi = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), psi_last)

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
        if self.rbf is not None:
            radial = self.rbf(radial)
        m = diff * self.phi(torch.cat([radial, e], dim=1))
        return x + scatter_mean(m, i, x.shape[0]) + self.psi(vel_norm) * vel


@register_model("rf")
class RadialField(TrajectoryModel):
    """RF_vel on the 2-hop bonded graph; ``forward(batch)`` -> x(t+1) (n_atoms, 3) Å."""

    def __init__(self, n_layers: int = 4, hidden: int = 64, unit_inputs: bool = True, velocity_residual: bool = True,
                 n_rbf: int = 16, r_max: float = 5.0) -> None:  # fmt: skip
        super().__init__()
        if n_layers < 1 or hidden < 1:
            raise ValueError(f"rf: n_layers and hidden must be >= 1, got {n_layers}, {hidden}")
        self.unit_inputs, self.velocity_residual = unit_inputs, velocity_residual
        rbf = GaussianRBF(n_rbf, r_max) if unit_inputs else None
        self.layers = nn.ModuleList(
            RadialFieldLayer(hidden, EDGE_SCALARS, rbf, small_velocity_gate=velocity_residual) for _ in range(n_layers)
        )

    def forward(self, batch: B.Batch) -> torch.Tensor:
        require(batch, (B.POSITIONS, B.VELOCITIES, B.EDGE_INDEX, B.EDGE_ATTR), "rf")
        x, vel = batch[B.POSITIONS], batch[B.VELOCITIES]
        vel_norm = vel.norm(dim=1, keepdim=True) / (SPEED_UNIT if self.unit_inputs else 1.0)
        e = edge_scalars(batch)
        for layer in self.layers:
            x = layer(x, vel, vel_norm, batch[B.EDGE_INDEX], e)
        return x + vel if self.velocity_residual else x
