"""Grid search of DiffMD's noise hyper-parameters (paper Table 3) on the trainer's validation metric.

``sigma_s``, ``a_bar`` and ``eta_sigma`` change the training objective, so each combination is one
trained model (``grid/<point>/model.pt``, by the engine's train CLI); ``eps`` only changes the
sampler, so every trained model is validated for every ``eps``. The selection copies the best
(point, eps) checkpoint to the run's ``model.pt`` with ``eps`` written into its parameters, so the
engine's rollout samples with the chosen value.

Each validation row holds both of the trainer's validation numbers (:mod:`diffmd.engine.train`):
``val_armse`` (rollout of ``val_horizon`` frames) and ``val_one_step`` (teacher-forced, on ``val_frames``
frames), and ``val_metric``, the one ``train.select_by`` names (``select_by``, default ``one_step``).
The selection minimises ``val_metric`` (rows written before it existed: ``val_armse``); every row must
have been validated with the same ``select_by``.

CLI::

    python -m diffmd.models.diffmd.tune validate --split SPLIT.json --checkpoint grid/P/model.pt
        --eps 0.2 --train-config JSON --seed N --out grid/P/val_eps0.2.json
    python -m diffmd.models.diffmd.tune select --grid-dir RUN/grid --grid JSON
        --out-model RUN/model.pt --out-selection RUN/selection.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.plan import GRID_TRAIN_KEYS as TRAIN_KEYS
from diffmd.plan import fmt, grid_points, point_name, point_params

__all__ = [
    "TRAIN_KEYS",
    "fmt",
    "grid_points",
    "point_name",
    "point_params",
    "row_metric",
    "select",
    "validate",
    "write_selection",
]


def validate(split: str, checkpoint: str, eps: float, train_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Validation numbers of ``checkpoint`` sampled with ``eps``, through the trainer's own validation:
    the rollout ARMSE (Å, ``val_armse``), the one-step loss (Å, ``val_one_step``) and ``val_metric``, the one
    ``select_by`` names (None where not finite).

    The trainer's settings are merged exactly as in training: defaults <- ``train_cfg`` <- the model's
    own ``train:`` overrides (kept in the checkpoint).
    """
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything
    from diffmd.engine.train import (
        isolated_rng,
        one_step_seed,
        resolve_train_config,
        validation_one_step,
        validation_pairs,
        validation_rollouts,
    )

    try:
        device = resolve_device(resolve_train_config(train_cfg)["device"])
    except RuntimeError as exc:
        raise ValueError(f"train.device: {exc}") from None
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
    pairs = validation_pairs(segs, cfg["val_frames"])
    t1 = time.perf_counter()
    one = isolated_rng(one_step_seed(seed, 0), lambda: validation_one_step(model, pairs, cfg["batch_size"], device))
    one_seconds = time.perf_counter() - t1
    metric = one if cfg["select_by"] == "one_step" else val
    params = ckpt["params"]
    return {
        "point": point_name(params["sigma_s"], params["a_bar"], params["eta_sigma"]),
        **{k: params[k] for k in TRAIN_KEYS},
        "eps": float(eps),
        "val_armse": _finite(val),
        "val_one_step": _finite(one),
        "val_metric": _finite(metric),
        "select_by": cfg["select_by"],
        "epoch": ckpt.get("epoch"),
        "checkpoint": str(checkpoint),
        "val_horizon": cfg["val_horizon"],
        "val_frames": len(pairs),
        "seconds": seconds,
        "one_step_seconds": one_seconds,
        "frames": int(res["frames"]),
        "score_evals": int(res["score_evals"]),
        "score_evals_per_frame": res["score_evals"] / max(res["frames"], 1),
    }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def row_metric(row: dict[str, Any]) -> float | None:
    """The number a validation row is selected by: ``val_metric`` (older rows: ``val_armse``); None: diverged."""
    return row["val_metric"] if "val_metric" in row else row["val_armse"]


def row_select_by(row: dict[str, Any]) -> str:
    """What ``row_metric`` of the row is: ``select_by`` (older rows, without it: ``rollout_armse``)."""
    return str(row.get("select_by", "rollout_armse"))


def select(grid_dir: str | Path, grid: dict[str, list[float]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The (point, eps) of lowest finite validation metric (:func:`row_metric`; first in grid order on ties),
    and all rows. Rows validated with different ``select_by`` cannot be compared: a :class:`ValueError`."""
    from diffmd.io import read_json

    rows = []
    for name in grid_points(grid):
        for eps in grid["eps"]:
            path = Path(grid_dir) / name / f"val_eps{fmt(eps)}.json"
            row = read_json(path)
            if not isinstance(row, dict) or not ("val_metric" in row or "val_armse" in row) or "checkpoint" not in row:
                raise ValueError(f"{path}: not a validation row (needs 'val_metric' or 'val_armse', and 'checkpoint')")
            rows.append(row)
    kinds = sorted({row_select_by(r) for r in rows})
    if len(kinds) > 1:
        raise ValueError(f"{grid_dir}: validation rows selected by different metrics ({', '.join(kinds)}):"
                         " rerun the validations with one train.select_by")  # fmt: skip
    finite = [r for r in rows if row_metric(r) is not None]
    best = min(finite, key=row_metric) if finite else rows[0]
    return best, rows


def write_selection(grid_dir: str, grid: dict[str, Any], out_model: str, out_selection: str) -> dict[str, Any]:
    """Copy the best (point, eps) checkpoint to ``out_model`` (``eps`` in its parameters) and write the
    summary of every row to ``out_selection``; returns the summary."""
    from diffmd.engine.common import load_torch, save_torch
    from diffmd.io import write_json

    best, rows = select(grid_dir, grid)
    metric = row_metric(best)
    ckpt = load_torch(best["checkpoint"])
    ckpt["params"] = {**ckpt["params"], "eps": best["eps"]}
    ckpt["val_armse"] = best["val_armse"] if best["val_armse"] is not None else math.inf
    ckpt["val_metric"] = metric if metric is not None else math.inf
    ckpt["select_by"] = row_select_by(best)
    ckpt["selection"] = {k: best[k] for k in TRAIN_KEYS + ("eps", "point")}
    save_torch(out_model, ckpt)
    summary = {"best": best, "all_diverged": metric is None, "n_points": len(rows),
               "select_by": row_select_by(best), "val_metric": [row_metric(r) for r in rows],
               "val_armse": [r["val_armse"] for r in rows], "points": rows,
               "best_val_armse_by_eps": {fmt(e): _best_for(rows, e) for e in grid["eps"]},
               "best_val_metric_by_eps": {fmt(e): _best_for(rows, e, row_metric) for e in grid["eps"]}}  # fmt: skip
    write_json(out_selection, summary)
    return summary


def _best_for(rows: list[dict[str, Any]], eps: float,
              value: Callable[[dict[str, Any]], float | None] = lambda r: r["val_armse"]) -> float | None:  # fmt: skip
    vals = [value(r) for r in rows if r["eps"] == float(eps) and value(r) is not None]
    return float(np.min(vals)) if vals else None


def main(argv: list[str] | None = None) -> int:
    """The tune CLI (module docstring); returns the exit status."""
    from diffmd.engine.train import OneLineArgumentParser, json_argument, run_cli

    p = OneLineArgumentParser(description="DiffMD grid search: validate one (point, eps), or select the best.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=OneLineArgumentParser)
    v = sub.add_parser("validate")
    v.add_argument("--split", required=True)
    v.add_argument("--checkpoint", required=True, help="grid/<point>/model.pt")
    v.add_argument("--eps", type=float, required=True, help="smallest diffusion time of the sampler")
    v.add_argument(
        "--train-config", default="{}", help="JSON: the config's train section (val_horizon, select_by, ...)"
    )
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--out", required=True)
    s = sub.add_parser("select")
    s.add_argument("--grid-dir", required=True)
    s.add_argument("--grid", required=True, help="JSON: the config's diffmd.grid")
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-selection", required=True)
    a = p.parse_args(argv)

    def body() -> None:
        if a.cmd == "validate":
            from diffmd.io import write_json

            row = validate(a.split, a.checkpoint, a.eps, json_argument(a.train_config, "--train-config"), a.seed)
            write_json(a.out, row)
            print(json.dumps(row))
        else:
            summary = write_selection(a.grid_dir, json_argument(a.grid, "--grid"), a.out_model, a.out_selection)
            print(json.dumps(summary["best"]))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
