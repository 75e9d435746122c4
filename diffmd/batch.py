"""The one batch contract shared by the data pipeline, the engine and every model.

A batch is a plain ``dict[str, torch.Tensor]``. Several molecules are concatenated atom-wise
(PyG style): ``BATCH`` maps each atom to its molecule, edge indices are global atom indices.
Every key is defined once here, with its shape and unit; nothing else in the project spells
a key as a string literal.

Time is measured in *model steps*: one step is ``stride`` frames of the source trajectory
(stride 1 by default, so one step is 0.5 fs on MD17 and 1 fs on C7O2H10). Velocities and
accelerations are finite differences in Å per step (per step squared), never derived from the
future: ``v(t) = x(t) - x(t-1)`` (backward difference) and ``a(t-1) = v(t) - v(t-1)``.
"""

from __future__ import annotations

import torch

# --- per atom -------------------------------------------------------------------------------
POSITIONS = "positions"  # (n_atoms, 3) float | Å, current frame x(t)
VELOCITIES = "velocities"  # (n_atoms, 3) float | Å/step, v(t) = x(t) - x(t-1)
ACCELERATIONS = "accelerations"  # (n_atoms, 3) float | Å/step², a(t-1) = v(t) - v(t-1), past only
ATOMIC_NUMBERS = "atomic_numbers"  # (n_atoms,) long | nuclear charge Z
BATCH = "batch"  # (n_atoms,) long | index of the molecule each atom belongs to
TARGET_POSITIONS = "target_positions"  # (n_atoms, 3) float | Å, x(t+1): training/validation only
#: (n_atoms, 3) float | Å, x(t+u) for ``train.unroll`` u > 1 (the pushforward loss's target after u steps):
#: training only, present only when the trainer asks for it (never an input; dropped by :func:`inputs_only`).
UNROLL_TARGET = "unroll_target"
#: (n_atoms, 3) float | Å/step², F(t)·(k·dt)²/m: the data's own force at x(t) as a displacement per
#: step² (present only where the source stores forces). A floor of the one-step error, never an input
#: of a learned model (it is not in INPUT_KEYS).
FORCE_STEP = "force_step"

# --- per molecule ---------------------------------------------------------------------------
NUM_ATOMS = "num_atoms"  # (n_molecules,) long | atoms per molecule
#: (n_molecules, 2M) float64 | the data's Nosé-Hoover chain (η_1..η_M, p_η,1..p_η,M) at the half step t-½ of
#: the current frame (present only where the trajectory stores it: ``nhc_eta``/``nhc_p_eta``). What a
#: simulator needs to continue the data's dynamics exactly (:func:`diffmd.dynamics.continue_dynamics`);
#: like FORCE_STEP, never an input of a learned model (it is not in INPUT_KEYS).
THERMOSTAT_STATE = "thermostat_state"

# --- graphs (topology from the molecule's first frame; fixed along a trajectory) -------------
EDGE_INDEX = "edge_index"  # (2, n_edges) long | bonded graph + 2-hop neighbours, both directions
EDGE_ATTR = "edge_attr"  # (n_edges, EDGE_ATTR_DIM) float | [hop index, Z_src, Z_dst, edge type]
BOND_INDEX = "bond_index"  # (2, n_bonds) long | covalent bonds only, both directions

EDGE_ATTR_DIM = 4

# --- structures a model declares (``TrajectoryModel.molecule_structures``) ------------------------
#: Prefix of the keys of model-declared index structures that are constant for a molecule (a complete graph,
#: GMN's sticks, SCFNN's triplets): ``STRUCTURE + name`` -> (..., L) long, global atom indices. The engine's
#: batch builders (:mod:`diffmd.engine.batching`) make them once per molecule and gather them with the batch,
#: so a forward never rebuilds them (nor reads the device to do so); a forward that finds one missing builds it
#: from the batch itself (:func:`structure`).
STRUCTURE = "structure."

#: Keys a model may read at prediction time (never the target).
INPUT_KEYS = (
    POSITIONS,
    VELOCITIES,
    ACCELERATIONS,
    ATOMIC_NUMBERS,
    BATCH,
    NUM_ATOMS,
    EDGE_INDEX,
    EDGE_ATTR,
    BOND_INDEX,
)
ALL_KEYS = INPUT_KEYS + (TARGET_POSITIONS,)
#: Keys a model never sees at prediction time.
TARGET_KEYS = (TARGET_POSITIONS, UNROLL_TARGET)

Batch = dict[str, torch.Tensor]


def to_device(batch: Batch, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
    """Move every tensor to ``device``; floating tensors are cast to ``dtype`` when given."""
    out: Batch = {}
    for key, value in batch.items():
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.to(device)
    return out


def inputs_only(batch: Batch) -> Batch:
    """The batch without its target: what a model sees during rollout."""
    return {k: v for k, v in batch.items() if k not in TARGET_KEYS}


def num_molecules(batch: Batch) -> int:
    return int(batch[NUM_ATOMS].shape[0])


def structure(batch: Batch, name: str, build) -> torch.Tensor:  # noqa: ANN001 (a callable of the batch)
    """The batch's ``STRUCTURE + name`` (built once per molecule by the engine), else ``build(batch)``."""
    value = batch.get(STRUCTURE + name)
    return build(batch) if value is None else value


def check_batch(batch: Batch) -> None:
    """Raise ``ValueError`` naming the first key whose shape breaks the contract."""
    n = batch[POSITIONS].shape[0]
    for key in (POSITIONS, VELOCITIES, ACCELERATIONS, TARGET_POSITIONS):
        if key in batch and tuple(batch[key].shape) != (n, 3):
            raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected ({n}, 3)")
    for key in (ATOMIC_NUMBERS, BATCH):
        if tuple(batch[key].shape) != (n,):
            raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected ({n},)")
    if int(batch[NUM_ATOMS].sum()) != n:
        raise ValueError(f"batch[{NUM_ATOMS!r}] sums to {int(batch[NUM_ATOMS].sum())}, expected {n}")
    for key in (EDGE_INDEX, BOND_INDEX):
        if key in batch and (batch[key].ndim != 2 or batch[key].shape[0] != 2):
            raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected (2, E)")
    if EDGE_ATTR in batch and tuple(batch[EDGE_ATTR].shape) != (batch[EDGE_INDEX].shape[1], EDGE_ATTR_DIM):
        raise ValueError(f"batch[{EDGE_ATTR!r}] has shape {tuple(batch[EDGE_ATTR].shape)}")


def collate(samples: list[Batch]) -> Batch:
    """Concatenate single-molecule samples into one batch.

    Each sample holds per-atom tensors (n_i, ...) and *local* ``EDGE_INDEX``/``BOND_INDEX``;
    this offsets the indices, concatenates everything and adds ``BATCH`` and ``NUM_ATOMS``.
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    sizes = [int(s[POSITIONS].shape[0]) for s in samples]
    offsets = torch.cumsum(torch.tensor([0] + sizes[:-1]), 0)
    out: Batch = {}
    for key in samples[0]:
        if key in (EDGE_INDEX, BOND_INDEX):
            out[key] = torch.cat([s[key] + int(o) for s, o in zip(samples, offsets)], dim=1)
        elif key in (BATCH, NUM_ATOMS):
            continue
        else:
            out[key] = torch.cat([s[key] for s in samples], dim=0)
    out[BATCH] = torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(sizes))
    out[NUM_ATOMS] = torch.tensor(sizes, dtype=torch.long)
    return out
