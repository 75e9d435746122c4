"""Small pieces shared by the graph baselines (TFN, RF, SE(3)-Transformer, GMN).

Reused from :mod:`diffmd.graph`: ``scatter_sum`` / ``scatter_softmax`` and the edge convention
(``edge_index[0]`` = receiving atom i, ``edge_index[1]`` = neighbour j, message j -> i).
"""

from __future__ import annotations

import torch

from diffmd import batch as B
from diffmd.graph import scatter_sum
from diffmd.nn import AtomEmbedding, mlp  # noqa: F401  (re-exported for the baselines)

#: Number of invariant edge scalars made from ``EDGE_ATTR`` by :func:`edge_scalars`.
EDGE_SCALARS = B.EDGE_ATTR_DIM

_Z_SCALE = 10.0  # atomic numbers enter the networks as Z / 10 (H 0.1, C 0.6, O 0.8)


def edge_scalars(batch: B.Batch) -> torch.Tensor:
    """Edge scalars (E, 4) from ``EDGE_ATTR`` [hop, Z_i, Z_j, type]: [hop-1, Z_i/10, Z_j/10, type]."""
    attr = batch[B.EDGE_ATTR]
    return torch.stack([attr[:, 0] - 1.0, attr[:, 1] / _Z_SCALE, attr[:, 2] / _Z_SCALE, attr[:, 3]], dim=1)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of the rows of ``src`` (E, ...) per bucket ``index`` (E,); empty buckets give 0."""
    total = scatter_sum(src, index, dim_size)
    count = scatter_sum(torch.ones_like(index, dtype=src.dtype), index, dim_size).clamp_min(1.0)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def require(batch: B.Batch, keys: tuple[str, ...], model: str) -> None:
    """Raise a one-line ``KeyError`` naming the first batch key ``model`` needs and the batch lacks."""
    for key in keys:
        if key not in batch:
            raise KeyError(f"model {model!r} needs batch[{key!r}], which the batch lacks")
