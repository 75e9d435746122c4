"""Short-horizon error of trained checkpoints: the RMS per-atom error after h model steps, from many starts.

A 50-frame rollout ARMSE from one start rewards standing still (a chaotic trajectory decorrelates from
the one reference realisation, issue 12); the error after a few steps, averaged over starts spread over
the validation segment, says whether a model moves the atoms the way the data does. For each checkpoint
this rolls out ``--steps`` steps from ``--starts`` start frames at once
(:func:`diffmd.engine.rollout.rollout_starts`) and prints sqrt(mean over starts and atoms of
|x_hat(t+h) - x(t+h)|^2) at each horizon h of ``--horizons`` (no alignment: h = 1 is the one-step
error from the true history), the score evaluations per step where the model counts them, and the
rollout's wall seconds per simulated ps (batched over the starts, so per start it is that / starts).

Usage::

    .venv/bin/python -m benchmarks.short_horizon --split data/splits/md17/ethanol.json \\
        --checkpoints corrected=/tmp/dc_run/model.pt diffmd=/tmp/dc_ref_diffmd/model.pt
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from diffmd.data.pairs import load_split, split_segments
from diffmd.engine.common import load_checkpoint
from diffmd.engine.rollout import rollout_starts, spread_starts


def horizon_errors(model, seg, n_starts: int, n_steps: int) -> tuple[np.ndarray, float, float]:
    """(RMS per-atom error at steps 1..n_steps (n_steps,), score evaluations per step, seconds per ps)."""
    starts = spread_starts(seg, n_starts, n_steps)
    starts = starts[starts >= 2 * model.stride]
    roll = rollout_starts(model, seg, starts, n_steps)
    ref = seg.positions[roll.frame_indices]  # (starts, n_steps + 1, atoms, 3)
    err = np.sqrt((((roll.positions - ref) ** 2).sum(-1)).mean(axis=(0, 2)))[1:]
    ps = n_steps * model.stride * seg.dt_fs / 1000.0
    return err, float(np.mean(roll.score_evals)), roll.seconds / ps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="data/splits/md17/ethanol.json")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="LABEL=PATH/model.pt ...")
    parser.add_argument("--part", default="val", choices=("val", "test"))
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--horizons", default="1,2,5,10,20")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    horizons = [int(h) for h in args.horizons.split(",")]
    if min(horizons) < 1 or max(horizons) > args.steps:
        print(f"error: --horizons must lie in 1..--steps ({args.steps})", file=sys.stderr)
        return 1
    try:
        seg = split_segments(load_split(args.split), args.part)[0]
        runs = []
        for item in args.checkpoints:
            label, sep, path = item.partition("=")
            if not sep:
                raise ValueError(f"--checkpoints: {item!r} is not LABEL=PATH")
            runs.append((label, load_checkpoint(path)[0]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.split} ({args.part}): {args.starts} starts, RMS per-atom error (Å) after h steps")
    print(f"{'model':<22}" + "".join(f"{'h=' + str(h):>10}" for h in horizons) + f"{'evals':>8}{'s/ps':>10}")
    for label, model in runs:
        err, evals, s_per_ps = horizon_errors(model, seg, args.starts, args.steps)
        print(f"{label:<22}" + "".join(f"{err[h - 1]:>10.5f}" for h in horizons) + f"{evals:>8.1f}{s_per_ps:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
