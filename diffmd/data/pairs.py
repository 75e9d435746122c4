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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.trajectory import Trajectory, load_trajectory
from diffmd.graph import bonded_graph
from diffmd.io import read_json
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


def segment_batch(seg: Segment, frames: np.ndarray, dtype: torch.dtype = torch.float32) -> B.Batch:
    """The batch (contract of :mod:`diffmd.batch`) of samples ``frames`` (m,) of one segment."""
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


class PairDataset:
    """All frame pairs of one or more segments; index ``i`` -> (segment, current frame)."""

    def __init__(self, segments: list[Segment], max_pairs: int | None = None):
        if not segments:
            raise ValueError("PairDataset needs at least one segment")
        self.segments = segments
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
        parts = [segment_batch(self.segments[s], self.frame_of[indices[segs == s]], dtype) for s in np.unique(segs)]
        return concat_batches(parts)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, dtype=torch.float32):
        """Iterate over batches; shuffled with ``generator`` when given (deterministic per seed)."""
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
        for i in range(0, n, batch_size):
            yield self.batch(order[i : i + batch_size], dtype)


# --- split files --------------------------------------------------------------------------------


def resolve_path(path: str, split_path: str | os.PathLike) -> Path:
    """A path from a split file: relative to the working directory (the repository root)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    raise FileNotFoundError(f"{split_path}: trajectory {path} not found (relative to {Path.cwd()})")


def load_split(path: str | os.PathLike) -> dict[str, Any]:
    """A split file, validated (one-line :class:`ValueError` naming the file): stride >= 1, train/val/test
    segments in range and disjoint, and each trajectory's SHA-256 equal to the one the split was made from."""
    split = read_json(path)
    if not isinstance(split, dict):
        raise ValueError(f"{path}: not a split file (expected a JSON object)")
    for key in ("dataset", "stride"):
        if key not in split:
            raise ValueError(f"{path}: missing key {key!r}")
    if split["dataset"] == "md17":
        missing = [k for k in ("trajectory", "train", "val", "test") if k not in split]
    elif split["dataset"] == "c7o2h10":
        missing = [k for k in ("train_isomers", "val_isomers", "targets", "trajectories", "frames") if k not in split]
    else:
        raise ValueError(f"{path}: unknown dataset {split['dataset']!r}")
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    stride = split["stride"]
    if not _is_int(stride) or stride < 1:
        raise ValueError(f"{path}: 'stride' must be an integer >= 1, got {stride!r}")
    if split["dataset"] == "md17":
        _check_md17_split(split, path)
    else:
        _check_c7o2h10_split(split, path)
    split["_path"] = str(path)
    return split


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(rng: Any, what: str, stride: int, n_frames: Any, path: str | os.PathLike) -> tuple[int, int]:
    """``{"start", "stop"}`` of current frames: integers, history ``2*stride`` before, targets inside."""
    if not (isinstance(rng, dict) and _is_int(rng.get("start")) and _is_int(rng.get("stop"))):
        raise ValueError(f"{path}: {what} must be {{'start': int, 'stop': int}}, got {rng!r}")
    start, stop = rng["start"], rng["stop"]
    if start < 2 * stride:
        raise ValueError(f"{path}: {what} starts at frame {start}, before the history 2*stride={2 * stride}")
    if stop <= start:
        raise ValueError(f"{path}: {what} is empty or reversed ({start}..{stop})")
    if _is_int(n_frames) and stop + stride > n_frames:
        raise ValueError(f"{path}: {what} ends at {stop}; with stride {stride} its last target is past the"
                         f" {n_frames} frames of the trajectory")
    return start, stop


def _check_checksum(traj: str, expected: Any, what: str, path: str | os.PathLike) -> None:
    from diffmd.provenance import sha256_file

    actual = sha256_file(resolve_path(traj, path))
    if actual != expected:
        raise ValueError(f"{path}: {what} {traj} has SHA-256 {actual[:16]}..., the split was made from"
                         f" {str(expected)[:16]}...: the trajectory changed; remake the split")


def _check_md17_split(split: dict[str, Any], path: str | os.PathLike) -> None:
    stride, n_frames = split["stride"], split.get("n_frames")
    parts = {part: _check_range(split[part], f"'{part}'", stride, n_frames, path) for part in ("train", "val", "test")}
    ordered = sorted(parts.items(), key=lambda kv: kv[1])
    for (a, (_, a_stop)), (b, (b_start, _)) in zip(ordered, ordered[1:]):
        if b_start < a_stop:
            raise ValueError(f"{path}: '{a}' {parts[a]} and '{b}' {parts[b]} overlap (train, val and test must be"
                             " disjoint)")
    if "trajectory_sha256" in split:
        _check_checksum(str(split["trajectory"]), split["trajectory_sha256"], "trajectory", path)


def _check_c7o2h10_split(split: dict[str, Any], path: str | os.PathLike) -> None:
    stride = split["stride"]
    lists = {key: split[key] for key in ("train_isomers", "val_isomers", "targets")}
    for key, names in lists.items():
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{path}: {key!r} must be a list of isomer names")
    seen: dict[str, str] = {}
    for key, names in lists.items():
        for name in names:
            if name in seen:
                raise ValueError(f"{path}: isomer {name!r} is in both {seen[name]!r} and {key!r} (leakage)")
            seen[name] = key
    trajectories, frames = split["trajectories"], split["frames"]
    if not (isinstance(trajectories, dict) and isinstance(frames, dict)):
        raise ValueError(f"{path}: 'trajectories' and 'frames' must map isomer names to a file / a frame range")
    n_frames = split.get("n_frames") if isinstance(split.get("n_frames"), dict) else {}
    shas = split.get("trajectory_sha256")
    for name in seen:
        if name not in trajectories or name not in frames:
            raise ValueError(f"{path}: isomer {name!r} missing from 'trajectories' or 'frames'")
        _check_range(frames[name], f"frames of {name!r}", stride, n_frames.get(name), path)
        if isinstance(shas, dict) and name in shas:
            _check_checksum(str(trajectories[name]), shas[name], f"trajectory of {name!r}", path)


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
        return [_segment(load_trajectory(path), split[part], split_stride, stride, path)]
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
        segs.append(_segment(load_trajectory(path), split["frames"][name], split_stride, stride, path))
    return segs
