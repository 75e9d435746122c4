"""Grid search: the ``diffmd_grid`` tuning of any model whose card declares a grid (``fit: grid``; DiffMD's noise
hyper-parameters, paper Table 3; diffmd_corrected's ``kernel_scale``), on the trainer's validation metric.

A tuned model's card declares its grid (:class:`diffmd.plan.GridSpec`): the training keys (DiffMD:
``sigma_s``, ``a_bar``, ``eta_sigma``; diffmd_corrected: ``kernel_scale``) change the training objective, so
each combination is one trained model; ``eps`` only changes the sampler, so every trained model is validated
for every ``eps``, all of them in one process (:func:`validate_point`, ``validation.json``: one row per eps).
The selection copies the best (point, eps) checkpoint to the run's ``model.pt`` with ``eps`` written into its
parameters, so the engine's rollout samples with the chosen value. The point names and parameters are the
plan's (:mod:`diffmd.plan.tuning`); the trainer and its validation numbers the engine's (:mod:`diffmd.engine.train`);
nothing here names a model.

Two searches (``diffmd.search``, docs/paper_scale.md):

* ``full``: every point trained to ``train.epochs`` (``grid/<point>/model.pt``, the engine's train CLI),
  validated (``grid/<point>/validation.json``), the best row selected;
* ``halving``: successive halving. Rung r trains its slots (``grid/rung<r>/slot<j>/``) from scratch for the
  rung's epochs and validates them in the same job (:func:`train_slot`); rung 0's slot j is the grid's
  j-th point, rung r's slot j the j-th survivor of the ranking of rung r-1 (``grid/rung<r-1>/ranking.json``,
  :func:`rank`: points by their best metric over eps). The names of every file are known before the run
  (no Snakemake checkpoint); which point a slot trains is read from the ranking when the job runs. The
  selection reads the last rung's validations.

Each validation row holds the trainer's validation numbers (:mod:`diffmd.engine.train`): ``val_one_step``
(teacher-forced, on ``val_frames`` frames), ``val_armse`` (rollout of ``val_horizon`` frames; ``rollout``
says whether it ran), ``val_loss`` (the model's loss on the validation pairs, with ``select_by: val_loss``)
and ``val_metric``, the one ``train.select_by`` names (``select_by``, default ``one_step``), decided by
:func:`diffmd.selection.metric` exactly as the trainer decides it. The selection minimises ``val_metric``;
every row must have been validated with the same ``select_by``.

Rollouts only where something reads them (issue 21, :func:`rollout_plan`): with ``select_by: one_step`` (or
``val_loss``) a point rolls out once, at its best eps, and only where it can become the run's model (every
point of a full search, the last rung of a halving: ``--no-report-rollout`` elsewhere), so the selected
model's ``val_armse`` is still reported; the earlier rungs rank on the one-step loss alone. With
``rollout_armse`` every eps rolls out, all segments and all eps as one batch of copies. The grid trainings
themselves roll nothing out (``train --no-final-rollout``). Before, every point rolled out at every eps, and
every grid training every ``val_every`` epochs, for numbers no selection read.

Batching over eps (``batch_eps``, default on, models whose instance says :attr:`eps_batchable
<diffmd.registry.TrajectoryModel.eps_batchable>`: DiffMD's ODE sampler): the one-step predictions at every eps
come from one sampling pass down to the smallest eps (the model's :meth:`predict_eps_path`; DiffMD:
:func:`diffmd.models.diffmd.samplers.ode_path`), and the validation rollouts of every eps run as one batch of
copies of the start frame, each on its own clock (``model.eps`` a tensor). Both are the same ODEs as one eps at
a time, to the solver's tolerance (tests/test_diffmd_tune.py). Stochastic samplers, other models
(diffmd_corrected's fixed-step sampler) and ``batch_eps`` off validate one eps after another (``model.eps``
set for each), each exactly as a separate validation would.

CLI::

    python -m diffmd.engine.grid validate --split SPLIT.json --checkpoint grid/P/model.pt
        --eps 0.1 0.2 ... --train-config JSON --seed N [--no-batch-eps] [--no-report-rollout]
        --out grid/P/validation.json
    python -m diffmd.engine.grid train-slot --split SPLIT.json --model MODEL --params JSON --grid JSON
        --slot J --epochs E [--ranking grid/rung<r-1>/ranking.json] --train-config JSON --seed N
        [--no-report-rollout] --out-dir grid/rung<r>/slot<J>
    python -m diffmd.engine.grid rank --validations V.json ... --keep K --out grid/rung<r>/ranking.json
    python -m diffmd.engine.grid select --validations V.json ... --grid JSON
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

from diffmd import selection
from diffmd.plan import GridSpec, fmt, grid_points, point_params

#: The training keys of rows written before rows had ``params`` (they were all DiffMD's).
LEGACY_TRAIN_KEYS = ("sigma_s", "a_bar", "eta_sigma")

__all__ = [
    "GridSpec",
    "fmt",
    "grid_points",
    "point_params",
    "row_params",
    "rank",
    "row_metric",
    "select",
    "train_slot",
    "validate",
    "validate_point",
    "write_selection",
]


def validate(split: str, checkpoint: str, eps: float, train_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """The validation row of ``checkpoint`` sampled with one ``eps`` (:func:`validate_point` of one eps)."""
    return validate_point(split, checkpoint, [eps], train_cfg, seed)["rows"][0]


def _batchable(model: Any, eps_values: list[float], batch_eps: bool) -> bool:
    """Whether every eps can be validated in one batch: more than one eps, and a model whose sampler serves them
    all in one pass (:attr:`diffmd.registry.TrajectoryModel.eps_batchable`: DiffMD's ODE sampler)."""
    return batch_eps and len(eps_values) > 1 and bool(model.eps_batchable)


def _one_step_all_eps(model: Any, data: Any, eps_values: list[float], batch_size: int, device: Any) -> list[float]:
    """The trainer's one-step loss (:func:`diffmd.engine.train.validation_one_step`) at every eps, from one
    sampling pass per batch (the model's :meth:`~diffmd.registry.TrajectoryModel.predict_eps_path`); inf for an eps
    with a non-finite prediction. The frames are resident on the device (:class:`diffmd.engine.batching.DeviceData`)
    and the sums stay there until the end."""
    import torch

    from diffmd import batch as B
    from diffmd.engine.train import on_device

    model.eval()
    model.rollout_stats()
    data = on_device(data, device, model)
    totals = torch.zeros(len(eps_values), dtype=torch.float64, device=data.device)
    finite = torch.ones(len(eps_values), dtype=torch.bool, device=data.device)
    n_atoms = 0
    with torch.no_grad():
        for batch in data.batches(batch_size):
            target, inputs = batch[B.TARGET_POSITIONS].double(), B.inputs_only(batch)
            model.begin_rollout(inputs)
            for i, pred in enumerate(model.predict_eps_path(inputs, eps_values)):
                finite[i] &= torch.isfinite(pred).all()
                totals[i] += ((pred.double() - target) ** 2).sum()
            n_atoms += int(target.shape[0])
    model.rollout_stats()
    ok, sums = finite.tolist(), totals.tolist()
    return [math.sqrt(t / max(n_atoms, 1)) if good else math.inf for t, good in zip(sums, ok)]


def rollout_plan(select_by: str, eps_values: list[float], metrics: list[float | None], report: bool) -> list[int]:
    """The indices of ``eps_values`` whose validation rollout runs: every eps when the selection reads the rollout
    ARMSE (:func:`diffmd.selection.needs_rollout`); otherwise the eps of the lowest finite ``metrics`` (the
    selection's numbers, the first on ties, as :func:`select` breaks them) when ``report``, else none."""
    if selection.needs_rollout(select_by):
        return list(range(len(eps_values)))
    if not report:
        return []
    finite = [i for i, m in enumerate(metrics) if m is not None and math.isfinite(m)]
    return [min(finite, key=lambda i: metrics[i])] if finite else [0]


def validate_point(split: str, checkpoint: str, eps_values: list[float], train_cfg: dict[str, Any], seed: int,
                   batch_eps: bool = True, report_rollout: bool = True) -> dict[str, Any]:  # fmt: skip
    """Validation of ``checkpoint`` at every eps of ``eps_values``, through the trainer's own validation
    numbers: ``{"point", "batched", "seconds", "rows": [one row per eps]}``; a row holds the one-step loss
    (Å, ``val_one_step``), the rollout ARMSE (Å, ``val_armse``; ``rollout`` says whether it was rolled out) and
    ``val_metric``, the one ``select_by`` names (None where not finite). Batched over eps where
    :func:`_batchable` (module docstring); otherwise each eps as a separate validation (seeded afresh).

    Rollouts run where a selection or the report reads them (:func:`rollout_plan`): at every eps with
    ``select_by: rollout_armse`` (all segments and all eps as one batch of copies), else only at the point's
    best eps when ``report_rollout`` (the selected model's ARMSE is still reported), else none.

    The trainer's settings are merged exactly as in training: defaults <- ``train_cfg`` <- the model's
    own ``train:`` overrides (kept in the checkpoint).
    """
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.capture import apply_compile
    from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything
    from diffmd.engine.train import (
        isolated_rng,
        on_device,
        one_step_seed,
        resolve_train_config,
        selection_val_loss,
        validation_one_step,
        validation_pairs,
        validation_rollouts,
        validation_rollouts_eps,
    )

    eps_values = [float(e) for e in eps_values]
    if not eps_values or not all(0 < e < 1 for e in eps_values):
        raise ValueError(f"--eps: values must lie in (0, 1), got {eps_values}")
    try:
        device = resolve_device(resolve_train_config(train_cfg)["device"])
    except RuntimeError as exc:
        raise ValueError(f"train.device: {exc}") from None
    model, ckpt = load_checkpoint(checkpoint, device)
    cfg = resolve_train_config(train_cfg, ckpt.get("train_overrides"))
    apply_compile(model, device, cfg["compile"])  # the score network (the sampler's loop stays eager)
    model.eval()
    segs = split_segments(load_split(split), "val", stride=model.stride)
    pairs = on_device(validation_pairs(segs, cfg["val_frames"]), device, model)
    horizon, bound = cfg["val_horizon"], cfg["divergence_bound_A"]
    batched = _batchable(model, eps_values, batch_eps)
    n = len(eps_values)
    t0 = time.perf_counter()
    # the one-step loss at every eps first: where it selects, it also says which eps the report rolls out
    if batched:
        ones = isolated_rng(one_step_seed(seed, 0),
                            lambda: _one_step_all_eps(model, pairs, eps_values, cfg["batch_size"], device))  # fmt: skip
        one_s = [time.perf_counter() - t0] * n
    else:
        ones, one_s = [], []
        for eps in eps_values:
            model.eps = eps
            tb = time.perf_counter()
            ones.append(isolated_rng(one_step_seed(seed, 0),
                                     lambda: validation_one_step(model, pairs, cfg["batch_size"], device)))  # fmt: skip
            one_s.append(time.perf_counter() - tb)
    select_by = cfg["select_by"]
    vlosses: list[float | None] = [None] * n
    if selection.needs_val_loss(select_by):  # the trainer's validation loss (same noise draws) at every eps
        for i, eps in enumerate(eps_values):
            model.eps = eps
            vlosses[i] = selection_val_loss(model, pairs, cfg["batch_size"], device, seed)
    pre = [selection.metric(select_by, ones[i], None, vlosses[i]) for i in range(n)]  # before any rollout
    plan = rollout_plan(select_by, eps_values, pre, report_rollout)
    rolls: list[dict[str, float] | None] = [None] * n
    roll_s = [0.0] * n
    t1 = time.perf_counter()
    if plan and batched and len(plan) > 1:
        seed_everything(seed)
        for i, res in zip(plan, validation_rollouts_eps(model, segs, [eps_values[i] for i in plan], horizon, bound,
                                                        device)):  # fmt: skip
            rolls[i] = res
        roll_s = [time.perf_counter() - t1 if i in plan else 0.0 for i in range(n)]
    else:
        for i in plan:
            model.eps = eps_values[i]
            seed_everything(seed)
            ta = time.perf_counter()
            rolls[i] = validation_rollouts(model, segs, horizon, bound, device)
            roll_s[i] = time.perf_counter() - ta
    spec = GridSpec.of(ckpt["model"])
    point = {k: ckpt["params"][k] for k in spec.train_keys}
    name = spec.point_name(point)
    rows = []
    for i, eps in enumerate(eps_values):
        res = rolls[i]
        val = res["armse"] if res is not None else None
        one = ones[i]
        metric = selection.metric(select_by, one, val, vlosses[i])  # as the trainer selects (diffmd/selection.py)
        rows.append({
            "point": name,
            **point,
            "params": point,
            "eps": eps,
            "val_armse": _finite(val) if val is not None else None,
            "rollout": res is not None,
            "val_one_step": _finite(one),
            "val_loss": _finite(vlosses[i]) if vlosses[i] is not None else None,
            "val_metric": _finite(metric) if metric is not None else None,
            "select_by": select_by,
            "epoch": ckpt.get("epoch"),
            "checkpoint": str(checkpoint),
            "val_horizon": cfg["val_horizon"],
            "val_frames": len(pairs),
            "batched": batched,
            "seconds": roll_s[i],
            "one_step_seconds": one_s[i],
            "frames": int(res["frames"]) if res is not None else 0,
            "score_evals": int(res["score_evals"]) if res is not None else 0,
            "score_evals_per_frame": res["score_evals"] / max(res["frames"], 1) if res is not None else None,
        })  # fmt: skip
    return {"point": name, "batched": batched, "seconds": time.perf_counter() - t0, "rows": rows,
            "rollouts": [eps_values[i] for i in plan]}  # fmt: skip


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def row_metric(row: dict[str, Any]) -> float | None:
    """The number a validation row is selected by: ``val_metric`` (older rows: ``val_armse``); None: diverged."""
    return row["val_metric"] if "val_metric" in row else row["val_armse"]


def row_params(row: dict[str, Any]) -> dict[str, float]:
    """The training point of a validation row, ``{training key: value}`` (rows without ``params``: DiffMD's)."""
    return dict(row["params"]) if "params" in row else {k: row[k] for k in LEGACY_TRAIN_KEYS}


def row_select_by(row: dict[str, Any]) -> str:
    """What ``row_metric`` of the row is: ``select_by`` (older rows, without it: ``rollout_armse``)."""
    return str(row.get("select_by", "rollout_armse"))


def read_rows(paths: list[str | Path]) -> list[dict[str, Any]]:
    """The validation rows of ``validation.json`` files (:func:`validate_point`), in file then eps order."""
    from diffmd.io import read_json

    rows = []
    for path in paths:
        doc = read_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or not doc["rows"]:
            raise ValueError(f"{path}: not a point's validation (needs a non-empty 'rows' list)")
        for row in doc["rows"]:
            if not isinstance(row, dict) or not ("val_metric" in row or "val_armse" in row) or "checkpoint" not in row:
                raise ValueError(f"{path}: not a validation row (needs 'val_metric' or 'val_armse', and 'checkpoint')")
            rows.append(row)
    return rows


def select(validations: list[str | Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The (point, eps) of lowest finite validation metric (:func:`row_metric`; first in file and eps order on
    ties) over the rows of ``validations``, and all rows. Rows validated with different ``select_by`` cannot be
    compared: a :class:`ValueError`."""
    rows = read_rows(validations)
    kinds = sorted({row_select_by(r) for r in rows})
    if len(kinds) > 1:
        raise ValueError(f"{Path(validations[0]).parent.parent}: validation rows selected by different metrics"
                         f" ({', '.join(kinds)}): rerun the validations with one train.select_by")  # fmt: skip
    finite = [r for r in rows if row_metric(r) is not None]
    best = min(finite, key=row_metric) if finite else rows[0]
    return best, rows


def rank(validations: list[str | Path], keep: int) -> dict[str, Any]:
    """Successive halving's cut: each file's point scored by its best finite metric over eps (None: every eps
    diverged, ranked last), sorted by score (ties and diverged points in file order), the first ``keep``
    kept. ``{"keep", "survivors": [{"point", "score", "params", "validation"}], "ranked": [...]}``."""
    if keep < 1:
        raise ValueError(f"--keep: must be >= 1, got {keep}")
    ranked = []
    for i, path in enumerate(validations):
        rows = read_rows([path])
        scores = [row_metric(r) for r in rows if row_metric(r) is not None]
        params = row_params(rows[0])
        ranked.append({"point": rows[0]["point"], "score": min(scores) if scores else None, "params": params,
                       "validation": str(path), "order": i})  # fmt: skip
    ranked.sort(key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0.0, r["order"]))
    return {"keep": int(keep), "survivors": ranked[:keep], "ranked": ranked}


def slot_point(grid: dict[str, list[float]], spec: GridSpec, slot: int, ranking: str | None) -> str:
    """The point a halving slot trains: the grid's ``slot``-th (rung 0) or the ranking's ``slot``-th survivor."""
    from diffmd.io import read_json

    if ranking is None:
        names = list(grid_points(grid, spec))
        if not 0 <= slot < len(names):
            raise ValueError(f"--slot: {slot} is not one of the grid's {len(names)} points")
        return names[slot]
    survivors = read_json(ranking).get("survivors")
    if not isinstance(survivors, list) or not 0 <= slot < len(survivors):
        raise ValueError(f"{ranking}: no survivor {slot} (has {len(survivors or [])})")
    name = survivors[slot]["point"]
    if name not in grid_points(grid, spec):
        raise ValueError(f"{ranking}: survivor {name!r} is not a point of --grid")
    return name


def train_slot(split: str, model: str, base: dict[str, Any], grid: dict[str, list[float]], slot: int, epochs: int,
               ranking: str | None, train_cfg: dict[str, Any], seed: int, out_dir: str,
               batch_eps: bool = True, report_rollout: bool = True) -> dict[str, Any]:  # fmt: skip
    """One halving slot: train its point (:func:`slot_point`) from scratch for ``epochs`` epochs with the
    engine's trainer into ``out_dir``, validate it at every eps (:func:`validate_point`) and write
    ``out_dir/validation.json``; returns the validation."""
    from diffmd.engine.train import train
    from diffmd.io import write_json

    if epochs < 1:
        raise ValueError(f"--epochs: must be >= 1, got {epochs}")
    spec = GridSpec.of(model)
    name = slot_point(grid, spec, slot, ranking)
    params = point_params(base, grid, name, spec)
    params["train"] = {**(params.get("train") or {}), "epochs": int(epochs)}
    print(f"halving slot {slot}: point {name}, {epochs} epochs", flush=True)
    train(split, model, params, train_cfg, seed, out_dir, final_rollout=False)
    doc = validate_point(split, str(Path(out_dir) / "model.pt"), grid["eps"], train_cfg, seed, batch_eps,
                         report_rollout)  # fmt: skip
    doc = {**doc, "slot": int(slot), "epochs": int(epochs), "ranking": ranking}
    write_json(Path(out_dir) / "validation.json", doc)
    return doc


def write_selection(validations: list[str], grid: dict[str, Any], out_model: str, out_selection: str) -> dict[str, Any]:
    """Copy the best (point, eps) checkpoint to ``out_model`` (``eps`` in its parameters) and write the
    summary of every row to ``out_selection``; returns the summary."""
    from diffmd.engine.common import load_torch, save_torch
    from diffmd.io import write_json

    best, rows = select(validations)
    metric = row_metric(best)
    ckpt = load_torch(best["checkpoint"])
    ckpt["params"] = {**ckpt["params"], "eps": best["eps"]}
    rolled = best.get("rollout", True)  # rows written before issue 21 always rolled out
    ckpt["val_armse"] = best["val_armse"] if best["val_armse"] is not None else (math.inf if rolled else None)
    ckpt["val_metric"] = metric if metric is not None else math.inf
    ckpt["select_by"] = row_select_by(best)
    ckpt["selection"] = {**row_params(best), "eps": best["eps"], "point": best["point"]}
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
    """The grid search CLI (module docstring); returns the exit status."""
    from diffmd.engine.cli import (
        GRID_SCHEMA,
        OneLineArgumentParser,
        add_machine_arguments,
        machine_arguments,
        model_params_argument,
        run_cli,
        schema_argument,
        section_argument,
    )

    p = OneLineArgumentParser(description="Grid search of a grid-tuned model: validate a point, train a halving slot, "
                                          "rank, select.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=OneLineArgumentParser)
    v = sub.add_parser("validate")
    v.add_argument("--split", required=True)
    v.add_argument("--checkpoint", required=True, help="grid/<point>/model.pt")
    v.add_argument("--eps", type=float, nargs="+", required=True, help="smallest diffusion times of the sampler")
    t = sub.add_parser("train-slot")
    t.add_argument("--split", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--params", required=True, help="JSON: the model's parameters (the point's are added)")
    t.add_argument("--grid", required=True, help="JSON: the config's <model>.grid")
    t.add_argument("--slot", type=int, required=True)
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--ranking", default=None, help="the previous rung's ranking.json (none: rung 0)")
    t.add_argument("--out-dir", required=True)
    for q in (v, t):
        q.add_argument("--train-config", default="{}", help="JSON: the config's train section (val_horizon, ...)")
        q.add_argument("--seed", type=int, default=1)
        add_machine_arguments(q, "train.compile")
        q.add_argument("--no-batch-eps", action="store_true", help="validate one eps after another")
        q.add_argument("--no-report-rollout", action="store_true",
                       help="no rollout at the point's best eps (a point that cannot become the run's model: the "
                            "earlier rungs of a halving); with select_by rollout_armse every eps rolls out anyway")
    v.add_argument("--out", required=True)
    r = sub.add_parser("rank")
    r.add_argument("--validations", nargs="+", required=True)
    r.add_argument("--keep", type=int, required=True)
    r.add_argument("--out", required=True)
    s = sub.add_parser("select")
    s.add_argument("--validations", nargs="+", required=True)
    s.add_argument("--grid", required=True, help="JSON: the config's <model>.grid")
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-selection", required=True)
    a = p.parse_args(argv)

    def body() -> None:
        from diffmd.io import write_json

        train_cfg = section_argument(a.train_config, "--train-config", "train", "rollout") if a.cmd in (
            "validate", "train-slot") else None
        if train_cfg is not None:  # device, compile: the machine's (diffmd/stages.py)
            train_cfg.update(machine_arguments(a, train_cfg))
        grid = schema_argument(a.grid, "--grid", GRID_SCHEMA) if a.cmd in ("train-slot", "select") else None
        if a.cmd == "validate":
            doc = validate_point(a.split, a.checkpoint, a.eps, train_cfg, a.seed, not a.no_batch_eps,
                                 not a.no_report_rollout)  # fmt: skip
            write_json(a.out, doc)
            print(json.dumps(doc))
        elif a.cmd == "train-slot":
            doc = train_slot(a.split, a.model, model_params_argument(a.params, "--params", a.model), grid, a.slot,
                             a.epochs, a.ranking, train_cfg, a.seed, a.out_dir, not a.no_batch_eps,
                             not a.no_report_rollout)  # fmt: skip
            print(json.dumps(doc))
        elif a.cmd == "rank":
            doc = rank(a.validations, a.keep)
            write_json(a.out, doc)
            print(json.dumps(doc["survivors"]))
        else:
            summary = write_selection(a.validations, grid, a.out_model, a.out_selection)
            print(json.dumps(summary["best"]))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
