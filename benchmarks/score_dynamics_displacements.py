"""Score Dynamics: RMS of sampled displacements against the data's, per sampler (issue 13 item 3).

Trains a small Score Dynamics model with the engine's own epoch loop (:func:`diffmd.engine.train.train_epoch`,
which calls ``after_optimizer_step`` and so updates the EMA) on the training pairs of an MD17 split at a
stride k, then draws one displacement x(t+k) - x(t) per held-out pair with each sampler and reports

* ``data_rms``: RMS per coordinate of the true displacements of those pairs (Å);
* per sampler: ``rms`` of the sampled displacements (Å), ``ratio`` = rms / data_rms, ``bond_pass``: the
  fraction of molecules whose first sample passes the bond check (before any resampling), ``evals``.

Example (one thread, ~1-3 min on a CPU core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_dynamics_displacements.py \\
        --split data/splits/md17/ethanol.json --stride 20 --epochs 40 --out /tmp/sd_disp.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, load_split, split_segments
from diffmd.engine.train import train_epoch
from diffmd.registry import build_model

#: (label, sampler, evaluations): DPM-Solver-3 at 10 / 20 evaluations (this repository's earlier settings),
#: at 60 (the original's 20 third-order steps), and ancestral sampling with 50 and 100 evaluations.
SAMPLERS = (("dpm3-10", "dpm3", 10), ("dpm3-20", "dpm3", 20), ("dpm3-60", "dpm3", 60),
            ("ancestral-50", "ancestral", 50), ("ancestral-100", "ancestral", 100))  # fmt: skip


def measure(split_path: str, stride: int, epochs: int, params: dict, lr: float, batch_size: int, seed: int,
            eval_pairs: int, part: str = "val") -> dict:  # fmt: skip
    torch.manual_seed(seed)
    split = load_split(split_path)
    train = PairDataset(split_segments(split, "train", stride=stride))
    held = PairDataset(split_segments(split, part, stride=stride), max_pairs=eval_pairs)
    model = build_model("score_dynamics", {**params, "stride": stride})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cfg = {"batch_size": batch_size}
    t0 = time.perf_counter()
    losses = [train_epoch(model, opt, train, cfg, seed, epoch, torch.device("cpu")) for epoch in range(epochs)]
    train_s = time.perf_counter() - t0
    model.eval()
    batch = held.batch(np.arange(len(held)))
    inputs = B.inputs_only(batch)
    true_dx = batch[B.TARGET_POSITIONS] - batch[B.POSITIONS]
    data_rms = float(true_dx.pow(2).mean().sqrt())
    bonds = model.bonds(inputs)
    out = {"split": split_path, "stride": stride, "train_pairs": len(train), "eval_pairs": len(held),
           "eval_part": part, "epochs": epochs, "optimizer_steps": int(getattr(model, "ema_updates", 0)) or None,
           "params": params, "lr": lr, "batch_size": batch_size, "seed": seed,
           "loss_first_last": [losses[0], losses[-1]], "train_s": round(train_s, 1),
           "dx_scale_A": float(model.dx_scale), "data_rms_A": data_rms, "samplers": {}}  # fmt: skip
    for label, sampler, evals in SAMPLERS:
        for weights in (("ema", "raw") if model.ema_active() else ("raw",)):
            model.sampler = sampler
            model.sampling_steps = model.ancestral_steps = evals
            torch.manual_seed(seed + 1)
            dx = model.sample_displacement(inputs, ema=weights == "ema")
            model.rollout_stats()
            rms = float(dx.pow(2).mean().sqrt())
            passed = 1.0 - float(model.bad_molecules(inputs, inputs[B.POSITIONS] + dx, bonds).double().mean())
            out["samplers"][f"{label}/{weights}"] = {"rms_A": rms, "ratio": rms / data_rms, "bond_pass": passed,
                                                     "evals": evals}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="data/splits/md17/ethanol.json")
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--time-features", type=int, default=8)
    ap.add_argument("--time-feature-scale", type=float, default=1.0)
    ap.add_argument("--ema-decay", type=float, default=0.999, help="0: no EMA")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--eval-pairs", type=int, default=150)
    ap.add_argument("--part", default="val", choices=("val", "test"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here too")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.stride < 1 or args.epochs < 1:
        print(f"error: --stride and --epochs must be >= 1, got {args.stride}, {args.epochs}", file=sys.stderr)
        return 1
    if not Path(args.split).is_file():
        print(f"error: --split {args.split}: no such file", file=sys.stderr)
        return 1
    params = {"hidden": args.hidden, "layers": args.layers, "time_features": args.time_features,
              "time_feature_scale": args.time_feature_scale, "ema_decay": args.ema_decay or None}  # fmt: skip
    res = measure(args.split, args.stride, args.epochs, params, args.lr, args.batch_size, args.seed,
                  args.eval_pairs, args.part)  # fmt: skip
    print(f"stride {res['stride']}: {res['train_pairs']} training pairs, {res['epochs']} epochs "
          f"({res['train_s']} s), loss {res['loss_first_last'][0]:.3f} -> {res['loss_first_last'][1]:.3f}; "
          f"data displacement RMS {res['data_rms_A']:.4f} Å per coordinate "
          f"({res['eval_pairs']} {res['eval_part']} pairs)")  # fmt: skip
    for label, row in res["samplers"].items():
        print(f"  {label:22s} rms {row['rms_A']:.4f} Å  ratio {row['ratio']:.3f}  bond pass {row['bond_pass']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
