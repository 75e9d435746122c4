"""Autoregressive rollout: the model feeds on its own predictions, starting from a reference frame.

From the start frame ``t0`` the history (x(t0-k), x(t0-2k)) is the reference trajectory; after
that every input is built from the model's own previous predictions (v and a by backward
differences, :func:`diffmd.data.pairs.history_inputs`). The state is the last three frames only,
the graph is built once and the output array is preallocated, so a rollout costs O(horizon).
It stops at the first step whose prediction holds NaN/inf or an atom farther than
``divergence_bound_A`` from the start frame's centroid (recorded as diverged, ``diverged_at``).

CLI::

    python -m diffmd.engine.rollout --split SPLIT.json --checkpoint DIR/model.pt [--target ISOMER]
        --rollout-config JSON --seed N --out RUNDIR
        [--simulation-config JSON [--ensemble ENSEMBLE.npz] --meta JSON --simulation-out RUNDIR/simulation.json]

With ``--simulation-out`` the job then simulates the same model in the same process
(:func:`diffmd.engine.simulate.run_simulation`, the RNGs seeded again: the record a separate
``python -m diffmd.engine.simulate run`` job writes), so a run that simulates pays one start-up.

``rollout-config``: the config's ``rollout`` section + ``device``. ``horizon`` is counted in
source-trajectory frames (stride-1 steps), so every model covers the same simulated time; a model
of stride k takes ``horizon // k`` steps; null = the whole test segment.

One job writes three things into ``rollout.npz`` (diffmd/rundir.py):

* the paper's protocol: one rollout from the test segment's first frame over ``horizon``;
* the yardstick's multi-start rollouts: ``n_starts`` start frames spread evenly over the test
  segment, each rolled out ``start_horizon_fs`` fs, all together in one batch per model step
  (:func:`rollout_starts`); a start that diverges is frozen at its last finite frame (so it cannot
  disturb the others through batch-wide operations) and recorded with its ``diverged_at``;
* the one-step (teacher-forced) predictions on up to ``one_step_frames`` test frames, spread evenly
  (:func:`one_step`), with the true next frames beside them.

Models that cannot roll out (``can_rollout`` False, the one-step floors) write only the one-step part.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.config import section_defaults
from diffmd.data.pairs import Segment, history_inputs, load_split, split_segments
from diffmd.elements import masses as element_masses
from diffmd.engine.batching import tiled_structures
from diffmd.engine.capture import apply_compile
from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything, set_threads
from diffmd.engine.rigid import conserves_momentum, remove_rigid_motion, rigid_motion
from diffmd.provenance import write_provenance
from diffmd.registry import TrajectoryModel, uses_accelerator
from diffmd.rundir import MultiStart, OneStep, write_rollout

#: Default divergence bound (Å), from the config schema (rollout.divergence_bound_A).
DIVERGENCE_BOUND_A = float(section_defaults("rollout")["divergence_bound_A"])
#: ``rollout.rigid_motion``: ``keep`` (the paper's protocol) or ``remove`` the rigid-body part of every step of a
#: model that does not conserve momentum (:mod:`diffmd.engine.rigid`); measured and recorded either way.
RIGID_MOTION = ("keep", "remove")


@dataclass
class RolloutResult:
    positions: np.ndarray  # (n+1, atoms, 3) Å, frame 0 = the start frame; NaN after divergence
    frame_indices: np.ndarray  # (n+1,) reference frame index of each predicted frame
    diverged_at: int  # step at which the rollout diverged, -1 if it did not
    score_evals: np.ndarray  # (n,) score evaluations per step (0 for non-diffusion models)
    seconds: float
    #: the model's other rollout counters summed over the steps (e.g. Score Dynamics' bond-check resamples)
    stats: dict[str, float] = field(default_factory=dict)
    #: the rigid-body motion of the model's steps (:attr:`CopiesRollout.rigid`, this start's values)
    rigid: dict[str, float] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_at >= 0

    @property
    def n_done(self) -> int:
        """Frames actually predicted (excluding the start frame)."""
        return self.diverged_at - 1 if self.diverged else len(self.positions) - 1


def graph_tensors(seg: Segment, device: torch.device, dtype: torch.dtype) -> B.Batch:
    """The constant part of a one-molecule batch: numbers, graph, batch vector."""
    n = seg.n_atoms
    return {
        B.ATOMIC_NUMBERS: torch.as_tensor(seg.atomic_numbers, dtype=torch.long, device=device),
        B.BATCH: torch.zeros(n, dtype=torch.long, device=device),
        B.NUM_ATOMS: torch.tensor([n], dtype=torch.long, device=device),
        B.EDGE_INDEX: torch.as_tensor(seg.graph["edge_index"], device=device),
        B.EDGE_ATTR: torch.as_tensor(seg.graph["edge_attr"], dtype=dtype, device=device),
        B.BOND_INDEX: torch.as_tensor(seg.graph["bond_index"], device=device),
    }


@torch.no_grad()
def rollout(
    model: TrajectoryModel,
    seg: Segment,
    start: int,
    n_steps: int,
    divergence_bound_A: float = DIVERGENCE_BOUND_A,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: str | None = None,
    rigid: str = "keep",
) -> RolloutResult:
    """Roll ``model`` out for ``n_steps`` model steps from reference frame ``start`` of ``seg``."""
    multi = rollout_starts(model, seg, np.array([start]), n_steps, divergence_bound_A, device, dtype, progress,
                           rigid)  # fmt: skip
    return RolloutResult(multi.positions[0], multi.frame_indices[0], int(multi.diverged_at[0]), multi.score_evals,
                         multi.seconds, multi.stats, {k: float(v[0]) for k, v in multi.rigid.items()})  # fmt: skip


@dataclass
class MultiRollout:
    """Rollouts from several start frames of one segment, batched (see :func:`rollout_starts`)."""

    starts: np.ndarray  # (M,) start frames
    positions: np.ndarray  # (M, n+1, atoms, 3) Å; NaN after a start's divergence
    frame_indices: np.ndarray  # (M, n+1) reference frame of each predicted frame
    diverged_at: np.ndarray  # (M,) step of divergence, -1 if none
    score_evals: np.ndarray  # (n,) score evaluations per (batched) step
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    #: per start, means over its steps: ``com_speed`` (Å/step), ``angular_momentum`` (u Å²/step), ``ke_share``
    rigid: dict[str, np.ndarray] = field(default_factory=dict)


def tiled_graph(seg: Segment, m: int, device: torch.device, dtype: torch.dtype,
                model: TrajectoryModel | None = None) -> B.Batch:  # fmt: skip
    """The constant part of a batch of ``m`` copies of the segment's molecule, concatenated (one batch):
    numbers, batch vector, sizes, bonded graph and ``model``'s structures (built once per molecule,
    :func:`diffmd.engine.batching.tiled_structures`)."""
    return tiled_structures(model, seg, m, device, dtype)


def copies_graph(model: TrajectoryModel | None, segs: list[Segment], device: torch.device,
                 dtype: torch.dtype) -> B.Batch:  # fmt: skip
    """The constant part of a batch of one copy of each segment's molecule (they may differ), concatenated."""
    parts = [tiled_structures(model, seg, 1, device, dtype) for seg in segs]
    if len(parts) == 1:
        return parts[0]
    out: B.Batch = {}
    offset = 0
    for i, (seg, part) in enumerate(zip(segs, parts)):
        for key, value in part.items():
            if key in (B.EDGE_INDEX, B.BOND_INDEX) or key.startswith(B.STRUCTURE):
                value = value + offset
            elif key == B.BATCH:
                value = value + i
            out.setdefault(key, []).append(value)
        offset += seg.n_atoms
    return {key: torch.cat(values, dim=-1 if key in (B.EDGE_INDEX, B.BOND_INDEX) or key.startswith(B.STRUCTURE)
                           else 0) for key, values in out.items()}  # fmt: skip


#: Steps between the rollout's host checks of whether every copy has diverged (the loop never reads the device
#: otherwise: outputs and divergence stay on it until the end).
CHECK_EVERY = 64


@torch.no_grad()
def rollout_starts(
    model: TrajectoryModel,
    seg: Segment,
    starts: np.ndarray,
    n_steps: int,
    divergence_bound_A: float = DIVERGENCE_BOUND_A,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: str | None = None,
    rigid: str = "keep",
) -> MultiRollout:
    """Roll ``model`` out ``n_steps`` steps from every start frame in ``starts`` at once (one batch of
    ``len(starts)`` molecules per step); for one start this is :func:`rollout`, and for several it equals
    the per-start rollouts for a model whose prediction for one molecule does not depend on the others."""
    k, starts = int(model.stride), np.asarray(starts, dtype=np.int64)
    if len(starts) < 1:
        raise ValueError(f"{seg.name}: no start frames")
    res = rollout_copies(model, [seg] * len(starts), starts, n_steps, divergence_bound_A, device, dtype, progress,
                         rigid=rigid)  # fmt: skip
    out = np.stack(res.positions)
    idx = starts[:, None] + k * np.arange(n_steps + 1, dtype=np.int64)[None, :]
    return MultiRollout(starts, out, idx, res.diverged_at, res.score_evals, res.seconds, res.stats, res.rigid)


@dataclass
class CopiesRollout:
    """Rollouts of a batch of copies (each its own segment and start), see :func:`rollout_copies`."""

    positions: list[np.ndarray]  # per copy (n_steps+1, atoms, 3) Å; NaN after its divergence
    diverged_at: np.ndarray  # (M,) step of divergence, -1 if none
    score_evals: np.ndarray  # (n_steps,) score evaluations per (batched) step
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    steps_taken: int = 0  # batched steps run (fewer than n_steps when every copy diverged early)
    #: per copy, means over its steps before divergence: ``com_speed`` |V| (Å/step), ``angular_momentum`` |L|
    #: (u Å²/step) and ``ke_share`` (the rigid part's share of the step's kinetic energy) of the model's own step,
    #: before any removal; ``removed`` 1.0 where the rollout removed it (``rollout.rigid_motion``), else 0.0
    rigid: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def rollout_copies(
    model: TrajectoryModel,
    segs: list[Segment],
    starts: np.ndarray,
    n_steps: int,
    divergence_bound_A: float = DIVERGENCE_BOUND_A,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: str | None = None,
    check_every: int = CHECK_EVERY,
    rigid: str = "keep",
) -> CopiesRollout:
    """Roll ``model`` out ``n_steps`` steps from start frame ``starts[i]`` of ``segs[i]`` for every copy i at
    once (one batch; the molecules may differ). A copy whose prediction holds NaN/inf or an atom farther than
    the bound from its start frame's centroid is frozen at its last finite frame (so it cannot disturb the
    others through batch-wide operations) and recorded with its ``diverged_at``.

    Launch-light: the constant batch (graph, structures) is built once, the outputs and the divergence flags stay
    on the device, and the host reads the device only every ``check_every`` steps (to stop once every copy has
    diverged) and once at the end.

    ``rigid`` (``rollout.rigid_motion``): ``keep``, or ``remove`` the rigid-body part (centre-of-mass velocity and
    angular momentum, :mod:`diffmd.engine.rigid`) of every step of a model that does not conserve momentum
    (:func:`diffmd.engine.rigid.conserves_momentum`). Either way the rigid motion of the model's own steps is
    measured per copy (``CopiesRollout.rigid``)."""
    if rigid not in RIGID_MOTION:
        raise ValueError(f"rollout.rigid_motion: expected one of {', '.join(RIGID_MOTION)}, got {rigid!r}")
    k, starts = int(model.stride), np.asarray(starts, dtype=np.int64)
    m = len(starts)
    if m < 1 or len(segs) != m:
        raise ValueError(f"rollout: {len(segs)} segments for {m} start frames")
    for seg, start in zip(segs, starts):
        if int(start) < 2 * k:
            raise ValueError(f"{seg.name}: rollout start {int(start)} < 2*stride ({2 * k}): no history")
    device = torch.device(device)
    model.eval()
    model.rollout_stats()
    sizes = [seg.n_atoms for seg in segs]
    uniform = len(set(sizes)) == 1
    n_total = sum(sizes)
    const = tiled_graph(segs[0], m, device, dtype, model) if len(set(id(s) for s in segs)) == 1 \
        else copies_graph(model, segs, device, dtype)  # fmt: skip
    mol = const[B.BATCH]

    def frames(offset: int) -> torch.Tensor:
        rows = np.concatenate([seg.positions[start - offset * k] for seg, start in zip(segs, starts)])
        return torch.as_tensor(rows.reshape(n_total, 3), dtype=dtype, device=device)

    hist = [frames(2), frames(1), frames(0)]
    counts = torch.as_tensor(np.asarray(sizes, dtype=np.float64), dtype=dtype, device=device)

    def per_molecule_max(values: torch.Tensor) -> torch.Tensor:
        if uniform:
            return values.view(m, sizes[0]).amax(dim=-1)
        return torch.full((m,), float("-inf"), dtype=values.dtype, device=device).scatter_reduce(
            0, mol, values, reduce="amax")  # fmt: skip

    if uniform:
        centre = hist[-1].view(m, sizes[0], 3).mean(dim=1, keepdim=True)
        centre_atom = centre.expand(m, sizes[0], 3).reshape(n_total, 3)
    else:
        centre_atom = (torch.zeros((m, 3), dtype=dtype, device=device).index_add_(0, mol, hist[-1])
                       / counts[:, None])[mol]  # fmt: skip
    masses = torch.as_tensor(np.concatenate([element_masses(seg.atomic_numbers) for seg in segs]), dtype=dtype,
                             device=device)  # fmt: skip
    remove = rigid == "remove" and not conserves_momentum(model)
    rigid_sums = torch.zeros((3, m), dtype=torch.float64, device=device)  # |V|, |L|, rigid share, per copy
    rigid_steps = torch.zeros(m, dtype=torch.float64, device=device)
    vel0, acc0 = history_inputs(hist[2], hist[1], hist[0])
    start_batch = {**const, B.POSITIONS: hist[2], B.VELOCITIES: vel0, B.ACCELERATIONS: acc0}
    if all(seg.thermostat_state is not None for seg in segs):  # the data's thermostat at the starts, for
        # simulators that continue it (float64 whatever ``dtype``: it continues the data to rounding)
        chains = np.stack([seg.thermostat_state[start] for seg, start in zip(segs, starts)])
        start_batch[B.THERMOSTAT_STATE] = torch.as_tensor(chains, dtype=torch.float64, device=device)
    model.begin_rollout(start_batch)
    out = torch.full((n_steps + 1, n_total, 3), float("nan"), dtype=dtype, device=device)
    out[0] = hist[2]
    evals = np.zeros(n_steps)
    totals: dict[str, float] = {}
    step_stats: list[dict[str, float]] = []
    diverged_at = torch.full((m,), -1, dtype=torch.long, device=device)
    alive = torch.ones(m, dtype=torch.bool, device=device)
    nan = torch.tensor(float("nan"), dtype=dtype, device=device)
    t0 = time.perf_counter()
    taken = 0
    for step in range(1, n_steps + 1):
        vel, acc = history_inputs(hist[2], hist[1], hist[0])
        batch = dict(const)
        batch.update({B.POSITIONS: hist[2], B.VELOCITIES: vel, B.ACCELERATIONS: acc})
        nxt = model.predict(batch)
        if remove:  # measured here, before the removal (kept steps are measured once, after the loop)
            nxt, parts = remove_rigid_motion(hist[2], nxt, masses, mol, m)
            now = rigid_summary(parts, dtype)
            rigid_sums += torch.where(alive & torch.isfinite(now).all(0), now, torch.zeros_like(now))
            rigid_steps += alive.double()
        stats = dict(model.rollout_stats())
        evals[step - 1] = float(stats.pop("score_evals", 0.0))
        step_stats.append(stats)
        bad = per_molecule_max((~torch.isfinite(nxt).all(dim=-1)).to(dtype)) > 0
        far = per_molecule_max(torch.nan_to_num((nxt - centre_atom).norm(dim=-1), nan=0.0)) > divergence_bound_A
        newly = (bad | far) & alive
        diverged_at = torch.where(newly, torch.full_like(diverged_at, step), diverged_at)
        alive = alive & ~newly
        # frozen copies keep their last finite frame, so NaN cannot reach the others
        keep = alive[mol][:, None]
        nxt = torch.where(keep, nxt, hist[2])
        out[step] = torch.where(keep, nxt, nan)
        hist = [hist[1], hist[2], nxt]
        taken = step
        if step % check_every == 0 and not bool(alive.any()):
            break
        if progress and (step % max(1, n_steps // 10) == 0 or step == n_steps):
            _report(progress, step, n_steps, time.perf_counter() - t0)
    if not remove:  # the steps as taken, all at once: one batch of (steps x copies) molecules
        x_all = out[:taken].reshape(-1, 3)
        d_all = (out[1 : taken + 1] - out[:taken]).reshape(-1, 3)
        mol_all = (mol[None, :] + m * torch.arange(taken, device=device)[:, None]).reshape(-1)
        ok = torch.isfinite(d_all).all(-1)
        parts = rigid_motion(torch.where(ok[:, None], x_all, 0.0), torch.where(ok[:, None], d_all, 0.0),
                             masses.repeat(taken), mol_all, taken * m)  # fmt: skip
        now = rigid_summary(parts, dtype).view(3, taken, m)
        valid = (torch.zeros(taken * m, dtype=dtype, device=device).index_add_(0, mol_all, (~ok).to(dtype)) == 0)
        valid = valid.view(taken, m) & (parts.ke_total.view(taken, m) > 0)
        rigid_sums = torch.where(valid[None], now, torch.zeros_like(now)).sum(1)
        rigid_steps = valid.double().sum(0)
    out_np = out.double().cpu().numpy()
    seconds = time.perf_counter() - t0
    div = diverged_at.cpu().numpy().astype(np.int64)
    means = (rigid_sums / rigid_steps.clamp_min(1.0)).cpu().numpy()
    rigid_out = {"com_speed": means[0], "angular_momentum": means[1], "ke_share": means[2]}
    if (div >= 0).all():  # every copy diverged: the steps after the last divergence (run before the check) drop
        taken = int(div.max())
        evals[taken:] = 0.0
    for stats in step_stats[:taken]:
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    positions, first = [], 0
    for seg, start in zip(segs, starts):
        pos = out_np[:, first : first + seg.n_atoms]
        pos[0] = seg.positions[start]
        positions.append(pos)
        first += seg.n_atoms
    rigid_out["removed"] = np.full(m, float(remove))
    return CopiesRollout(positions, div, evals, seconds, totals, taken, rigid_out)


def rigid_summary(parts: Any, dtype: torch.dtype) -> torch.Tensor:
    """(3, ...) float64: |V|, |L| and the kinetic energy's rigid share of :class:`diffmd.engine.rigid.RigidParts`."""
    share = parts.ke_rigid / parts.ke_total.clamp_min(torch.finfo(dtype).tiny)
    return torch.stack([parts.com_velocity.norm(dim=-1), parts.angular_momentum.norm(dim=-1), share]).double()


def spread_starts(seg: Segment, n_starts: int, n_steps: int) -> np.ndarray:
    """``n_starts`` start frames spread evenly over the segment, each with ``n_steps`` reference steps after
    it (fewer when the segment is short; the first is always the segment's first frame)."""
    k = seg.stride
    last = seg.stop - 1 + k - n_steps * k  # the last start whose n_steps-th target exists
    if last < seg.start:
        raise ValueError(f"{seg.name}: {n_steps} steps of stride {k} do not fit in frames [{seg.start}, {seg.stop})")
    starts = np.unique(np.linspace(seg.start, last, max(int(n_starts), 1)).round().astype(np.int64))
    return starts


@torch.no_grad()
def one_step(
    model: TrajectoryModel, seg: Segment, frames: np.ndarray, device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32, batch_size: int = 256,
) -> np.ndarray:  # fmt: skip
    """Teacher-forced next frames x̂(t+k) from the true history at each frame t of ``frames``:
    (F, atoms, 3) Å. Stateful simulators are started afresh on every batch (``begin_rollout``)."""
    from diffmd.data.pairs import segment_batch

    model.eval()
    model.rollout_stats()
    out = []
    for i in range(0, len(frames), batch_size):
        batch = B.to_device(B.inputs_only(segment_batch(seg, frames[i : i + batch_size], dtype)), device)
        model.begin_rollout(batch)
        out.append(model.predict(batch).double().cpu().numpy().reshape(-1, seg.n_atoms, 3))
    model.rollout_stats()
    return np.concatenate(out)


def one_step_frames(seg: Segment, n_frames: int) -> np.ndarray:
    """Up to ``n_frames`` test frames t, spread evenly, whose target t + k exists."""
    all_frames = seg.frames()
    if n_frames >= len(all_frames):
        return all_frames
    return all_frames[np.unique(np.linspace(0, len(all_frames) - 1, n_frames).round().astype(np.int64))]


def _report(what: str, step: int, n_steps: int, seconds: float) -> None:
    """One plain progress line (logs are files, not terminals): steps done, frames per second, ETA."""
    rate = step / max(seconds, 1e-12)
    print(f"{what}: step {step}/{n_steps}  {rate:.1f} frames/s  elapsed {seconds:.1f}s  "
          f"eta {(n_steps - step) / max(rate, 1e-12):.1f}s", flush=True)


def n_steps_for(seg: Segment, stride: int, horizon: int | None, start: int) -> int:
    """Model steps: ``horizon`` frames // stride, capped by the reference frames available."""
    avail = seg.max_steps(start)
    steps = avail if horizon is None else min(avail, int(horizon) // stride)
    if steps < 1:
        raise ValueError(f"{seg.name}: no rollout step fits (horizon {horizon}, stride {stride}, {avail} available)")
    return steps


def frames_for_fs(fs: float, dt_fs: float) -> int:
    """Source frames covering ``fs`` femtoseconds (at least one)."""
    return max(1, int(round(float(fs) / float(dt_fs))))


def multistart_steps(start_horizon_fs: float, dt_fs: float, stride: int, available: int) -> int:
    """Model steps of each multi-start rollout: ``rollout.start_horizon_fs`` of simulated time (at least one
    step), capped by the steps the test segment has after its first start (the cost model asks here too)."""
    return min(max(1, frames_for_fs(start_horizon_fs, dt_fs) // int(stride)), int(available))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from diffmd.engine.cli import machine_arguments, section_argument
    from diffmd.stages import stage_config

    given = section_argument(args.rollout_config, "--rollout-config", "rollout", "train")  # one line when wrong
    cfg = stage_config("rollout", given, machine_arguments(args, given))  # only the keys the rollout reads
    sim_out = getattr(args, "simulation_out", None)
    if sim_out:  # the simulation after the rollout, in this process (its config checked before any work)
        from diffmd.engine.cli import META_SCHEMA, schema_argument
        from diffmd.engine.simulate import simulation_config

        sim_cfg = simulation_config(args)
        schema_argument(args.meta, "--meta", META_SCHEMA)
    device = resolve_device(cfg.get("device", "auto"))
    model, ckpt = load_checkpoint(args.checkpoint, device)
    if not uses_accelerator(model):  # a CPU row (reference, floor, oracle, own trainer): never on the GPU
        device = torch.device("cpu")
        model = model.to(device)
    else:
        captured = apply_compile(model, device, cfg.get("compile", "auto"))
        if captured:
            print(f"compiled {', '.join(captured)} for {device} (rollout.compile {cfg.get('compile')})", flush=True)
    split = load_split(args.split)
    seg = split_segments(split, "test", stride=model.stride, isomer=args.target)[0]
    start, bound, k = seg.start, float(cfg["divergence_bound_A"]), model.stride
    seed_everything(args.seed)
    info: dict[str, Any] = {"start": start}
    if model.can_rollout:
        steps = n_steps_for(seg, k, cfg.get("horizon"), start)
        rigid = str(cfg.get("rigid_motion", "keep"))
        res = rollout(model, seg, start, steps, bound, device, progress=f"paper rollout of {ckpt['model']}",
                      rigid=rigid)  # fmt: skip
        ms_steps = multistart_steps(cfg["start_horizon_fs"], seg.dt_fs, k, seg.max_steps(seg.start))
        starts = spread_starts(seg, int(cfg["n_starts"]), ms_steps)
        print(f"multi-start rollouts: {len(starts)} starts x {ms_steps} steps, batched", flush=True)
        multi = rollout_starts(model, seg, starts, ms_steps, bound, device, rigid=rigid)
        _report("multi-start rollouts", ms_steps, ms_steps, multi.seconds)
        multi_part = MultiStart(multi.starts, multi.positions, seg.positions[multi.frame_indices],
                                multi.frame_indices, multi.diverged_at, multi.seconds, multi.score_evals)  # fmt: skip
        info.update(steps=steps, diverged_at=res.diverged_at, seconds=res.seconds,
                    frames_per_second=res.n_done / max(res.seconds, 1e-12), n_starts=len(starts),
                    start_steps=ms_steps, starts_diverged=int((multi.diverged_at >= 0).sum()),
                    starts_seconds=multi.seconds)  # fmt: skip
        positions, frames_idx, diverged_at, seconds, evals, stats = (
            res.positions, res.frame_indices, res.diverged_at, res.seconds, res.score_evals, res.stats)
        # the rigid-body motion of the model's steps (diffmd.engine.rigid), paper rollout and multi-start mean
        stats = {**stats, **{f"rigid_{k}": v for k, v in res.rigid.items()},
                 **{f"ms_rigid_{k}": float(np.mean(v)) for k, v in multi.rigid.items()}}  # fmt: skip
    else:  # one-step only (e.g. a floor from the data's own forces): no rollout to record
        positions, frames_idx = seg.positions[start][None], np.array([start], dtype=np.int64)
        diverged_at, seconds, evals, stats, multi_part = -1, 0.0, np.zeros(0), {}, None
    frames = one_step_frames(seg, int(cfg["one_step_frames"]))
    pred = one_step(model, seg, frames, device)
    one = OneStep(frames, pred, seg.positions[frames + k], seg.positions[frames], seg.positions[frames - k])
    if seg.forces is not None and hasattr(model, "predict_forces"):  # held-out force errors (force fields, oracles)
        one.forces_predicted = model.predict_forces(seg.positions[frames], seg.atomic_numbers)
        one.forces_target = seg.forces[frames]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rollout(
        out, positions=positions, reference=seg.positions[frames_idx], frame_indices=frames_idx,
        atomic_numbers=seg.atomic_numbers, diverged_at=diverged_at, stride=k, dt_fs=seg.dt_fs,
        seconds=seconds, score_evals=evals, source=seg.source, molecule=seg.name, model=ckpt["model"],
        rollout_stats=stats, applicable=model.can_rollout, multi=multi_part, one_step=one,
    )  # fmt: skip
    info["one_step_frames"] = len(frames)
    write_provenance(out, config={"rollout": cfg, "seed": args.seed, "checkpoint": str(args.checkpoint)},
                     inputs=[args.split, seg.path, args.checkpoint], device=str(device), extra=info)  # fmt: skip
    print(json.dumps(info))
    if sim_out:  # as a separate `simulate run` job would from a fresh start: every simulation restarts the model
        # (rollout_copies calls begin_rollout) and the RNGs are seeded again, so simulation.json is the same
        from diffmd.engine.simulate import run_simulation

        seed_everything(args.seed)
        run_simulation(args, model, ckpt, seg, device, sim_cfg, sim_out, str(cfg.get("rigid_motion", "keep")))
    return info


def main(argv: list[str] | None = None) -> None:
    from diffmd.engine.cli import OneLineArgumentParser, add_machine_arguments, add_simulation_arguments

    p = OneLineArgumentParser(description="Autoregressive rollout of a trained model on the test segment.")
    p.add_argument("--split", required=True, help="split JSON (data/splits/...)")
    p.add_argument("--checkpoint", required=True, help="model.pt written by diffmd.engine.train")
    p.add_argument("--target", default=None, help="C7O2H10 target isomer (O2O)")
    p.add_argument("--rollout-config", default="{}", help="JSON: the rollout stage's keys (diffmd/stages.py)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    add_machine_arguments(p, "rollout.compile")
    add_simulation_arguments(p, "--simulation-out")  # the simulation job's work, in the same process
    args = p.parse_args(argv)
    set_threads(args.threads)
    run(args)


if __name__ == "__main__":
    import sys

    from diffmd.engine.cli import run_cli  # one-line `error: ...` on bad arguments or input, exit 1

    sys.exit(run_cli(main))
