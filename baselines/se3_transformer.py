"""SE(3)-Transformer (Fuchs, Worrall, Fischer and Welling 2020) on e3nn (not DGL).

Node features are irreps up to l = 2 (``0e``, ``1o``, ``2e``; see :mod:`baselines.tfn`). One
attention layer (Fuchs et al., Eqs. 10-11), with heads h = 1..H:

    q_i = W_Q f_i                                   (equivariant linear map of the receiver)
    k_ij = K(f_j, r_ij),  v_ij = V(f_j, r_ij)        (TFN filters: tensor products of the neighbour
                                                      features with Y(r_ij), radial-MLP weights)
    a_ij^h = softmax_{j in N(i)} <q_i, k_ij>_h       (invariant bilinear products: an e3nn
                                                      FullyConnectedTensorProduct onto H x 0e)
    f_i <- Gate( W_self f_i + W_O sum_j a_ij^h v_ij^h )

where v_ij^h are the channels of head h (every multiplicity of the value irreps is split into H
equal parts). The softmax over neighbours is :func:`diffmd.graph.scatter_softmax`. After
``n_layers`` layers an equivariant linear map reads one ``1o`` vector Delta and, as for TFN,
x(t+1) = x(t) + v(t) + Delta (``velocity_residual: false``: x(t) + Delta). Inputs: embedding of Z,
|v| and v (``1o``); graph: the batch's 2-hop bonded graph with its edge features.
O(3)- and permutation-equivariant.

Output initialisation (issue 13): the output map's weights are scaled by ``OUTPUT_INIT`` = 1e-4 (was
1e-2, as TFN's before its fix): on MD17 ethanol's real pair at quick sizes the initial unit-scale loss
is ~1.2 (constant velocity ~1) instead of ~220, i.e. Delta starts at ~1/2 of constant velocity's error
rather than ~15x it (tests/test_unit_scale.py).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from baselines.common import AtomEmbedding, require
from baselines.tfn import EdgeEmbedding, EdgeTensorProduct, gate_for, hidden_irreps, node_input, shrink_output
from diffmd import batch as B
from diffmd.graph import scatter_softmax, scatter_sum
from diffmd.registry import TrajectoryModel, register_model

#: Scale of the output map at initialisation (module docstring).
OUTPUT_INIT = 1e-4


class EquivariantAttention(nn.Module):
    """One multi-head attention block: (n, irreps_in.dim) -> (n, irreps_out.dim) (before the gate)."""

    def __init__(
        self, irreps_in, irreps_sh, irreps_out, irreps_key, edge_dim: int, radial_hidden: int, heads: int
    ):  # noqa: ANN001
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        for mul, ir in self.irreps_out:
            if mul % heads:
                raise ValueError(f"se3_transformer: {mul}x{ir} channels do not split into n_heads = {heads}")
        self.heads = heads
        self.query = o3.Linear(irreps_in, irreps_key)
        self.key = EdgeTensorProduct(irreps_in, irreps_sh, irreps_key, edge_dim, radial_hidden)
        self.value = EdgeTensorProduct(irreps_in, irreps_sh, self.irreps_out, edge_dim, radial_hidden)
        self.dot = o3.FullyConnectedTensorProduct(irreps_key, irreps_key, f"{heads}x0e")
        self.self_interaction = o3.Linear(irreps_in, self.irreps_out)
        self.mix = o3.Linear(self.irreps_out, self.irreps_out)
        self.scale = 1.0 / math.sqrt(o3.Irreps(irreps_key).dim)

    def _weight_heads(self, v: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Multiply each head's channels of v (E, irreps_out.dim) by its weight alpha (E, H)."""
        parts = []
        for (mul, ir), sl in zip(self.irreps_out, self.irreps_out.slices()):
            block = v[:, sl].reshape(-1, self.heads, mul // self.heads, ir.dim)
            parts.append((block * alpha[:, :, None, None]).reshape(-1, mul * ir.dim))
        return torch.cat(parts, dim=1)

    def forward(self, f: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor, scalars: torch.Tensor):  # noqa: ANN201
        """f (n, irreps_in.dim), edge_index (2, E), sh (E, sh_dim), scalars (E, edge_dim)."""
        i, j = edge_index
        n = f.shape[0]
        logits = self.dot(self.query(f)[i], self.key(f, j, sh, scalars)) * self.scale  # (E, H)
        alpha = scatter_softmax(logits, i, n)
        attended = scatter_sum(self._weight_heads(self.value(f, j, sh, scalars), alpha), i, n)
        return self.self_interaction(f) + self.mix(attended)


@register_model("se3_transformer")
class SE3Transformer(TrajectoryModel):
    """SE(3)-Transformer on the 2-hop bonded graph; ``forward(batch)`` -> x(t+1) (n_atoms, 3) Å."""

    # bf16 refused (e3nn's tensor products mix float32 weights with bfloat16 inputs): diffmd/models/cards.yaml

    def __init__(
        self,
        n_layers: int = 4,
        hidden: int = 64,
        lmax: int = 2,
        n_heads: int = 4,
        key_hidden: int = 16,
        n_basis: int = 16,
        r_max: float = 5.0,
        radial_hidden: int = 64,
        velocity_residual: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1 or hidden < 1 or lmax < 1 or n_heads < 1:
            raise ValueError(
                f"se3_transformer: n_layers, hidden, lmax, n_heads must be >= 1, got {n_layers}, "
                f"{hidden}, {lmax}, {n_heads}"
            )
        self.velocity_residual = velocity_residual
        self.embed = AtomEmbedding(hidden)
        self.edges = EdgeEmbedding(lmax, n_basis, r_max)
        irreps_key = hidden_irreps(key_hidden, lmax)
        irreps = o3.Irreps(f"{hidden + 1}x0e + 1x1o")
        self.blocks, self.gates = nn.ModuleList(), nn.ModuleList()
        for _ in range(n_layers):
            gate = gate_for(hidden_irreps(hidden, lmax))
            self.blocks.append(
                EquivariantAttention(
                    irreps,
                    self.edges.irreps_sh,
                    gate.irreps_in,
                    irreps_key,
                    self.edges.dim,
                    radial_hidden,
                    n_heads,
                )
            )
            self.gates.append(gate)
            irreps = gate.irreps_out
        self.out = o3.Linear(irreps, "1x1o")
        shrink_output([self.out], factor=OUTPUT_INIT)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        require(batch, (B.POSITIONS, B.VELOCITIES, B.EDGE_INDEX, B.EDGE_ATTR), "se3_transformer")
        sh, scalars = self.edges(batch)
        f, _ = node_input(self.embed, batch)
        for block, gate in zip(self.blocks, self.gates):
            f = gate(block(f, batch[B.EDGE_INDEX], sh, scalars))
        x = batch[B.POSITIONS] + self.out(f)
        return x + batch[B.VELOCITIES] if self.velocity_residual else x
