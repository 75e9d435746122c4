"""ARMSE of a rollout (``armse.json``, docs/ARCHITECTURE.md) and per-molecule summaries.

CLI::

    python -m diffmd.engine.evaluate --rollout RUNDIR/rollout.npz --meta JSON --out RUNDIR/armse.json
    python -m diffmd.engine.evaluate summarize --out results/md17/<molecule>/summary.json A.json B.json ...

``--meta``: ``{"dataset", "molecule", "model", "seed"}`` (``source`` is read from the rollout).
The ARMSE is the paper's accumulative RMSE after Kabsch superposition (see :mod:`diffmd.metrics`);
``armse`` and ``armse_unaligned`` are null when the rollout diverged (the tables print NA), while
``rmsd_per_frame`` and ``armse_curve`` still cover the frames predicted before the divergence.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from diffmd.io import write_json
from diffmd.metrics import armse_curve, rmsd_per_frame
from diffmd.rundir import Rollout, load_rollout, write_record


def evaluate(roll: Rollout, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``armse.json`` record of one rollout (:class:`diffmd.rundir.Rollout`)."""
    pos, ref = roll.positions, roll.reference
    diverged = bool(roll.diverged)
    n = len(pos) - 1
    done = int(roll.diverged_at) - 1 if diverged else n
    rmsd = rmsd_per_frame(pos[1 : done + 1], ref[1 : done + 1]) if done > 0 else np.zeros(0)
    raw = rmsd_per_frame(pos[1 : done + 1], ref[1 : done + 1], align=False) if done > 0 else np.zeros(0)
    curve = armse_curve(rmsd)
    seconds = float(roll.seconds or 0.0)
    evals = np.asarray(roll.score_evals, dtype=np.float64)[:done]
    model = meta.get("model", roll.model)
    return {
        "dataset": meta.get("dataset"),
        "molecule": meta.get("molecule", roll.molecule),
        "model": model,
        "role": _role(roll),  # written once by the rollout (from the model's card), carried forward
        "seed": meta.get("seed"),
        "source": roll.source if roll.source is not None else meta.get("source"),
        "stride": int(roll.stride),
        "n_frames": n,
        "armse": None if diverged or done == 0 else float(curve[-1]),
        "armse_unaligned": None if diverged or done == 0 else float(np.sqrt(np.mean(raw**2))),
        # the paper's formula as printed: summed over atoms (no 1/N), unaligned (yardstick.ARMSE_NOTE)
        "armse_literal": None if diverged or done == 0 else float(np.sqrt(np.mean(raw**2) * pos.shape[1])),
        "diverged": diverged,
        "diverged_at": int(roll.diverged_at),
        "rmsd_per_frame": rmsd.tolist(),
        "armse_curve": curve.tolist(),
        "score_evals_per_frame": float(evals.mean()) if evals.size else 0.0,
        "rollout_seconds": seconds,
        "frames_per_second": done / seconds if seconds > 0 else None,
        # per source frame (a stride-k model covers k frames per step)
        "source_frames_per_second": done * int(roll.stride) / seconds if seconds > 0 else None,
        "rollout_stats": dict(roll.rollout_stats),
    }


def _role(roll: Rollout) -> str:
    if not roll.role:
        raise ValueError(f"rollout.npz of {roll.model}: no role (written before rollouts carried it): rerun the "
                         "rollout job")  # fmt: skip
    return str(roll.role)


def yardstick(roll: Rollout, cfg: dict[str, Any]) -> dict[str, Any]:
    """The yardstick's keys of ``armse.json``: ``metrics`` rows, the multi-start ``curve`` and ``hr``
    (see :mod:`diffmd.engine.yardstick`); ``cfg`` is the config's ``rollout`` section."""
    from diffmd.data.sources import has_reference_potential
    from diffmd.engine import yardstick as Y
    from diffmd.stages import stage_config

    cfg = stage_config("evaluate", cfg)  # only the keys evaluate reads (horizons_fs, energy_frames)
    step_fs = float(roll.dt_fs) * int(roll.stride)
    out: dict[str, Any] = {"dt_fs": float(roll.dt_fs), "step_fs": step_fs, "rollout_applicable": roll.applicable,
                           "metrics": [], "curve": None, "hr": None}  # fmt: skip
    if roll.one_step is not None:
        out["metrics"] += Y.one_step_rows(roll.one_step, step_fs, roll.atomic_numbers)
    if roll.applicable and len(roll.positions) > 1:  # the paper column's literal variant, in the CSV
        n = len(roll.positions) - 1
        done = int(roll.diverged_at) - 1 if roll.diverged else n
        lit = None
        if not roll.diverged and done > 0:
            raw = rmsd_per_frame(roll.positions[1 : done + 1], roll.reference[1 : done + 1], align=False)
            lit = float(np.sqrt(np.mean(raw**2) * roll.positions.shape[1]))
        out["metrics"].append({"metric": "armse_paper_literal", "horizon_fs": n * step_fs, "value": lit,
                               "ci_low": None, "ci_high": None, "ci_method": "", "ci_n": 0, "n_starts": 1,
                               "n_diverged": int(bool(roll.diverged)), "unit": "Å"})  # fmt: skip
    if roll.multi is not None:
        rows, curve = Y.horizon_rows(roll.multi, step_fs, list(cfg["horizons_fs"]))
        horizon = step_fs * (roll.multi.positions.shape[1] - 1)
        energies = Y.energy_samples(roll.multi, roll.atomic_numbers, int(cfg["energy_frames"])) \
            if has_reference_potential(roll.source) else None  # the file's source (diffmd/data/sources.py)
        dist, hr = Y.distribution_rows(roll.multi, roll.atomic_numbers, float(roll.dt_fs), int(roll.stride),
                                       horizon, energies)  # fmt: skip
        out["metrics"] += rows + dist
        out["curve"], out["hr"] = curve, hr
        out["n_starts"] = int(len(roll.multi.starts))
        out["starts"] = [int(s) for s in roll.multi.starts]
        out["starts_seconds"] = float(roll.multi.seconds)
        # the starts' reference windows overlap when the test segment is shorter than n_starts windows (the
        # starts are spread as far apart as it allows); the tables say so
        out["start_window_fs"] = float(horizon)
        out["start_spacing_fs"] = float(np.diff(roll.multi.starts).min() * roll.dt_fs) if len(roll.multi.starts) > 1 \
            else None  # fmt: skip
    return out


def summarize(paths: list[str]) -> dict[str, Any]:
    """``{"runs": [{model, seed, armse, armse_unaligned, diverged, path}, ...]}`` of several armse.json."""
    from diffmd.rundir import load_record  # the one reader of armse.json

    runs = []
    for p in paths:
        rec = load_record(p)
        runs.append({k: getattr(rec, k) for k in ("dataset", "molecule", "model", "seed", "source", "armse",
                                                  "armse_unaligned", "diverged")} | {"path": str(p)})  # fmt: skip
    return {"runs": runs}


def main(argv: list[str] | None = None) -> None:
    from diffmd.engine.cli import META_SCHEMA, OneLineArgumentParser, schema_argument, section_argument

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "summarize":
        p = OneLineArgumentParser(prog="diffmd.engine.evaluate summarize")
        p.add_argument("--out", required=True)
        p.add_argument("armse", nargs="+", help="armse.json files")
        a = p.parse_args(argv[1:])
        write_json(a.out, summarize(a.armse))
        return
    p = OneLineArgumentParser(description="ARMSE of a rollout -> armse.json")
    p.add_argument("--rollout", required=True, help="RUNDIR/rollout.npz")
    p.add_argument("--meta", default="{}", help='JSON: {"dataset", "molecule", "model", "seed"}')
    p.add_argument("--rollout-config", default="{}", help="JSON: the config's rollout section (horizons_fs, ...)")
    p.add_argument("--out", required=True, help="RUNDIR/armse.json")
    a = p.parse_args(argv)
    meta = schema_argument(a.meta, "--meta", META_SCHEMA)
    rollout_cfg = section_argument(a.rollout_config, "--rollout-config", "rollout", "train")
    roll = load_rollout(a.rollout)
    rec = evaluate(roll, meta)
    rec.update(yardstick(roll, rollout_cfg))
    if not roll.applicable:  # one-step only: no rollout, no ARMSE (the tables print "-", not NA)
        rec.update(armse=None, armse_unaligned=None, diverged=False, n_frames=0)
    write_record(a.out, rec)
    print(json.dumps({k: rec[k] for k in ("molecule", "model", "armse", "armse_unaligned", "diverged")}))


if __name__ == "__main__":
    import sys

    from diffmd.data.xtb_energy import set_threads
    from diffmd.engine.cli import run_cli  # one-line `error: ...` on bad arguments or input, exit 1

    set_threads(1)  # GFN2-xTB energies on one OpenMP thread (this job imports no torch: diffmd.data.xtb_energy)
    sys.exit(run_cli(main))
