"""Molecular graphs in plain PyTorch (no torch_cluster / pyg-lib, which PyPI lacks).

Convention for every ``edge_index`` in the project: shape (2, n_edges), global atom indices,
``edge_index[0]`` is the receiving atom i and ``edge_index[1]`` its neighbour j; a message
m_ij flows from j to i and is summed at i. Every graph holds both directions of each pair.

Three graphs:

* :func:`full_edge_index`: all ordered pairs (i != j) inside each molecule;
* :func:`radius_edge_index`: the pairs closer than a cutoff (recomputed from positions);
* :func:`bonded_graph`: covalent bonds of the first frame (distance < scale * (r_i + r_j)),
  augmented with 2-hop neighbours; edge features ``[hop, Z_i, Z_j, edge type]`` with edge type
  1 for a covalent bond and 0 for an augmented 2-hop edge (the paper's setting for the graph
  baselines, following GMN and Shi et al. 2021). Topology is fixed along a trajectory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from diffmd.elements import covalent_radius

if TYPE_CHECKING:  # torch is imported where a tensor function runs: the numpy half (find_bonds) stays light
    import torch

BOND_SCALE = 1.2  # bond if d_ij < BOND_SCALE * (r_cov,i + r_cov,j)


def find_bonds(positions: np.ndarray, numbers: np.ndarray, scale: float = BOND_SCALE) -> np.ndarray:
    """Covalent bonds from distances. ``positions`` (atoms, 3) Å -> (2, n_bonds) both directions."""
    pos = np.asarray(positions, dtype=np.float64)
    radii = np.array([covalent_radius(z) for z in numbers])
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    cutoff = scale * (radii[:, None] + radii[None, :])
    adj = (dist < cutoff) & ~np.eye(len(pos), dtype=bool)
    i, j = np.nonzero(adj)
    return np.stack([i, j]).astype(np.int64)


def two_hop_edges(bond_index: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Bonded edges plus 2-hop neighbours. Returns ``edge_index`` (2, E) and ``hop`` (E,) in {1, 2}."""
    adj = np.zeros((n_atoms, n_atoms), dtype=bool)
    adj[bond_index[0], bond_index[1]] = True
    two = (adj.astype(np.int64) @ adj.astype(np.int64)) > 0
    two &= ~adj
    np.fill_diagonal(two, False)
    i1, j1 = np.nonzero(adj)
    i2, j2 = np.nonzero(two)
    edge_index = np.concatenate([np.stack([i1, j1]), np.stack([i2, j2])], axis=1).astype(np.int64)
    hop = np.concatenate([np.ones(len(i1)), np.full(len(i2), 2.0)])
    return edge_index, hop


def bonded_graph(positions: np.ndarray, numbers: np.ndarray, scale: float = BOND_SCALE) -> dict[str, np.ndarray]:
    """The 2-hop augmented bonded graph of one molecule (local atom indices).

    Returns ``{"edge_index": (2, E), "edge_attr": (E, 4) [hop, Z_i, Z_j, type], "bond_index": (2, n_bonds)}``.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    bonds = find_bonds(positions, numbers, scale)
    edge_index, hop = two_hop_edges(bonds, len(numbers))
    edge_type = (hop == 1).astype(np.float64)
    edge_attr = np.stack(
        [hop, numbers[edge_index[0]].astype(np.float64), numbers[edge_index[1]].astype(np.float64), edge_type],
        axis=1,
    )
    return {"edge_index": edge_index, "edge_attr": edge_attr, "bond_index": bonds}


def complete_pairs(n_atoms: int) -> np.ndarray:
    """All ordered pairs i != j of one molecule of ``n_atoms`` atoms, (2, n (n - 1)) local indices, in the order
    :func:`full_edge_index` gives them (i major): the per-molecule template a batch builder offsets and
    concatenates once, so no step rebuilds the complete graph."""
    i, j = np.divmod(np.arange(n_atoms * n_atoms, dtype=np.int64), n_atoms)
    keep = i != j
    return np.stack([i[keep], j[keep]])


def full_edge_index(num_atoms: torch.Tensor) -> torch.Tensor:
    """All ordered pairs i != j within each molecule; ``num_atoms`` (n_molecules,) -> (2, E). Reads the sizes on
    the host (three syncs on a GPU): hot loops take the batch's ``STRUCTURE + "complete"`` instead."""
    import torch

    device = num_atoms.device
    num_atoms = num_atoms.long()
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    counts = num_atoms * num_atoms
    mol = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=device) - start[mol]
    n = num_atoms[mol]
    i, j = local // n, local % n
    keep = i != j
    return torch.stack([(i + offsets[mol])[keep], (j + offsets[mol])[keep]])


def radius_edge_index(positions: torch.Tensor, num_atoms: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Pairs within ``cutoff`` Å inside each molecule (both directions), (2, E)."""
    edges = full_edge_index(num_atoms)
    d = (positions[edges[0]] - positions[edges[1]]).norm(dim=-1)
    return edges[:, d < cutoff]


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` (E, ...) into ``dim_size`` buckets given by ``index`` (E,)."""
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_softmax(logits: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, ...) over the edges that share a receiving atom ``index``."""
    import torch

    shape = (dim_size,) + tuple(logits.shape[1:])
    idx = index.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    maxes = logits.new_full(shape, float("-inf")).scatter_reduce(0, idx, logits, reduce="amax", include_self=True)
    ex = torch.exp(logits - maxes[index])
    denom = scatter_sum(ex, index, dim_size)
    return ex / denom[index].clamp_min(torch.finfo(logits.dtype).tiny)
