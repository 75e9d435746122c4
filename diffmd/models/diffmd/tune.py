"""Grid search of DiffMD's noise hyper-parameters (paper Table 3) on the validation ARMSE.

``sigma_s``, ``a_bar`` and ``eta_sigma`` change the training objective, so each combination is one
trained model (``grid/<point>/model.pt``, by the engine's train CLI); ``eps`` only changes the
sampler, so every trained model is validated for every ``eps``. The selection copies the best
(point, eps) checkpoint to the run's ``model.pt`` with ``eps`` written into its parameters, so the
engine's rollout samples with the chosen value.

CLI::

    python -m diffmd.models.diffmd.tune validate --split SPLIT.json --checkpoint grid/P/model.pt
        --eps 0.2 --train-config JSON --seed N --out grid/P/val_eps0.2.json
    python -m diffmd.models.diffmd.tune select --grid-dir RUN/grid --grid JSON
        --out-model RUN/model.pt --out-selection RUN/selection.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.plan import GRID_TRAIN_KEYS as TRAIN_KEYS
from diffmd.plan import fmt, grid_points, point_name, point_params

__all__ = ["TRAIN_KEYS", "fmt", "grid_points", "point_name", "point_params", "validate", "select", "write_selection"]


def validate(split: str, checkpoint: str, eps: float, train_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Validation ARMSE (Å) of ``checkpoint`` sampled with ``eps``, via the engine's validation rollout.

    The trainer's settings are merged exactly as in training: defaults <- ``train_cfg`` <- the model's
    own ``train:`` overrides (kept in the checkpoint).
    """
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything
    from diffmd.engine.train import resolve_train_config, validation_rollouts

    device = resolve_device(resolve_train_config(train_cfg)["device"])
    model, ckpt = load_checkpoint(checkpoint, device)
    cfg = resolve_train_config(train_cfg, ckpt.get("train_overrides"))
    model.eval()
    model.eps = float(eps)
    segs = split_segments(load_split(split), "val", stride=model.stride)
    seed_everything(seed)
    t0 = time.perf_counter()
    res = validation_rollouts(model, segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)
    seconds = time.perf_counter() - t0
    val = res["armse"]
    params = ckpt["params"]
    return {
        "point": point_name(params["sigma_s"], params["a_bar"], params["eta_sigma"]),
        **{k: params[k] for k in TRAIN_KEYS},
        "eps": float(eps),
        "val_armse": val if math.isfinite(val) else None,
        "epoch": ckpt.get("epoch"),
        "checkpoint": str(checkpoint),
        "val_horizon": cfg["val_horizon"],
        "seconds": seconds,
        "frames": int(res["frames"]),
        "score_evals": int(res["score_evals"]),
        "score_evals_per_frame": res["score_evals"] / max(res["frames"], 1),
    }


def select(grid_dir: str | Path, grid: dict[str, list[float]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The (point, eps) of lowest finite validation ARMSE (first in grid order on ties), and all rows."""
    from diffmd.io import read_json

    rows = []
    for name in grid_points(grid):
        for eps in grid["eps"]:
            rows.append(read_json(Path(grid_dir) / name / f"val_eps{fmt(eps)}.json"))
    finite = [r for r in rows if r["val_armse"] is not None]
    best = min(finite, key=lambda r: r["val_armse"]) if finite else rows[0]
    return best, rows


def write_selection(
    grid_dir: str, grid: dict[str, Any], out_model: str, out_selection: str
) -> dict[str, Any]:
    from diffmd.engine.common import load_torch, save_torch
    from diffmd.io import write_json

    best, rows = select(grid_dir, grid)
    ckpt = load_torch(best["checkpoint"])
    ckpt["params"] = {**ckpt["params"], "eps": best["eps"]}
    ckpt["val_armse"] = best["val_armse"] if best["val_armse"] is not None else math.inf
    ckpt["selection"] = {k: best[k] for k in TRAIN_KEYS + ("eps", "point")}
    save_torch(out_model, ckpt)
    summary = {"best": best, "all_diverged": best["val_armse"] is None, "n_points": len(rows),
               "val_armse": [r["val_armse"] for r in rows], "points": rows,
               "best_val_armse_by_eps": {fmt(e): _best_for(rows, e) for e in grid["eps"]}}  # fmt: skip
    write_json(out_selection, summary)
    return summary


def _best_for(rows: list[dict[str, Any]], eps: float) -> float | None:
    vals = [r["val_armse"] for r in rows if r["eps"] == float(eps) and r["val_armse"] is not None]
    return float(np.min(vals)) if vals else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="DiffMD grid search: validate one (point, eps), or select the best."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--split", required=True)
    v.add_argument("--checkpoint", required=True, help="grid/<point>/model.pt")
    v.add_argument("--eps", type=float, required=True, help="smallest diffusion time of the sampler")
    v.add_argument("--train-config", default="{}", help="JSON: val_horizon, divergence_bound_A, device")
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--out", required=True)
    s = sub.add_parser("select")
    s.add_argument("--grid-dir", required=True)
    s.add_argument("--grid", required=True, help="JSON: the config's diffmd.grid")
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-selection", required=True)
    a = p.parse_args(argv)
    if a.cmd == "validate":
        from diffmd.io import write_json

        row = validate(a.split, a.checkpoint, a.eps, json.loads(a.train_config), a.seed)
        write_json(a.out, row)
        print(json.dumps(row))
    else:
        summary = write_selection(a.grid_dir, json.loads(a.grid), a.out_model, a.out_selection)
        print(json.dumps(summary["best"]))


if __name__ == "__main__":
    main()
