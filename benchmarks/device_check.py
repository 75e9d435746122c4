"""The device check (issue 22): one short try on a bare CUDA machine that measures every unit the cost model
(:mod:`benchmarks.paper_cost`) prices, and writes what it measured in one archive beside a summary and the
units file ``paper_cost --units-in`` reads.

Made for the machine this project can count on: its own Python 3.12 and PyTorch, no ``.venv``, no network, the
packages of :data:`BARE_IMAGE_MISSING` absent. What the check imports that such an image lacks (ase: element data
and units; tabulate: pandas' Markdown tables) comes from wheels prepared here (``scripts/prepare_device_wheels.sh``)
and installed there with ``pip install --no-index --no-deps --target``; jsonschema is optional (config validation;
the counting path skips it when absent); rdkit's C7O2H10 isomer is a frozen structure
(``benchmarks/devices/molecules.json``). docs/paper_scale.md gives the commands.

Stages, in this order, each independent (a failing stage is recorded with its traceback's tail; the next runs),
each given a share of one hard deadline (``--deadline-s``, default 480 s; what a stage did not use goes to the
next; when time is up, what finished is written):

* ``env``: interpreter, torch, device, which of the image's missing packages are importable;
* ``cuda_tests``: ``pytest -m cuda`` on the test files that hold CUDA tests (training and rollout on CUDA,
  bf16/TF32 against float32, the captured step equal to eager) -- first, so a broken CUDA path shows at once;
* ``constants``: t_op (launch cost of a tiny op), t_sync, t_node (a CUDA graph's replayed node) and achieved
  matmul throughput in float32, TF32 and bf16;
* ``startup``: a fresh process to its first device op (interpreter, ``import torch``, the engine's imports, CUDA
  initialisation);
* ``counts``: ops, kernels, host syncs and FLOPs per unit (:func:`benchmarks.launches.measure`, device-independent;
  ``--counts-in`` takes them from a ``--units-out`` file instead);
* ``units``: seconds per unit for every model the paper config trains: DiffMD's score evaluation and training
  step, every baseline's training step and rollout step, eager and captured (``train.compile`` /
  ``rollout.compile``: CUDA graphs), float32 and TF32/bf16 (training), at batch 1, 6, 32 and 200, on ethanol
  (9 atoms), aspirin (21) and a 19-atom C7O2H10 isomer; in priority order (what the projection needs first);
* ``batching``: what remains of CPU batch building (the old collation + copy, the device-resident gather, the
  per-epoch order, the one-time upload);
* ``concurrency``: 1, 2, 4, 8 processes sharing the device, each running DiffMD's score evaluation: throughput
  per process;
* ``projection``: ``paper_cost --units-in`` on the units file just written (the reprojection, one command).

Every timing: at least ``--repeats`` (5) repeats after warm-up, median with min/max and quartiles. On a CPU the
sizes are shortened (fewer batches and molecules, short windows) and labelled so (``sizes: cpu``).

Outputs (``--out``, default ``results/device_check``): ``device_check.tar.gz`` (every table, log and JSON),
``summary.md`` and ``units.json`` (``python -m benchmarks.paper_cost --units-in units.json ...``). Exit status 0
when every stage ended ok or skipped, 1 otherwise (the files are written either way).

CLI::

    python3 -m benchmarks.device_check [--out results/device_check] [--deadline-s 480] [--device auto]
        [--sizes auto|paper|cpu] [--config-json @config.json] [--stages env,constants,...] [--counts-in FILE]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python3 benchmarks/device_check.py` and workers started from elsewhere
    sys.path.insert(0, str(ROOT))

#: Packages the bare CUDA image lacks (issue 22) that this project's install has.
BARE_IMAGE_MISSING = ("ase", "jsonschema", "rdkit", "tblite", "sgdml", "snakemake", "tabulate", "markdown")
#: Of those, what the check imports: installed from the prepared wheels (scripts/prepare_device_wheels.sh).
CHECK_NEEDS = ("ase", "tabulate")
#: Packages the image ships (issue 22).
BARE_IMAGE_HAS = ("torch", "numpy", "scipy", "pandas", "matplotlib", "yaml", "e3nn", "torchdiffeq", "torch_geometric",
                  "pytest")  # fmt: skip
STAGES = ("env", "cuda_tests", "constants", "startup", "counts", "units", "batching", "concurrency", "projection")
#: Share of the remaining deadline each stage may take (of the stages still to run).
WEIGHTS = {"env": 0.01, "cuda_tests": 0.22, "constants": 0.04, "startup": 0.10, "counts": 0.14, "units": 0.34,
           "batching": 0.03, "concurrency": 0.12, "projection": 0.04}  # fmt: skip
#: Per-size settings: batches, molecules, processes sharing the device, seconds per concurrency window.
SIZES = {
    "paper": {"batches": [1, 6, 32, 200], "molecules": ["aspirin", "c7o2h10", "ethanol"], "procs": [1, 2, 4, 8],
              "window_s": 1.0, "op_loop": 2000, "matmul": 4096, "repeat_s": 0.05, "rollout_steps": 16},
    "cpu": {"batches": [1, 6], "molecules": ["aspirin", "c7o2h10", "ethanol"], "procs": [1, 2], "window_s": 0.3,
            "op_loop": 300, "matmul": 384, "repeat_s": 0.01, "rollout_steps": 3},
}  # fmt: skip
MOLECULES_FILE = ROOT / "benchmarks" / "devices" / "molecules.json"
WORKER_TIMEOUT_S = 120.0


# --- small helpers -----------------------------------------------------------------------------------------------
class StageTimeout(BaseException):
    """A stage ran past its share of the deadline (raised by SIGALRM in the main thread; a BaseException, so that
    no ``except Exception`` on the way, torch.compile's error suppression included, swallows it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise StageTimeout


def stats(values: list[float]) -> dict[str, float]:
    """Median, min, max, quartiles and the count of ``values``."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    q1, med, q3 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    return {"median": med, "min": float(v.min()), "max": float(v.max()), "q1": q1, "q3": q3, "n": int(v.size)}


def md_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A Markdown table (no tabulate: the bare image may lack it)."""
    if not rows:
        return "(none)\n"
    cols = columns or list(rows[0])

    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x).replace("|", "/").replace("\n", " ")

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_repeats(fn: Any, device: Any, repeats: int, repeat_s: float, deadline: float,
                  warmup: int = 2) -> dict[str, Any]:  # fmt: skip
    """Seconds per call of ``fn``: ``warmup`` calls (the first timed apart: compilation, lazy state), then
    ``repeats`` repeats of n calls each (n so that a repeat lasts about ``repeat_s``), synchronised."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    t_warm = first
    for _ in range(max(warmup - 1, 0)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        t_warm = time.perf_counter() - t0
    n = max(1, min(50, math.ceil(repeat_s / max(t_warm, 1e-6))))
    per = []
    for _ in range(repeats):
        if per and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync(device)
        per.append((time.perf_counter() - t0) / n)
    return {**stats(per), "first_s": first, "calls_per_repeat": n}


# --- molecules ---------------------------------------------------------------------------------------------------
def frozen_molecules() -> dict[str, Any]:
    """The structures the check uses whatever the image has: ``{name: {"numbers", "positions", "source"}}``."""
    return json.loads(MOLECULES_FILE.read_text())["molecules"]


def molecule(name: str) -> Any:
    """A :class:`benchmarks.launches.Molecule`: ``c7o2h10`` the frozen 19-atom isomer, else an MD17 molecule from
    the packaged structure (ase) or, without ase, the frozen copy of it."""
    import numpy as np

    from benchmarks.launches import Molecule, md17_molecule

    frozen = frozen_molecules()
    key = "c7o2h10_iso0" if name == "c7o2h10" else name
    if key in frozen and (name == "c7o2h10" or importlib.util.find_spec("ase") is None):
        m = frozen[key]
        return Molecule(key, np.asarray(m["numbers"], dtype=np.int64), np.asarray(m["positions"], dtype=np.float64))
    return md17_molecule(name)


def freeze_molecules(path: Path = MOLECULES_FILE) -> None:
    """Write the frozen structures (needs ase and RDKit: run here, not on the bare image)."""
    from benchmarks.launches import c7o2h10_molecule, md17_molecule
    from diffmd.data.isomers import C7H10O2_SMILES

    iso = c7o2h10_molecule()
    mols = {iso.name: {"numbers": iso.numbers.tolist(), "positions": iso.positions.round(6).tolist(),
                       "source": f"RDKit embedding of {C7H10O2_SMILES[0]} (seed 1), benchmarks.launches"}}  # fmt: skip
    for name in ("ethanol", "aspirin"):
        m = md17_molecule(name)
        mols[name] = {"numbers": m.numbers.tolist(), "positions": m.positions.round(6).tolist(),
                      "source": f"diffmd/data/structures/{name}.xyz (MD17 start frame)"}  # fmt: skip
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in mols.items())
    path.write_text('{"format": "diffmd-bench device-check molecules 1", "molecules": {\n' + body + "\n}}\n")


# --- the stages --------------------------------------------------------------------------------------------------
class Check:
    """State shared by the stages: settings, the work folder, what earlier stages measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        want = args.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(want)
        self.cuda = self.device.type == "cuda"
        self.sizes = args.sizes if args.sizes != "auto" else ("paper" if self.cuda else "cpu")
        self.size = SIZES[self.sizes]
        self.repeats = max(int(args.repeats), 5)
        self.work = Path(tempfile.mkdtemp(prefix="device_check_"))
        self.python = args.python or sys.executable
        self.config_text = args.config_json
        self.records: dict[str, Any] | None = None
        self.timings: list[dict[str, Any]] = []
        self.constants: dict[str, Any] = {}
        self.startup: dict[str, Any] = {}
        self.results: list[dict[str, Any]] = []
        self.units_path: Path | None = None
        self.notes: list[str] = []
        self.tables: dict[str, list[dict[str, Any]]] = {}

    # the experiment plan, without schema validation when jsonschema is absent
    def plan(self) -> Any:
        if not hasattr(self, "_plan"):
            from benchmarks.paper_cost import counting_plan, load_config, schema_optional

            note = schema_optional()
            if note and note not in self.notes:
                self.notes.append(note)
            self._plan = counting_plan(load_config(self.config_text))
        return self._plan

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.write_text(text)
        return path


def stage_env(c: Check, deadline: float) -> dict[str, Any]:
    import torch

    def present(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    info = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "device": str(c.device), "sizes": c.sizes,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}  # fmt: skip
    if c.cuda:
        props = torch.cuda.get_device_properties(c.device)
        info.update({"device_name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda})  # fmt: skip
    info["image_packages"] = {p: present(p) for p in BARE_IMAGE_HAS}
    info["missing_on_bare_image"] = {p: present(p) for p in BARE_IMAGE_MISSING}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    c.env = info
    lacking = [p for p in CHECK_NEEDS if not info["missing_on_bare_image"][p]]
    note = ""
    if lacking:
        note = (f"missing {', '.join(lacking)}: install the prepared wheels (docs/paper_scale.md, "
                "'The device check'); stages that need them fail")  # fmt: skip
    c.write("env.json", json.dumps(info, indent=1, default=str) + "\n")
    return {"status": "ok", "note": note or f"{info.get('device_name', 'CPU')}, torch {torch.__version__}"}


def stage_cuda_tests(c: Check, deadline: float) -> dict[str, Any]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text(encoding="utf-8"))  # fmt: skip
    cmd = [c.python, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider", *files]
    budget = max(deadline - time.perf_counter() - 2.0, 5.0)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        c.write("pytest_cuda.log", out)
        return {"status": "timeout", "note": f"pytest -m cuda ran past {budget:.0f} s", "error": tail(out)}
    c.write("pytest_cuda.log", " ".join(cmd) + "\n" + out)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if rc not in (0,):
        return {"status": "failed", "note": f"exit {rc}: {last}", "error": tail(out, 25)}
    if not c.cuda and "passed" not in last:
        return {"status": "skipped: no CUDA", "note": f"collected and skipped without errors: {last}"}
    return {"status": "ok", "note": last}


def stage_constants(c: Check, deadline: float) -> dict[str, Any]:
    import torch

    dev, reps = c.device, c.repeats
    rows = []
    x = torch.zeros(1, device=dev)
    n = c.size["op_loop"]

    def ops() -> None:
        for _ in range(n):
            x.add_(1.0)

    s = timed_repeats(ops, dev, reps, 0.0, deadline)
    t_op = {k: (v / n if k in ("median", "min", "max", "q1", "q3") else v) for k, v in s.items()}
    rows.append({"quantity": "t_op (launch of a tiny op)", "unit": "µs", **_scaled(t_op, 1e6)})

    def op_sync() -> None:
        for _ in range(50):
            x.add_(1.0)
            float(x)

    s = timed_repeats(op_sync, dev, reps, 0.0, deadline)
    t_sync = {k: (max(v / 50 - t_op["median"], 0.0) if k in ("median", "min", "max", "q1", "q3") else v)
              for k, v in s.items()}  # fmt: skip
    rows.append({"quantity": "t_sync (host read after an op)", "unit": "µs", **_scaled(t_sync, 1e6)})
    t_node = None
    if c.cuda:
        g = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                x.add_(1.0)
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(g):
            for _ in range(200):
                x.add_(1.0)
        s = timed_repeats(g.replay, dev, reps, 0.02, deadline)
        t_node = {k: (v / 200 if k in ("median", "min", "max", "q1", "q3") else v) for k, v in s.items()}
        rows.append({"quantity": "t_node (CUDA graph node, replayed)", "unit": "µs", **_scaled(t_node, 1e6)})
    rates = {}
    size = c.size["matmul"]
    a = torch.randn(size, size, device=dev)
    for prec in ("float32", "tf32", "bf16"):
        if time.perf_counter() > deadline:
            break
        m = a.to(torch.bfloat16) if prec == "bf16" else a
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        try:
            s = timed_repeats(lambda m=m: m @ m, dev, reps, 0.05 if c.cuda else 0.0, deadline)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
        flop = 2 * size**3
        rate = {"median": flop / s["median"], "min": flop / s["max"], "max": flop / s["min"], "q1": flop / s["q3"],
                "q3": flop / s["q1"], "n": s["n"]}  # fmt: skip
        rates[prec] = rate
        label = prec + (" (a CPU has no TF32: float32)" if prec == "tf32" and not c.cuda else "")
        rows.append({"quantity": f"matmul {size}x{size} {label}", "unit": "TFLOP/s", **_scaled(rate, 1e-12)})
    c.constants = {"t_op": t_op, "t_sync": t_sync, "t_node": t_node, "rates": rates}
    c.write("constants.json", json.dumps(c.constants, indent=1) + "\n")
    c.tables["constants"] = rows
    return {"status": "ok", "note": f"t_op {t_op['median'] * 1e6:.3g} µs, float32 matmul "
            f"{rates.get('float32', {}).get('median', float('nan')) / 1e12:.3g} TFLOP/s"}  # fmt: skip


def _scaled(s: dict[str, Any], factor: float) -> dict[str, Any]:
    return {k: (s[k] * factor if k in ("median", "min", "max", "q1", "q3") else s[k]) for k in
            ("median", "min", "max", "q1", "q3", "n")}  # fmt: skip


STARTUP_SCRIPT = r"""
import json, os, sys, time
t0 = float(os.environ["DEVICE_CHECK_T0"])
out = {"interpreter": time.time() - t0}
import torch
out["import_torch"] = time.time() - t0
sys.path.insert(0, os.environ["DEVICE_CHECK_ROOT"])
import diffmd.engine.rollout, diffmd.engine.train, diffmd.registry  # noqa: E401,F401  a job's imports
out["import_engine"] = time.time() - t0
dev = torch.device(os.environ["DEVICE_CHECK_DEVICE"])
x = torch.ones(1, device=dev).add_(1.0)
if dev.type == "cuda":
    torch.cuda.synchronize(dev)
out["first_op"] = time.time() - t0
print("STARTUP " + json.dumps(out))
"""


def stage_startup(c: Check, deadline: float) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    errors = ""
    for _ in range(c.repeats):
        left = deadline - time.perf_counter()
        if left < 2:
            break
        env = {**os.environ, "DEVICE_CHECK_T0": repr(time.time()), "DEVICE_CHECK_ROOT": str(ROOT),
               "DEVICE_CHECK_DEVICE": str(c.device)}  # fmt: skip
        try:
            proc = subprocess.run([c.python, "-c", STARTUP_SCRIPT], capture_output=True, text=True, env=env,
                                  timeout=left, cwd=ROOT)  # fmt: skip
        except subprocess.TimeoutExpired:
            errors = f"run {len(runs) + 1} did not finish within the stage's share"
            break
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("STARTUP ")]
        if proc.returncode or not line:
            errors = tail(proc.stdout + proc.stderr)
            break
        runs.append(json.loads(line[0][8:]))
    if not runs:
        return {"status": "failed", "note": "no start-up measured", "error": errors}
    rows = []
    for key, what in (("interpreter", "interpreter up"), ("import_torch", "import torch"),
                      ("import_engine", "the engine's imports (diffmd.engine.train, .rollout, diffmd.registry)"),
                      ("first_op", f"first {c.device.type} op done (job start-up)")):  # fmt: skip
        s = stats([r[key] for r in runs])
        rows.append({"from process spawn to": what, "unit": "s", **{k: s[k] for k in
                     ("median", "min", "max", "q1", "q3", "n")}})  # fmt: skip
        c.startup[key] = s
    c.tables["startup"] = rows
    status = "ok" if len(runs) >= 5 else "timeout"
    return {"status": status, "note": f"{len(runs)} runs, first op after {c.startup['first_op']['median']:.2f} s",
            "error": errors}  # fmt: skip


def stage_counts(c: Check, deadline: float) -> dict[str, Any]:
    import pandas as pd

    from benchmarks.launches import measure, rows_of
    from benchmarks.paper_cost import read_units

    if c.args.counts_in:
        loaded = read_units(c.args.counts_in)
        c.records = loaded["records"]
        rows = [r for key, rec in c.records.items() for r in rows_of(rec, key.split("|")[1])]
        note = f"read from {c.args.counts_in} (counted on {loaded['device']}, commit {loaded.get('commit')})"
    else:
        rows, c.records = measure(c.plan())
        note = f"{len(c.records)} (model, dataset) records counted here"
    c.write("counts.csv", pd.DataFrame(rows).to_csv(index=False))
    return {"status": "ok", "note": note}


# --- the timed units ---------------------------------------------------------------------------------------------
def _unit_tasks(c: Check) -> list[dict[str, Any]]:
    """Every timing the units stage makes, in priority order (what the projection reads first)."""
    from benchmarks.launches import learned_models
    from benchmarks.paper_cost import precision_of, train_settings

    plan = c.plan()
    models = learned_models(plan)
    tuned = set(plan.tuned_models("diffmd_grid"))
    precision = precision_of(plan)
    rep = {"md17": _md17_representative(plan), "c7o2h10": "c7o2h10"}
    mols = [m for m in c.size["molecules"]]
    datasets = [d for d in ("md17", "c7o2h10") if plan.enabled(d)]
    batches = c.size["batches"]
    tasks: list[dict[str, Any]] = []

    def add(tier: int, model: str, dataset: str, mol: str, unit: str, batch: int, mode: str, prec: str) -> None:
        tasks.append({"tier": tier, "model": model, "dataset": dataset, "molecule": mol, "unit": unit,
                      "batch": batch, "mode": mode, "precision": prec})  # fmt: skip

    # tiers: 1 what the projection reads first (MD17's molecule, eager, the config's training batch and one molecule
    # per inference call); 2 the batch sweep; 3 DiffMD captured (the paper config's modes on CUDA); 4 the
    # precisions; 5 the baselines captured; 6 the C7O2H10 isomer's sweep and the other molecules; 7 the captured
    # batch sweep; 8 the tuned model's adaptive rollout step
    for dataset in datasets:
        first = dataset == datasets[0]
        for model in (m for m in models if m in plan.models_for(dataset)):
            cfg_batch = int(train_settings(plan, model, dataset)["batch_size"])
            ode = model in tuned and plan.model_params(model, dataset).get("sampler") == "ode"  # as paper_cost
            # a diffusion model: its score evaluation; its rollout step too, last where the sampler is adaptive
            infers = (["eval"] if model in tuned else []) + ([] if ode else ["rollout_step"])
            mol = rep[dataset]
            tb = cfg_batch if c.cuda else min(cfg_batch, max(batches))
            add(1 if first else 2, model, dataset, mol, "train_step", tb, "eager", precision[model])
            for infer in infers:
                add(1 if first else 2, model, dataset, mol, infer, 1, "eager", "float32")
            for b in batches:
                if b != tb:
                    add(2 if first else 6, model, dataset, mol, "train_step", b, "eager", precision[model])
                for infer in infers:
                    if b != 1:
                        add(2 if first else 6, model, dataset, mol, infer, b, "eager", "float32")
            for prec in ("float32", "tf32", "bf16"):
                if prec != precision[model]:
                    add(4 if first else 6, model, dataset, mol, "train_step", tb, "eager", prec)
            for mol2 in mols:
                if mol2 not in rep.values():
                    for b in batches:
                        add(6, model, dataset, mol2, "train_step", b, "eager", precision[model])
                        for infer in infers:
                            add(6, model, dataset, mol2, infer, b, "eager", "float32")
            if ode and c.cuda:  # its rollout step at the configured eps (the adaptive sampler: costly)
                for b in batches[:2]:
                    add(8, model, dataset, mol, "rollout_step", b, "eager", "float32")
            if c.cuda or c.args.captured_on_cpu:
                tier = (3 if model in tuned else 5) if first else 7
                add(tier, model, dataset, mol, "train_step", tb, "captured", precision[model])
                for infer in infers:
                    add(tier, model, dataset, mol, infer, 1, "captured", "float32")
                for b in batches:
                    if b != tb:
                        add(7, model, dataset, mol, "train_step", b, "captured", precision[model])
                    for infer in infers:
                        if b != 1:
                            add(7, model, dataset, mol, infer, b, "captured", "float32")
    if not c.cuda and c.args.captured_on_cpu:
        tasks = [t for t in tasks if t["mode"] == "eager" or t["model"] == c.args.captured_on_cpu]
    seen, unique = set(), []
    for t in sorted(tasks, key=lambda t: t["tier"]):
        key = (t["model"], t["molecule"], t["unit"], t["batch"], t["mode"], t["precision"])
        if key not in seen:
            seen.add(key)
            unique.append(t)
    return unique


def _md17_representative(plan: Any) -> str:
    from benchmarks.launches import md17_molecule

    try:
        return max(plan.md17_molecules, key=lambda m: md17_molecule(m).atoms)
    except ImportError:  # no ase: the frozen structures (aspirin is MD17's largest configured one)
        frozen = frozen_molecules()
        return max((m for m in plan.md17_molecules if m in frozen), key=lambda m: len(frozen[m]["numbers"]))


class _Built:
    """A model and its data on the device, for one (model, dataset, molecule, mode)."""

    def __init__(self, c: Check, model_name: str, dataset: str, mol_name: str, mode: str,
                 phase: str = "infer") -> None:  # fmt: skip
        import torch

        from benchmarks.launches import paper_model, segment_of
        from benchmarks.paper_cost import train_settings
        from diffmd.data.pairs import PairDataset
        from diffmd.engine.batching import DeviceData
        from diffmd.engine.capture import apply_compile, compile_loss
        from diffmd.engine.train import acceleration_scale

        plan = c.plan()
        self.cfg = train_settings(plan, model_name, dataset)
        self.model, self.k = paper_model(model_name, plan.model_params(model_name, dataset))
        self.mol = molecule(mol_name)
        top = max(c.size["batches"] + [int(self.cfg["batch_size"])])
        self.seg = segment_of(self.mol, self.k, n_frames=(top + c.size["rollout_steps"] + 8) * self.k + 3 * self.k + 8)
        data = PairDataset([self.seg])
        self.model.loss_scale = acceleration_scale(data)
        self.model.to(c.device)
        self.dd = DeviceData(data, c.device, self.model)
        fused = c.device.type == "cuda"
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(self.cfg["lr"]), fused=fused)
        self.compiled = []
        if mode == "captured":  # as the trainer (the whole objective) and the rollout job (the network) do
            import torch._dynamo

            torch._dynamo.reset()  # a fresh instance: no cache of an evicted one counting towards the recompile limit
            if phase == "train":
                compile_loss(self.model, c.device, True)
                self.compiled = ["loss"]
            else:
                self.compiled = apply_compile(self.model, c.device, True)
        self.device = c.device

    def runner(self, unit: str, batch: int, precision: str, steps: int) -> Any:
        import numpy as np
        import torch

        from diffmd import batch as B
        from diffmd.engine.rollout import rollout_copies
        from diffmd.engine.train import train_step

        model, dev = self.model, self.device
        if unit == "train_step":
            data = self.dd.batch(np.arange(batch))
            model.train()
            return lambda: train_step(model, self.opt, data, dev, precision)
        model.eval()
        inputs = B.inputs_only(self.dd.batch(np.arange(batch)))
        if unit == "eval":
            with torch.no_grad():
                model.begin_rollout(inputs)

            def call() -> None:
                with torch.no_grad():
                    model.network_call(inputs)

            return call
        starts = np.asarray([self.seg.start + i * self.k for i in range(batch)])
        starts = np.maximum(starts, 2 * self.k)

        def roll() -> None:
            with torch.no_grad():
                rollout_copies(model, [self.seg] * batch, starts, steps, device=dev, dtype=torch.float32)

        return roll


def _dynamo_counts() -> dict[str, int]:
    """torch.compile's counters: graphs compiled, graph breaks, CUDA-graph captures skipped."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return {}
    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}  # fmt: skip


def stage_units(c: Check, deadline: float) -> dict[str, Any]:
    import gc

    import torch

    tasks = _unit_tasks(c)
    built: dict[tuple, _Built] = {}
    done, failed = 0, 0
    steps = c.size["rollout_steps"]
    for i, t in enumerate(tasks):
        if time.perf_counter() > deadline - 1.0:
            c.notes.append(f"units: {len(tasks) - i} of {len(tasks)} timings not reached (deadline; tiers "
                           f"{sorted({x['tier'] for x in tasks[i:]})})")  # fmt: skip
            break
        phase = "train" if t["unit"] == "train_step" or t["mode"] == "eager" else "infer"
        key = (t["model"], t["dataset"], t["molecule"], t["mode"], phase)
        row = dict(t)
        try:
            if key not in built:
                for old in [k for k in built if k[:2] != key[:2]]:  # one model at a time on the device
                    del built[old]
                gc.collect()
                if c.cuda:
                    torch.cuda.empty_cache()
                built[key] = _Built(c, *key)
            b = built[key]
            row["atoms"] = b.mol.atoms
            row["molecule"] = b.mol.name
            fn = b.runner(t["unit"], t["batch"], t["precision"], steps)
            before = _dynamo_counts()
            s = timed_repeats(fn, c.device, c.repeats, c.size["repeat_s"], deadline)
            if t["mode"] == "captured":  # did it capture? (a compile error runs eagerly: capture.suppress_errors)
                after = _dynamo_counts()
                row.update({k: after[k] - before[k] for k in after})
            if t["unit"] == "rollout_step":  # per step of the rollout loop
                timed = ("median", "min", "max", "q1", "q3", "first_s")
                s = {k: (v / steps if k in timed else v) for k, v in s.items()}
            row.update({k: s[k] for k in ("median", "min", "max", "q1", "q3", "n", "first_s")})
            row["status"] = "ok" if s["n"] >= c.repeats else f"partial: {s['n']} repeats (deadline)"
            done += 1
        except StageTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 - one timing failing must not stop the others
            row["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            row["error"] = tail(traceback.format_exc(), 8)
            failed += 1
            built.pop(key, None)
        c.timings.append(row)
    status = "ok" if failed == 0 else "failed"
    return {"status": status, "note": f"{done} timings, {failed} failed, {len(tasks)} planned"}


# --- batch building ----------------------------------------------------------------------------------------------
def stage_batching(c: Check, deadline: float) -> dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks.launches import learned_models, paper_model, segment_of
    from diffmd import batch as B
    from diffmd.data.pairs import PairDataset
    from diffmd.engine.batching import DeviceData

    plan = c.plan()
    models = learned_models(plan)
    name = "egnn" if "egnn" in models else models[0]
    model, k = paper_model(name, plan.model_params(name, "c7o2h10" if plan.enabled("c7o2h10") else "md17"))
    mol = molecule("c7o2h10")
    segs = [segment_of(mol, k, n_frames=60 * k + 3 * k, seed=s) for s in range(8)]  # 8 "isomers"
    for i, s in enumerate(segs):
        s.name = f"{mol.name}_{i}"
    data = PairDataset(segs)
    rows: list[dict[str, Any]] = []
    c.tables["batching"] = rows

    def record(what: str, batch: Any, s: dict[str, Any]) -> None:
        rows.append({"what": what, "batch": batch, "unit": "ms", **_scaled(s, 1e3)})

    dev = c.device
    s = timed_repeats(lambda: DeviceData(data, dev, model), dev, c.repeats, 0.0, deadline, warmup=1)
    record(f"DeviceData upload of {len(data)} pairs (once per training)", len(data), s)
    dd = DeviceData(data, dev, model)
    gen = torch.Generator().manual_seed(0)
    for b in (32, 200):
        b = min(b, len(data))
        idx = np.random.default_rng(0).choice(len(data), size=b, replace=False)
        s = timed_repeats(lambda idx=idx: B.to_device(data.batch(idx), dev), dev, c.repeats, 0.0, deadline)
        record("CPU collation + host-to-device copy (the old per-step path)", b, s)
        order = torch.as_tensor(dd.order(b, gen)[:b], device=dev)
        s = timed_repeats(lambda order=order: dd.batch(order), dev, c.repeats, 0.0, deadline)
        record("device-resident gather (DeviceData.batch, the trainer's per-step path)", b, s)
        s = timed_repeats(lambda b=b: dd.order(b, gen), dev, c.repeats, 0.0, deadline)
        record("per-epoch order on the host (DeviceData.order)", b, s)
    return {"status": "ok", "note": f"{name}, {len(segs)} segments of {mol.name} ({mol.atoms} atoms)"}


# --- processes sharing the device --------------------------------------------------------------------------------
def worker_concurrency(spec: dict[str, Any]) -> None:
    """One process of the concurrency stage: build, warm up, signal ready, wait for go, run windows, report."""
    import torch

    args = argparse.Namespace(device=spec["device"], sizes=spec["sizes"], repeats=5, python=None,
                              config_json=spec["config_json"], counts_in=None, captured_on_cpu=None)  # fmt: skip
    c = Check(args)
    torch.set_num_threads(1)
    b = _Built(c, spec["model"], spec["dataset"], spec["molecule"], "eager")
    fn = b.runner(spec["unit"], spec["batch"], "float32", 1)
    for _ in range(3):
        fn()
    sync(c.device)
    Path(spec["ready"]).write_text("ready")
    t_wait = time.time() + WORKER_TIMEOUT_S
    while not Path(spec["go"]).exists():
        if time.time() > t_wait:
            raise SystemExit("worker: no go signal")
        time.sleep(0.005)
    rates = []
    for _ in range(spec["windows"]):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < spec["window_s"]:
            fn()
            n += 1
        sync(c.device)
        rates.append(n / (time.perf_counter() - t0))
    print("RATES " + json.dumps(rates), flush=True)


def stage_concurrency(c: Check, deadline: float) -> dict[str, Any]:
    from benchmarks.launches import learned_models

    plan = c.plan()
    models = learned_models(plan)
    name = "diffmd" if "diffmd" in models else models[0]
    dataset = "md17" if name in plan.models_for("md17") and plan.enabled("md17") else "c7o2h10"
    unit = "eval" if name in plan.tuned_models("diffmd_grid") else "rollout_step"
    mol = _md17_representative(plan) if dataset == "md17" else "c7o2h10"
    rows: list[dict[str, Any]] = []
    errors, base = "", None
    c.tables["concurrency"] = rows  # filled as levels finish (kept if the stage runs out of time)
    c.concurrency_what = f"{name} {unit} at batch 6 on {mol}, eager, {c.size['window_s']} s windows"
    for procs in c.size["procs"]:
        if deadline - time.perf_counter() < 10:
            c.notes.append(f"concurrency: {procs} processes and more not reached (deadline)")
            break
        d = Path(tempfile.mkdtemp(dir=c.work, prefix=f"procs{procs}_"))
        spec = {"device": str(c.device), "sizes": c.sizes, "config_json": c.config_text, "model": name,
                "dataset": dataset, "molecule": mol, "unit": unit, "batch": 6, "windows": c.repeats,
                "window_s": c.size["window_s"], "go": str(d / "go")}  # fmt: skip
        workers = []
        for i in range(procs):
            s = {**spec, "ready": str(d / f"ready{i}")}
            workers.append(subprocess.Popen([c.python, "-m", "benchmarks.device_check", "--worker", json.dumps(s)],
                                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        try:
            while not all((d / f"ready{i}").exists() for i in range(procs)):
                dead = [w for w in workers if w.poll() not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a worker exited {dead[0].returncode}: {tail(dead[0].communicate()[1], 6)}")
                if time.perf_counter() > deadline - 3:
                    raise RuntimeError(f"{procs} workers: not all ready before the deadline")
                time.sleep(0.02)
            (d / "go").write_text("go")
            per = []
            for w in workers:
                out, err = w.communicate(timeout=max(deadline - time.perf_counter(), 1))
                line = [ln for ln in out.splitlines() if ln.startswith("RATES ")]
                if w.returncode or not line:
                    raise RuntimeError(f"worker exit {w.returncode}: {tail(err, 5)}")
                per.append(stats(json.loads(line[0][6:])))
        except Exception as exc:  # noqa: BLE001
            errors = f"{procs} processes: {exc}"
            break
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        med = [p["median"] for p in per]
        total = sum(med)
        base = base or med[0]
        rows.append({"processes": procs, "calls/s per process (median over processes)": stats(med)["median"],
                     "min": min(p["min"] for p in per), "max": max(p["max"] for p in per),
                     "total calls/s": total, "total vs 1 process": total / base,
                     "windows per process": per[0]["n"]})  # fmt: skip
    if not rows:
        return {"status": "failed", "note": "no level measured", "error": errors}
    status = "failed" if errors else "ok"
    return {"status": status, "note": f"{c.concurrency_what}; levels {[r['processes'] for r in rows]}",
            "error": errors}  # fmt: skip


# --- the units file and the projection ---------------------------------------------------------------------------
def measured_constants(c: Check) -> dict[str, Any]:
    """Device constants for ``paper_cost`` from the constants and start-up stages (the assumption file's values
    where a quantity was not measured, named in ``source``)."""
    from benchmarks.paper_cost import DEFAULT_CONSTANTS, device_label, read_constants

    base = read_constants(DEFAULT_CONSTANTS)
    out = dict(base)
    measured, assumed = [], []
    k = c.constants
    for name in ("t_op", "t_sync", "t_node"):
        if k.get(name):
            out[f"{name}_s"] = k[name]["median"]
            measured.append(name)
    if not k.get("t_node") and k.get("t_op"):
        out["t_node_s"] = k["t_op"]["median"]
        assumed.append("t_node = t_op (no CUDA graph)")
    rates = k.get("rates") or {}
    if rates:
        out["flops_per_s"] = {p: rates.get(p, rates.get("float32"))["median"] for p in ("float32", "tf32", "bf16")}
        measured.append("matmul rates")
    if c.startup.get("first_op"):
        out["job_start_s"] = c.startup["first_op"]["median"]
        measured.append("job start-up")
        firsts = [t["first_s"] - t["median"] for t in c.timings if t.get("status") == "ok" and t["mode"] == "captured"
                  and t["unit"] == "train_step"]  # fmt: skip
        if firsts:
            out["job_start_compiled_s"] = out["job_start_s"] + max(firsts)
            measured.append("compile time (first captured training step)")
        else:
            assumed.append("job_start_compiled_s")
    assumed.append("nodes_per_kernel")
    import torch

    out["device"] = device_label(torch.device(c.device))
    out["source"] = (f"the device check on {out['device']}: measured {', '.join(measured) or 'nothing'}; from "
                     f"{DEFAULT_CONSTANTS.name}: {', '.join(assumed)}")  # fmt: skip
    return out


def write_units_file(c: Check) -> Path | None:
    """The counted units with the seconds measured here (``seconds_at``: {mode: {batch: s}} at the precision the
    config trains in / float32 for inference; ``seconds``: at the unit's own batch) and the device constants."""
    import copy

    import torch

    from benchmarks.paper_cost import _eps_unit, device_label, precision_of, write_units

    if not c.records:
        return None
    records = copy.deepcopy(c.records)
    plan = c.plan()
    precision = precision_of(plan)
    attached = 0
    for t in c.timings:
        if t.get("status") != "ok":
            continue
        rec = records.get(f"{t['model']}|{t['dataset']}")
        if rec is None or rec.get("molecule") != t["molecule"]:
            continue
        want = precision.get(t["model"], "float32") if t["unit"] == "train_step" else "float32"
        if t["precision"] != want:
            continue
        name = t["unit"] if t["unit"] != "rollout_step" else _eps_unit(plan, t["model"], t["dataset"], "rollout_step")
        u = rec["units"].get(name)
        if u is None:
            continue
        u.setdefault("seconds_at", {}).setdefault(t["mode"], {})[str(t["batch"])] = t["median"]
        if int(t["batch"]) == int(u.get("batch", 1)):
            u.setdefault("seconds", {})[t["mode"]] = t["median"]
        attached += 1
    consts = measured_constants(c)
    notes = [f"device check ({c.sizes} sizes): {attached} measured unit times attached; timings of every molecule, "
             "precision and batch in 'timings'"] + c.notes  # fmt: skip
    path = c.work / "units.json"
    write_units(str(path), records, consts, device_label(torch.device(c.device)), notes)
    record = json.loads(path.read_text())
    record["timings"] = c.timings
    record["sizes"] = c.sizes
    path.write_text(json.dumps(record, indent=1, sort_keys=True, default=float) + "\n")
    c.units_path = path
    return path


def stage_projection(c: Check, deadline: float) -> dict[str, Any]:
    import contextlib
    import io

    from benchmarks import paper_cost

    path = write_units_file(c)
    if path is None:
        return {"status": "failed", "note": "no counts (the counts stage did not finish): nothing to project"}
    argv = ["--units-in", str(path), "--out-csv", str(c.work / "paper_cost.csv"),
            "--out-md", str(c.work / "paper_cost.md")]  # fmt: skip
    if c.config_text:
        argv += ["--config-json", c.config_text]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = paper_cost.main(argv)
    c.projection = {"total_h": result["total_h"], "wall_h": result["wall_h"], "serial_wall_h": result["serial_wall_h"],
                    "critical_h": result["critical_h"], "search": result["search"],
                    "other": {k: result["other"][k] for k in ("search", "total_h", "wall_h")} if result.get("other")
                    else None}  # fmt: skip
    return {"status": "ok", "note": f"{result['total_h']:,.2f} GPU-hours ({result['search']}), wall clock "
            f"{result['wall_h']:,.2f} h (default profile)"}  # fmt: skip


STAGE_FUNCS = {"env": stage_env, "cuda_tests": stage_cuda_tests, "constants": stage_constants,
               "startup": stage_startup, "counts": stage_counts, "units": stage_units, "batching": stage_batching,
               "concurrency": stage_concurrency, "projection": stage_projection}  # fmt: skip


# --- summary and archive -----------------------------------------------------------------------------------------
def summary(c: Check, wall: float) -> str:
    env = getattr(c, "env", {})
    name = env.get("device_name") or (f"CPU ({platform.machine()}, {os.cpu_count()} cores)")
    sized = "paper sizes" if c.sizes == "paper" else "shortened CPU sizes (a rehearsal: not the GPU figures)"
    lines = [f"# Device check: {name}", "",
             f"- device {c.device}, torch {env.get('torch', '?')}, Python {env.get('python', '?')}, commit "
             f"{env.get('commit') or 'unknown'}, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}",
             f"- sizes: {c.sizes} ({sized}); {c.repeats}+ repeats per timing (median, min/max, quartiles)",
             f"- wall time {wall:.0f} s of a {c.args.deadline_s:.0f} s deadline",
             "- files: device_check.tar.gz (every table, log and JSON), units.json (`paper_cost --units-in`)", "",
             "## Stages", "", md_table(c.results, ["stage", "status", "seconds", "budget_s", "note"])]  # fmt: skip
    for r in c.results:
        if r.get("error"):
            lines += [f"{r['stage']}: error (tail)", "", "```", r["error"], "```", ""]
    titles = {"constants": "Device constants", "startup": "Process start-up (to the first device op)",
              "batching": "CPU batch building (8 segments of the C7O2H10 isomer)"}  # fmt: skip
    for key in ("constants", "startup", "batching"):
        if c.tables.get(key):
            lines += [f"## {titles[key]}", "", md_table(c.tables[key])]
    if c.tables.get("concurrency"):
        lines += [f"## Processes sharing the device ({getattr(c, 'concurrency_what', '')})", "",
                  md_table(c.tables["concurrency"])]  # fmt: skip
    if c.timings:
        cols = ["model", "dataset", "molecule", "atoms", "unit", "batch", "mode", "precision", "median_ms", "min_ms",
                "max_ms", "n", "first_s", "graphs", "graph_breaks", "cudagraph_skips", "status"]  # fmt: skip
        rows = [{**t, **{f"{k}_ms": t[k] * 1e3 for k in ("median", "min", "max") if k in t}} for t in c.timings]
        measured = sorted({t["unit"] for t in c.timings if t.get("status") == "ok"})
        lines += ["## Seconds per unit", "", "Units measured: " + ", ".join(measured) + ".", "",
                  md_table(rows, cols)]  # fmt: skip
        lines += ["## Measured against the cost model's price", "", _priced_vs_measured(c)]
    if getattr(c, "projection", None):
        p = c.projection
        other = f"; {p['other']['search']}: {p['other']['total_h']:,.2f} GPU-hours" if p.get("other") else ""
        lines += ["## Reprojection (`paper_cost --units-in units.json`)", "",
                  f"{p['total_h']:,.2f} GPU-hours ({p['search']} search), wall clock {p['wall_h']:,.2f} h with the "
                  f"default profile's slots, {p['serial_wall_h']:,.2f} h one GPU job at a time, critical path "
                  f"{p['critical_h']:,.2f} h{other}. Full tables: paper_cost.md in the archive.", ""]  # fmt: skip
    if c.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in c.notes] + [""]
    return "\n".join(lines) + "\n"


def _priced_vs_measured(c: Check) -> str:
    """Each measured unit of a counted record against its price with the assumption file (the H200 projection's
    constants) and with the constants measured here."""
    from benchmarks.paper_cost import DEFAULT_CONSTANTS, _eps_unit, price, read_constants

    if not c.records:
        return "(no counts)\n"
    assumed = read_constants(DEFAULT_CONSTANTS)
    here = measured_constants(c) if c.constants else None
    rows = []
    for t in c.timings:
        rec = c.records.get(f"{t['model']}|{t['dataset']}")
        if t.get("status") != "ok" or rec is None or rec.get("molecule") != t["molecule"]:
            continue
        name = t["unit"] if t["unit"] != "rollout_step" else _eps_unit(c.plan(), t["model"], t["dataset"], t["unit"])
        u = rec["units"].get(name)
        if u is None:
            continue
        factor = 1.0 if t["unit"] == "train_step" else t["batch"] / float(u.get("batch", 1))
        if t["unit"] == "train_step" and t["batch"] != u.get("batch"):
            continue
        prec = t["precision"] if t["unit"] == "train_step" else "float32"
        row = {"model": t["model"], "unit": name, "batch": t["batch"], "mode": t["mode"], "precision": prec,
               "measured_ms": t["median"] * 1e3,
               "priced_assumed_ms": price(u[t["mode"]], t["mode"], assumed, prec, factor) * 1e3}  # fmt: skip
        row["measured/assumed"] = row["measured_ms"] / row["priced_assumed_ms"]
        if here:
            row["priced_here_ms"] = price(u[t["mode"]], t["mode"], here, prec, factor) * 1e3
            row["measured/here"] = row["measured_ms"] / row["priced_here_ms"]
        rows.append(row)
    return (f"Priced: `max(ops t_op, FLOPs / rate) + syncs t_sync` (captured: launches, nodes) with "
            f"{DEFAULT_CONSTANTS.name} (assumed) and with the constants measured here.\n\n" + md_table(rows))


def pack(c: Check, out: Path, wall: float) -> list[Path]:
    """The archive, the summary and the units file (3 files) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    c.write("stages.json", json.dumps(c.results, indent=1, default=str) + "\n")
    if c.timings:
        c.write("unit_times.json", json.dumps(c.timings, indent=1, default=float) + "\n")
    text = summary(c, wall)
    c.write("summary.md", text)
    archive = out / "device_check.tar.gz"
    part = archive.with_suffix(".gz.part")
    with tarfile.open(part, "w:gz") as tar:
        for p in sorted(c.work.rglob("*")):
            if p.is_file() and not p.name.startswith(("ready", "go")):
                tar.add(p, arcname=f"device_check/{p.relative_to(c.work)}")
    os.replace(part, archive)
    written = [archive]
    (out / "summary.md").write_text(text)
    written.append(out / "summary.md")
    if c.units_path and c.units_path.exists():
        (out / "units.json").write_text(c.units_path.read_text())
        written.append(out / "units.json")
    return written


# --- the run -----------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    end = t_start + float(args.deadline_s)
    c = Check(args)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else list(STAGES)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"--stages: unknown {', '.join(bad)} (known: {', '.join(STAGES)})")
    stages = [s for s in STAGES if s in stages]
    out = Path(args.out)
    reserve = 6.0  # the summary and the archive
    packed = threading.Event()

    def watchdog() -> None:  # the main thread stuck inside a C call past the deadline: write what finished
        if not packed.wait(max(end - time.perf_counter(), 0) + 20):
            try:
                c.results.append({"stage": "watchdog", "status": "timeout", "note": "deadline passed: written"})
                pack(c, out, time.perf_counter() - t_start)
            finally:
                os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    signal.signal(signal.SIGALRM, _on_alarm)
    print(f"device check: {len(stages)} stages, deadline {args.deadline_s:.0f} s, device {c.device}, sizes "
          f"{c.sizes}, work folder {c.work}", flush=True)  # fmt: skip
    for i, name in enumerate(stages):
        left = end - reserve - time.perf_counter()
        weights = sum(WEIGHTS[s] for s in stages[i:])
        share = left * WEIGHTS[name] / weights if name != stages[-1] else left
        rec: dict[str, Any] = {"stage": name, "budget_s": round(max(share, 0.0), 1)}
        t0 = time.perf_counter()
        if share < 1.0:
            rec.update({"status": "timeout", "note": "not started: the deadline was spent", "seconds": 0.0})
            c.results.append(rec)
            continue
        print(f"[{time.perf_counter() - t_start:6.1f} s] {name} (up to {share:.0f} s)", flush=True)
        signal.setitimer(signal.ITIMER_REAL, share + 2.0)
        try:
            rec.update(STAGE_FUNCS[name](c, time.perf_counter() + share) or {})
            rec.setdefault("status", "ok")
        except StageTimeout:
            rec.update({"status": "timeout", "note": f"ran past its share ({share:.0f} s): what it finished is kept"})
        except Exception as exc:  # noqa: BLE001 - a stage failing is recorded; the next one runs
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            rec.update({"status": "failed", "note": f"{type(exc).__name__}: {first}",
                        "error": tail(traceback.format_exc())})  # fmt: skip
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        c.results.append(rec)
        print(f"  {name}: {rec['status']} ({rec['seconds']} s) {rec.get('note', '')}", flush=True)
        if rec.get("error"):
            print(tail(rec["error"], 6), flush=True)
    if c.units_path is None and c.records:
        try:
            write_units_file(c)
        except Exception as exc:  # noqa: BLE001
            c.notes.append(f"units file not written: {type(exc).__name__}: {exc}")
    files = pack(c, out, time.perf_counter() - t_start)
    packed.set()
    print(f"device check done in {time.perf_counter() - t_start:.0f} s: " + ", ".join(str(f) for f in files))
    ok = all(r["status"] == "ok" or r["status"].startswith("skipped") for r in c.results)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The device check: every unit the cost model prices, measured on the "
                                            "device at hand within one deadline (issue 22).")  # fmt: skip
    p.add_argument("--out", default="results/device_check", help="folder for the archive, summary and units file")
    p.add_argument("--deadline-s", type=float, default=480.0, help="hard overall deadline in seconds")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cuda | cuda:N | cpu")
    p.add_argument("--sizes", default="auto", choices=("auto", "paper", "cpu"),
                   help="paper (GPU: batches 1, 6, 32, 200, three molecules) | cpu (shortened); auto by device")
    p.add_argument("--config-json", default=None, help="experiment config as JSON (inline or @file); default "
                                                       "config.yaml (the paper config)")  # fmt: skip
    p.add_argument("--stages", default=None, help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--counts-in", default=None, help="take the op counts from a paper_cost/launches --units-out "
                                                     "file instead of counting (device-independent)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="repeats per timing (at least 5)")
    p.add_argument("--python", default=None, help="interpreter for the subprocesses (default: this one)")
    p.add_argument("--captured-on-cpu", default=None, metavar="MODEL",
                   help="on a CPU, also time MODEL captured (inductor's C++; rehearses the captured path)")
    p.add_argument("--freeze-molecules", action="store_true", help="rewrite benchmarks/devices/molecules.json "
                                                                    "(needs ase and RDKit) and exit")  # fmt: skip
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_concurrency(json.loads(a.worker))
        return 0
    if a.freeze_molecules:
        freeze_molecules()
        print(f"wrote {MOLECULES_FILE}")
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
