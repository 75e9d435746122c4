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

``rollout-config``: ``{"horizon": null | steps, "divergence_bound_A": 100.0, "device": "auto"}``.
``horizon`` is counted in source-trajectory frames (stride-1 steps), so every model covers the same
simulated time; a model of stride k takes ``horizon // k`` steps; null = the whole test segment.
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
from diffmd.rundir import write_rollout

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
) -> RolloutResult:
    """Roll ``model`` out for ``n_steps`` model steps from reference frame ``start`` of ``seg``."""
    k = int(model.stride)
    if start < 2 * k:
        raise ValueError(f"{seg.name}: rollout start {start} < 2*stride ({2 * k}): no history")
    device = torch.device(device)
    model.eval()
    model.rollout_stats()  # reset counters
    const = graph_tensors(seg, device, dtype)
    hist = [torch.as_tensor(seg.positions[start - j * k], dtype=dtype, device=device) for j in (2, 1, 0)]
    centre = hist[-1].mean(dim=0)
    vel0, acc0 = history_inputs(hist[2], hist[1], hist[0])
    model.begin_rollout({**const, B.POSITIONS: hist[2], B.VELOCITIES: vel0, B.ACCELERATIONS: acc0})
    out = np.full((n_steps + 1, seg.n_atoms, 3), np.nan)
    out[0] = seg.positions[start]
    evals = np.zeros(n_steps)
    totals: dict[str, float] = {}
    diverged_at = -1
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
        if not torch.isfinite(nxt).all() or (nxt - centre).norm(dim=-1).max() > divergence_bound_A:
            diverged_at = step
            break
        out[step] = nxt.double().cpu().numpy()
        hist = [hist[1], hist[2], nxt]
    seconds = time.perf_counter() - t0
    frames = start + k * np.arange(n_steps + 1, dtype=np.int64)
    return RolloutResult(out, frames, diverged_at, evals, seconds, totals)


def n_steps_for(seg: Segment, stride: int, horizon: int | None, start: int) -> int:
    """Model steps: ``horizon`` frames // stride, capped by the reference frames available."""
    avail = seg.max_steps(start)
    steps = avail if horizon is None else min(avail, int(horizon) // stride)
    if steps < 1:
        raise ValueError(f"{seg.name}: no rollout step fits (horizon {horizon}, stride {stride}, {avail} available)")
    return steps


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(args.rollout_config)
    device = resolve_device(cfg.get("device", "auto"))
    model, ckpt = load_checkpoint(args.checkpoint, device)
    split = load_split(args.split)
    seg = split_segments(split, "test", stride=model.stride, isomer=args.target)[0]
    start = seg.start
    steps = n_steps_for(seg, model.stride, cfg.get("horizon"), start)
    seed_everything(args.seed)
    res = rollout(model, seg, start, steps, float(cfg.get("divergence_bound_A", DIVERGENCE_BOUND_A)), device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rollout(
        out, positions=res.positions, reference=seg.positions[res.frame_indices], frame_indices=res.frame_indices,
        atomic_numbers=seg.atomic_numbers, diverged_at=res.diverged_at, stride=model.stride, dt_fs=seg.dt_fs,
        seconds=res.seconds, score_evals=res.score_evals, source=seg.source, molecule=seg.name,
        model=ckpt["model"], rollout_stats=res.stats,
    )  # fmt: skip
    info = {"steps": steps, "start": start, "diverged_at": res.diverged_at, "seconds": res.seconds,
            "frames_per_second": res.n_done / max(res.seconds, 1e-12)}  # fmt: skip
    write_provenance(out, config={"rollout": cfg, "seed": args.seed, "checkpoint": str(args.checkpoint)},
                     inputs=[args.split, seg.path, args.checkpoint], device=str(device), extra=info)  # fmt: skip
    print(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Autoregressive rollout of a trained model on the test segment.")
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
    main()
