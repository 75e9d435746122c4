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
from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything, set_threads
from diffmd.provenance import write_provenance
from diffmd.registry import TrajectoryModel
from diffmd.rundir import MultiStart, OneStep, write_rollout

#: Default divergence bound (Å), from the config schema (rollout.divergence_bound_A).
DIVERGENCE_BOUND_A = float(section_defaults("rollout")["divergence_bound_A"])


@dataclass
class RolloutResult:
    positions: np.ndarray  # (n+1, atoms, 3) Å, frame 0 = the start frame; NaN after divergence
    frame_indices: np.ndarray  # (n+1,) reference frame index of each predicted frame
    diverged_at: int  # step at which the rollout diverged, -1 if it did not
    score_evals: np.ndarray  # (n,) score evaluations per step (0 for non-diffusion models)
    seconds: float
    #: the model's other rollout counters summed over the steps (e.g. Score Dynamics' bond-check resamples)
    stats: dict[str, float] = field(default_factory=dict)

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
) -> RolloutResult:
    """Roll ``model`` out for ``n_steps`` model steps from reference frame ``start`` of ``seg``."""
    multi = rollout_starts(model, seg, np.array([start]), n_steps, divergence_bound_A, device, dtype, progress)
    return RolloutResult(multi.positions[0], multi.frame_indices[0], int(multi.diverged_at[0]), multi.score_evals,
                         multi.seconds, multi.stats)  # fmt: skip


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


def tiled_graph(seg: Segment, m: int, device: torch.device, dtype: torch.dtype) -> B.Batch:
    """:func:`graph_tensors` of ``m`` copies of the segment's molecule, concatenated (one batch)."""
    one = graph_tensors(seg, device, dtype)
    n, offsets = seg.n_atoms, torch.arange(m, device=device) * seg.n_atoms
    out = {
        B.ATOMIC_NUMBERS: one[B.ATOMIC_NUMBERS].repeat(m),
        B.BATCH: torch.repeat_interleave(torch.arange(m, device=device), n),
        B.NUM_ATOMS: torch.full((m,), n, dtype=torch.long, device=device),
        B.EDGE_ATTR: one[B.EDGE_ATTR].repeat(m, 1),
    }
    for key in (B.EDGE_INDEX, B.BOND_INDEX):
        e = one[key]
        out[key] = (e.unsqueeze(0) + offsets.view(m, 1, 1)).permute(1, 0, 2).reshape(2, -1)
    return out


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
) -> MultiRollout:
    """Roll ``model`` out ``n_steps`` steps from every start frame in ``starts`` at once (one batch of
    ``len(starts)`` molecules per step); for one start this is :func:`rollout`, and for several it equals
    the per-start rollouts for a model whose prediction for one molecule does not depend on the others."""
    k, starts = int(model.stride), np.asarray(starts, dtype=np.int64)
    m, n = len(starts), seg.n_atoms
    if m < 1:
        raise ValueError(f"{seg.name}: no start frames")
    if int(starts.min()) < 2 * k:
        raise ValueError(f"{seg.name}: rollout start {int(starts.min())} < 2*stride ({2 * k}): no history")
    device = torch.device(device)
    model.eval()
    model.rollout_stats()
    const = tiled_graph(seg, m, device, dtype)

    def frames(offset: int) -> torch.Tensor:
        return torch.as_tensor(seg.positions[starts - offset * k].reshape(m * n, 3), dtype=dtype, device=device)

    hist = [frames(2), frames(1), frames(0)]
    centre = hist[-1].view(m, n, 3).mean(dim=1, keepdim=True)
    vel0, acc0 = history_inputs(hist[2], hist[1], hist[0])
    start_batch = {**const, B.POSITIONS: hist[2], B.VELOCITIES: vel0, B.ACCELERATIONS: acc0}
    if seg.thermostat_state is not None:  # the data's thermostat at the starts, for simulators that continue it
        start_batch[B.THERMOSTAT_STATE] = torch.as_tensor(seg.thermostat_state[starts], dtype=torch.float64,
                                                          device=device)  # fmt: skip
    model.begin_rollout(start_batch)
    out = np.full((m, n_steps + 1, n, 3), np.nan)
    out[:, 0] = seg.positions[starts]
    evals = np.zeros(n_steps)
    totals: dict[str, float] = {}
    diverged_at = np.full(m, -1, dtype=np.int64)
    alive = torch.ones(m, dtype=torch.bool, device=device)
    t0 = time.perf_counter()
    for step in range(1, n_steps + 1):
        vel, acc = history_inputs(hist[2], hist[1], hist[0])
        batch = dict(const)
        batch.update({B.POSITIONS: hist[2], B.VELOCITIES: vel, B.ACCELERATIONS: acc})
        nxt = model.predict(batch)
        stats = dict(model.rollout_stats())
        evals[step - 1] = float(stats.pop("score_evals", 0.0))
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        per = nxt.view(m, n, 3)
        bad = ~torch.isfinite(per).all(dim=-1).all(dim=-1)
        far = torch.nan_to_num((per - centre).norm(dim=-1), nan=0.0).amax(dim=-1) > divergence_bound_A
        newly = (bad | far) & alive
        if bool(newly.any()):
            diverged_at[newly.cpu().numpy()] = step
            alive &= ~newly
        # frozen starts keep their last finite frame, so NaN cannot reach the others
        keep = alive.repeat_interleave(n)[:, None]
        nxt = torch.where(keep, nxt, hist[2])
        alive_np = alive.cpu().numpy()
        out[alive_np, step] = nxt.view(m, n, 3)[alive].double().cpu().numpy()
        hist = [hist[1], hist[2], nxt]
        if not bool(alive.any()):
            break
        if progress and (step % max(1, n_steps // 10) == 0 or step == n_steps):
            _report(progress, step, n_steps, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    idx = starts[:, None] + k * np.arange(n_steps + 1, dtype=np.int64)[None, :]
    return MultiRollout(starts, out, idx, diverged_at, evals, seconds, totals)


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    from diffmd.engine.cli import section_argument

    given = section_argument(args.rollout_config, "--rollout-config", "rollout", "train")  # one line when wrong
    cfg = {**section_defaults("rollout"), **given}
    device = resolve_device(cfg.get("device", "auto"))
    model, ckpt = load_checkpoint(args.checkpoint, device)
    split = load_split(args.split)
    seg = split_segments(split, "test", stride=model.stride, isomer=args.target)[0]
    start, bound, k = seg.start, float(cfg["divergence_bound_A"]), model.stride
    seed_everything(args.seed)
    info: dict[str, Any] = {"start": start}
    if model.can_rollout:
        steps = n_steps_for(seg, k, cfg.get("horizon"), start)
        res = rollout(model, seg, start, steps, bound, device, progress=f"paper rollout of {ckpt['model']}")
        ms_steps = max(1, frames_for_fs(cfg["start_horizon_fs"], seg.dt_fs) // k)
        ms_steps = min(ms_steps, seg.max_steps(seg.start))
        starts = spread_starts(seg, int(cfg["n_starts"]), ms_steps)
        print(f"multi-start rollouts: {len(starts)} starts x {ms_steps} steps, batched", flush=True)
        multi = rollout_starts(model, seg, starts, ms_steps, bound, device)
        _report("multi-start rollouts", ms_steps, ms_steps, multi.seconds)
        multi_part = MultiStart(multi.starts, multi.positions, seg.positions[multi.frame_indices],
                                multi.frame_indices, multi.diverged_at, multi.seconds, multi.score_evals)  # fmt: skip
        info.update(steps=steps, diverged_at=res.diverged_at, seconds=res.seconds,
                    frames_per_second=res.n_done / max(res.seconds, 1e-12), n_starts=len(starts),
                    start_steps=ms_steps, starts_diverged=int((multi.diverged_at >= 0).sum()),
                    starts_seconds=multi.seconds)  # fmt: skip
        positions, frames_idx, diverged_at, seconds, evals, stats = (
            res.positions, res.frame_indices, res.diverged_at, res.seconds, res.score_evals, res.stats)
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
    return info


def main(argv: list[str] | None = None) -> None:
    from diffmd.engine.cli import OneLineArgumentParser  # one-line `error: ...` on a bad argument

    p = OneLineArgumentParser(description="Autoregressive rollout of a trained model on the test segment.")
    p.add_argument("--split", required=True, help="split JSON (data/splits/...)")
    p.add_argument("--checkpoint", required=True, help="model.pt written by diffmd.engine.train")
    p.add_argument("--target", default=None, help="C7O2H10 target isomer (O2O)")
    p.add_argument("--rollout-config", default="{}", help="JSON: horizon, divergence_bound_A, device")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    run(args)


if __name__ == "__main__":
    import sys

    from diffmd.engine.cli import run_cli  # one-line `error: ...` on bad arguments or input, exit 1

    sys.exit(run_cli(main))
