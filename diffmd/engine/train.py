"""Trainer: the paper's settings for every registered model, resumable, best-validation checkpoint.

Adam (lr 5e-4, weight decay 1e-10), ReduceLROnPlateau on the validation ARMSE (patience 5,
floor 1e-7), batch 200, 200 epochs, validation every ``val_every`` epochs. The validation metric
is the aligned ARMSE (:mod:`diffmd.metrics`) of an autoregressive rollout of ``val_horizon``
frames from the first validation frame (O2O: from the start of each validation isomer, averaged);
a diverged validation rollout scores +inf. Shuffling is drawn from a generator seeded by
(seed, epoch), so it needs no state.

Files in ``--out``: ``model.pt`` (best validation, written at the end), ``best.pt`` (the same,
kept up to date during training), ``last.pt`` (model, optimizer, scheduler, RNG states, log;
written atomically after every epoch: a rerun of a killed job resumes from it and reaches
bitwise the same final checkpoint on CPU), ``train_log.csv`` and ``provenance.json``.

CLI::

    python -m diffmd.engine.train --split SPLIT.json --model NAME --params JSON
        --train-config JSON --seed N --out DIR
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from diffmd import batch as B
from diffmd.config import deep_update, section_defaults, split_train_overrides
from diffmd.data.pairs import PairDataset, Segment, load_split, split_segments
from diffmd.engine.common import (
    load_torch,
    resolve_device,
    rng_state,
    save_torch,
    seed_everything,
    set_rng_state,
    set_threads,
)
from diffmd.engine.rollout import DIVERGENCE_BOUND_A, n_steps_for, rollout
from diffmd.io import write_text
from diffmd.metrics import armse
from diffmd.provenance import sha256_file, write_provenance
from diffmd.registry import TrajectoryModel, build_model

#: The trainer's settings when the config gives none: the schema's ``train`` defaults (the one home of
#: every default, diffmd/config.schema.yaml) plus the rollout's divergence bound for validation rollouts.
DEFAULTS: dict[str, Any] = {**section_defaults("train"), "divergence_bound_A": DIVERGENCE_BOUND_A}
LOG_FIELDS = ("epoch", "loss", "val_armse", "lr", "seconds")


def validation_rollouts(
    model: TrajectoryModel, segs: list[Segment], horizon: int, bound: float, device: torch.device
) -> dict[str, float]:
    """Rollouts of ``horizon`` frames from each segment's start: ``{"armse"`` (mean aligned ARMSE, Å; inf if
    any diverged), ``"frames"`` (model steps taken), ``"score_evals"`` (summed)``}``."""
    values, frames, evals = [], 0, 0.0
    for seg in segs:
        steps = n_steps_for(seg, model.stride, horizon, seg.start)
        res = rollout(model, seg, seg.start, steps, bound, device)
        frames += max(res.n_done, 0) + (1 if res.diverged else 0)
        evals += float(res.score_evals.sum())
        if res.diverged:
            return {"armse": math.inf, "frames": frames, "score_evals": evals}
        values.append(armse(res.positions, seg.positions[res.frame_indices]))
    return {"armse": float(np.mean(values)), "frames": frames, "score_evals": evals}


def validation_armse(
    model: TrajectoryModel, segs: list[Segment], horizon: int, bound: float, device: torch.device
) -> float:
    """Mean aligned ARMSE (Å) of rollouts of ``horizon`` frames from each segment's start; inf if any diverged."""
    return validation_rollouts(model, segs, horizon, bound, device)["armse"]


def resolve_train_config(train_cfg: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer's settings: :data:`DEFAULTS` <- the config's ``train`` <- the model's own ``train:``."""
    cfg = deep_update(deep_update(DEFAULTS, train_cfg), overrides or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"train config: unknown key(s) {', '.join(unknown)}")
    return cfg


def checkpoint(model: TrajectoryModel, params: dict, epoch: int, val: float,
               train_overrides: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``model.pt`` payload (docs/ARCHITECTURE.md); ``train_overrides``: the model's own ``train:``."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"model": model.name, "params": params, "state_dict": state, "epoch": epoch, "val_armse": val,
            "train_overrides": dict(train_overrides or {})}  # fmt: skip


def train_epoch(
    model: TrajectoryModel, opt: torch.optim.Optimizer, data: PairDataset, cfg: dict, seed: int, epoch: int,
    device: torch.device,
) -> float:  # fmt: skip
    """One pass over the shuffled training pairs; returns the mean loss per molecule."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    model.train()
    total, count = 0.0, 0
    n_batches = math.ceil(len(data) / cfg["batch_size"])
    bar = tqdm(data.batches(cfg["batch_size"], gen), total=n_batches, desc=f"epoch {epoch}", leave=False,
               disable=None, mininterval=5.0)  # fmt: skip
    for batch in bar:
        batch = B.to_device(batch, device)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        m = B.num_molecules(batch)
        total += float(loss.detach()) * m
        count += m
    return total / max(count, 1)


def _write_log(out: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "train_log.csv", buf.getvalue())


def _log(row: dict[str, Any]) -> None:
    print(
        f"epoch {row['epoch']:4d}  loss {row['loss']:.4e}  val_armse {row['val_armse']:.4e}  "
        f"lr {row['lr']:.2e}  {row['seconds']:.1f}s",
        flush=True,
    )


def fit(model: TrajectoryModel, params: dict, cfg: dict, data: PairDataset, val_segs: list[Segment],
        seed: int, out: Path, device: torch.device, inputs: list[str],
        overrides: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """Train (resuming from ``out/last.pt`` when present) and write ``out/model.pt``.

    ``last.pt`` is only resumed when it was written for the same model, parameters, training
    settings, seed and input files (by SHA-256); otherwise training starts afresh.
    """
    sch = cfg["scheduler"]
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=sch["factor"], patience=sch["patience"], min_lr=sch["min_lr"]
    )
    key = json.dumps({"model": model.name, "params": params, "seed": seed, "inputs": [sha256_file(p) for p in inputs],
                      "train": {k: v for k, v in cfg.items() if k != "device"}}, sort_keys=True)  # fmt: skip
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "rows": [], "key": key}
    last = load_torch(out / "last.pt") if (out / "last.pt").exists() else None
    if last is not None and last.get("key") != key:
        print(f"{out / 'last.pt'} belongs to another configuration: starting afresh", flush=True)
        (out / "best.pt").unlink(missing_ok=True)
        last = None
    if last is None:
        (out / "best.pt").unlink(missing_ok=True)
    else:
        model.load_state_dict(last["model_state"])
        opt.load_state_dict(last["optimizer"])
        sched.load_state_dict(last["scheduler"])
        set_rng_state(last["rng"])
        state = {k: last[k] for k in state}
        print(f"resuming from {out / 'last.pt'} after epoch {state['epoch']}", flush=True)
    for epoch in range(state["epoch"] + 1, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        loss = train_epoch(model, opt, data, cfg, seed, epoch, device)
        val = math.nan
        if epoch % cfg["val_every"] == 0 or epoch == cfg["epochs"]:
            val = validation_armse(model, val_segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)
            sched.step(val)
            if val < state["best_val"]:
                state["best_val"], state["best_epoch"] = val, epoch
                save_torch(out / "best.pt", checkpoint(model, params, epoch, val, overrides))
        row = {"epoch": epoch, "loss": loss, "val_armse": val, "lr": opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}  # fmt: skip
        state["rows"].append(row)
        state["epoch"] = epoch
        _log(row)
        _write_log(out, state["rows"])
        save_torch(out / "last.pt", {**state, "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "rng": rng_state()})  # fmt: skip
    if not (out / "best.pt").exists():  # no finite validation: keep the final model
        val = validation_armse(model, val_segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)
        save_torch(out / "best.pt", checkpoint(model, params, state["epoch"], val, overrides))
    best = load_torch(out / "best.pt")
    save_torch(out / "model.pt", best)
    return {"best_epoch": best["epoch"], "best_val_armse": best["val_armse"], "epochs": state["epoch"]}


def reference_only(model: TrajectoryModel, params: dict, cfg: dict, data: PairDataset, val_segs: list[Segment],
                   out: Path, device: torch.device, overrides: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """Models with nothing to learn: one log row (training loss, validation ARMSE) and model.pt."""
    t0 = time.perf_counter()
    with torch.no_grad():
        losses = [float(model.loss(B.to_device(b, device))) * B.num_molecules(b) for b in data.batches(1000)]
    val = validation_armse(model, val_segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)
    row = {"epoch": 0, "loss": sum(losses) / len(data), "val_armse": val, "lr": 0.0,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    _log(row)
    _write_log(out, [row])
    save_torch(out / "model.pt", checkpoint(model, params, 0, val, overrides))
    return {"best_epoch": 0, "best_val_armse": val, "epochs": 0}


def train(split_path: str, model_name: str, params: dict, train_cfg: dict, seed: int, out: str | Path) -> dict:
    """Build the model and data, then train (or only evaluate a reference model); see module docstring."""
    params, overrides = split_train_overrides(params)
    cfg = resolve_train_config(train_cfg, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg["device"])
    seed_everything(seed)
    model = build_model(model_name, params, source="--params").to(device)
    params = {**params, "stride": model.stride}
    split = load_split(split_path)
    data = PairDataset(split_segments(split, "train", stride=model.stride), cfg["max_train_pairs"])
    val_segs = split_segments(split, "val", stride=model.stride)
    print(f"{model_name}: {len(data)} training pairs, {len(val_segs)} validation segment(s), device {device}",
          flush=True)  # fmt: skip
    inputs = [split_path] + sorted({s.path for s in data.segments + val_segs})
    if model.trainable:
        info = fit(model, params, cfg, data, val_segs, seed, out, device, inputs, overrides)
    else:
        info = reference_only(model, params, cfg, data, val_segs, out, device, overrides)
    write_provenance(out, config={"model": model_name, "params": params, "train": cfg, "seed": seed},
                     inputs=inputs, device=str(device), extra=info)  # fmt: skip
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train a registered model on a split (resumes from DIR/last.pt).")
    p.add_argument("--split", required=True, help="split JSON (data/splits/md17/<molecule>.json or c7o2h10.json)")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--params", default="{}", help="JSON: model hyper-parameters (+ optional 'train' overrides)")
    p.add_argument("--train-config", default="{}", help="JSON: the config's train section")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    a = p.parse_args(argv)
    set_threads(a.threads)
    info = train(a.split, a.model, json.loads(a.params), json.loads(a.train_config), a.seed, a.out)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
