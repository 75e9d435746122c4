"""Cost of simulated time: wall-clock seconds per simulated picosecond, learned simulators vs the reference MD.

In one process on one machine this measures

* the reference MD: GFN2-xTB Langevin dynamics of the same molecule with the data source's own
  integrator (:func:`diffmd.data.xtb_md.simulate_md17`: tblite + ASE, ``md_steps`` steps of
  ``dt_fs``, after its geometry optimisation, which is not timed);
* each trained model's autoregressive rollout (:func:`diffmd.engine.rollout.rollout`) from the test
  segment's first frame over ``frames`` source frames (``frames // stride`` model steps), after one
  untimed warm-up step;

and writes, per molecule and simulator, seconds per simulated ps = seconds / (steps x stride x dt_fs /
1000), its ratio to the reference MD (< 1: faster than the physics it imitates) and the ARMSE (Å)
beside it: from the pipeline's ``armse.json`` when given, else from the timed rollout itself.
A model of stride k is compared with the reference at every k-th frame (the frames both share).

CLI (``manifest`` is JSON, inline or ``@file``)::

    python -m benchmarks.cost --manifest MANIFEST --out-csv results/tables/cost_md17.csv \\
        --out-md results/tables/cost_md17.md

    {"molecules": {"ethanol": {"split": "data/splits/md17/ethanol.json",
                               "runs": [{"label": "egnn", "checkpoint": ".../model.pt",
                                         "armse_json": ".../armse.json"}, ...]}},
     "xtb": {...data.md17.xtb...}, "md_steps": 300, "frames": 200, "threads": 1, "device": "cpu",
     "seed": 1}

``md_steps: 0`` skips the reference MD (ratios are then NA).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/cost.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from diffmd.io import write_text  # noqa: E402

FIELDS = ("molecule", "simulator", "stride", "dt_fs", "steps", "seconds", "seconds_per_ps", "ratio_to_md",
          "speedup_vs_md", "armse", "armse_source", "score_evals_per_step", "device")  # fmt: skip
REFERENCE = "GFN2-xTB MD (reference)"


def seconds_per_ps(seconds: float, steps: int, stride: int, dt_fs: float) -> float:
    """Wall seconds per simulated picosecond: ``steps`` steps of ``stride * dt_fs`` fs took ``seconds``."""
    simulated_ps = steps * stride * dt_fs / 1000.0
    if simulated_ps <= 0:
        raise ValueError(f"no simulated time (steps {steps}, stride {stride}, dt_fs {dt_fs})")
    return seconds / simulated_ps


def reference_md(molecule: str, xtb_cfg: dict[str, Any], steps: int) -> dict[str, Any]:
    """Time ``steps`` GFN2-xTB steps of ``molecule`` with the data source's production integrator (no
    equilibration: ``md_seconds`` then covers the timed steps alone)."""
    from diffmd.data.xtb_md import simulate_md17

    cfg = {**xtb_cfg, "n_frames": int(steps) + 1, "equilibration_steps": 0, "massive_langevin_steps": 0,
           "equipartition_start": False}  # fmt: skip
    traj = simulate_md17(molecule, cfg)
    seconds = float(traj.provenance["md_seconds"])
    return {"molecule": molecule, "simulator": REFERENCE, "stride": 1, "dt_fs": float(traj.dt_fs),
            "steps": int(steps), "seconds": seconds, "armse": None, "armse_source": "",
            "score_evals_per_step": 0.0, "device": "cpu"}  # fmt: skip


def model_rollout(run: dict[str, Any], molecule: str, split_path: str, frames: int | None, device: str,
                  seed: int) -> dict[str, Any]:  # fmt: skip
    """Time the rollout of one checkpoint on the test segment; ARMSE from ``armse_json`` or this rollout."""
    import torch

    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything
    from diffmd.engine.rollout import n_steps_for, rollout
    from diffmd.metrics import armse
    from diffmd.rundir import load_record

    dev = resolve_device(device)
    model, _ = load_checkpoint(run["checkpoint"], dev)
    seg = split_segments(load_split(split_path), "test", stride=model.stride)[0]
    steps = n_steps_for(seg, model.stride, frames, seg.start)
    seed_everything(seed)
    rollout(model, seg, seg.start, 1, device=dev)  # warm-up: lazy initialisation, caches
    if dev.type == "cuda":
        torch.cuda.synchronize()
    res = rollout(model, seg, seg.start, steps, device=dev)
    if run.get("armse_json"):
        value, source = load_record(run["armse_json"]).armse, "pipeline armse.json"  # the one armse.json reader
    else:
        done = res.n_done
        ref = seg.positions[res.frame_indices[: done + 1]]
        value = None if res.diverged or done < 1 else armse(res.positions[: done + 1], ref)
        source = f"this rollout ({steps} steps)"
    return {"molecule": molecule, "simulator": run["label"], "stride": int(model.stride), "dt_fs": float(seg.dt_fs),
            "steps": int(res.n_done), "seconds": float(res.seconds), "armse": value, "armse_source": source,
            "score_evals_per_step": float(np.mean(res.score_evals[: max(res.n_done, 1)])), "device": str(dev),
            "diverged": res.diverged}  # fmt: skip


def finish_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add seconds per simulated ps and the ratio / speed-up against the molecule's reference MD."""
    out = []
    for r in rows:
        r = dict(r)
        r["seconds_per_ps"] = (seconds_per_ps(r["seconds"], r["steps"], r["stride"], r["dt_fs"])
                               if r["steps"] > 0 else None)  # fmt: skip
        out.append(r)
    ref = {r["molecule"]: r for r in out if r["simulator"] == REFERENCE}
    for r in out:
        base = ref.get(r["molecule"])
        ok = base is not None and r["seconds_per_ps"] is not None and base["seconds"] > 0
        r["ratio_to_md"] = r["seconds_per_ps"] / base["seconds_per_ps"] if ok else None
        r["speedup_vs_md"] = 1.0 / r["ratio_to_md"] if ok and r["ratio_to_md"] else None
    return out


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "NA"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("NA" if r.get(k) is None else r.get(k)) for k in FIELDS})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The table through ``DataFrame.to_markdown`` (text columns left, numbers right), then the notes."""
    import pandas as pd

    header = ["molecule", "simulator", "stride", "step (fs)", "s / simulated ps", "x reference MD", "speed-up",
              "ARMSE (Å)", "denoiser evals / step"]  # fmt: skip
    table = pd.DataFrame([[r["molecule"], r["simulator"], str(r["stride"]), _fmt(r["stride"] * r["dt_fs"], ".1f"),
                           _fmt(r["seconds_per_ps"], ".3g"), _fmt(r["ratio_to_md"], ".3g"),
                           _fmt(r["speedup_vs_md"], ".3g"), _fmt(r["armse"], ".4f"),
                           _fmt(r["score_evals_per_step"], ".0f")] for r in rows], columns=header)  # fmt: skip
    lines = [table.to_markdown(index=False, disable_numparse=True, colalign=("left",) * 2 + ("right",) * 7)]
    notes = [
        "",
        f"Measured in one run on one machine ({meta['threads']} thread(s); model rollouts on {meta['device']}, "
        f"the reference MD on CPU). Reference: GFN2-xTB Langevin dynamics (tblite + ASE, the offline data "
        f"source's integrator), {meta['md_steps']} steps after its untimed geometry optimisation. Rollouts: "
        f"{meta['frames'] or 'the whole test segment of'} source frames from the test segment's first frame, "
        "after one untimed warm-up step. x reference MD < 1 means cheaper per simulated ps than the reference.",
        "ARMSE: the pipeline's armse.json for the table models; this benchmark's own rollout for the extra "
        "Score Dynamics strides. A model of stride k is compared with the reference at every k-th frame "
        "(the frames both share), so ARMSE over different strides covers different frame sets. "
        "NA: not measured or diverged.",
    ]
    return "\n".join(lines + notes) + "\n"


def run(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure every entry of ``manifest`` (see the module docstring); returns the finished rows."""
    threads = int(manifest.get("threads", 1))
    from diffmd.data.xtb_md import set_threads

    set_threads(threads)  # before tblite is imported
    import torch

    torch.set_num_threads(threads)
    molecules = manifest.get("molecules")
    if not molecules:
        raise ValueError("cost manifest: 'molecules' is empty")
    rows = []
    for molecule, entry in molecules.items():
        if "split" not in entry:
            raise ValueError(f"cost manifest: molecule {molecule!r} has no 'split'")
        if int(manifest.get("md_steps", 0)) > 0:
            t0 = time.perf_counter()
            rows.append(reference_md(molecule, manifest["xtb"], int(manifest["md_steps"])))
            print(f"{molecule}: reference MD done in {time.perf_counter() - t0:.1f}s", flush=True)
        for r in entry.get("runs", []):
            row = model_rollout(r, molecule, entry["split"], manifest.get("frames"), manifest.get("device", "cpu"),
                                int(manifest.get("seed", 1)))  # fmt: skip
            print(f"{molecule}: {r['label']} {row['steps']} steps in {row['seconds']:.2f}s", flush=True)
            rows.append(row)
    return finish_rows(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Wall seconds per simulated ps: reference MD vs learned rollouts.")
    p.add_argument("--manifest", required=True, help="JSON (inline, or @path) describing molecules and checkpoints")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--device", default=None, help="the model rollouts' device (the workflow's $DIFFMD_DEVICE; "
                   "default: the manifest's, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the manifest's, else 1)")
    a = p.parse_args(argv)
    text = Path(a.manifest[1:]).read_text() if a.manifest.startswith("@") else a.manifest
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--manifest: not valid JSON ({exc})") from None
    # the machine comes from the command line (the rule's params hold only what the benchmark measures)
    manifest.update({k: v for k, v in (("device", a.device), ("threads", a.threads)) if v is not None})
    rows = run(manifest)
    meta = {k: manifest.get(k, d) for k, d in (("threads", 1), ("device", "cpu"), ("md_steps", 0), ("frames", None))}
    write_text(a.out_csv, to_csv(rows))
    write_text(a.out_md, to_markdown(rows, meta))
    print(to_markdown(rows, meta))


if __name__ == "__main__":
    main()
