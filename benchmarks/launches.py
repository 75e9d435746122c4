"""What a GPU pays per hot-loop unit of every model at paper size: dispatched ops (launches), kernels, host syncs
and matmul FLOPs, eager and captured (issue 21). Counted on any device (the counts do not depend on it) with
:class:`diffmd.profiling.OpCounter`; written to ``results/tables/launches.{csv,md}`` by every profile, and read by
the cost model (:mod:`benchmarks.paper_cost`), which prices them.

Units, for each learned model the engine trains, built at paper size (its YAML + the config's ``model_params``;
the paper config has none), on a packaged structure of each dataset's molecules (MD17: ``diffmd/data/structures``;
C7O2H10: a 19-atom isomer) vibrating slightly, batches made as the trainer makes them
(:class:`diffmd.engine.batching.DeviceData`, structures prebuilt):

* ``train_step``: zero_grad, forward + loss, backward, the optimiser step (fused Adam, the trainer's on CUDA),
  ``after_optimizer_step``; at the config's batch size (counted on 2 molecules: ops and syncs do not depend on the
  batch, matmul FLOPs scale with it exactly);
* ``eval``: one network evaluation (:meth:`TrajectoryModel.network_call`: a score evaluation for the diffusion
  models), one molecule;
* ``predict``: one step of a one-molecule rollout (``model.predict``: the sampler's every evaluation; DiffMD's
  adaptive ODE with the masked per-molecule solver, as off a CPU) at each eps of a tuned model's grid;
* ``rollout_step``: ``predict`` plus the rollout loop's own ops (:func:`diffmd.engine.rollout.rollout_copies`).

Captured (``train.compile`` / ``rollout.compile`` on CUDA, replayed as CUDA graphs): a training step is two
graphs (the whole objective forward and backward, :func:`diffmd.engine.capture.compile_loss`) plus the optimiser's
eager ops; an inference unit runs the model's ``compile_targets`` (its network) as one launch per call and the ops
outside them (a sampler's loop) eagerly. ``kernels`` stay the eager kernels: the device still runs them (an upper
bound; inductor fuses them: the cost model's ``nodes_per_kernel``, measured for DiffMD by ``--inductor``).

CLI::

    python -m benchmarks.launches [--config-json @config.json] [--molecule aspirin] [--inductor]
        --out-csv results/tables/launches.csv --out-md results/tables/launches.md [--units-out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/launches.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

#: Molecules per counted batch (ops and syncs do not depend on it; FLOPs are scaled to the real batch).
COUNT_BATCH = 2
FIELDS = ("model", "dataset", "molecule", "atoms", "unit", "batch", "eps", "mode", "launches", "kernels", "syncs",
          "gflop", "evals")  # fmt: skip


@dataclass
class Molecule:
    name: str
    numbers: np.ndarray
    positions: np.ndarray

    @property
    def atoms(self) -> int:
        return int(len(self.numbers))


def md17_molecule(name: str) -> Molecule:
    from diffmd.data.isomers import md17_start_structure

    z, pos = md17_start_structure(name)
    return Molecule(name, np.asarray(z, dtype=np.int64), np.asarray(pos, dtype=np.float64))


def c7o2h10_molecule() -> Molecule:
    """A 19-atom C7O2H10 isomer (RDKit's embedding of the first packaged SMILES); without RDKit (a bare CUDA image),
    the same embedding frozen in benchmarks/devices/molecules.json (``python -m benchmarks.device_check
    --freeze-molecules`` writes it; tests/test_device_check.py checks it against RDKit)."""
    try:
        from diffmd.data.isomers import C7H10O2_SMILES, embed_smiles

        z, pos = embed_smiles(C7H10O2_SMILES[0], seed=1)
        return Molecule("c7o2h10_iso0", np.asarray(z, dtype=np.int64), np.asarray(pos, dtype=np.float64))
    except ImportError:
        path = Path(__file__).resolve().parent / "devices" / "molecules.json"
        frozen = json.loads(path.read_text())["molecules"]["c7o2h10_iso0"]
        return Molecule("c7o2h10_iso0", np.asarray(frozen["numbers"], dtype=np.int64),
                        np.asarray(frozen["positions"], dtype=np.float64))  # fmt: skip


def segment_of(mol: Molecule, stride: int = 1, n_frames: int | None = None, seed: int = 0):
    """A short trajectory of ``mol`` (each atom vibrating 0.02 Å), as a :class:`Segment` of every pair."""
    from diffmd.data.pairs import Segment

    k = int(stride)
    n = n_frames or (3 * k + 16)
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=mol.positions.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, size=(mol.atoms, 1))
    t = np.arange(n)[:, None, None]
    frames = mol.positions[None] + 0.02 * np.sin(2 * np.pi * t / 40.0 + phase[None]) * direction[None]
    return Segment(mol.name, frames, mol.numbers, start=2 * k, stop=n - k, stride=k, dt_fs=0.5)


def paper_model(name: str, params: dict[str, Any]):
    """The model at the given (paper) parameters, untrained and seeded, and its stride."""
    import torch

    from diffmd.config import split_train_overrides
    from diffmd.registry import build_model

    model_params, _ = split_train_overrides(params)
    k = int(model_params.pop("stride", 1))
    torch.manual_seed(0)
    model = build_model(name, model_params, source=f"{name} (cost model)")
    model.stride = k
    return model, k


class _Targets:
    """Forward hooks on a model's compile targets: how many calls, and whether an op runs inside one."""

    def __init__(self, model: Any) -> None:
        self.depth, self.calls, self.handles = 0, 0, []
        for module in model.compile_targets():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, *a: Any) -> None:
        if self.depth == 0:
            self.calls += 1
        self.depth += 1

    def _leave(self, *a: Any) -> None:
        self.depth -= 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _count(fn: Any, targets: _Targets | None = None, host: list | None = None) -> dict[str, float]:
    """Counts of ``fn()`` and, with ``targets``, the ops run outside the captured modules and the captured calls."""
    from diffmd.profiling import OpCounter

    inside = {"ops": 0}
    calls0 = targets.calls if targets else 0

    def probe(func: Any) -> None:
        if targets is not None and targets.depth > 0:
            inside["ops"] += 1

    with OpCounter(host=host, on_op=probe) as c:
        fn()
    counts = c.counts
    return {"ops": counts.ops, "kernels": counts.kernels, "syncs": counts.syncs, "flops": counts.flops,
            "inside": inside["ops"], "calls": (targets.calls - calls0) if targets else 0,
            "sync_sites": dict(counts.sync_sites)}  # fmt: skip


def _captured(eager: dict[str, float], backward: dict[str, float] | None = None,
              optimizer: dict[str, float] | None = None) -> dict[str, float]:  # fmt: skip
    """Launches of a unit with its compile targets captured (module docstring)."""
    outside = eager["ops"] - eager["inside"]
    launches = outside + eager["calls"]
    if backward is not None:  # the backward of the glue outside the targets, in proportion; one graph per call
        share = outside / max(eager["ops"], 1)
        launches += backward["ops"] * share + eager["calls"]
    if optimizer is not None:
        launches += optimizer["ops"]
    return {"launches": launches, "ops": launches}  # captured, the host dispatches only these


def train_step_counts(model: Any, cfg: dict[str, Any], seg: Any, batch_size: int) -> dict[str, Any]:
    """The ``train_step`` unit (module docstring), eager and captured, FLOPs at ``batch_size`` molecules."""
    import torch

    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData
    from diffmd.engine.train import acceleration_scale

    data = PairDataset([seg])
    model.loss_scale = acceleration_scale(data)
    dd = DeviceData(data, "cpu", model)
    batch = dd.batch(np.arange(COUNT_BATCH))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), fused=True)  # the trainer's on CUDA
    model.train()

    def fwd() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        return model.loss(batch).float()

    loss = fwd()  # warm-up: lazy state (scales, optimiser state)
    loss.backward()
    opt.step()
    model.after_optimizer_step()
    host = [s["step"] for s in opt.state.values() if torch.is_tensor(s.get("step"))]
    targets = _Targets(model)
    box: dict[str, torch.Tensor] = {}
    f = _count(lambda: box.__setitem__("loss", fwd()), targets, host)
    b = _count(lambda: box["loss"].backward(), None, host)

    def step() -> None:
        opt.step()
        model.after_optimizer_step()

    o = _count(step, None, host)
    targets.remove()
    scale = batch_size / COUNT_BATCH
    eager = {k: f[k] + b[k] + o[k] for k in ("ops", "kernels", "syncs")}
    eager["flops"] = (f["flops"] + b["flops"]) * scale + o["flops"]
    sites = {**f["sync_sites"], **b["sync_sites"], **o["sync_sites"]}
    # captured (diffmd.engine.capture.compile_loss): the whole objective, forward and backward, two graphs; the
    # fused optimiser step and after_optimizer_step stay eager
    captured = {"launches": 2 + o["ops"], "ops": 2 + o["ops"]}
    return {"eager": {**eager, "launches": eager["ops"]}, "captured": {**captured, "kernels": eager["kernels"],
            "syncs": eager["syncs"], "flops": eager["flops"]}, "sync_sites": sites, "batch": batch_size}  # fmt: skip


def inference_counts(model: Any, seg: Any, what: str, batch: int = 1) -> dict[str, Any]:
    """``eval`` (one network call) or ``predict`` (one rollout step's prediction) on ``batch`` molecules."""
    import torch

    from diffmd import batch as B
    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData

    model.eval()
    dd = DeviceData(PairDataset([seg]), "cpu", model)
    inputs = B.inputs_only(dd.batch(np.arange(batch)))
    fn = (lambda: model.network_call(inputs)) if what == "eval" else (lambda: model.predict(inputs))
    with torch.no_grad():
        model.begin_rollout(inputs)
        fn()  # warm-up
        model.rollout_stats()
        targets = _Targets(model)
        with torch.no_grad():
            c = _count(fn, targets)
        targets.remove()
    evals = float(model.rollout_stats().get("score_evals", 0.0)) if what == "predict" else 1.0
    captured = _captured(c)
    return {"eager": {"ops": c["ops"], "kernels": c["kernels"], "syncs": c["syncs"], "flops": c["flops"],
                      "launches": c["ops"]},
            "captured": {**captured, "kernels": c["kernels"], "syncs": c["syncs"], "flops": c["flops"]},
            "sync_sites": c["sync_sites"], "batch": batch, "evals": evals}  # fmt: skip


def scaled_predict(model: Any, seg: Any, ref: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    """``predict`` at the model's current eps from a fully counted one (``ref``, another eps of the same adaptive
    sampler): its drift calls measured by running it (no counter: quick), the per-call solver ops and the network
    evaluations per call taken from ``ref`` (every iteration of the masked solver runs the same ops)."""
    import torch

    from diffmd import batch as B
    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData

    inputs = B.inputs_only(DeviceData(PairDataset([seg]), "cpu", model).batch(np.arange(1)))
    model.eval()
    model.rollout_stats()
    with torch.no_grad():
        model.predict(inputs)
    evals = float(model.rollout_stats().get("score_evals", 0.0))
    factor = evals / max(float(ref["evals"]), 1.0)
    out = {"batch": 1, "evals": evals, "sync_sites": ref["sync_sites"], "scaled_from_evals": ref["evals"]}
    for mode in ("eager", "captured"):
        out[mode] = {k: float(ref[mode][k]) * factor for k in ("ops", "kernels", "syncs", "flops", "launches")}
    return out


def rollout_overhead(mol: Molecule) -> dict[str, float]:
    """The rollout loop's own ops per step (history, divergence flags, the output buffer), counted around the
    ``static`` model (whose prediction is one op), and its host reads (a done-check every 64 steps)."""
    import torch

    from diffmd.engine.rollout import CHECK_EVERY, rollout_copies
    from diffmd.registry import build_model

    model = build_model("static", {})
    seg = segment_of(mol, 1, n_frames=CHECK_EVERY + 8)
    steps = CHECK_EVERY + 1  # the difference from one step: CHECK_EVERY steps holding exactly one done-check

    def run() -> None:
        rollout_copies(model, [seg], np.array([seg.start]), steps, device="cpu", dtype=torch.float32)

    def run1() -> None:
        rollout_copies(model, [seg], np.array([seg.start]), 1, device="cpu", dtype=torch.float32)

    full, one = _count(run, None), _count(run1, None)
    per_step = (full["ops"] - one["ops"]) / (steps - 1)
    kernels = (full["kernels"] - one["kernels"]) / (steps - 1)
    syncs = (full["syncs"] - one["syncs"]) / (steps - 1)
    return {"ops": per_step, "kernels": kernels, "syncs": syncs, "flops": 0.0, "launches": per_step}


def model_units(name: str, params: dict[str, Any], cfg: dict[str, Any], mol: Molecule,
                eps_values: list[float] | None = None,
                overhead: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """Every unit of model ``name`` (paper parameters ``params``, trainer settings ``cfg``) on molecule ``mol``:
    ``{unit: {"eager": counts, "captured": counts, ...}}`` with ``predict@eps<e>`` per eps of a tuned model."""
    model, k = paper_model(name, params)
    seg = segment_of(mol, k)
    units = {"train_step": train_step_counts(model, cfg, seg, int(cfg["batch_size"]))}
    units["eval"] = inference_counts(model, seg, "eval")
    if getattr(model, "sampler_name", None) == "ode":  # the masked per-molecule solver, as on a GPU
        model.sampler_options = {**model.sampler_options, "compact": False}
    ref = None
    for eps in sorted(eps_values or [None], key=lambda e: -(e or 0.0)):
        if eps is not None:
            model.eps = float(eps)
        key = "predict" if eps is None else f"predict@eps{float(eps):g}"
        if ref is None:  # counted in full (the largest eps: the fewest solver iterations)
            units[key] = ref = inference_counts(model, seg, "predict")
        else:  # the same iteration, more of them: scaled by the drift calls counted without the counter
            units[key] = scaled_predict(model, seg, ref, units["eval"])
        if overhead is not None:
            units[key.replace("predict", "rollout_step")] = {
                mode: {kk: units[key][mode].get(kk, 0.0) + overhead.get(kk if kk != "launches" else "ops", 0.0)
                       for kk in ("ops", "kernels", "syncs", "flops", "launches")}
                for mode in ("eager", "captured")} | {"batch": 1, "evals": units[key]["evals"]}  # fmt: skip
    return {"model": name, "stride": k, "atoms": mol.atoms, "molecule": mol.name, "units": units}


def learned_models(plan: Any) -> list[str]:
    """The models whose work is the accelerator's (:func:`diffmd.registry.uses_accelerator`), in config order."""
    return [m for m in plan.models if plan.gpu(m) and (m in plan.models_for("md17") or m in plan.models_for("c7o2h10"))]


def rows_of(record: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    rows = []
    for unit, u in record["units"].items():
        base, _, eps = unit.partition("@eps")
        for mode in ("eager", "captured"):
            c = u[mode]
            rows.append({"model": record["model"], "dataset": dataset, "molecule": record["molecule"],
                         "atoms": record["atoms"], "unit": base, "batch": u.get("batch", 1), "eps": eps or "",
                         "mode": mode, "launches": round(float(c["launches"])), "kernels": round(float(c["kernels"])),
                         "syncs": round(float(c["syncs"]), 2), "gflop": round(float(c["flops"]) / 1e9, 4),
                         "evals": u.get("evals", "")})  # fmt: skip
    return rows


def inductor_score_eval(params: dict[str, Any], mol: Molecule) -> dict[str, Any]:
    """Kernels of DiffMD's paper-size score evaluation compiled by inductor on this CPU (its C++ kernels and the
    aten ops it still calls, from the profiler), against eager: how far fusion cuts the nodes a CUDA graph replays.
    Minutes on a CPU (compilation)."""
    import torch
    import torch._inductor.config as icfg
    from torch.profiler import ProfilerActivity, profile

    from diffmd import batch as B
    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData
    from diffmd.profiling import count

    icfg.cpp.enable_kernel_profile = True
    model, k = paper_model("diffmd", params)
    model.eval()
    seg = segment_of(mol, k)
    inputs = B.inputs_only(DeviceData(PairDataset([seg]), "cpu", model).batch(np.arange(1)))
    sigma = model.sde.sigma_from_batch(inputs)
    x = inputs[B.POSITIONS]
    s = torch.full((x.shape[0],), 0.5)

    def score(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return model.score(inputs, x, s, sigma)

    with torch.no_grad():
        compiled = torch.compile(score, dynamic=False)
        t0 = time.perf_counter()
        compiled(x, s)
        seconds = time.perf_counter() - t0
        compiled(x, s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            compiled(x, s)
        err = float((compiled(x, s) - score(x, s)).abs().max())
        eager = count(lambda: score(x, s))  # after: a dispatch mode active while compiling would run it eagerly
    names = [e.name for e in prof.events()]
    fused = sum(1 for n in names if "cpp_fused" in n)  # one event per call of an inductor kernel
    # the aten ops the compiled code still calls that launch a kernel (matmuls, scatters, copies); metadata ops and
    # dtype conversions (counted by their copy_) are not kernels of their own
    skip = ("as_strided", "view", "expand", "unsqueeze", "select", "resolve_conj", "empty", "t", "reshape",
            "transpose", "detach", "result_type", "to", "_to_copy", "slice", "squeeze", "permute", "alias",
            "lift_fresh", "_unsafe_view", "new_empty_strided", "empty_strided", "empty_like", "resize_")  # fmt: skip
    extern = sum(1 for n in names if n.startswith("aten::") and n[6:] not in skip)
    return {"eager_ops": eager.ops, "eager_kernels": eager.kernels, "inductor_kernels": fused, "aten_calls": extern,
            "captured_nodes": fused + extern, "compile_s": seconds, "max_abs_diff": err}  # fmt: skip


def measure(plan: Any, molecule: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of every learned model's units on one molecule per dataset (``molecule`` for MD17, default the largest
    configured one), and the records by (model, dataset)."""
    from benchmarks.paper_cost import train_settings

    records: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    tuned = set(plan.tuned_models("diffmd_grid"))
    overhead = None
    for dataset in ("md17", "c7o2h10"):
        if not plan.enabled(dataset):
            continue
        if dataset == "md17":
            names = [molecule] if molecule else [max(plan.md17_molecules, key=lambda m: md17_molecule(m).atoms)]
            mol = md17_molecule(names[0])
        else:
            mol = c7o2h10_molecule()
        overhead = rollout_overhead(mol)
        # a variant (config variants:) is priced as its model: its units are counted once, under the model's name,
        # with the model's own row's parameters where the config runs that row too
        for model in sorted(learned_models(plan), key=lambda m: plan.base_model(m) != m):
            name = plan.base_model(model)
            if model not in plan.models_for(dataset) or f"{name}|{dataset}" in records:
                continue
            cfg = train_settings(plan, model, dataset)
            eps = [float(e) for e in plan.grid_eps(model)] if model in tuned and \
                plan.model_params(model, dataset).get("sampler", "ode") == "ode" else None  # fmt: skip
            t0 = time.perf_counter()
            rec = model_units(name, plan.model_params(model, dataset), cfg, mol, eps, overhead)
            records[f"{name}|{dataset}"] = rec
            rows += rows_of(rec, dataset)
            print(f"{name} ({dataset}, {mol.name}): counted in {time.perf_counter() - t0:.1f} s", flush=True)
    return rows, records


def render(rows: list[dict[str, Any]], extra: dict[str, Any] | None, seconds: float) -> tuple[str, str]:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(FIELDS))
    csv = frame.to_csv(index=False)
    view = frame[frame["unit"].isin(["train_step", "eval", "predict", "rollout_step"])]
    wide = view.pivot_table(index=["model", "dataset", "unit", "eps"], columns="mode",
                            values=["launches", "syncs"], aggfunc="first").reset_index()  # fmt: skip
    wide.columns = [" ".join(str(c) for c in col if c).strip() for col in wide.columns]
    body = [
        "# Launches and host syncs per hot-loop unit (paper model sizes)",
        "",
        f"Counted on this machine in {seconds:.0f} s with diffmd.profiling.OpCounter (a TorchDispatchMode: every "
        "aten op that reaches a backend; host syncs = .item()-like reads, nonzero, boolean-mask indexing, "
        "repeat_interleave without output_size, Tensor.cpu/numpy/tolist). The counts do not depend on the device. "
        "train_step at the config's batch (FLOPs scaled from 2 molecules), eval/predict/rollout_step on one "
        "molecule. Captured: the model's compile targets replayed as CUDA graphs (train.compile / rollout.compile "
        "on CUDA): one launch per captured call, the ops outside them eager (benchmarks/launches.py).",
        "",
        wide.to_markdown(index=False),
        "",
    ]
    if extra:
        body += ["## Inductor's fusion of DiffMD's paper-size score evaluation (this CPU)", "",
                 "| eager ops | eager kernels | inductor kernels | aten calls left | nodes captured | compile s "
                 "| max abs diff |",
                 "|---|---|---|---|---|---|---|",
                 f"| {extra['eager_ops']} | {extra['eager_kernels']} | {extra['inductor_kernels']} | "
                 f"{extra['aten_calls']} | {extra['captured_nodes']} | {extra['compile_s']:.0f} | "
                 f"{extra['max_abs_diff']:.2g} |", ""]  # fmt: skip
    return csv, "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="Ops, kernels, host syncs and FLOPs per hot-loop unit at paper size.")
    p.add_argument("--config-json", default=None, help="config as JSON (inline or @file); default config.yaml")
    p.add_argument("--molecule", default=None, help="MD17 molecule to count on (default: the largest configured)")
    p.add_argument("--inductor", action="store_true", help="also compile DiffMD's score evaluation with inductor "
                                                           "and count its kernels (minutes)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--units-out", default=None, help="also write the counted units (paper_cost --units-in format)")
    a = p.parse_args(argv)
    import torch

    from benchmarks.paper_cost import counting_plan, load_config
    from diffmd.io import write_text

    torch.set_num_threads(max(a.threads, 1))
    plan = counting_plan(load_config(a.config_json))
    t0 = time.perf_counter()
    rows, records = measure(plan, a.molecule)
    extra = None
    if a.inductor and "diffmd" in plan.models:
        extra = inductor_score_eval(plan.model_params("diffmd", "md17"), md17_molecule(a.molecule or "aspirin"))
    csv, md = render(rows, extra, time.perf_counter() - t0)
    write_text(a.out_csv, csv)
    write_text(a.out_md, md)
    if a.units_out:  # the cost model's --units-in (no device constants: those come with the projection)
        from benchmarks.paper_cost import device_label, write_units

        notes = [f"inductor fusion of DiffMD's score evaluation: {json.dumps(extra)}"] if extra else []
        write_units(a.units_out, records, None, device_label(torch.device("cpu")), notes)
    print(md)
    return {"rows": rows, "records": records, "inductor": extra}


if __name__ == "__main__":
    main()
