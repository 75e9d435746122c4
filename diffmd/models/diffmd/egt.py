"""The equivariant geometric Transformer (EGT), DiffMD's score network (Wu & Li 2023, Eq. 10-17).

One equivariant geometric layer (EGL) maps (x^l, v^l, h^l) to (x^{l+1}, v^{l+1}, h^{l+1})::

    q_ij = [f_q(h_i) (+) e_SBF1(ij)] W_SBF1                  (Eq. 12; per pair, the SBF depends on ij)
    k_ij = [f_k(h_j) (+) e_SBF2(ij)] W_SBF2                  (Eq. 13)
    m_j  = f_m(h_j),  a_ij = q_ij . k_ij / sqrt(psi)          (Eq. 14; per head, psi = head width)
    v_i' = f_v(h_i) v_i + sum_j phi(a_ij) x_ij                (Eq. 15; x_ij = x_i - x_j)
    x_i' = x_i + v_i' / L                                     (Eq. 16)
    h_i' = f_h(sum_j phi(a_ij) m_j)                           (Eq. 17)

phi is the softmax over the neighbours j of i. Reproduction choices (docs/reproduction_notes_diffmd.md):

* multi-head: the H heads each have their own softmax; the coordinate sum of Eq. 15 uses a learned
  linear combination of the H attention weights (initialised to their mean);
* f_h is a pre-LayerNorm Transformer block: output projection, dropout and residual, then a ReLU
  feed-forward network (hidden ``d_ffn``) with dropout and residual;
* f_v is a two-layer ReLU MLP to one scalar per atom;
* attention runs over all atoms of the molecule (the sums of Eq. 15 and 17 run over j = 1..N) with
  the SBF bases zero beyond the interaction cutoff (``attention_graph="full"``), or only over the
  pairs within the cutoff of the input positions (``"radius"``);
* the coordinate weights of Eq. 15 are the softmax phi(a_ij) as published (``coord_weights="softmax"``,
  the default); ``"signed"`` replaces them by tanh(a_ij), zero at a_ij = 0 and of either sign, so one
  head can pull some neighbours and push others (the corrected DiffMD, docs/diffmd_corrected.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffmd import batch as B
from diffmd.graph import complete_pairs, full_edge_index, radius_edge_index, scatter_softmax, scatter_sum
from diffmd.models.diffmd.sbf import SphericalFourierBessel, safe_norm
from diffmd.nn import AtomEmbedding

ATTENTION_GRAPHS = ("full", "radius")
COORD_WEIGHTS = ("softmax", "signed")


class EquivariantGeometricLayer(nn.Module):
    """One EGL (Eq. 12-17)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ffn: int,
        dropout: float,
        n_basis: int,
        n_layers: int,
        coord_weights: str = "softmax",
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"diffmd d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if coord_weights not in COORD_WEIGHTS:
            raise ValueError(f"diffmd coord_weights must be one of {COORD_WEIGHTS}, got {coord_weights!r}")
        self.h, self.dh, self.n_layers = n_heads, d_model // n_heads, n_layers
        self.coord_weights = coord_weights
        self.f_q, self.f_k, self.f_m = (nn.Linear(d_model, d_model) for _ in range(3))
        self.w_sbf1 = nn.Linear(d_model + n_basis, d_model, bias=False)
        self.w_sbf2 = nn.Linear(d_model + n_basis, d_model, bias=False)
        self.head_mix = nn.Parameter(torch.full((n_heads,), 1.0 / n_heads))
        self.f_v = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 1))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model)
        )
        self.drop = nn.Dropout(dropout)

    @staticmethod
    def _split_linear(layer: nn.Linear, atom: torch.Tensor, index: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        """``layer(cat([atom[index], edge], -1))`` (no bias) computed as ``(atom W_a)[index] + edge W_e``."""
        d = atom.shape[-1]
        return nn.functional.linear(atom, layer.weight[:, :d])[index] + nn.functional.linear(edge, layer.weight[:, d:])

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        e1: torch.Tensor,
        e2: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x, v (N, 3) Å, Å/step; h (N, d); e1, e2 (E, n_basis) -> updated (x, v, h)."""
        n, (i, j) = x.shape[0], edge_index
        hn = self.norm1(h)
        # [f_q(h_i) (+) e_ij] W = f_q(h_i) W_h + e_ij W_e: the h part once per atom, then gathered per edge (the
        # same linear map and parameters, E/N times fewer multiply-adds: edges outnumber atoms 8-20x here)
        q = self._split_linear(self.w_sbf1, self.f_q(hn), i, e1).view(-1, self.h, self.dh)
        k = self._split_linear(self.w_sbf2, self.f_k(hn), j, e2).view(-1, self.h, self.dh)
        logits = (q * k).sum(-1) / math.sqrt(self.dh)  # (E, H)
        att = scatter_softmax(logits, i, n)
        msg = scatter_sum(att[..., None] * self.f_m(hn)[j].view(-1, self.h, self.dh), i, n).flatten(1)
        weights = att if self.coord_weights == "softmax" else torch.tanh(logits)
        coord = scatter_sum((weights @ self.head_mix)[:, None] * (x[i] - x[j]), i, n)
        v_new = self.f_v(hn) * v + coord
        x_new = x + v_new / self.n_layers
        h = h + self.drop(self.out(msg))
        h = h + self.drop(self.ffn(self.norm2(h)))
        return x_new, v_new, h


def time_features(s: torch.Tensor, n_freq: int) -> torch.Tensor:
    """Sinusoidal embedding of the diffusion time s in [0, 1] (N,) -> (N, 2 n_freq)."""
    freqs = math.pi * torch.exp2(torch.arange(n_freq, dtype=s.dtype, device=s.device))
    ang = s[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1)


class EGT(nn.Module):
    """L stacked EGLs; returns the displacement x^L - x^0 (N, 3), Å (E(3)-equivariant).

    Node features h^0 = Embedding(Z) + Linear([|v|, log std(s), sin/cos(2^k pi s)]): the atomic number
    and velocity norm of the paper plus the diffusion time and the atom's noise level (the paper does
    not say how s enters the network; this is our choice).
    """

    def __init__(
        self,
        n_layers: int = 6,
        n_heads: int = 8,
        d_model: int = 128,
        d_ffn: int = 2048,
        dropout: float = 0.1,
        cutoff: float = 1.6,
        n_degree: int = 2,
        n_root: int = 2,
        n_order: int = 2,
        attention_graph: str = "full",
        angle_eps: float = 1e-4,
        n_time_freq: int = 8,
        coord_weights: str = "softmax",
    ):
        super().__init__()
        if attention_graph not in ATTENTION_GRAPHS:
            raise ValueError(
                f"diffmd attention_graph must be one of {ATTENTION_GRAPHS}, got {attention_graph!r}"
            )
        if n_layers < 1:
            raise ValueError(f"diffmd n_layers must be >= 1, got {n_layers}")
        self.attention_graph, self.cutoff, self.n_time_freq = attention_graph, cutoff, n_time_freq
        self.angle_eps = angle_eps
        self.sbf = SphericalFourierBessel(cutoff, n_degree, n_root, n_order, eps=angle_eps)
        self.embed = AtomEmbedding(d_model)
        self.scalars = nn.Linear(2 + 2 * n_time_freq, d_model)
        self.layers = nn.ModuleList(
            EquivariantGeometricLayer(d_model, n_heads, d_ffn, dropout, self.sbf.n_basis, n_layers, coord_weights)
            for _ in range(n_layers)
        )

    def edges(self, x: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """The attention graph built from the batch (host reads: hot paths pass the batch's prebuilt one)."""
        if self.attention_graph == "full":
            return full_edge_index(num_atoms)
        return radius_edge_index(x, num_atoms, self.cutoff)

    def molecule_structures(self, n_atoms: int) -> dict[str, Any]:
        """The constant attention graph of one molecule (``complete``: every ordered pair) for the batch
        builders; none for ``attention_graph: radius`` (it changes with the positions)."""
        return {"complete": complete_pairs(n_atoms)} if self.attention_graph == "full" else {}

    def graph_of(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The attention graph of ``batch`` at positions ``x``: its prebuilt complete graph when it has one."""
        if self.attention_graph == "full":
            return B.structure(batch, "complete", lambda b: full_edge_index(b[B.NUM_ATOMS]))
        return radius_edge_index(x, batch[B.NUM_ATOMS], self.cutoff)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        z: torch.Tensor,
        num_atoms: torch.Tensor,
        s: torch.Tensor,
        log_std: torch.Tensor,
        edge_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (N, 3) Å noised positions, v (N, 3) Å/step, z (N,) atomic numbers, s and log_std (N,);
        ``edge_index``: the attention graph when the caller has it (:meth:`graph_of`), else built here."""
        if edge_index is None:
            edge_index = self.edges(x, num_atoms)
        speed = safe_norm(v, self.angle_eps)
        feats = torch.cat([speed[:, None], log_std[:, None], time_features(s, self.n_time_freq)], -1)
        h = self.embed(z) + self.scalars(feats)
        x0, xl, vl = x, x, v
        for layer in self.layers:
            e1, e2 = self.sbf(xl, vl, edge_index)
            xl, vl, h = layer(xl, vl, h, edge_index, e1, e2)
        return xl - x0
