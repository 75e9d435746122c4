"""Cost of DiffMD's batched validation (issue 14): every eps x every start in one batch of copies, against one
eps and one start at a time.

For each size (``quick``: diffmd/models/configs/diffmd.yaml + config/quick.yaml's ``model_params.diffmd``;
``paper``: the YAML alone), an untrained DiffMD (a step's cost does not depend on the weights; seeded) rolls
out ``steps`` steps on a synthetic ethanol (9 atoms, :func:`diffmd.testing.synthetic.vibrating_truth`) from
``starts`` start frames at every eps of ``--eps`` (default: the paper's grid, config.yaml ``diffmd.grid.eps``):

* batched: one :func:`diffmd.engine.rollout.rollout_starts` call over len(eps) x starts copies, ``model.eps``
  a tensor with one value per copy (each copy on its own clock, as :mod:`diffmd.engine.grid`
  validates every eps of a grid point; :func:`diffmd.models.diffmd.samplers.ode_sampler`);
* sequential: ``model.eps`` one float at a time and one ``rollout_starts`` call per start (one molecule).

Each path runs once untimed (warm-up) and once timed; the timed seconds are the process's CPU time on a
CPU device (single thread by default, so wall time and device time agree; both are written) and wall time
after a synchronise on CUDA. A validated frame is one rollout step of one (eps, start) copy. It writes the
seconds per validated frame, the ratio sequential / batched, the score evaluations of each path (batched:
calls on the batch of copies still integrating) and the largest deviation between the two paths' positions
(Å; with the default per-molecule step control every copy takes the steps it takes alone, so the two differ by
float round-off in the batched network, which an adaptive solver on an untrained score can amplify to its
tolerance), and each path's largest deviation from a reference: the batched path integrated at a tight
tolerance (``--reference-tol``, default 1e-7; untimed).

CLI::

    python -m benchmarks.batched_validation --sizes quick paper --starts 16 --steps 3 --paper-steps 1 \\
        --threads 1 --out-csv results/tables/batched_validation.csv --out-md results/tables/batched_validation.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/batched_validation.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("size", "n_layers", "d_model", "d_ffn", "rtol", "n_eps", "starts", "steps", "frames", "batched_s",
          "sequential_s", "batched_s_per_frame", "sequential_s_per_frame", "ratio", "batched_score_evals",
          "sequential_score_evals", "max_dev_A", "batched_err_A", "sequential_err_A", "reference_tol", "clock",
          "device", "threads")  # fmt: skip


def size_params(size: str, root: Path = ROOT) -> dict[str, Any]:
    """The model parameters of a named size: ``paper`` (the YAML: no overrides) or ``quick`` (config/quick.yaml's
    ``model_params.diffmd`` without its ``train:`` key)."""
    import yaml

    if size == "paper":
        return {}
    if size == "quick":
        path = root / "config" / "quick.yaml"
        params = (yaml.safe_load(path.read_text()).get("model_params") or {}).get("diffmd")
        if not isinstance(params, dict):
            raise SystemExit(f"{path}: no model_params.diffmd mapping")
        return {k: v for k, v in params.items() if k != "train"}
    raise SystemExit(f"--sizes: unknown size {size!r} (quick, paper)")


def paper_eps(root: Path = ROOT) -> list[float]:
    """config.yaml's ``diffmd.grid.eps``."""
    import yaml

    path = root / "config.yaml"
    try:
        return [float(e) for e in yaml.safe_load(path.read_text())["diffmd"]["grid"]["eps"]]
    except (KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: no diffmd.grid.eps ({exc})") from None


def build(params: dict[str, Any], device: Any) -> Any:
    """An untrained, seeded DiffMD of the YAML with ``params`` over it (sampler ode)."""
    import torch

    from diffmd.config import resolve_model_config, split_train_overrides
    from diffmd.registry import build_model

    torch.manual_seed(0)
    model_params, _ = split_train_overrides(resolve_model_config("diffmd", params))
    model_params.pop("stride", None)
    model = build_model("diffmd", model_params, source="diffmd (batched_validation)").to(device).eval()
    if model.sampler_name != "ode":
        raise SystemExit(f"sampler {model.sampler_name!r}: only the ode sampler validates every eps in one batch")
    return model


class _Clock:
    """Device seconds: process CPU time on a CPU device, wall time after a synchronise on CUDA."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.name = "wall (cuda synchronised)" if device.type == "cuda" else "process CPU time"

    def now(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.process_time()


def run_paths(model: Any, eps: list[float], n_starts: int, steps: int, device: Any, timed: bool = True,
              sequential: bool = True) -> dict[str, Any]:  # fmt: skip
    """Both paths (``sequential`` False: the batched one only) on one model, warmed up first when ``timed``:
    seconds, wall seconds, score evaluations and positions (len(eps) x starts, steps + 1, atoms, 3), copies
    eps-major (copy e * starts + j: eps e, start j)."""
    import torch

    from diffmd.data.pairs import Segment
    from diffmd.engine.rollout import rollout_starts
    from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

    spacing = 3
    n_frames = 4 + n_starts * spacing + steps + 2
    seg = Segment("ethanol", vibrating_truth(n_frames, seed=1), ETHANOL_Z, start=2, stop=n_frames - 1, dt_fs=0.5)
    starts = 2 + spacing * np.arange(n_starts)
    clock = _Clock(device)
    saved = model.eps
    out: dict[str, Any] = {"clock": clock.name}
    try:
        # batched: every (eps, start) copy in one rollout
        model.eps = torch.tensor(np.repeat(eps, n_starts), dtype=torch.float32, device=device)
        all_starts = np.tile(starts, len(eps))
        if timed:  # warm-up (lazy initialisation, allocator)
            rollout_starts(model, seg, all_starts, 1, device=device)
        w0, t0 = time.perf_counter(), clock.now()
        res = rollout_starts(model, seg, all_starts, steps, device=device)
        out["batched_s"], out["batched_wall_s"] = clock.now() - t0, time.perf_counter() - w0
        out["batched_positions"] = res.positions
        out["batched_score_evals"] = float(res.score_evals.sum())
        if not sequential:
            return out
        # sequential: one eps and one start at a time
        model.eps = float(eps[0])
        if timed:
            rollout_starts(model, seg, starts[:1], 1, device=device)
        positions, evals = [], 0.0
        w0, t0 = time.perf_counter(), clock.now()
        for e in eps:
            model.eps = float(e)
            for s in starts:
                one = rollout_starts(model, seg, np.array([s]), steps, device=device)
                positions.append(one.positions[0])
                evals += float(one.score_evals.sum())
        out["sequential_s"], out["sequential_wall_s"] = clock.now() - t0, time.perf_counter() - w0
        out["sequential_positions"] = np.stack(positions)
        out["sequential_score_evals"] = evals
    finally:
        model.eps = saved
    return out


def measure(size: str, params: dict[str, Any], eps: list[float], n_starts: int, steps: int, device: Any,
            reference_tol: float | None = 1e-7) -> dict[str, Any]:  # fmt: skip
    """One CSV row: both paths of ``size`` (parameters ``params`` over the YAML); with ``reference_tol``, the
    error of each against the batched path at rtol = atol = ``reference_tol`` (untimed)."""
    import torch

    model = build(params, device)
    res = run_paths(model, eps, n_starts, steps, device)
    frames = len(eps) * n_starts * steps
    dev = float(np.nanmax(np.abs(res["batched_positions"] - res["sequential_positions"])))
    err_b = err_s = None
    rtol = model.sampler_options.get("rtol")
    if reference_tol:
        model.sampler_options = {**model.sampler_options, "rtol": reference_tol, "atol": reference_tol}
        ref = run_paths(model, eps, n_starts, steps, device, timed=False, sequential=False)["batched_positions"]
        err_b = float(np.nanmax(np.abs(res["batched_positions"] - ref)))
        err_s = float(np.nanmax(np.abs(res["sequential_positions"] - ref)))
    egt = {"n_layers": None, "d_model": None, "d_ffn": None}
    egt.update({k: v for k, v in resolve_params(params).items() if k in egt})
    return {
        "size": size, **egt, "rtol": rtol, "n_eps": len(eps), "starts": n_starts,
        "steps": steps, "frames": frames, "batched_s": res["batched_s"], "sequential_s": res["sequential_s"],
        "batched_s_per_frame": res["batched_s"] / frames, "sequential_s_per_frame": res["sequential_s"] / frames,
        "ratio": res["sequential_s"] / max(res["batched_s"], 1e-12),
        "batched_score_evals": res["batched_score_evals"], "sequential_score_evals": res["sequential_score_evals"],
        "max_dev_A": dev, "batched_err_A": err_b, "sequential_err_A": err_s, "reference_tol": reference_tol,
        "clock": res["clock"], "device": str(device), "threads": torch.get_num_threads(),
        "batched_wall_s": res["batched_wall_s"], "sequential_wall_s": res["sequential_wall_s"],
    }  # fmt: skip


def resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    from diffmd.config import resolve_model_config

    return resolve_model_config("diffmd", params)


def _err(row: dict[str, Any]) -> str:
    if row["batched_err_A"] is None:
        return "NA"
    return f"{row['batched_err_A']:.2g} / {row['sequential_err_A']:.2g}"


def render(rows: list[dict[str, Any]], eps: list[float], label: str) -> tuple[str, str]:
    """(CSV, Markdown) of the rows."""
    import pandas as pd

    frame = pd.DataFrame([{k: r[k] for k in FIELDS} for r in rows], columns=list(FIELDS))
    csv = frame.to_csv(index=False)
    show = pd.DataFrame([{
        "size": f"{r['size']} ({r['n_layers']} x {r['d_model']}, FFN {r['d_ffn']}, rtol {r['rtol']:g})",
        "copies x steps": f"{r['n_eps']} eps x {r['starts']} starts x {r['steps']}",
        "batched s/frame": f"{r['batched_s_per_frame']:.4g}", "one-at-a-time s/frame":
        f"{r['sequential_s_per_frame']:.4g}", "ratio": f"{r['ratio']:.1f}x",
        "score evals (batched / one-at-a-time)": f"{r['batched_score_evals']:.0f} / {r['sequential_score_evals']:.0f}",
        "max deviation (Å)": f"{r['max_dev_A']:.2g}",
        "max error vs reference (Å, batched / one-at-a-time)": _err(r)} for r in rows])  # fmt: skip
    md = [
        f"# Batched DiffMD validation vs one eps and one start at a time ({label})",
        "",
        f"eps {', '.join(f'{e:g}' for e in eps)}; untrained DiffMD, synthetic ethanol (9 atoms); "
        f"seconds: {rows[0]['clock'] if rows else ''}, per validated frame (one step of one (eps, start) copy).",
        "",
        show.to_markdown(index=False) if len(show) else "(nothing measured)",
        "",
        "Ratio: one-at-a-time seconds / batched seconds (> 1: batching pays). Score evals: calls of the score "
        "network (batched: on the copies still integrating; every copy has its own dopri5 step size and drops out "
        "when it reaches its eps). Max deviation: largest |x| difference of any atom, copy and step between the "
        "two paths (the same steps per copy; float round-off of the batched network, amplified by the adaptive "
        "solver on an untrained score up to its tolerance). Max error vs reference: the same against the batched "
        "path integrated at rtol = atol = "
        f"{rows[0]['reference_tol'] if rows and rows[0]['reference_tol'] else 'none'} (untimed; NA: not computed).",
    ]  # fmt: skip
    return csv, "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """The CLI (module docstring); returns the rows."""
    p = argparse.ArgumentParser(description="DiffMD validation: every eps x start in one batch vs one at a time.")
    p.add_argument("--sizes", nargs="+", default=["quick", "paper"], help="quick and/or paper")
    p.add_argument("--params", default="{}", help="JSON: parameters over every size (e.g. a tiny test model)")
    p.add_argument("--eps", type=float, nargs="+", default=None, help="default: config.yaml diffmd.grid.eps")
    p.add_argument("--starts", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="rollout steps (quick size)")
    p.add_argument("--paper-steps", type=int, default=1, help="rollout steps of the paper size")
    p.add_argument("--reference-tol", type=float, default=1e-7,
                   help="rtol = atol of the untimed reference integration (0: none)")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    a = p.parse_args(argv)
    try:
        extra = json.loads(a.params)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params: not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise SystemExit("--params: expected a JSON object")
    if a.starts < 1 or a.steps < 1 or a.paper_steps < 1:
        raise SystemExit("--starts, --steps, --paper-steps: must be >= 1")
    eps = [float(e) for e in (a.eps or paper_eps())]
    if not all(0 < e < 1 for e in eps):
        raise SystemExit(f"--eps: values must lie in (0, 1), got {eps}")
    import torch

    from diffmd.engine.common import resolve_device
    from diffmd.io import write_text

    torch.set_num_threads(max(a.threads, 1))
    device = resolve_device(a.device)
    rows = []
    for size in a.sizes:
        params = {**size_params(size), **extra}
        steps = a.paper_steps if size == "paper" else a.steps
        t0 = time.perf_counter()
        rows.append(measure(size, params, eps, a.starts, steps, device, a.reference_tol or None))
        r = rows[-1]
        print(f"{size}: batched {r['batched_s']:.2f} s, one at a time {r['sequential_s']:.2f} s, ratio "
              f"{r['ratio']:.1f}x, max deviation {r['max_dev_A']:.2g} A ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
    label = "CUDA " + torch.cuda.get_device_name(device) if device.type == "cuda" \
        else f"CPU, {torch.get_num_threads()} thread(s)"  # fmt: skip
    csv, md = render(rows, eps, label)
    write_text(a.out_csv, csv)
    write_text(a.out_md, md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
