"""Building blocks shared by every network: one ``mlp`` and one atom-type embedding (one ``MAX_Z``)."""

from __future__ import annotations

import torch
from torch import nn

from diffmd import batch as B
from diffmd.elements import MAX_Z


def mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False,
        layer_norm: bool = False) -> nn.Sequential:  # fmt: skip
    """Linear layers of the given widths with ``act`` between them (and after the last if ``last_act``),
    optionally followed by a LayerNorm of the output (MeshGraphNets' blocks)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    if layer_norm:
        layers.append(nn.LayerNorm(sizes[-1]))
    return nn.Sequential(*layers)


class AtomEmbedding(nn.Embedding):
    """Learned embedding of the atomic number Z in 0..MAX_Z: (n_atoms,) long -> (n_atoms, dim).

    The range is checked where a molecule enters the engine (once per molecule,
    :func:`diffmd.engine.batching.check_atomic_numbers`), not here: a check in the forward reads the device
    (two host syncs per call on a GPU). :meth:`check` does it for a batch built by hand."""

    def __init__(self, dim: int) -> None:
        super().__init__(MAX_Z + 1, dim)

    @staticmethod
    def check(z: torch.Tensor) -> None:
        """ValueError naming the batch key when ``z`` holds an atomic number outside 0..MAX_Z (reads the device)."""
        if z.numel() and (int(z.max()) > MAX_Z or int(z.min()) < 0):
            raise ValueError(f"batch[{B.ATOMIC_NUMBERS!r}] holds Z outside 0..{MAX_Z}: {int(z.min())}..{int(z.max())}")
