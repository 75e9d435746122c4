"""Shared test helpers: tiny real molecules, E(3) + permutation checks, batching, overfitting.

Used by the tests of every model (see NequIP's ``nequip/utils/test.py`` and e3nn's
``assert_equivariant`` for the shape of these checks). Fixtures are small and seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffmd import batch as B
from diffmd.graph import bonded_graph

# First frame of MD17 ethanol (Å; Chmiela et al. 2017), MD17 atom order.
ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
ETHANOL_X = np.array(
    [
        [0.0072, -0.5687, 0.0],
        [-1.2854, 0.2499, 0.0],
        [1.1304, 0.3147, 0.0],
        [0.0392, -1.1972, 0.89],
        [0.0392, -1.1972, -0.89],
        [-1.3175, 0.8784, 0.89],
        [-1.3175, 0.8784, -0.89],
        [-2.1422, -0.4239, 0.0],
        [1.9857, -0.1365, 0.0],
    ]
)
# Formaldehyde (Å), a second, smaller molecule for batching tests.
FORMALDEHYDE_Z = np.array([6, 8, 1, 1])
FORMALDEHYDE_X = np.array([[0.0, 0.0, 0.0], [1.205, 0.0, 0.0], [-0.55, 0.94, 0.0], [-0.55, -0.94, 0.0]])


def make_sample(
    positions: np.ndarray,
    numbers: np.ndarray,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    velocity_scale: float = 0.01,
    with_target: bool = True,
) -> B.Batch:
    """One molecule in the batch contract: jittered positions, random v, a and a target x + v."""
    pos = torch.as_tensor(positions, dtype=dtype)
    n = pos.shape[0]
    pos = pos + 0.02 * torch.randn(n, 3, generator=generator, dtype=dtype)
    vel = velocity_scale * torch.randn(n, 3, generator=generator, dtype=dtype)
    acc = 0.1 * velocity_scale * torch.randn(n, 3, generator=generator, dtype=dtype)
    graph = bonded_graph(positions, numbers)
    sample: B.Batch = {
        B.POSITIONS: pos,
        B.VELOCITIES: vel,
        B.ACCELERATIONS: acc,
        B.ATOMIC_NUMBERS: torch.as_tensor(numbers, dtype=torch.long),
        B.EDGE_INDEX: torch.as_tensor(graph["edge_index"]),
        B.EDGE_ATTR: torch.as_tensor(graph["edge_attr"], dtype=dtype),
        B.BOND_INDEX: torch.as_tensor(graph["bond_index"]),
    }
    if with_target:
        sample[B.TARGET_POSITIONS] = pos + vel + acc
    return sample


def toy_samples(n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[B.Batch]:
    """``n`` small molecules alternating ethanol and formaldehyde, seeded."""
    g = torch.Generator().manual_seed(seed)
    mols = [(ETHANOL_X, ETHANOL_Z), (FORMALDEHYDE_X, FORMALDEHYDE_Z)]
    return [make_sample(*mols[i % 2], generator=g, dtype=dtype) for i in range(n)]


def toy_batch(n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> B.Batch:
    return B.collate(toy_samples(n, seed, dtype))


def random_orthogonal(dtype: torch.dtype = torch.float64, reflect: bool = True, seed: int = 0) -> torch.Tensor:
    """A random 3x3 rotation, times a reflection (det -1) when ``reflect``."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=dtype))
    return q


def transform_batch(
    batch: B.Batch, q: torch.Tensor, shift: torch.Tensor, perm: torch.Tensor
) -> B.Batch:
    """Rotate/reflect (x -> x Q^T + shift; vectors -> v Q^T) and permute atoms (new atom k = old perm[k])."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    out = dict(batch)
    for key in (B.POSITIONS, B.TARGET_POSITIONS):
        if key in batch:
            out[key] = (batch[key] @ q.T + shift)[perm]
    for key in (B.VELOCITIES, B.ACCELERATIONS, B.FORCE_STEP):
        if key in batch:
            out[key] = (batch[key] @ q.T)[perm]
    for key in (B.ATOMIC_NUMBERS, B.BATCH):
        out[key] = batch[key][perm]
    for key in (B.EDGE_INDEX, B.BOND_INDEX):
        if key in batch:
            out[key] = inv[batch[key]]
    return out


def within_molecule_permutation(batch: B.Batch, seed: int = 0) -> torch.Tensor:
    """A random permutation that keeps every atom inside its molecule (atoms stay grouped)."""
    g = torch.Generator().manual_seed(seed)
    parts, start = [], 0
    for n in batch[B.NUM_ATOMS].tolist():
        parts.append(start + torch.randperm(n, generator=g))
        start += n
    return torch.cat(parts)


def assert_equivariant(
    fn: Callable[[B.Batch], torch.Tensor],
    batch: B.Batch,
    kind: str = "position",
    reflect: bool = True,
    atol: float = 1e-9,
    seed: int = 0,
) -> None:
    """Check ``fn`` (batch -> (n_atoms, 3)) under rotation/reflection, translation and permutation.

    ``kind="position"``: output transforms as x Q^T + shift; ``kind="vector"``: as v Q^T.
    Stochastic functions must reseed inside ``fn``; the check is then sample-by-sample.
    """
    q = random_orthogonal(batch[B.POSITIONS].dtype, reflect=reflect, seed=seed)
    shift = torch.tensor([1.5, -2.0, 0.7], dtype=batch[B.POSITIONS].dtype)
    perm = within_molecule_permutation(batch, seed)
    out = fn(batch)
    out_t = fn(transform_batch(batch, q, shift, perm))
    expected = out @ q.T + (shift if kind == "position" else 0.0)
    err = (out_t - expected[perm]).abs().max().item()
    if not err <= atol:
        raise AssertionError(f"not equivariant: max deviation {err:.3e} > atol {atol:.1e}")


def assert_batching(fn: Callable[[B.Batch], torch.Tensor], samples: list[B.Batch], atol: float = 1e-10) -> None:
    """Batched output equals the per-molecule outputs concatenated."""
    batched = fn(B.collate(samples))
    single = torch.cat([fn(B.collate([s])) for s in samples])
    err = (batched - single).abs().max().item()
    if not err <= atol:
        raise AssertionError(f"batched output differs from per-molecule output by {err:.3e} > {atol:.1e}")


def overfit(model: torch.nn.Module, batch: B.Batch, steps: int = 200, lr: float = 3e-3) -> tuple[float, float]:
    """Train ``model.loss`` on one fixed batch; return (first loss, best loss of the last 10 steps)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses[0], min(losses[-10:])
