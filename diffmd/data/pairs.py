"""Frame-pair datasets in the batch contract, built from canonical trajectories and split files.

A sample for the current frame ``t`` with stride ``k`` (frames per model step) holds::

    POSITIONS      x(t)                          Å
    VELOCITIES     x(t) - x(t-k)                 Å/step    (backward difference)
    ACCELERATIONS  x(t) - 2 x(t-k) + x(t-2k)     Å/step²   (past only)
    TARGET         x(t+k)                        Å

No input is ever read from a frame after ``t``. The graph (bonded + 2-hop, see
:mod:`diffmd.graph`) comes from the molecule's first frame and is computed once per trajectory.
O2O (C7O2H10) datasets are the concatenation of several isomers' trajectories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.splits import check_split_trajectory, read_split, resolve_path
from diffmd.data.trajectory import Trajectory, load_trajectory
from diffmd.graph import bonded_graph
from diffmd.provenance import sha256_file
from diffmd.units import force_step


@dataclass
class Segment:
    """One trajectory and the current frames ``t`` (a range) used from it."""

    name: str
    positions: np.ndarray  # (frames, atoms, 3) Å
    atomic_numbers: np.ndarray  # (atoms,)
    start: int
    stop: int
    stride: int = 1
    dt_fs: float = 1.0
    source: str = ""
    path: str = ""
    graph: dict[str, np.ndarray] = field(default_factory=dict)
    #: (frames, atoms, 3) kcal/mol/Å and (frames,) kcal/mol where the source stores them, else None
    forces: np.ndarray | None = None
    energies: np.ndarray | None = None
    temperature_K: float = 0.0
    #: (frames, 2M) the data's Nosé-Hoover chain at each frame's half step where the source stores it, else None
    thermostat_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        k, n = self.stride, self.positions.shape[0]
        if self.start < 2 * k:
            raise ValueError(f"{self.name}: first current frame {self.start} < 2*stride ({2 * k}): no history")
        if self.stop + k > n:
            raise ValueError(f"{self.name}: frame range stop {self.stop} + stride {k} exceeds {n} frames")
        if self.stop <= self.start:
            raise ValueError(f"{self.name}: empty frame range [{self.start}, {self.stop}) at stride {k}")
        if not self.graph:
            self.graph = bonded_graph(self.positions[0], self.atomic_numbers)

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    def frames(self) -> np.ndarray:
        """Current frames t of this segment, (n_pairs,)."""
        return np.arange(self.start, self.stop, dtype=np.int64)

    def max_steps(self, start: int | None = None) -> int:
        """Model steps available from ``start`` (default: ``self.start``) with reference frames."""
        start = self.start if start is None else start
        return max(0, (self.stop - 1 + self.stride - start) // self.stride)


def history_inputs(x_t: np.ndarray, x_tm1: np.ndarray, x_tm2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward differences: v(t) = x(t) - x(t-k), a(t-k) = x(t) - 2x(t-k) + x(t-2k)."""
    return x_t - x_tm1, x_t - 2.0 * x_tm1 + x_tm2


def segment_batch(seg: Segment, frames: np.ndarray, dtype: torch.dtype = torch.float32, unroll: int = 1) -> B.Batch:
    """The batch (contract of :mod:`diffmd.batch`) of samples ``frames`` (m,) of one segment; with ``unroll``
    u > 1 also ``UNROLL_TARGET`` x(t + u k) (``train.unroll``'s target; the frames must have it)."""
    k = seg.stride
    frames = np.asarray(frames, dtype=np.int64)
    m, n = len(frames), seg.n_atoms
    x_t = seg.positions[frames]
    vel, acc = history_inputs(x_t, seg.positions[frames - k], seg.positions[frames - 2 * k])
    target = seg.positions[frames + k]
    ei = torch.as_tensor(seg.graph["edge_index"])
    bi = torch.as_tensor(seg.graph["bond_index"])
    offsets = (torch.arange(m) * n).view(m, 1, 1)

    def flat(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a.reshape(m * n, 3), dtype=dtype)

    out = {
        B.POSITIONS: flat(x_t),
        B.VELOCITIES: flat(vel),
        B.ACCELERATIONS: flat(acc),
        B.TARGET_POSITIONS: flat(target),
        B.ATOMIC_NUMBERS: torch.as_tensor(seg.atomic_numbers, dtype=torch.long).repeat(m),
        B.BATCH: torch.repeat_interleave(torch.arange(m), n),
        B.NUM_ATOMS: torch.full((m,), n, dtype=torch.long),
        B.EDGE_INDEX: (ei.unsqueeze(0) + offsets).permute(1, 0, 2).reshape(2, -1),
        B.EDGE_ATTR: torch.as_tensor(seg.graph["edge_attr"], dtype=dtype).repeat(m, 1),
        B.BOND_INDEX: (bi.unsqueeze(0) + offsets).permute(1, 0, 2).reshape(2, -1),
    }
    if seg.forces is not None:
        out[B.FORCE_STEP] = flat(force_step(seg.forces[frames], seg.atomic_numbers, seg.dt_fs, k))
    if seg.thermostat_state is not None:  # float64 whatever ``dtype``: it continues the data to rounding
        out[B.THERMOSTAT_STATE] = torch.as_tensor(seg.thermostat_state[frames], dtype=torch.float64)
    if unroll > 1:
        out[B.UNROLL_TARGET] = flat(seg.positions[frames + unroll * k])
    return out


def concat_batches(batches: list[B.Batch]) -> B.Batch:
    """Concatenate already-collated batches (offsetting atom and molecule indices)."""
    if len(batches) == 1:
        return batches[0]
    out: B.Batch = {}
    atom_off, mol_off = 0, 0
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in batches[0]}
    for b in batches:
        for key, value in b.items():
            if key in (B.EDGE_INDEX, B.BOND_INDEX):
                value = value + atom_off
            elif key == B.BATCH:
                value = value + mol_off
            parts[key].append(value)
        atom_off += int(b[B.POSITIONS].shape[0])
        mol_off += int(b[B.NUM_ATOMS].shape[0])
    for key, values in parts.items():
        out[key] = torch.cat(values, dim=1 if key in (B.EDGE_INDEX, B.BOND_INDEX) else 0)
    return out


def unroll_segments(segments: list[Segment], unroll: int) -> list[Segment]:
    """``segments`` with their current frames cut so that x(t + ``unroll`` k), ``train.unroll``'s target, lies in
    the same part as x(t + k) does (the last ``unroll - 1`` steps of each range dropped); unchanged for 1."""
    if unroll <= 1:
        return list(segments)
    out = []
    for seg in segments:
        stop = seg.stop - (unroll - 1) * seg.stride
        if stop <= seg.start:
            raise ValueError(f"train.unroll: {unroll} steps of stride {seg.stride} do not fit in {seg.name}'s "
                             f"frames [{seg.start}, {seg.stop})")  # fmt: skip
        out.append(replace(seg, stop=stop, graph=seg.graph))
    return out


class PairDataset:
    """All frame pairs of one or more segments; index ``i`` -> (segment, current frame). ``unroll`` u > 1: every
    batch also carries ``UNROLL_TARGET`` x(t + u k) (cut the segments with :func:`unroll_segments` first)."""

    def __init__(self, segments: list[Segment], max_pairs: int | None = None, unroll: int = 1):
        if not segments:
            raise ValueError("PairDataset needs at least one segment")
        self.segments = segments
        self.unroll = int(unroll)
        seg_ids = [np.full(s.stop - s.start, i, dtype=np.int64) for i, s in enumerate(segments)]
        self.seg_of = np.concatenate(seg_ids)
        self.frame_of = np.concatenate([s.frames() for s in segments])
        if max_pairs is not None and max_pairs < len(self.frame_of):
            keep = np.unique(np.linspace(0, len(self.frame_of) - 1, max_pairs).round().astype(np.int64))
            self.seg_of, self.frame_of = self.seg_of[keep], self.frame_of[keep]
        if len(self.frame_of) == 0:
            raise ValueError(f"no frame pairs in segments {[s.name for s in segments]}")

    def __len__(self) -> int:
        return int(len(self.frame_of))

    def batch(self, indices: np.ndarray, dtype: torch.dtype = torch.float32) -> B.Batch:
        """Samples ``indices`` as one batch, grouped by segment (order within a group kept)."""
        indices = np.asarray(indices, dtype=np.int64)
        segs = self.seg_of[indices]
        parts = [segment_batch(self.segments[s], self.frame_of[indices[segs == s]], dtype, self.unroll)
                 for s in np.unique(segs)]  # fmt: skip
        return concat_batches(parts)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, dtype=torch.float32):
        """Iterate over batches; shuffled with ``generator`` when given (deterministic per seed)."""
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
        for i in range(0, n, batch_size):
            yield self.batch(order[i : i + batch_size], dtype)


# --- split files --------------------------------------------------------------------------------


def load_split(path: str | os.PathLike) -> dict[str, Any]:
    """A split file, validated (:func:`diffmd.data.splits.validate_split`; one-line :class:`ValueError` naming the
    file): stride >= 1, train/val/test segments in range and disjoint, each trajectory's SHA-256 recorded and
    equal to the one the split was made from."""
    split = read_split(path, checksum=sha256_file)
    split["_path"] = str(path)
    return split


def _segment(traj: Trajectory, rng: dict[str, int], split_stride: int, stride: int, path: str) -> Segment:
    """The split's range of current frames, re-cut for a model of ``stride`` frames per step.

    The history needs ``t >= 2*stride``; the target ``t + stride`` stays inside the part (its last
    frame is ``stop - 1 + split_stride``), so a coarse model never trains on another part's frames.
    """
    start = max(int(rng["start"]), 2 * stride)
    stop = int(rng["stop"]) - max(0, stride - split_stride)
    return Segment(
        name=traj.name, positions=traj.positions, atomic_numbers=traj.atomic_numbers,
        start=start, stop=stop, stride=stride, dt_fs=traj.dt_fs, source=traj.source, path=path,
        forces=traj.forces, energies=traj.energies, temperature_K=traj.temperature_K,
        thermostat_state=traj.chain_state,
    )  # fmt: skip


def split_segments(
    split: dict[str, Any], part: str, stride: int | None = None, isomer: str | None = None
) -> list[Segment]:
    """Segments of ``part`` ("train", "val" or "test") of a loaded split, for ``stride`` (default: the split's).

    MD17: the one trajectory restricted to ``split[part]``. C7O2H10: ``train`` -> train_isomers,
    ``val`` -> val_isomers, ``test`` -> ``[isomer]`` (a target), each over its ``frames`` range.
    """
    where, split_stride = split["_path"], int(split["stride"])
    stride = split_stride if stride is None else int(stride)
    if split["dataset"] == "md17":
        path = str(resolve_path(split["trajectory"], where))
        traj = load_trajectory(path)
        check_split_trajectory(split, traj, path, where)
        return [_segment(traj, split[part], split_stride, stride, path)]
    names = {"train": split["train_isomers"], "val": split["val_isomers"]}.get(part)
    if part == "test":
        if isomer is None:
            raise ValueError(f"{where}: the c7o2h10 test part needs a target isomer")
        names = [isomer]
    if names is None:
        raise ValueError(f"{where}: unknown part {part!r}")
    segs = []
    for name in names:
        if name not in split["trajectories"] or name not in split["frames"]:
            raise ValueError(f"{where}: isomer {name!r} missing from 'trajectories' or 'frames'")
        path = str(resolve_path(split["trajectories"][name], where))
        traj = load_trajectory(path)
        check_split_trajectory(split, traj, path, where, isomer=name)
        segs.append(_segment(traj, split["frames"][name], split_stride, stride, path))
    return segs
