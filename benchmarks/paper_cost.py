"""Cost model of the paper-scale DAG: unit costs measured here, at paper model sizes, times the plan's counts.

For every learned model the engine trains (role baseline / proposed, ``trainer: engine``), built from
``diffmd/models/configs/<model>.yaml`` with the given config's ``model_params`` (the paper config has
none: the quick profile's small sizes are *not* used), untrained (a step's cost does not depend on the
weights), on a synthetic ethanol (9 atoms, :func:`diffmd.testing.synthetic.vibrating_truth`; MD17's
molecules have 9-21 atoms, so larger molecules cost more than this), this times on the run's device

* ``train_step``: forward + backward + Adam step on a batch of ``train.batch_size`` molecules (the
  model's own ``train:`` override included), as :func:`diffmd.engine.train.train_epoch` makes it;
* ``predict_1``: ``model.predict`` on one molecule (one step of an autoregressive rollout);
* ``predict_batched``: ``model.predict`` on 32 molecules, divided by 32 (per molecule-step: the
  batched one-step validation, the yardstick's multi-start rollouts, the rollout's one-step frames);
* for tuned diffusion models (DiffMD) both predicts at every ``diffmd.grid.eps`` (the adaptive ODE's
  score evaluations per step depend on eps; read from ``rollout_stats()``) and one score evaluation
  (``model(batch)``, for 1 and 32 molecules, reported beside them).

It then multiplies by the paper DAG's counts from :class:`diffmd.plan.Plan` (:func:`paper_counts`) and
writes the projected device-hours per rule (``train``, ``diffmd_train_point``, ``diffmd_validate``,
``rollout``) and in total, labelled with the device (CPU-hours on a CPU, GPU-hours on a GPU).
Everything measured stays under ``--budget-s``: each model gets an even share of what is left; a
training step that would not fit is timed on a batch of 8 and extrapolated linearly, a unit that
does not fit at all is NA (the notes say which).

CLI (``--config-json``: the experiment config as JSON, inline or ``@file``; default: ``config.yaml``)::

    python -m benchmarks.paper_cost --config-json @config.json --device auto \\
        --out-csv results/tables/paper_cost.csv --out-md results/tables/paper_cost.md [--budget-s 45] \\
        [--units-out units.json | --units-in units.json]

``--units-out`` keeps the measured unit costs with the device's name (benchmarks/device_check.sh writes
one on the device it runs on); ``--units-in`` projects from such a file instead of measuring, so a GPU's
measured unit costs give GPU-hours for any config on any machine, labelled with the GPU they came from.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/paper_cost.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RULES = ("train", "diffmd_train_point", "diffmd_validate", "diffmd_rung", "rollout")
FIELDS = ("rule", "model", "dataset", "unit", "count", "unit_s", "device_hours", "device")
#: Molecules per call of the batched predict.
BATCHED = 32
#: Roles whose cost is not a learned model's device work (reference rows, floors, physics oracles).
UNTIMED_ROLES = ("reference", "floor", "oracle")
#: The C7O2H10 archive (Brockherde et al. 2017): isomers and frames per isomer assumed for a download source.
C7O2H10_DOWNLOAD = {"n_isomers": 113, "n_frames": 5000}
#: Time step (fs) of the downloaded data (MD17 0.5 fs, C7O2H10 1 fs); xtb sources give their own.
DOWNLOAD_DT_FS = {"md17": 0.5, "c7o2h10": 1.0}


# --- the arithmetic ------------------------------------------------------------------------------------
def unit_name(kind: str, eps: float | None = None) -> str:
    """``predict_1`` or, for an eps-dependent sampler, ``predict_1@eps0.2``."""
    return kind if eps is None else f"{kind}@eps{float(eps):g}"


def project(unit_costs: dict[str, dict[str, float | None]], counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Projected device time: every count row ``{rule, model, unit, count, ...}`` times ``unit_costs[model][unit]``
    (seconds per unit). Returns ``{"rows": rows with unit_s, seconds, device_hours (None where the unit was
    not measured)}, "per_rule_h": {rule: hours}, "total_h": hours, "missing": [(model, unit), ...]}``."""
    rows, per_rule, missing, incomplete = [], {}, [], set()
    for c in counts:
        unit_s = unit_costs.get(c["model"], {}).get(c["unit"])
        seconds = None if unit_s is None else float(unit_s) * float(c["count"])
        if seconds is None and (c["model"], c["unit"]) not in missing:
            missing.append((c["model"], c["unit"]))
        rows.append({**c, "unit_s": unit_s, "seconds": seconds,
                     "device_hours": None if seconds is None else seconds / 3600.0})  # fmt: skip
        per_rule.setdefault(c["rule"], 0.0)
        per_rule[c["rule"]] += (seconds or 0.0) / 3600.0
        if seconds is None:
            incomplete.add(c["rule"])
    return {"rows": rows, "per_rule_h": per_rule, "total_h": sum(per_rule.values()), "missing": missing,
            "incomplete": sorted(incomplete)}  # fmt: skip


# --- the counts of the paper DAG -------------------------------------------------------------------------
def timed(plan: Any, model: str) -> bool:
    """Whether ``model``'s cost is a learned model's device work: trained by the engine, not a reference,
    floor or oracle (their rollouts are closed-form or a CPU potential; own-trainer models run on CPU)."""
    from diffmd.registry import get_model_class

    cls = get_model_class(model)
    return cls.trainable and cls.trainer == "engine" and cls.role not in UNTIMED_ROLES


def dataset_sizes(plan: Any, dataset: str) -> dict[str, Any]:
    """Training pairs, validation segments and pairs, test frames per target, targets, dt of ``dataset``."""
    cfg = plan.config
    split = cfg["splits"][dataset]
    xtb = cfg["data"][dataset].get("xtb", {})
    dt = float(xtb.get("dt_fs", DOWNLOAD_DT_FS[dataset])) if plan.source(dataset) == "xtb" \
        else DOWNLOAD_DT_FS[dataset]  # fmt: skip
    if plan.task(dataset) == "s2l":
        return {"train_pairs": int(split["n_train"]), "val_segments": 1, "val_pairs": int(split["n_val"]),
                "test_frames": int(split["n_test"]), "targets": len(plan.md17_molecules), "runs":
                len(plan.md17_molecules), "dt_fs": dt, "assumed": ""}  # fmt: skip
    if plan.source(dataset) == "xtb":
        n_iso, n_frames, assumed = int(xtb.get("n_isomers", 20)), int(xtb.get("n_frames", 5000)), ""
    else:
        n_iso, n_frames = C7O2H10_DOWNLOAD["n_isomers"], C7O2H10_DOWNLOAD["n_frames"]
        assumed = f"c7o2h10 download assumed {n_iso} isomers x {n_frames} frames"
    n_targets = len(plan.config_targets()) or int(split["n_targets"])
    n_val = int(split["n_val_isomers"])
    per_isomer = max(n_frames - plan.history_frames(dataset) - 1, 1)
    return {"train_pairs": max(n_iso - n_targets - n_val, 1) * per_isomer, "val_segments": n_val,
            "val_pairs": n_val * per_isomer, "test_frames": per_isomer, "targets": n_targets, "runs": 1,
            "dt_fs": dt, "assumed": assumed}  # fmt: skip


def train_settings(plan: Any, model: str, dataset: str) -> dict[str, Any]:
    """The trainer's settings of ``model`` on ``dataset`` (the config's ``train`` + the model's ``train:``)."""
    from diffmd.config import split_train_overrides
    from diffmd.engine.train import resolve_train_config

    _, overrides = split_train_overrides(plan.model_params(model, dataset))
    return resolve_train_config(plan.train_config(), overrides)


def _training_counts(plan: Any, rule: str, model: str, dataset: str, jobs: int) -> list[dict[str, Any]]:
    """Training steps and in-training validation of ``jobs`` trainings of ``model`` on ``dataset``."""
    cfg, size, k = train_settings(plan, model, dataset), dataset_sizes(plan, dataset), plan.stride(model, dataset)
    pairs = size["train_pairs"] if cfg["max_train_pairs"] is None else min(size["train_pairs"], cfg["max_train_pairs"])
    epochs, every = int(cfg["epochs"]), int(cfg["val_every"])
    val_epochs = epochs // every + (1 if epochs % every else 0)
    one_step_epochs = epochs if cfg["select_by"] == "one_step" else val_epochs
    eps = plan.model_params(model, dataset).get("eps") if plan.tuned_models() and model in plan.tuned_models() \
        else None  # fmt: skip
    base = {"rule": rule, "model": model, "dataset": dataset, "jobs": jobs}
    return [
        {**base, "unit": "train_step", "what": f"{epochs} epochs x {math.ceil(pairs / cfg['batch_size'])} steps",
         "count": jobs * epochs * math.ceil(pairs / cfg["batch_size"])},
        {**base, "unit": unit_name("predict_batched", eps), "what": f"{one_step_epochs} one-step validations",
         "count": jobs * one_step_epochs * min(int(cfg["val_frames"]), size["val_pairs"])},
        {**base, "unit": unit_name("predict_1", eps), "what": f"{val_epochs} validation rollouts",
         "count": jobs * val_epochs * size["val_segments"] * (int(cfg["val_horizon"]) // k)},
    ]  # fmt: skip


def _validation_counts(plan: Any, rule: str, model: str, dataset: str, jobs: int, size: dict[str, Any]) -> list[dict]:
    """One batched validation at every eps of ``jobs`` points (tune.validate_point): the one-step frames from
    one integration down to the smallest eps, the validation rollouts as one batch of len(eps) copies (each
    copy at its own eps's evaluations per step: per-molecule step control, ``samplers.ode_sampler``)."""
    cfg, k = train_settings(plan, model, dataset), plan.stride(model, dataset)
    eps = [float(e) for e in plan.grid_eps(model)]
    # batched only for the ODE sampler (tune._batchable): DiffMD's; diffmd_corrected validates eps by eps
    batched = plan.batch_eps(model) and plan.model_params(model, dataset).get("sampler") == "ode"
    low, n_eps = min(eps), (len(eps) if batched else 1)
    base = {"rule": rule, "model": model, "dataset": dataset, "jobs": jobs}
    if not batched:  # one eps after another
        return [r for e in eps for r in (
            {**base, "eps": e, "unit": unit_name("predict_1", e), "what": "validation rollout",
             "count": jobs * size["val_segments"] * (int(cfg["val_horizon"]) // k)},
            {**base, "eps": e, "unit": unit_name("predict_batched", e), "what": "one-step validation",
             "count": jobs * min(int(cfg["val_frames"]), size["val_pairs"])})]  # fmt: skip
    return [
        *({**base, "eps": e, "unit": unit_name("predict_batched", e),
           "what": f"validation rollout, {n_eps} eps batched (eps {e:g})",
           "count": jobs * size["val_segments"] * (int(cfg["val_horizon"]) // k)} for e in eps),
        {**base, "unit": unit_name("predict_batched", low), "what": "one-step validation, every eps from one ODE",
         "count": jobs * min(int(cfg["val_frames"]), size["val_pairs"])},
    ]  # fmt: skip


def _tuning_counts(plan: Any, model: str, dataset: str, size: dict[str, Any], seeds: int) -> list[dict[str, Any]]:
    """The grid search's work on one dataset: full (every point trained and validated) or halving (rungs)."""
    runs = size["runs"] * seeds
    if plan.search(model) == "full":
        jobs = runs * len(plan.grid_point_names(model))
        return (_training_counts(plan, "diffmd_train_point", model, dataset, jobs)
                + _validation_counts(plan, "diffmd_validate", model, dataset, jobs, size))  # fmt: skip
    rows = []
    for rung in plan.halving_schedule(model, dataset):
        jobs = runs * rung["points"]
        rows += [{**r, "rung": rung["rung"], "what": f"rung {rung['rung']} ({rung['epochs']} epochs): {r['what']}",
                  "count": r["count"] * rung["epochs"] // max(train_settings(plan, model, dataset)["epochs"], 1)}
                 for r in _training_counts(plan, "diffmd_rung", model, dataset, jobs)]  # fmt: skip
        val = _validation_counts(plan, "diffmd_rung", model, dataset, jobs, size)
        rows += [{**r, "rung": rung["rung"]} for r in val]
    return rows


def paper_counts(plan: Any) -> list[dict[str, Any]]:
    """How many units of work each rule of ``plan``'s DAG does: rows ``{rule, model, dataset, unit, count,
    jobs, what}`` (``count``: units over all jobs of the rule; ``jobs``: the rule's jobs for that row)."""
    from diffmd.engine.rollout import frames_for_fs

    rows: list[dict[str, Any]] = []
    seeds = len(plan.seeds)
    tuned = set(plan.tuned_models("diffmd_grid"))
    for dataset in ("md17", "c7o2h10"):
        size = dataset_sizes(plan, dataset)
        for model in plan.train_models(dataset):
            if timed(plan, model):
                rows += _training_counts(plan, "train", model, dataset, size["runs"] * seeds)
        for model in [m for m in plan.models_for(dataset) if m in tuned]:
            rows += _tuning_counts(plan, model, dataset, size, seeds)
        ro = plan.rollout_config()
        for model in plan.models_for(dataset):
            if not timed(plan, model):
                continue
            k, jobs = plan.stride(model, dataset), size["targets"] * seeds
            eps = plan.model_params(model, dataset).get("eps") if model in tuned else None
            horizon = size["test_frames"] if ro.get("horizon") is None else min(int(ro["horizon"]), size["test_frames"])
            ms_steps = max(1, frames_for_fs(ro["start_horizon_fs"], size["dt_fs"]) // k)
            base = {"rule": "rollout", "model": model, "dataset": dataset, "jobs": jobs}
            rows.append({**base, "unit": unit_name("predict_1", eps), "what": "paper rollout",
                         "count": jobs * (horizon // k)})  # fmt: skip
            rows.append({**base, "unit": unit_name("predict_batched", eps),
                         "what": f"{ro['n_starts']} starts x {ms_steps} steps + {ro['one_step_frames']} one-step",
                         "count": jobs * (int(ro["n_starts"]) * ms_steps + int(ro["one_step_frames"]))})  # fmt: skip
    return rows


def count_jobs(counts: list[dict[str, Any]]) -> dict[str, int]:
    """Timed jobs per rule: the ``jobs`` of each job group (rule, model, dataset and, for halving, rung) once (a
    point's validation is one job at every eps, batched or not)."""
    groups: dict[tuple[Any, ...], int] = {}
    for c in counts:
        groups[(c["rule"], c["model"], c["dataset"], c.get("rung"))] = int(c["jobs"])
    out: dict[str, int] = {}
    for (rule, *_), n in groups.items():
        out[rule] = out.get(rule, 0) + n
    return out


# --- the measurements ------------------------------------------------------------------------------------
def device_label(device: Any) -> str:
    """``NVIDIA H200 (cuda:0)`` or the CPU's model name with the thread count."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {torch.get_num_threads()} thread(s)"


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Any, device: Any) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def measure_model(name: str, params: dict[str, Any], batch_size: int, lr: float, eps_values: list[float],
                  device: Any, budget_s: float) -> tuple[dict[str, float | None], list[str]]:  # fmt: skip
    """Unit costs (seconds) of one model on ``device`` within about ``budget_s``; notes on what was cut."""
    import numpy as np
    import torch

    from diffmd import batch as B
    from diffmd.config import split_train_overrides
    from diffmd.data.pairs import PairDataset, Segment
    from diffmd.registry import build_model
    from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

    deadline = time.perf_counter() + budget_s
    notes: list[str] = []
    torch.manual_seed(0)
    model_params, _ = split_train_overrides(params)
    k = int(model_params.pop("stride", 1))
    model = build_model(name, model_params, source=f"{name} (paper_cost)").to(device)
    model.stride = k
    n = max(batch_size, BATCHED, 8) + 3 * k + 4
    seg = Segment("ethanol", vibrating_truth(n, seed=1), ETHANOL_Z, start=2 * k, stop=n - k, stride=k, dt_fs=0.5)
    data = PairDataset([seg])

    def batch(m: int) -> B.Batch:
        return B.to_device(data.batch(np.arange(m)), device)

    units: dict[str, float | None] = {}
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(b: B.Batch) -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(b).backward()
        opt.step()

    model.train()
    small = batch(8)
    _time(lambda: step(small), device)  # warm-up: lazy initialisation, allocator
    t_small = _time(lambda: step(small), device)
    share = deadline - time.perf_counter()
    if batch_size <= 8:
        units["train_step"] = t_small
    elif t_small * batch_size / 8 < 0.4 * share:
        full = batch(batch_size)
        if t_small * batch_size / 8 < 0.15 * share:  # warm-up at full size when cheap
            step(full)
        units["train_step"] = _time(lambda: step(full), device)
    else:
        units["train_step"] = t_small * batch_size / 8
        notes.append(f"{name}: train_step extrapolated linearly from a batch of 8 ({t_small:.3g} s)")
    model.eval()
    one, many = B.inputs_only(batch(1)), B.inputs_only(batch(BATCHED))
    with torch.no_grad():
        if eps_values:  # one score evaluation (forward = the score at s = 1), 1 and 32 molecules
            model(one)
            units["score_eval_1"] = _time(lambda: model(one), device)
            units["score_eval_batched"] = _time(lambda: model(many), device) / BATCHED
    model.rollout_stats()
    evals: dict[float | None, float] = {}
    for eps in eps_values or [None]:
        if time.perf_counter() > deadline and evals:
            notes.append(f"{name}: predict at eps {eps} not measured (budget)")
            continue
        if eps is not None:
            model.eps = float(eps)
        if not evals:
            model.predict(one)  # warm-up
            model.rollout_stats()
        units[unit_name("predict_1", eps)] = _time(lambda: model.predict(one), device)
        evals[eps] = float(model.rollout_stats().get("score_evals", 0))
        if eps is not None:
            units[unit_name("evals_per_step", eps)] = evals[eps]
    ref = eps_values[0] if eps_values else None
    if eps_values:  # batched at the model's own eps (its rollout's), the others scaled by their evaluations
        ref = float(params.get("eps", eps_values[0]))
        ref = min(evals, key=lambda e: abs(e - ref))
        model.eps = ref
    remaining = deadline - time.perf_counter()
    t1 = units[unit_name("predict_1", ref)] or 0.0
    if remaining > 2 * t1 or not eps_values:
        units[unit_name("predict_batched", ref)] = _time(lambda: model.predict(many), device) / BATCHED
    else:
        units[unit_name("predict_batched", ref)] = t1
        notes.append(f"{name}: batched predict not measured (budget): taken as the single-molecule predict")
    per_ref = units[unit_name("predict_batched", ref)]
    for eps in evals:
        if eps != ref and evals.get(ref):
            units[unit_name("predict_batched", eps)] = per_ref * evals[eps] / evals[ref]
    if eps_values and len(evals) > 1:
        notes.append(f"{name}: batched predict measured at eps {ref:g}, other eps scaled by their score evaluations "
                     "per step on one molecule")  # fmt: skip
    for eps in eps_values:
        if eps not in evals and evals:  # not measured: the nearest measured eps (an underestimate for smaller eps)
            near = min(evals, key=lambda e: abs(e - eps))
            units[unit_name("predict_1", eps)] = units[unit_name("predict_1", near)]
            units[unit_name("predict_batched", eps)] = units[unit_name("predict_batched", near)]
            notes.append(f"{name}: eps {eps:g} taken from eps {near:g}")
    return units, notes


def measure(plan: Any, device: Any, budget_s: float) -> tuple[dict[str, dict[str, float | None]], list[str]]:
    """Unit costs of every timed model of ``plan`` (see :func:`measure_model`), sharing ``budget_s`` evenly."""
    deadline = time.perf_counter() + budget_s
    models = [m for m in plan.models if timed(plan, m) and (m in plan.models_for("md17")
                                                            or m in plan.models_for("c7o2h10"))]  # fmt: skip
    tuned = set(plan.tuned_models("diffmd_grid"))
    models.sort(key=lambda m: m not in tuned)  # the grid search dominates the projection: measured first
    costs, notes = {}, []
    for i, model in enumerate(models):
        left = deadline - time.perf_counter()
        if left <= 0:
            notes.append(f"{model}: not measured (budget spent): its rows are NA")
            continue
        dataset = "md17" if model in plan.models_for("md17") else "c7o2h10"
        cfg = train_settings(plan, model, dataset)
        eps = sorted({float(e) for e in plan.grid_eps(model)} | {float(plan.model_params(model, dataset)["eps"])}) \
            if model in tuned else []  # fmt: skip
        t0 = time.perf_counter()
        costs[model], more = measure_model(model, plan.model_params(model, dataset), int(cfg["batch_size"]),
                                           float(cfg["lr"]), eps, device, left / (len(models) - i))  # fmt: skip
        notes += more
        print(f"{model}: measured in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{u} {v:.3g}" for u, v in costs[model].items() if v is not None), flush=True)  # fmt: skip
    return costs, notes


# --- the outputs --------------------------------------------------------------------------------------------
def _hours(value: float | None) -> str:
    return "NA" if value is None else f"{value:.4g}"


def render(result: dict[str, Any], costs: dict[str, dict[str, float | None]], counts: list[dict[str, Any]],
           label: str, unit: str, notes: list[str], seconds: float,
           other: dict[str, Any] | None = None, units_from: str | None = None) -> tuple[str, str]:  # fmt: skip
    """(CSV, Markdown) of a projection; ``other``: the other search's projection (``search``, ``result``,
    ``jobs``) for the totals beside it."""
    import pandas as pd

    rows = [{k: r.get(k) for k in FIELDS} | {"device": label} for r in result["rows"]]
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    csv = frame.to_csv(index=False, na_rep="NA")
    jobs = count_jobs(counts)
    partial = set(result.get("incomplete", []))

    def rule_hours(r: str) -> str:  # a rule with unmeasured units is a lower bound, never a plain number
        h = _hours(result["per_rule_h"].get(r, 0.0))
        return f">= {h} (NA units left out)" if r in partial else h

    total = _hours(result["total_h"]) if not partial else f">= {_hours(result['total_h'])} (NA units left out)"
    per_rule = pd.DataFrame([{"rule": r, "jobs": jobs.get(r, 0), unit: rule_hours(r)} for r in RULES]
                            + [{"rule": "total", "jobs": sum(jobs.values()), unit: total}])  # fmt: skip
    by_model = {}
    for r in result["rows"]:
        key = (r["rule"], r["model"])
        by_model[key] = by_model.get(key, 0.0) + (r["device_hours"] or 0.0)
    detail = pd.DataFrame([{"rule": r, "model": m, unit: _hours(h)} for (r, m), h in by_model.items()])
    unit_rows = [{"model": m, "unit": u, "seconds": v} for m, us in costs.items() for u, v in us.items()]
    units = pd.DataFrame(unit_rows, columns=["model", "unit", "seconds"])
    body = [
        f"# Projected paper-scale cost on {label}",
        "",
        (f"Unit costs read from {units_from} (measured on {label}, not here)" if units_from else
         f"Unit costs measured here in {seconds:.0f} s") +
        f" at paper model sizes (diffmd/models/configs/<model>.yaml "
        f"+ the config's model_params), untrained, on a synthetic ethanol (9 atoms; MD17 molecules have 9-21, "
        f"so this is a lower bound for the larger ones), times the paper DAG's counts from diffmd.plan.Plan. "
        f"Figures are {unit} on this device.",
        "",
        "## Per rule",
        "",
        per_rule.to_markdown(index=False),
        "",
        *([f"Beside it, the other search (diffmd.search: {other['search']}) with the same unit costs: "
           f"{_hours(other['result']['total_h'])} {unit} in total ({other['jobs']} timed jobs; its DiffMD rules: "
           + ", ".join(f"{r} {_hours(h)}" for r, h in other["result"]["per_rule_h"].items()
                       if r.startswith("diffmd")) + ").", ""] if other else []),
        "## Per rule and model",
        "",
        detail.to_markdown(index=False) if len(detail) else "(nothing timed)",
        "",
        "## Unit costs (seconds; predict_batched and score_eval_batched per molecule of a batch of 32)",
        "",
        units.to_markdown(index=False, floatfmt=".4g") if len(units) else "(nothing measured)",
        "",
        "## Notes",
        "",
        "- Not timed: reference rows (static, constant velocity), the force floor, the physics oracles (xtb, a "
        "CPU potential) and own-trainer models (sGDML, CPU): tiny or not device work.",
        "- train / diffmd_train_point include the in-training validation (one-step loss every epoch with "
        "select_by one_step, rollouts every val_every epochs); the extra validation rollout of a checkpoint "
        "selected on an epoch without one is not counted. Rollout rule: paper rollout (unbatched), the "
        "yardstick's multi-start rollouts and one-step frames (batched). DiffMD's rollout at its YAML eps.",
        "- Score evaluations per step come from an untrained network; a trained one may need other counts.",
    ]
    body += [f"- {n}" for n in notes]
    missing = result["missing"]
    if missing:
        body.append("- NA (not measured, left out of the totals): " + ", ".join(f"{m} {u}" for m, u in missing))
    return csv, "\n".join(body) + "\n"


def counting_plan(config: dict[str, Any], origin: str = "--config-json") -> Any:
    """``Plan(config)`` without its check of the data already on disk (the quick profile's short trajectories
    must not stop the paper config's counts)."""
    from diffmd.plan import Plan

    class CountingPlan(Plan):
        def check_existing_data(self, root: str = ".") -> None:
            """Counts only: the data on disk is not read."""

    return CountingPlan(config, origin=origin)


def write_units(path: str, costs: dict[str, dict[str, float | None]], label: str, unit: str,
                notes: list[str]) -> None:  # fmt: skip
    """The measured unit costs as JSON, with the device they were measured on (``--units-out``)."""
    import subprocess

    from diffmd.io import write_text

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    record = {"format": "diffmd-bench paper_cost units 1", "device": label, "unit": unit, "commit": commit,
              "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "costs": costs,
              "notes": notes}  # fmt: skip
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_units(path: str) -> dict[str, Any]:
    """A ``--units-out`` file, checked: one line naming the file and key on anything wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"--units-in {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--units-in {path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != "diffmd-bench paper_cost units 1":
        raise SystemExit(f"--units-in {path}: not a paper_cost --units-out file (key 'format')")
    for key, kind in (("device", str), ("unit", str), ("costs", dict)):
        if not isinstance(record.get(key), kind):
            raise SystemExit(f"--units-in {path}: key {key!r} missing or not a {kind.__name__}")
    for model, units in record["costs"].items():
        if not isinstance(units, dict) or not all(v is None or isinstance(v, (int, float)) and v >= 0
                                                  for v in units.values()):  # fmt: skip
            raise SystemExit(f"--units-in {path}: costs.{model}: expected seconds (>= 0 or null) per unit")
    return record


def load_config(text: str | None) -> dict[str, Any]:
    """The experiment config: JSON inline or ``@file``; None: the repository's config.yaml."""
    if text is None:
        import yaml

        return yaml.safe_load((Path(__file__).resolve().parent.parent / "config.yaml").read_text())
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--config-json: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SystemExit("--config-json: expected a JSON object")
    return config


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The CLI (module docstring); returns the projection."""
    p = argparse.ArgumentParser(description="Projected device-hours of the paper-scale DAG from measured unit costs.")
    p.add_argument("--config-json", default=None, help="config as JSON (inline or @file); default config.yaml")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--budget-s", type=float, default=45.0, help="seconds for all measurements together")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--units-out", default=None, help="also write the measured unit costs (JSON, with the device)")
    p.add_argument("--units-in", default=None,
                   help="project from unit costs measured before (a --units-out JSON, e.g. a device check's) "
                        "instead of measuring here")  # fmt: skip
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    a = p.parse_args(argv)
    import torch

    from diffmd.engine.common import resolve_device
    from diffmd.io import write_text
    torch.set_num_threads(max(a.threads, 1))
    loaded = read_units(a.units_in) if a.units_in else None
    device = resolve_device("cpu" if loaded else a.device)
    config = load_config(a.config_json)
    plan = counting_plan(config)
    counts = paper_counts(plan)
    other_plan = None
    if "diffmd" in plan.tuned_models():  # the other search, for its total beside the configured one
        other_cfg = json.loads(json.dumps(config))
        other_cfg.setdefault("diffmd", {})["search"] = "full" if plan.search("diffmd") == "halving" else "halving"
        other_plan = counting_plan(other_cfg)
        other_plan = other_plan if other_plan.search("diffmd") != plan.search("diffmd") else None
    t0 = time.perf_counter()
    if loaded:
        costs, label, unit = loaded["costs"], loaded["device"], loaded["unit"]
        notes = [f"unit costs read from {a.units_in} (measured on {label}, commit {loaded.get('commit') or 'unknown'}, "
                 f"{loaded.get('measured_at', '')}), not measured here", *loaded.get("notes", [])]  # fmt: skip
    else:
        costs, notes = measure(plan, device, a.budget_s)
        label = device_label(device)
        unit = "GPU-hours" if device.type == "cuda" else "CPU-hours"
        if a.units_out:
            write_units(a.units_out, costs, label, unit, notes)
    result = project(costs, counts)
    other = None
    if other_plan is not None:
        other_counts = paper_counts(other_plan)
        other = {"search": other_plan.search("diffmd"), "result": project(costs, other_counts),
                 "jobs": sum(count_jobs(other_counts).values())}  # fmt: skip
        result["other"] = other
    csv, md = render(result, costs, counts, label, unit, notes, time.perf_counter() - t0, other, a.units_in)
    write_text(a.out_csv, csv)
    write_text(a.out_md, md)
    print(md)
    return result


if __name__ == "__main__":
    main()
