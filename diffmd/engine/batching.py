"""Batches for the hot loops: frame pairs resident on the device, gathered by index, structures built once.

:class:`DeviceData` holds every pair of a :class:`diffmd.data.pairs.PairDataset` on the training device (the
inputs and targets computed once, exactly as :func:`diffmd.data.pairs.segment_batch` computes them), and
gathers a batch by index: no per-step collation on the host and no per-step host-to-device copy (one copy of
the epoch's shuffled order per epoch). Its batches are the dataset's own, key for key and bit for bit, in the
same order (molecules grouped by segment as :meth:`PairDataset.batch` groups them), so the random draws of a
loss (noise per atom, diffusion time per molecule) and therefore the training are unchanged.

Constant structures are built once: per molecule, the bonded graph and the structures the model declares
(:meth:`diffmd.registry.TrajectoryModel.molecule_structures`: a complete graph, sticks, triplets) are kept as
templates and gathered with offsets by device ops whose output sizes the host knows from the split (no host
read of device data); a single-molecule dataset (MD17) keeps one tiled copy per batch size. The rollout's
constant batch (:func:`tiled_structures`) is built the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, Segment, segment_batch
from diffmd.elements import MAX_Z

#: Per-atom float keys of a pair (positions, inputs, target, force floor).
ATOM_KEYS = (B.POSITIONS, B.VELOCITIES, B.ACCELERATIONS, B.TARGET_POSITIONS, B.FORCE_STEP, B.UNROLL_TARGET)


def check_atomic_numbers(numbers: np.ndarray, where: str) -> None:
    """One line naming ``where`` when an atomic number lies outside the embedding's 0..MAX_Z (checked once per
    molecule here, never in a forward)."""
    z = np.asarray(numbers)
    if z.size and (int(z.min()) < 0 or int(z.max()) > MAX_Z):
        raise ValueError(f"{where}: atomic numbers outside 0..{MAX_Z}: {int(z.min())}..{int(z.max())}")


def molecule_templates(model: Any, seg: Segment) -> dict[str, np.ndarray]:
    """Everything constant for ``seg``'s molecule, local indices: the bonded graph and the model's structures
    (``B.STRUCTURE + name``), each an int64 index array (..., L) or, for ``EDGE_ATTR``, rows (E, 4)."""
    check_atomic_numbers(seg.atomic_numbers, seg.name)
    out = {B.EDGE_INDEX: np.asarray(seg.graph["edge_index"], dtype=np.int64),
           B.BOND_INDEX: np.asarray(seg.graph["bond_index"], dtype=np.int64)}  # fmt: skip
    if model is not None:
        for name, value in model.molecule_structures(np.asarray(seg.atomic_numbers), seg.graph).items():
            arr = np.asarray(value, dtype=np.int64)
            if arr.ndim < 1 or (arr.size and (arr.min() < 0 or arr.max() >= seg.n_atoms)):
                raise ValueError(f"{getattr(model, 'name', 'model')}: structure {name!r} of {seg.name} is not an "
                                 f"array of local atom indices")  # fmt: skip
            out[B.STRUCTURE + name] = arr
    return out


def tile_index(template: np.ndarray, n_atoms: int, m: int) -> np.ndarray:
    """``m`` copies of one molecule's local index array (..., L), offset by ``n_atoms`` each: (..., m L)."""
    offsets = (np.arange(m, dtype=np.int64) * n_atoms).reshape((m,) + (1,) * template.ndim)
    tiled = template[None] + offsets  # (m, ..., L)
    return np.moveaxis(tiled, 0, -2).reshape(template.shape[:-1] + (m * template.shape[-1],))


def tiled_structures(model: Any, seg: Segment, m: int, device: torch.device, dtype: torch.dtype) -> B.Batch:
    """The constant part of a batch of ``m`` copies of ``seg``'s molecule (a rollout's): numbers, batch vector,
    sizes, bonded graph and the model's structures, on ``device``."""
    n = seg.n_atoms
    templ = molecule_templates(model, seg)
    out = {
        B.ATOMIC_NUMBERS: torch.as_tensor(np.tile(np.asarray(seg.atomic_numbers, dtype=np.int64), m), device=device),
        B.BATCH: torch.as_tensor(np.repeat(np.arange(m, dtype=np.int64), n), device=device),
        B.NUM_ATOMS: torch.full((m,), n, dtype=torch.long, device=device),
        B.EDGE_ATTR: torch.as_tensor(np.tile(seg.graph["edge_attr"], (m, 1)), dtype=dtype, device=device),
    }
    for key, value in templ.items():
        out[key] = torch.as_tensor(tile_index(value, n, m), device=device)
    return out


class _Ragged:
    """Per-segment variable-length arrays (along the last axis) concatenated, gathered for a batch of molecules
    on the device with output sizes known on the host."""

    def __init__(self, parts: list[np.ndarray], device: torch.device, dtype: torch.dtype | None, index: bool):
        self.lens = np.array([p.shape[-1] if index else p.shape[0] for p in parts], dtype=np.int64)
        axis = -1 if index else 0
        flat = np.concatenate(parts, axis=axis)
        self.flat = torch.as_tensor(flat, dtype=dtype, device=device)
        self.index = index
        ptr = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
        self.ptr = torch.as_tensor(ptr, device=device)
        self.lens_dev = torch.as_tensor(self.lens, device=device)

    def gather(self, mol_seg: torch.Tensor, atom_start: torch.Tensor | None, total: int) -> torch.Tensor:
        """The arrays of the batch's molecules (segment ids ``mol_seg`` (b,)), concatenated; index arrays
        offset by each molecule's first atom ``atom_start`` (b,). ``total``: the output length (host-known)."""
        lens = self.lens_dev[mol_seg]
        first = torch.cumsum(lens, 0) - lens
        owner = torch.repeat_interleave(torch.arange(mol_seg.shape[0], device=mol_seg.device), lens,
                                        output_size=total)  # fmt: skip
        src = self.ptr[mol_seg][owner] + torch.arange(total, device=mol_seg.device) - first[owner]
        if not self.index:
            return self.flat[src]
        return self.flat[..., src] + atom_start[owner]


class DeviceData:
    """The pairs of ``data`` on ``device`` (module docstring); ``model``: whose structures the batches carry."""

    def __init__(self, data: PairDataset, device: torch.device | str, model: Any = None,
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        self.device = torch.device(device)
        self.data = data
        self.segments = data.segments
        self.seg_of = np.asarray(data.seg_of, dtype=np.int64)
        self.frame_of = np.asarray(data.frame_of, dtype=np.int64)
        seg_atoms = np.array([s.n_atoms for s in self.segments], dtype=np.int64)
        self.pair_atoms = seg_atoms[self.seg_of]
        self.uniform = len(set(seg_atoms.tolist())) == 1
        self.n_atoms = int(seg_atoms[0]) if self.uniform else None
        unroll = int(getattr(data, "unroll", 1))
        keys = [k for k in ATOM_KEYS if (k != B.FORCE_STEP or all(s.forces is not None for s in self.segments))
                and (k != B.UNROLL_TARGET or unroll > 1)]  # fmt: skip
        self.keys = keys
        # per-pair atom rows: pair p's atoms are rows atom_ptr[p] .. atom_ptr[p] + pair_atoms[p] - 1
        self.atom_ptr = np.concatenate([[0], np.cumsum(self.pair_atoms)[:-1]]).astype(np.int64)
        store = {k: torch.empty((int(self.pair_atoms.sum()), 3), dtype=dtype) for k in keys}
        for s, seg in enumerate(self.segments):
            pairs = np.nonzero(self.seg_of == s)[0]
            if not len(pairs):
                continue
            # the dataset's own arithmetic (float64 differences, then the cast), so batches are bit for bit its own
            part = segment_batch(seg, self.frame_of[pairs], dtype, unroll)
            rows = (self.atom_ptr[pairs][:, None] + np.arange(seg.n_atoms)[None, :]).reshape(-1)
            rows_t = torch.as_tensor(rows)
            for k in keys:
                store[k][rows_t] = part[k]
        self.store = {k: v.to(self.device) for k, v in store.items()}
        # per-pair molecule rows: the data's thermostat state at each pair's frame (float64, as segment_batch)
        self.chains = None
        if self.segments and all(s.thermostat_state is not None for s in self.segments):
            chains = [np.asarray(self.segments[s].thermostat_state[f], dtype=np.float64)
                      for s, f in zip(self.seg_of, self.frame_of)]  # fmt: skip
            self.chains = torch.as_tensor(np.stack(chains) if chains else np.zeros((0, 0)), dtype=torch.float64,
                                          device=self.device)  # fmt: skip
        self.atom_ptr_dev = torch.as_tensor(self.atom_ptr, device=self.device)
        self.pair_atoms_dev = torch.as_tensor(self.pair_atoms, device=self.device)
        self.seg_dev = torch.as_tensor(self.seg_of, device=self.device)
        templates = [molecule_templates(model, seg) for seg in self.segments]
        self.index_keys = list(templates[0])
        for t, seg in zip(templates, self.segments):
            if list(t) != self.index_keys:
                raise ValueError(f"{seg.name}: its structures {sorted(t)} differ from the first segment's")
        self.single = len(self.segments) == 1
        if self.single:
            self._templates = templates[0]
            self._tiled: dict[int, B.Batch] = {}
        else:
            self._ragged = {k: _Ragged([t[k] for t in templates], self.device, None, True) for k in self.index_keys}
            self._ragged[B.EDGE_ATTR] = _Ragged([np.asarray(s.graph["edge_attr"]) for s in self.segments],
                                                self.device, dtype, False)  # fmt: skip
            numbers = [np.asarray(s.atomic_numbers, dtype=np.int64) for s in self.segments]
            self._ragged[B.ATOMIC_NUMBERS] = _Ragged(numbers, self.device, torch.long, False)
            self._lens = {k: r.lens for k, r in self._ragged.items()}
        self._sizes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.seg_of)

    # --- the order ------------------------------------------------------------------------------------
    def order(self, batch_size: int, generator: torch.Generator | None = None) -> np.ndarray:
        """The pair order of one pass: shuffled with ``generator`` as :meth:`PairDataset.batches` shuffles,
        then each batch's pairs grouped by segment (stably) as :meth:`PairDataset.batch` groups them."""
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
        if len(self.segments) == 1:
            return order
        out = np.empty_like(order)
        for i in range(0, n, batch_size):
            part = order[i : i + batch_size]
            out[i : i + batch_size] = part[np.argsort(self.seg_of[part], kind="stable")]
        return out

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[B.Batch]:
        """Batches of ``batch_size`` pairs (the last one smaller), as :meth:`PairDataset.batches` gives them."""
        order = self.order(batch_size, generator)
        dev_order = torch.as_tensor(order, device=self.device)  # one host-to-device copy per pass
        for i in range(0, len(order), batch_size):
            yield self._batch(order[i : i + batch_size], dev_order[i : i + batch_size])

    def batch(self, indices: np.ndarray) -> B.Batch:
        """The pairs ``indices`` (in this order: group them by segment first to match the dataset's batch)."""
        indices = np.asarray(indices, dtype=np.int64)
        return self._batch(indices, torch.as_tensor(indices, device=self.device))

    # --- gathering -------------------------------------------------------------------------------------
    def _sizes_of(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """BATCH and NUM_ATOMS of a uniform batch of ``b`` molecules (built once per batch size)."""
        if b not in self._sizes:
            n = self.n_atoms
            self._sizes[b] = (torch.arange(b, device=self.device).repeat_interleave(n),
                              torch.full((b,), n, dtype=torch.long, device=self.device))  # fmt: skip
        return self._sizes[b]

    def _tiled_of(self, b: int) -> B.Batch:
        if b not in self._tiled:
            seg = self.segments[0]
            n = seg.n_atoms
            tiled = {k: torch.as_tensor(tile_index(v, n, b), device=self.device) for k, v in self._templates.items()}
            tiled[B.EDGE_ATTR] = torch.as_tensor(np.tile(seg.graph["edge_attr"], (b, 1)), dtype=self.dtype,
                                                 device=self.device)  # fmt: skip
            tiled[B.ATOMIC_NUMBERS] = torch.as_tensor(np.tile(np.asarray(seg.atomic_numbers, dtype=np.int64), b),
                                                      device=self.device)  # fmt: skip
            self._tiled[b] = tiled
        return self._tiled[b]

    def _batch(self, idx: np.ndarray, idx_dev: torch.Tensor) -> B.Batch:
        b = len(idx)
        out: B.Batch = {}
        if self.uniform:
            n = self.n_atoms
            for k in self.keys:
                out[k] = self.store[k].view(-1, n, 3)[idx_dev].reshape(b * n, 3)
            out[B.BATCH], out[B.NUM_ATOMS] = self._sizes_of(b)
        else:
            lens = self.pair_atoms_dev[idx_dev]
            total_atoms = int(self.pair_atoms[idx].sum())
            first = torch.cumsum(lens, 0) - lens
            owner = torch.repeat_interleave(torch.arange(b, device=self.device), lens, output_size=total_atoms)
            rows = self.atom_ptr_dev[idx_dev][owner] + torch.arange(total_atoms, device=self.device) - first[owner]
            for k in self.keys:
                out[k] = self.store[k][rows]
            out[B.BATCH], out[B.NUM_ATOMS] = owner, lens
        if self.chains is not None:
            out[B.THERMOSTAT_STATE] = self.chains[idx_dev]
        if self.single:
            out.update(self._tiled_of(b))
        else:
            segs = self.seg_of[idx]
            mol_seg = self.seg_dev[idx_dev]
            atom_start = torch.cumsum(out[B.NUM_ATOMS], 0) - out[B.NUM_ATOMS]
            for k, rag in self._ragged.items():
                total = int(self._lens[k][segs].sum())
                out[k] = rag.gather(mol_seg, atom_start, total)
        return {k: out[k] for k in self._key_order(out)}

    def _key_order(self, out: B.Batch) -> list[str]:
        """The dataset batch's key order (positions, inputs, target, numbers, batch, sizes, graph, force floor),
        then the structures."""
        first = [B.POSITIONS, B.VELOCITIES, B.ACCELERATIONS, B.TARGET_POSITIONS, B.ATOMIC_NUMBERS, B.BATCH,
                 B.NUM_ATOMS, B.EDGE_INDEX, B.EDGE_ATTR, B.BOND_INDEX, B.FORCE_STEP, B.THERMOSTAT_STATE,
                 B.UNROLL_TARGET]  # fmt: skip
        return [k for k in first if k in out] + sorted(k for k in out if k not in first)
