"""Cost model of the paper-scale DAG: what a GPU pays (launches, host syncs, FLOPs) for the work the code really
runs, priced per device; GPU-hours per rule, the total, and the wall clock on one 8-core + 1-GPU box (issue 21).

**Units** (:mod:`benchmarks.launches`): for every model whose jobs use the accelerator, at paper size, on each
dataset's representative molecule: dispatched ops, kernels, host syncs and matmul FLOPs of a training step, a
network evaluation, a rollout step's prediction (per eps for a tuned model) and the rollout loop's own ops, eager
and captured. Counted here with a dispatch counter; they do not depend on the device.

**Counts** (:func:`paper_counts`): how many of each unit every job of the paper DAG runs, from the code paths
themselves: the trainer's :func:`diffmd.engine.train.rollout_epochs` and :func:`one_step_epochs` (rollouts only
with ``select_by: rollout_armse``, one for the selected checkpoint at the end otherwise, none for a grid training),
the grid validation's :func:`diffmd.engine.grid.rollout_plan` (a point rolls out its best eps only where
it can be selected), the halving schedule, the rollout job's paper rollout + multi-start + one-step frames, and
one start-up per job.

**Prices** (:func:`price`): a unit costs ``max(ops * t_op, FLOPs / rate) + syncs * t_sync`` eager; captured
(``train.compile`` / ``rollout.compile``: CUDA graphs) ``max(launches * t_op, nodes * t_node, FLOPs / rate) +
syncs * t_sync``, ``nodes`` the kernels the device still runs (times ``nodes_per_kernel``: inductor's fusion).
``rate`` by precision (the training step's ``train.precision``; inference float32). The constants come from
the device the cost model runs on (:func:`measure_constants`, on a GPU) or, on a CPU-only machine, from a
labelled assumption file (``--device-constants``, default ``benchmarks/devices/h200_assumed.json``: an H200
projection), or from a device check's measured units (``--units-in``, issue 22).

**Wall clock** (:func:`schedule`): the DAG's GPU jobs (durations = start-up + priced work) and the CPU jobs that
follow them (evaluation: an assumed duration per job) list-scheduled on ``--cores`` cores and ``--gpu-slots``
concurrent GPU jobs sharing one device (each job's device work slows down when the running jobs' device demand
exceeds the device: processor sharing), longest path first; reported for the default profile's slots and for
one GPU job at a time (``--resources gpu=1``), with the critical path through the halving chains. The data
downloads are left out (network).

CLI (``--config-json``: the experiment config as JSON, inline or ``@file``; default: ``config.yaml``)::

    python -m benchmarks.paper_cost [--config-json @config.json] [--device-constants FILE | --device cuda]
        [--units-in FILE] [--units-out FILE] [--cpu-seconds] --out-csv results/tables/paper_cost.csv
        --out-md results/tables/paper_cost.md

``--units-out`` writes the counted units and the device constants used (format in docs/paper_scale.md);
``--units-in`` projects from such a file instead of counting (a GPU's, with measured ``seconds`` per unit where
the device check timed them, which then replace the priced ones). ``--cpu-seconds`` also times every unit on
this CPU and projects CPU-hours (the same-machine figure of docs/paper_scale.md).
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/paper_cost.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
#: The labelled assumptions of an H200 projection made on a machine without a GPU.
DEFAULT_CONSTANTS = ROOT / "benchmarks" / "devices" / "h200_assumed.json"
CONSTANTS_FORMAT = "diffmd-bench device constants 1"
UNITS_FORMAT = "diffmd-bench paper_cost units 2"
#: Rules whose jobs hold a GPU slot (the ones that train or roll a learned model out).
RULES = ("train", "diffmd_train_point", "diffmd_validate", "diffmd_rung", "rollout", "rollout_simulate")
#: Rules whose device work is inference (priced in ``rollout.compile``'s mode).
INFER_RULES = ("rollout", "rollout_simulate")
FIELDS = ("rule", "model", "dataset", "unit", "mode", "batch", "count", "what", "unit_s", "device_hours", "device")
#: The C7O2H10 archive (Brockherde et al. 2017): isomers and frames per isomer assumed for a download source.
C7O2H10_DOWNLOAD = {"n_isomers": 113, "n_frames": 5000}
#: Time step (fs) of the downloaded data (MD17 0.5 fs, C7O2H10 1 fs); xtb sources give their own.
DOWNLOAD_DT_FS = {"md17": 0.5, "c7o2h10": 1.0}
#: Batch of the rollout job's one-step frames (diffmd.engine.rollout.one_step).
ONE_STEP_BATCH = 256


# --- device constants --------------------------------------------------------------------------------------
def read_constants(path: str | Path) -> dict[str, Any]:
    """A device-constants file (docs/paper_scale.md), checked: one line naming the file and key on anything wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"--device-constants {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--device-constants {path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != CONSTANTS_FORMAT:
        raise SystemExit(f"--device-constants {path}: not a device-constants file (key 'format')")
    for key in ("t_op_s", "t_node_s", "t_sync_s", "nodes_per_kernel", "job_start_s", "job_start_compiled_s"):
        if not isinstance(record.get(key), (int, float)) or record[key] < 0:
            raise SystemExit(f"--device-constants {path}: key {key!r} missing or not a number >= 0")
    rates = record.get("flops_per_s")
    if not isinstance(rates, dict) or not all(isinstance(rates.get(k), (int, float)) and rates[k] > 0
                                              for k in ("float32", "tf32", "bf16")):  # fmt: skip
        raise SystemExit(f"--device-constants {path}: key 'flops_per_s' must give float32, tf32 and bf16 rates > 0")
    for key in ("device", "source"):
        if not isinstance(record.get(key), str):
            raise SystemExit(f"--device-constants {path}: key {key!r} missing or not a string")
    return record


def measure_constants(device: Any) -> dict[str, Any]:
    """t_op, t_sync, t_node and matmul rates measured on ``device`` (a GPU: the cost model's own constants; the
    start-up times and the fusion factor stay the assumption file's, labelled)."""
    import torch

    base = read_constants(DEFAULT_CONSTANTS)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x = torch.zeros(1, device=device)
    for _ in range(50):
        x.add_(1.0)
    sync()
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        x.add_(1.0)
    sync()
    t_op = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(200):
        x.add_(1.0)
        float(x)
    t_sync = max((time.perf_counter() - t0) / 200 - t_op, 0.0)
    t_node = t_op
    if device.type == "cuda":  # a CUDA graph of 200 tiny kernels, replayed
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                x.add_(1.0)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            for _ in range(200):
                x.add_(1.0)
        g.replay()
        sync()
        t0 = time.perf_counter()
        for _ in range(20):
            g.replay()
        sync()
        t_node = (time.perf_counter() - t0) / (20 * 200)
    rates = {}
    a = torch.randn(2048, 2048, device=device)
    for prec in ("float32", "tf32", "bf16"):
        m = a.to(torch.bfloat16) if prec == "bf16" else a
        flag = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        m @ m
        sync()
        t0 = time.perf_counter()
        for _ in range(5):
            m @ m
        sync()
        torch.backends.cuda.matmul.allow_tf32 = flag
        rates[prec] = 5 * 2 * 2048**3 / (time.perf_counter() - t0)
    return {**base, "device": device_label(device), "source": f"measured on {device_label(device)} "
            "(start-up times and nodes_per_kernel from the assumption file)", "t_op_s": t_op, "t_sync_s": t_sync,
            "t_node_s": t_node, "flops_per_s": rates}  # fmt: skip


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


# --- prices ---------------------------------------------------------------------------------------------
def price(counts: dict[str, float], mode: str, consts: dict[str, Any], precision: str = "float32",
          batch: float = 1.0) -> float:  # fmt: skip
    """Seconds of one unit: eager ``max(ops t_op, FLOPs / rate) + syncs t_sync``; captured ``max(launches t_op,
    nodes t_node, FLOPs / rate) + syncs t_sync`` with nodes = kernels x nodes_per_kernel. ``batch``: molecules
    (the FLOPs of a one-molecule unit scale with it; ops, launches and syncs do not)."""
    rate = float(consts["flops_per_s"][precision])
    flops = float(counts["flops"]) * batch
    syncs = float(counts["syncs"]) * float(consts["t_sync_s"])
    if mode == "eager":
        return max(float(counts["ops"]) * consts["t_op_s"], flops / rate) + syncs
    nodes = float(counts["kernels"]) * float(consts["nodes_per_kernel"])
    return max(float(counts["launches"]) * consts["t_op_s"], nodes * consts["t_node_s"], flops / rate) + syncs


def occupancy(counts: dict[str, float], mode: str, consts: dict[str, Any], precision: str = "float32",
              batch: float = 1.0) -> float:  # fmt: skip
    """The device's busy fraction while a job runs this unit: (kernels' own time + arithmetic) / the unit's time."""
    rate = float(consts["flops_per_s"][precision])
    nodes = float(counts["kernels"]) * (float(consts["nodes_per_kernel"]) if mode == "captured" else 1.0)
    busy = nodes * float(consts["t_node_s"]) + float(counts["flops"]) * batch / rate
    total = price(counts, mode, consts, precision, batch)
    return min(1.0, busy / total) if total > 0 else 0.0


# --- the work each job of the paper DAG runs -----------------------------------------------------------------
def dataset_sizes(plan: Any, dataset: str) -> dict[str, Any]:
    """Training pairs, validation segments and pairs, test frames per target, targets, runs, dt of ``dataset``."""
    cfg = plan.config
    split = cfg["splits"][dataset]
    xtb = cfg["data"][dataset].get("xtb", {})
    dt = float(xtb.get("dt_fs", DOWNLOAD_DT_FS[dataset])) if plan.source(dataset) == "xtb" \
        else DOWNLOAD_DT_FS[dataset]  # fmt: skip
    if plan.task(dataset) == "s2l":
        return {"train_pairs": int(split["n_train"]), "val_segments": 1, "val_pairs": int(split["n_val"]),
                "test_frames": int(split["n_test"]), "targets": 1, "runs": list(plan.md17_molecules), "dt_fs": dt,
                "assumed": ""}  # fmt: skip
    if plan.source(dataset) == "xtb":
        n_iso, n_frames, assumed = int(xtb.get("n_isomers", 20)), int(xtb.get("n_frames", 5000)), ""
    else:
        n_iso, n_frames = C7O2H10_DOWNLOAD["n_isomers"], C7O2H10_DOWNLOAD["n_frames"]
        assumed = f"c7o2h10 download assumed {n_iso} isomers x {n_frames} frames"
    n_targets = len(plan.config_targets()) or int(split["n_targets"])
    n_val = int(split["n_val_isomers"])
    per_isomer = max(n_frames - plan.history_frames(dataset) - 1, 1)
    return {"train_pairs": max(n_iso - n_targets - n_val, 1) * per_isomer, "val_segments": n_val,
            "val_pairs": n_val * per_isomer, "test_frames": per_isomer, "targets": n_targets, "runs": ["trained"],
            "dt_fs": dt, "assumed": assumed}  # fmt: skip


def train_settings(plan: Any, model: str, dataset: str) -> dict[str, Any]:
    """The trainer's settings of ``model`` on ``dataset`` (the config's ``train`` + the model's ``train:``)."""
    from diffmd.config import split_train_overrides
    from diffmd.engine.train import resolve_train_config

    _, overrides = split_train_overrides(plan.model_params(model, dataset))
    return resolve_train_config(plan.train_config(), overrides)


def _eps_unit(plan: Any, model: str, dataset: str, base: str, eps: float | None = None) -> str:
    """``predict`` / ``rollout_step`` of a model, at ``eps`` (default: its own) when it is a tuned ODE model."""
    if model not in plan.tuned_models("diffmd_grid") or plan.model_params(model, dataset).get("sampler") != "ode":
        return base
    eps = float(plan.model_params(model, dataset).get("eps")) if eps is None else float(eps)
    grid = [float(e) for e in plan.grid_eps(model)]
    return f"{base}@eps{min(grid, key=lambda e: abs(e - eps)):g}"


def training_work(plan: Any, model: str, dataset: str, epochs: int | None = None,
                  final_rollout: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """The units one training of ``model`` runs (:func:`diffmd.engine.train.fit`): its steps, the one-step loss on
    :func:`diffmd.engine.train.one_step_epochs`, the validation loss (``select_by: val_loss``), the validation
    rollouts on :func:`diffmd.engine.train.rollout_epochs` and the selected checkpoint's at the end."""
    from diffmd.engine.train import one_step_epochs, rollout_epochs

    cfg, size = train_settings(plan, model, dataset), dataset_sizes(plan, dataset)
    epochs = int(cfg["epochs"]) if epochs is None else int(epochs)
    k = plan.stride(model, dataset)
    pairs = size["train_pairs"] if cfg["max_train_pairs"] is None else min(size["train_pairs"], cfg["max_train_pairs"])
    bsz = int(cfg["batch_size"])
    steps = math.ceil(pairs / bsz)
    val = min(int(cfg["val_frames"]), size["val_pairs"])
    n_val_batches = math.ceil(val / bsz)
    work = [{"unit": "train_step", "batch": bsz, "count": epochs * steps, "phase": "train",
             "what": f"{epochs} epochs x {steps} steps"}]  # fmt: skip
    n_one = len(one_step_epochs(cfg, epochs))
    if n_one:
        work.append({"unit": _eps_unit(plan, model, dataset, "predict"), "batch": val / n_val_batches,
                     "count": n_one * n_val_batches, "phase": "infer",
                     "what": f"one-step loss on {n_one} epochs x {n_val_batches} batches"})  # fmt: skip
    if cfg["select_by"] == "val_loss":
        work.append({"unit": "eval", "batch": val / n_val_batches, "count": epochs * n_val_batches, "phase": "infer",
                     "what": f"validation loss on {epochs} epochs"})  # fmt: skip
    n_roll = len(rollout_epochs(cfg, epochs)) + (1 if final_rollout and cfg["select_by"] != "rollout_armse" else 0)
    if n_roll:
        work.append({"unit": _eps_unit(plan, model, dataset, "rollout_step"), "batch": size["val_segments"],
                     "count": n_roll * (int(cfg["val_horizon"]) // k), "phase": "infer",
                     "what": f"{n_roll} validation rollout(s) x {int(cfg['val_horizon']) // k} steps, "
                             f"{size['val_segments']} segment(s) as one batch"})  # fmt: skip
    return work


def validation_work(plan: Any, model: str, dataset: str, report: bool) -> list[dict[str, Any]]:
    """The units one grid point's validation runs (:func:`diffmd.engine.grid.validate_point`): the
    one-step loss at every eps (one integration to the smallest where batched) and the rollouts
    :func:`diffmd.engine.grid.rollout_plan` asks for (the nominal eps stands for the point's best)."""
    cfg, size = train_settings(plan, model, dataset), dataset_sizes(plan, dataset)
    k = plan.stride(model, dataset)
    eps = [float(e) for e in plan.grid_eps(model)]
    batched = plan.batch_eps(model) and len(eps) > 1 and plan.model_params(model, dataset).get("sampler") == "ode"
    bsz = int(cfg["batch_size"])
    val = min(int(cfg["val_frames"]), size["val_pairs"])
    nb = math.ceil(val / bsz)
    steps = int(cfg["val_horizon"]) // k
    work = []
    for e in ([min(eps)] if batched else eps):
        what = "one-step loss at every eps" if batched else f"one-step loss, eps {e:g}"
        work.append({"unit": _eps_unit(plan, model, dataset, "predict", e), "batch": val / nb, "count": nb,
                     "phase": "infer", "what": what})
    if cfg["select_by"] != "one_step":  # every eps rolls out: the rollout ARMSE is the rows' metric
        for e in ([min(eps)] if batched else eps):
            copies = size["val_segments"] * (len(eps) if batched else 1)
            work.append({"unit": _eps_unit(plan, model, dataset, "rollout_step", e), "batch": copies, "count": steps,
                         "phase": "infer", "what": f"validation rollouts, {copies} copies"})  # fmt: skip
    elif report:
        work.append({"unit": _eps_unit(plan, model, dataset, "rollout_step"), "batch": size["val_segments"],
                     "count": steps, "phase": "infer", "what": "the best eps's rollout (report)"})  # fmt: skip
    return work


def rollout_work(plan: Any, model: str, dataset: str) -> list[dict[str, Any]]:
    """The units one rollout job runs (:func:`diffmd.engine.rollout.run`): the paper rollout, the multi-start
    rollouts as one batch, the one-step frames in batches of 256."""
    from diffmd.engine.rollout import multistart_steps

    ro, size = plan.rollout_config(), dataset_sizes(plan, dataset)
    k = plan.stride(model, dataset)
    horizon = size["test_frames"] if ro.get("horizon") is None else min(int(ro["horizon"]), size["test_frames"])
    ms_steps = multistart_steps(ro["start_horizon_fs"], size["dt_fs"], k, size["test_frames"] // k)  # as the rollout
    frames = min(int(ro["one_step_frames"]), size["test_frames"])
    nb = math.ceil(frames / ONE_STEP_BATCH)
    return [
        {"unit": _eps_unit(plan, model, dataset, "rollout_step"), "batch": 1, "count": horizon // k,
         "phase": "infer", "what": "paper rollout"},
        {"unit": _eps_unit(plan, model, dataset, "rollout_step"), "batch": int(ro["n_starts"]), "count": ms_steps,
         "phase": "infer", "what": f"{ro['n_starts']} starts x {ms_steps} steps, one batch"},
        {"unit": _eps_unit(plan, model, dataset, "predict"), "batch": frames / nb, "count": nb, "phase": "infer",
         "what": f"{frames} one-step frames"},
    ]  # fmt: skip


def simulation_work(plan: Any, model: str, dataset: str) -> list[dict[str, Any]]:
    """The units one simulation job runs (:func:`diffmd.engine.simulate.simulate`): every start as one batch over
    ``simulation.length_fs``, then the proper scores' K copies of the scored starts over the scoring horizon (when
    the model's step divides it). The reference ensemble and the xTB energies run on the CPU (not priced here)."""
    from diffmd.engine.simulate import model_steps

    sim, size = plan.simulation_config(dataset), dataset_sizes(plan, dataset)
    k = plan.stride(model, dataset)
    unit = _eps_unit(plan, model, dataset, "rollout_step")
    steps = model_steps(float(sim["length_fs"]), size["dt_fs"], k)
    work = [{"unit": unit, "batch": int(sim["n_starts"]), "count": steps, "phase": "infer",
             "what": f"{sim['n_starts']} starts x {steps} steps ({sim['length_fs']:g} fs), one batch"}]  # fmt: skip
    sc = sim["scores"]
    tau = float(sc["horizon_fs"]) / (size["dt_fs"] * k)
    if plan.ensemble_model(dataset) is not None and abs(tau - round(tau)) < 1e-6 and round(tau) >= 1:
        copies = min(int(sc["n_starts"]), int(sim["n_starts"])) * int(sc["samples"])
        work.append({"unit": unit, "batch": copies, "count": int(round(tau)), "phase": "infer",
                     "what": f"proper scores: {copies} copies x {int(round(tau))} steps"})  # fmt: skip
    return work


def paper_jobs(plan: Any) -> list[dict[str, Any]]:
    """Every job of the paper DAG that trains, validates or rolls out a learned model (GPU jobs: ``gpu`` True,
    their ``work`` in units), the CPU jobs that follow them (evaluation, ``gpu`` False) and the dependencies
    between them (``deps``: job ids), with the halving chains (rung r's slots after rung r-1's ranking)."""
    jobs: list[dict[str, Any]] = []

    def add(**job: Any) -> int:
        job.setdefault("deps", [])
        job["id"] = len(jobs)
        jobs.append(job)
        return job["id"]

    tuned = set(plan.tuned_models("diffmd_grid"))
    for seed in plan.seeds:
        for dataset in ("md17", "c7o2h10"):
            if not plan.enabled(dataset):
                continue
            size = dataset_sizes(plan, dataset)
            for run in size["runs"]:
                ckpt: dict[str, list[int]] = {}
                for model in plan.models_for(dataset):
                    if not plan.gpu(model):
                        continue
                    base = {"model": model, "base": plan.base_model(model), "dataset": dataset, "run": run,
                            "seed": seed, "gpu": True}  # fmt: skip (a variant is priced as its model: "base")
                    if model not in tuned:
                        ckpt[model] = [add(rule="train", work=training_work(plan, model, dataset), **base)]
                    elif plan.search(model) == "full":
                        last = []
                        for point in plan.grid_point_names(model):
                            t = add(rule="diffmd_train_point", point=point,
                                    work=training_work(plan, model, dataset, final_rollout=False), **base)  # fmt: skip
                            work = validation_work(plan, model, dataset, report=True)
                            last.append(add(rule="diffmd_validate", point=point, deps=[t], work=work, **base))
                        ckpt[model] = last
                    else:
                        schedule = plan.halving_schedule(model, dataset)
                        prev: list[int] = []
                        for rung in schedule:
                            final = rung["rung"] == schedule[-1]["rung"]
                            work = (training_work(plan, model, dataset, rung["epochs"], final_rollout=False)
                                    + validation_work(plan, model, dataset, report=final))  # fmt: skip
                            prev = [add(rule="diffmd_rung", rung=rung["rung"], deps=list(prev), work=work, **base)
                                    for _ in range(rung["points"])]  # fmt: skip
                        ckpt[model] = prev
                targets = [run] if dataset == "md17" else [f"target{i}" for i in range(size["targets"])]
                simulated = dataset in plan.simulation_datasets()
                ensemble = {}
                if simulated and plan.ensemble_model(dataset) is not None:  # a CPU job (the ensemble row's)
                    ensemble = {t: add(rule="simulation_ensemble", model=plan.ensemble_model(dataset), dataset=dataset,
                                       run=t, seed=seed, gpu=False, work=[]) for t in targets}  # fmt: skip
                for model, deps in ckpt.items():
                    for target in targets:
                        # workflow/rules/simulation.smk: a run that simulates does it in its rollout job, after the
                        # rollout (one start-up for both); models.smk's rollout otherwise
                        work = rollout_work(plan, model, dataset)
                        if simulated and model in plan.simulation_models(dataset):
                            r = add(rule="rollout_simulate", model=model, base=plan.base_model(model),
                                    dataset=dataset, run=target, seed=seed, gpu=True,
                                    deps=deps + ([ensemble[target]] if ensemble else []),
                                    work=work + simulation_work(plan, model, dataset))  # fmt: skip
                        else:
                            r = add(rule="rollout", model=model, base=plan.base_model(model), dataset=dataset,
                                    run=target, seed=seed, gpu=True, deps=deps, work=work)  # fmt: skip
                        add(rule="evaluate", model=model, dataset=dataset, run=target, seed=seed, gpu=False, deps=[r],
                            work=[])  # fmt: skip
    return jobs


# --- pricing the jobs ----------------------------------------------------------------------------------------
def _unit(units: dict[str, Any], name: str) -> dict[str, Any] | None:
    if name in units:
        return units[name]
    base, _, eps = name.partition("@eps")
    options = [k for k in units if k.partition("@eps")[0] == base]
    if not options:
        return None
    if not eps:
        return units[options[0]]
    return units[min(options, key=lambda k: abs(float(k.partition("@eps")[2] or 0) - float(eps)))]


def job_modes(plan: Any, device_type: str = "cuda") -> dict[str, str]:
    """``eager`` or ``captured`` per phase of a job, from the config's ``train.compile`` / ``rollout.compile`` on
    ``device_type`` (the projection's: CUDA)."""
    from diffmd.engine.capture import compile_enabled

    dev = __import__("torch").device(device_type)
    train = compile_enabled(plan.train_config().get("compile", "auto"), dev)
    roll = compile_enabled(plan.rollout_config().get("compile", "auto"), dev)
    return {"train": "captured" if train else "eager", "rollout": "captured" if roll else "eager"}


def price_job(job: dict[str, Any], records: dict[str, Any], consts: dict[str, Any], modes: dict[str, str],
              precision: dict[str, str], cpu_job_s: float) -> dict[str, Any]:  # fmt: skip
    """A job's seconds alone on the device (start-up + its priced units; measured ``seconds`` where a device check
    timed a unit), its device occupancy, and the seconds per work item; CPU jobs take ``cpu_job_s``."""
    if not job["gpu"]:
        return {"seconds": cpu_job_s, "occupancy": 0.0, "items": []}
    rec = records.get(f"{job.get('base', job['model'])}|{job['dataset']}")  # a variant's units are its model's
    mode = modes["rollout"] if job["rule"] in INFER_RULES else modes["train"]
    start = float(consts["job_start_compiled_s"] if mode == "captured" else consts["job_start_s"])
    total, busy, items, missing = start, 0.0, [], []
    for w in job["work"]:
        u = _unit(rec["units"], w["unit"]) if rec else None
        if u is None:
            missing.append(w["unit"])
            continue
        prec = precision.get(job["model"], "float32") if w["phase"] == "train" else "float32"
        factor = w["batch"] / float(u.get("batch", 1)) if w["unit"] != "train_step" else 1.0
        measured = measured_seconds(u, mode, float(w["batch"]), factor)
        each = measured if measured is not None else price(u[mode], mode, consts, prec, factor)
        occ = occupancy(u[mode], mode, consts, prec, factor)
        total += w["count"] * each
        busy += w["count"] * each * occ
        items.append({**w, "unit_s": each, "seconds": w["count"] * each, "mode": mode})
    return {"seconds": total, "occupancy": busy / total if total else 0.0, "items": items, "missing": missing}


def measured_seconds(u: dict[str, Any], mode: str, batch: float, factor: float) -> float | None:
    """Seconds of unit ``u`` at ``batch`` molecules as a device check measured them (None: not measured).
    ``seconds_at`` ({mode: {batch: seconds}}, issue 22): interpolated linearly between the measured batches, the
    smallest one's time below them (a launch-bound unit is no cheaper on fewer molecules), proportional beyond the
    largest; else ``seconds`` ({mode: seconds} at the unit's own batch) times ``factor`` (at least 1)."""
    at = u.get("seconds_at", {}).get(mode) if isinstance(u.get("seconds_at"), dict) else None
    if at:
        points = sorted((float(b), float(s)) for b, s in at.items())
        if batch <= points[0][0]:
            return points[0][1]
        for (b0, s0), (b1, s1) in zip(points, points[1:]):
            if batch <= b1:
                return s0 + (s1 - s0) * (batch - b0) / (b1 - b0)
        return points[-1][1] * batch / points[-1][0]
    seconds = u.get("seconds", {}).get(mode) if isinstance(u.get("seconds"), dict) else None
    return None if seconds is None else float(seconds) * max(factor, 1.0)


def precision_of(plan: Any) -> dict[str, str]:
    """The training precision of each model (``train.precision``, float32 where the model refuses it)."""
    from diffmd.registry import get_model_class

    out = {}
    for model in plan.models:
        prec = train_settings(plan, model, "md17" if model in plan.models_for("md17") else "c7o2h10")["precision"] \
            if plan.gpu(model) else "float32"  # fmt: skip
        cls = get_model_class(plan.base_model(model))
        if (prec == "tf32" and cls.tf32_refused) or (prec == "bf16" and cls.bf16_refused):
            prec = "float32"
        out[model] = prec
    return out


# --- the wall clock ------------------------------------------------------------------------------------------
def critical_path(jobs: list[dict[str, Any]], seconds: list[float]) -> tuple[float, list[float]]:
    """The longest path through the DAG (seconds, no resource limits) and each job's longest path to the end."""
    children: dict[int, list[int]] = {j["id"]: [] for j in jobs}
    for j in jobs:
        for d in j["deps"]:
            children[d].append(j["id"])
    tail = [0.0] * len(jobs)
    for j in reversed(jobs):  # jobs are listed after their dependencies
        tail[j["id"]] = seconds[j["id"]] + max((tail[c] for c in children[j["id"]]), default=0.0)
    return max(tail, default=0.0), tail


def schedule(jobs: list[dict[str, Any]], seconds: list[float], occ: list[float], cores: int,
             gpu_slots: int) -> float:  # fmt: skip
    """Makespan (seconds) of list-scheduling ``jobs`` (one core each; GPU jobs one of ``gpu_slots`` slots) longest
    path first; concurrent GPU jobs share the device: when their occupancies sum to U > 1 each progresses at 1/U."""
    _, tail = critical_path(jobs, seconds)
    waiting = {j["id"]: len(j["deps"]) for j in jobs}
    children: dict[int, list[int]] = {j["id"]: [] for j in jobs}
    for j in jobs:
        for d in j["deps"]:
            children[d].append(j["id"])
    ready = [(-tail[i], i) for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: dict[int, float] = {}  # job -> remaining seconds (alone)
    now, free_cores, free_gpu = 0.0, cores, gpu_slots
    deferred: list[tuple[float, int]] = []
    while ready or running:
        while ready:
            item = heapq.heappop(ready)
            i = item[1]
            need_gpu = jobs[i]["gpu"]
            if free_cores >= 1 and (not need_gpu or free_gpu >= 1):
                running[i] = seconds[i]
                free_cores -= 1
                free_gpu -= 1 if need_gpu else 0
            else:
                deferred.append(item)
        for item in deferred:
            heapq.heappush(ready, item)
        deferred.clear()
        if not running:
            break
        load = sum(occ[i] for i in running if jobs[i]["gpu"])
        slow = max(1.0, load)
        rates = {i: (1.0 / slow if jobs[i]["gpu"] else 1.0) for i in running}
        step = min(running[i] / rates[i] for i in running)
        now += step
        finished = []
        for i in list(running):
            running[i] -= step * rates[i]
            if running[i] <= 1e-9:
                finished.append(i)
        for i in finished:
            del running[i]
            free_cores += 1
            free_gpu += 1 if jobs[i]["gpu"] else 0
            for c in children[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    heapq.heappush(ready, (-tail[c], c))
    return now


# --- CPU seconds (the same-machine figure) -----------------------------------------------------------------
def cpu_unit_seconds(plan: Any, budget_s: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Seconds per unit timed on this CPU (one thread), on the synthetic ethanol the earlier CPU figures used
    (docs/paper_scale.md), per model: ``train_step`` at the config's batch (extrapolated linearly from a smaller
    one when the budget says so), ``eval`` and every ``predict`` (per eps) at 1 and 32 molecules. Within about
    ``budget_s``, the tuned models first; a unit not reached is NA."""
    import numpy as np
    import torch

    from benchmarks.launches import Molecule, paper_model, segment_of
    from diffmd import batch as B
    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData
    from diffmd.engine.train import acceleration_scale, train_step
    from diffmd.testing import ETHANOL_X, ETHANOL_Z

    eth = Molecule("ethanol", np.asarray(ETHANOL_Z), np.asarray(ETHANOL_X, dtype=np.float64))
    deadline = time.perf_counter() + budget_s
    tuned = set(plan.tuned_models("diffmd_grid"))
    rows = [m for m in plan.models if plan.gpu(m) and (m in plan.models_for("md17") or m in plan.models_for("c7o2h10"))]
    # one timing per model: a variant (config variants:) is timed as its model, under the model's name
    rows = [m for m in rows if plan.base_model(m) == m or plan.base_model(m) not in rows]
    models = sorted(rows, key=lambda m: m not in tuned)
    out: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    cpu = torch.device("cpu")

    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for i, name in enumerate(models):
        share = (deadline - time.perf_counter()) / (len(models) - i)
        if share <= 0:
            notes.append(f"{name}: not timed (budget spent)")
            continue
        end = time.perf_counter() + share
        dataset = "md17" if name in plan.models_for("md17") else "c7o2h10"
        cfg = train_settings(plan, name, dataset)
        model, k = paper_model(plan.base_model(name), plan.model_params(name, dataset))
        seg = segment_of(eth, k, n_frames=int(cfg["batch_size"]) + 3 * k + 40)
        data = PairDataset([seg])
        model.loss_scale = acceleration_scale(data)
        dd = DeviceData(data, cpu, model)
        opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
        model.train()
        small = dd.batch(np.arange(8))
        step = functools.partial(train_step, model, opt, device=cpu)
        step(small)
        t8 = timed(functools.partial(step, small))
        bsz = int(cfg["batch_size"])
        units: dict[str, Any] = {}
        if t8 * bsz / 8 < 0.3 * (end - time.perf_counter()):
            units["train_step"] = {"b": timed(functools.partial(step, dd.batch(np.arange(bsz))))}
        else:
            units["train_step"] = {"b": t8 * bsz / 8}
            notes.append(f"{name}: train_step extrapolated linearly from a batch of 8 ({t8:.3g} s)")
        model.eval()
        one, many = B.inputs_only(dd.batch(np.arange(1))), B.inputs_only(dd.batch(np.arange(32)))
        with torch.no_grad():
            units["eval"] = {"1": timed(functools.partial(model.network_call, one)),
                             "32": timed(functools.partial(model.network_call, many)) / 32}  # fmt: skip
            eps_list = [float(e) for e in plan.grid_eps(name)] if name in tuned and \
                plan.model_params(name, dataset).get("sampler") == "ode" else [None]  # fmt: skip
            for eps in eps_list:
                if time.perf_counter() > end and len(units) > 2:
                    notes.append(f"{name}: predict at eps {eps} not timed (budget): nearest eps used")
                    continue
                if eps is not None:
                    model.eps = eps
                key = "predict" if eps is None else f"predict@eps{eps:g}"
                model.begin_rollout(one)
                t1 = timed(functools.partial(model.predict, one))
                left = end - time.perf_counter()
                t32 = timed(functools.partial(model.predict, many)) / 32 if 32 * t1 < left or eps is None else t1
                if t32 == t1 and eps is not None and 32 * t1 >= left:
                    notes.append(f"{name}: batched predict at eps {eps:g} taken as the single-molecule one (budget)")
                units[key] = {"1": t1, "32": t32}
                units[key.replace("predict", "rollout_step")] = units[key]
        out[plan.base_model(name)] = units
        print(f"{name}: timed on this CPU: {json.dumps(units)}", flush=True)
    return out, notes


def cpu_job_seconds(job: dict[str, Any], timing: dict[str, Any], cpu_job_s: float) -> float | None:
    """A GPU job's seconds on this CPU from :func:`cpu_unit_seconds` (None: a unit was not timed)."""
    if not job["gpu"]:
        return cpu_job_s
    units = timing.get(job.get("base", job["model"]))
    if units is None:
        return None
    total = 0.0
    for w in job["work"]:
        u = _unit(units, w["unit"])
        if u is None:
            return None
        if w["unit"] == "train_step":
            total += w["count"] * u["b"]
        else:
            b = float(w["batch"])
            each = u["1"] if b <= 1 else (u["1"] + (u["32"] * 32 - u["1"]) * (b - 1) / 31 if b < 32 else u["32"] * b)
            total += w["count"] * each
    return total


# --- the projection ------------------------------------------------------------------------------------------
def project(plan: Any, records: dict[str, Any], consts: dict[str, Any], cores: int, gpu_slots: int,
            cpu_job_s: float, device_type: str = "cuda") -> dict[str, Any]:  # fmt: skip
    """GPU-hours per rule and in total, the wall clock (``gpu_slots`` concurrent GPU jobs and one at a time) and
    the critical path, for ``plan``'s DAG priced with ``consts``."""
    jobs = paper_jobs(plan)
    modes, precision = job_modes(plan, device_type), precision_of(plan)
    priced = [price_job(j, records, consts, modes, precision, cpu_job_s) for j in jobs]
    seconds = [p["seconds"] for p in priced]
    occ = [p["occupancy"] for p in priced]
    per_rule: dict[str, dict[str, float]] = {}
    per_model: dict[tuple[str, str], float] = {}
    missing = sorted({f"{j['model']} {m}" for j, p in zip(jobs, priced) for m in p.get("missing", [])})
    for j, p in zip(jobs, priced):
        if not j["gpu"]:
            continue
        r = per_rule.setdefault(j["rule"], {"jobs": 0, "hours": 0.0, "busy_hours": 0.0, "start_hours": 0.0})
        r["jobs"] += 1
        r["hours"] += p["seconds"] / 3600
        r["busy_hours"] += p["seconds"] * p["occupancy"] / 3600
        r["start_hours"] += (p["seconds"] - sum(i["seconds"] for i in p["items"])) / 3600
        per_model[(j["rule"], j["model"])] = per_model.get((j["rule"], j["model"]), 0.0) + p["seconds"] / 3600
    path, _ = critical_path(jobs, seconds)
    wall = schedule(jobs, seconds, occ, cores, gpu_slots)
    serial = schedule(jobs, seconds, occ, cores, 1) if gpu_slots != 1 else wall
    return {"jobs": jobs, "priced": priced, "per_rule": per_rule, "per_model": per_model,
            "total_h": sum(r["hours"] for r in per_rule.values()),
            "busy_h": sum(r["busy_hours"] for r in per_rule.values()), "wall_h": wall / 3600,
            "serial_wall_h": serial / 3600, "critical_h": path / 3600, "modes": modes, "precision": precision,
            "missing": missing, "gpu_slots": gpu_slots, "cores": cores}  # fmt: skip


def schema_optional() -> str | None:
    """Without jsonschema (a bare CUDA image: the device check, issue 22), let this process go on without schema
    validation of the config and of model parameters (defaults are still filled in from the schema; the plan's and
    the models' own checks run); returns a note saying so, None when jsonschema is importable (nothing changed).
    Only the cost model and the device check call it: the workflow always validates."""
    import importlib.util

    try:
        if importlib.util.find_spec("jsonschema") is not None:
            return None
    except ImportError:
        pass
    import diffmd.config
    import diffmd.plan.core

    diffmd.plan.core.validate_config = lambda *a, **k: None
    diffmd.config.schema_error = lambda *a, **k: None
    return "jsonschema absent: the config and model parameters were not schema-validated (counting only)"


def counting_plan(config: dict[str, Any], origin: str = "--config-json") -> Any:
    """``Plan(config)`` without its check of the data already on disk (the quick profile's short trajectories
    must not stop the paper config's counts); without jsonschema, not schema-validated (:func:`schema_optional`)."""
    from diffmd.plan import Plan

    class CountingPlan(Plan):
        def check_existing_data(self, root: str = ".") -> None:
            """Counts only: the data on disk is not read."""

    schema_optional()
    return CountingPlan(config, origin=origin)


def load_config(text: str | None) -> dict[str, Any]:
    """The experiment config: JSON inline or ``@file``; None: the repository's config.yaml."""
    if text is None:
        import yaml

        return yaml.safe_load((ROOT / "config.yaml").read_text())
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--config-json: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SystemExit("--config-json: expected a JSON object")
    return config


def write_units(path: str, records: dict[str, Any], consts: dict[str, Any] | None, label: str,
                notes: list[str]) -> None:  # fmt: skip
    """The counted units, the device constants (None: to be given when projecting) and where they came from
    (format: docs/paper_scale.md)."""
    import subprocess

    from diffmd.io import write_text

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    record = {"format": UNITS_FORMAT, "device": label, "commit": commit,
              "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "constants": consts,
              "records": records, "notes": notes}  # fmt: skip
    write_text(path, json.dumps(record, indent=1, sort_keys=True, default=float) + "\n")


def read_units(path: str) -> dict[str, Any]:
    """A ``--units-out`` file, checked: one line naming the file and key on anything wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"--units-in {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--units-in {path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != UNITS_FORMAT:
        raise SystemExit(f"--units-in {path}: not a paper_cost --units-out file (key 'format': {UNITS_FORMAT!r})")
    for key, kind in (("device", str), ("records", dict)):
        if not isinstance(record.get(key), kind):
            raise SystemExit(f"--units-in {path}: key {key!r} missing or not a {kind.__name__}")
    if record.get("constants") is not None and not isinstance(record["constants"], dict):
        raise SystemExit(f"--units-in {path}: key 'constants' must be an object or null")
    for name, rec in record["records"].items():
        units = rec.get("units") if isinstance(rec, dict) else None
        if not isinstance(units, dict):
            raise SystemExit(f"--units-in {path}: records.{name}: no 'units'")
        for unit, u in units.items():
            for mode in ("eager", "captured"):
                c = u.get(mode) if isinstance(u, dict) else None
                keys = ("ops", "kernels", "syncs", "flops", "launches")
                if not isinstance(c, dict) or not all(isinstance(c.get(k), (int, float)) and c[k] >= 0 for k in keys):
                    raise SystemExit(f"--units-in {path}: records.{name}.units.{unit}.{mode}: expected ops, kernels,"
                                     " syncs, flops, launches (numbers >= 0)")  # fmt: skip
    return record


def _h(value: float | None) -> str:
    return "NA" if value is None else f"{value:,.2f}"


def render(result: dict[str, Any], other: dict[str, Any] | None, consts: dict[str, Any], label: str,
           notes: list[str], cpu: dict[str, Any] | None) -> tuple[str, str]:  # fmt: skip
    """(CSV, Markdown) of a projection; ``other``: the other search's projection beside it."""
    import pandas as pd

    rows = []
    for j, p in zip(result["jobs"], result["priced"]):
        for it in p["items"]:
            rows.append({"rule": j["rule"], "model": j["model"], "dataset": j["dataset"], "unit": it["unit"],
                         "mode": it["mode"], "batch": it["batch"], "count": it["count"], "what": it["what"],
                         "unit_s": it["unit_s"], "device_hours": it["seconds"] / 3600,
                         "device": consts["device"]})  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    grouped = frame.groupby(["rule", "model", "dataset", "unit", "mode", "what"], as_index=False).agg(
        jobs=("count", "size"), count=("count", "sum"), unit_s=("unit_s", "mean"), device_hours=("device_hours", "sum"))
    csv = grouped.to_csv(index=False)
    per_rule = pd.DataFrame([{"rule": r, "GPU jobs": v["jobs"], "GPU-hours (held)": _h(v["hours"]),
                              "of which start-up": _h(v["start_hours"]), "device busy": _h(v["busy_hours"])}
                             for r, v in result["per_rule"].items()])  # fmt: skip
    per_model = pd.DataFrame([{"rule": r, "model": m, "GPU-hours": _h(h)} for (r, m), h in result["per_model"].items()])
    body = [
        f"# Projected paper-scale cost: {consts['device']}",
        "",
        f"Units counted on {label} (benchmarks/launches.py: ops, kernels, host syncs, FLOPs; they do not depend on "
        f"the device), priced with the device constants of {consts['source']}: t_op {consts['t_op_s'] * 1e6:.3g} µs, "
        f"t_node {consts['t_node_s'] * 1e6:.3g} µs, t_sync {consts['t_sync_s'] * 1e6:.3g} µs, "
        + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in consts["flops_per_s"].items())
        + f", nodes per kernel when captured {consts['nodes_per_kernel']:.3g}, start-up "
        f"{consts['job_start_s']:.0f} s per job ({consts['job_start_compiled_s']:.0f} s compiled). "
        f"Modes: training {result['modes']['train']}, rollouts {result['modes']['rollout']}; training precision "
        + ", ".join(f"{m} {p}" for m, p in result["precision"].items() if p != "float32") + ".",
        "",
        "## Totals",
        "",
        f"| search | GPU jobs | GPU-hours (held) | device busy | wall clock, default profile "
        f"({result['gpu_slots']} GPU jobs at once, {result['cores']} cores) | wall clock, one GPU job at a time | "
        "critical path |",
        "|---|---|---|---|---|---|---|",
        f"| {result['search']} (configured) | {sum(v['jobs'] for v in result['per_rule'].values())} | "
        f"{_h(result['total_h'])} | {_h(result['busy_h'])} | {_h(result['wall_h'])} h | {_h(result['serial_wall_h'])}"
        f" h | {_h(result['critical_h'])} h |",
    ]
    if other:
        body.append(f"| {other['search']} | {sum(v['jobs'] for v in other['per_rule'].values())} | "
                    f"{_h(other['total_h'])} | {_h(other['busy_h'])} | {_h(other['wall_h'])} h | "
                    f"{_h(other['serial_wall_h'])} h | {_h(other['critical_h'])} h |")  # fmt: skip
    if cpu:
        body += ["", f"On this CPU ({cpu['label']}, units timed on the synthetic ethanol, one thread): "
                 f"**{_h(cpu['total_h'])} CPU-hours** for the configured search"
                 + (f", {_h(cpu['other_h'])} for the other" if cpu.get("other_h") is not None else "") + " ("
                 + ", ".join(f"{r} {_h(h)}" for r, h in cpu["per_rule"].items()) + ")."]  # fmt: skip
    body += ["", "## Per rule", "", per_rule.to_markdown(index=False), "", "## Per rule and model", "",
             per_model.to_markdown(index=False), "", "## Notes", "",
             "- GPU-hours are the time GPU jobs hold the device (start-up included); 'device busy' is the kernels' "
             "own time and arithmetic in it. CPU rows (references, floors, physics oracles, own-trainer force fields) "
             "hold no GPU (plan.gpu) and are left out; evaluation jobs (CPU) enter the wall clock at the assumed "
             f"{consts.get('evaluate_s', 120):.0f} s each; data downloads are left out.",
             "- Units of MD17 runs are counted on the largest configured molecule (an upper bound for the smaller "
             "ones); DiffMD's adaptive sampler at the counted evaluations per step of an untrained network; its "
             "one-step validation batches assumed to take the evaluations of one molecule.",
             "- The validation rollouts counted are the ones the code runs: "
             "diffmd.engine.train.rollout_epochs, the selected checkpoint's at the end, "
             "diffmd.engine.grid.rollout_plan."]  # fmt: skip
    body += [f"- {n}" for n in notes]
    if result["missing"]:
        body.append("- Not counted (left out of the totals): " + ", ".join(result["missing"]))
    return csv, "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The CLI (module docstring); returns the projection."""
    p = argparse.ArgumentParser(description="Projected GPU-hours and wall clock of the paper-scale DAG.")
    p.add_argument("--config-json", default=None, help="config as JSON (inline or @file); default config.yaml")
    p.add_argument("--device-constants", default=None,
                   help=f"device constants JSON (default: measured on --device cuda, else {DEFAULT_CONSTANTS.name})")
    p.add_argument("--device", default="cpu", help="cpu (count here, price with --device-constants) | cuda[:N] "
                                                   "(also measure the constants on that GPU)")  # fmt: skip
    p.add_argument("--units-in", default=None, help="project from a --units-out file instead of counting here")
    p.add_argument("--units-out", default=None, help="also write the counted units and the constants (JSON)")
    p.add_argument("--cores", type=int, default=8, help="cores of the box the wall clock is projected for")
    p.add_argument("--gpu-slots", type=int, default=4,
                   help="GPU jobs at once (profiles/default: resources gpu); 1 is also reported")  # fmt: skip
    p.add_argument("--cpu-seconds", action="store_true", help="also time the units on this CPU: CPU-hours")
    p.add_argument("--budget-s", type=float, default=150.0, help="seconds for --cpu-seconds' timings")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    a = p.parse_args(argv)
    import torch

    from benchmarks.launches import measure as count_units
    from diffmd.engine.common import resolve_device
    from diffmd.io import write_text

    torch.set_num_threads(max(a.threads, 1))
    config = load_config(a.config_json)
    plan = counting_plan(config)
    notes: list[str] = []
    if a.units_in:
        loaded = read_units(a.units_in)
        records, label = loaded["records"], loaded["device"]
        consts = read_constants(a.device_constants or DEFAULT_CONSTANTS) if a.device_constants or \
            not loaded.get("constants") else loaded["constants"]  # fmt: skip
        notes.append(f"units read from {a.units_in} (counted on {label}, commit {loaded.get('commit') or '?'})")
    else:
        _, records = count_units(plan)
        device = resolve_device(a.device)
        label = device_label(torch.device("cpu"))
        if a.device_constants:
            consts = read_constants(a.device_constants)
        elif device.type == "cuda":
            consts = measure_constants(device)
        else:
            consts = read_constants(DEFAULT_CONSTANTS)
        if a.units_out:
            write_units(a.units_out, records, consts, label, notes)
    cpu_s = float(consts.get("evaluate_s", 120.0))
    result = project(plan, records, consts, a.cores, a.gpu_slots, cpu_s)
    result["search"] = plan.search("diffmd") if "diffmd" in plan.tuned_models() else "-"
    other = None
    other_plan = None
    if "diffmd" in plan.tuned_models():
        other_cfg = json.loads(json.dumps(config))
        other_cfg.setdefault("diffmd", {})["search"] = "full" if plan.search("diffmd") == "halving" else "halving"
        other_plan = counting_plan(other_cfg)
        if other_plan.search("diffmd") != plan.search("diffmd"):
            other = project(other_plan, records, consts, a.cores, a.gpu_slots, cpu_s)
            other["search"] = other_plan.search("diffmd")
        else:
            other_plan = None
    cpu = None
    if a.cpu_seconds:
        timing, more = cpu_unit_seconds(plan, a.budget_s)
        notes += more

        def cpu_hours(pl: Any) -> tuple[float | None, dict[str, float]]:
            total, per = 0.0, {}
            for job in paper_jobs(pl):
                if not job["gpu"]:
                    continue
                s = cpu_job_seconds(job, timing, 0.0)
                if s is None:
                    return None, per
                per[job["rule"]] = per.get(job["rule"], 0.0) + s / 3600
                total += s / 3600
            return total, per

        total, per = cpu_hours(plan)
        cpu = {"label": device_label(torch.device("cpu")), "total_h": total, "per_rule": per,
               "other_h": cpu_hours(other_plan)[0] if other_plan is not None else None, "timing": timing}  # fmt: skip
        result["cpu"] = cpu
    csv, md = render(result, other, consts, label, notes, cpu)
    write_text(a.out_csv, csv)
    write_text(a.out_md, md)
    print(md)
    result["other"] = other
    return result


if __name__ == "__main__":
    main()
