"""A measured probe of models that simulate (issue 24; not the study): train a few variants on one split, roll each
out from several starts for a picosecond with the batched rollout, and judge the simulations against the data and
a GFN2-xTB oracle from the same starts.

Variants (:data:`VARIANTS`, each against its own ablation on the same data and starts): EGNN as the paper's rows
train it, with and without rigid-motion removal; the energy-conserving head (diffmd/models/conservative.py) with its
bond prior as the reference, and one change each (no prior, a stiffer prior, a repulsion wall, training noise, an
unrolled loss, a smaller network, a float64 rollout, a longer training); ``diffmd_energy``; ``diffmd_corrected``
with and without its last-step x̂0 and its 3 Å geometry.

Per variant, the simulation protocol's own metrics (:func:`diffmd.engine.simulate.simulation_metrics` on
:func:`diffmd.engine.rollout.rollout_starts` of its starts, all in one batch: survival under Fu et al.'s 0.5 Å bond
rule, the median time to failure, internal temperature, rigid-body share, the reference potential's energy drift,
pooled h(r)), the strict rule of :mod:`diffmd.reports.validity` beside it (:func:`simulation_metrics` here: every
bond within 10% of the data's mean length), the teacher-forced one-step error on the test frames (RMS per atom, Å),
the energy models' own E + K drift per ps, and the cost per simulated ps of one trajectory (rollout wall clock /
(starts x ps)). The oracle (``--oracle``, default ``xtb_nve``: GFN2-xTB through tblite, one ASE simulation per
start, one OpenMP thread) is judged the same way on ``--oracle-starts`` starts. ``--cost`` times saved checkpoints
against the oracle in turns (the figure to quote on a shared machine). Results: ``probe.json`` (and ``cost.json``)
in ``--out``, a Markdown table on stdout.

Usage (docs/models_that_simulate.md has the command and the measured numbers)::

    python -m benchmarks.simulate_probe --split data/splits/md17/ethanol.json --out results/probe --minutes 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: (label, model, params, train overrides, rollout rigid_motion, rollout dtype); the checkpoint is shared by labels
#: whose (model, params, train) agree. Overrides ``minutes_factor`` (a longer training) and ``set`` (attributes set
#: on the loaded model, e.g. a sampler switch: no training of its own) are the probe's, not the trainer's. Each option
#: against its own ablation: the ``egnn_energy`` row is the reference
#: every ``egnn_energy...`` row changes one thing of.
E = {"hidden": 32, "layers": 3, "bond_prior": True}
#: diffmd_corrected at the quick profile's size (its geometry and sampler: the YAML card's)
DC = {"n_layers": 2, "n_heads": 4, "d_model": 32, "d_ffn": 64, "dropout": 0.0}
VARIANTS: list[tuple[str, str, dict[str, Any], dict[str, Any], str, str]] = [
    ("egnn", "egnn", {"hidden": 32, "layers": 4}, {}, "keep", "float32"),
    ("egnn+rigid", "egnn", {"hidden": 32, "layers": 4}, {}, "remove", "float32"),
    ("egnn_energy", "egnn_energy", E, {}, "keep", "float32"),
    ("egnn_energy+float64", "egnn_energy", E, {}, "keep", "float64"),
    ("egnn_energy-prior", "egnn_energy", {**E, "bond_prior": False}, {}, "keep", "float32"),
    ("egnn_energy+stiff", "egnn_energy", {**E, "bond_k": 0.2}, {}, "keep", "float32"),
    ("egnn_energy+repulsion", "egnn_energy", {**E, "repulsion": True}, {}, "keep", "float32"),
    ("egnn_energy+noise", "egnn_energy", E, {"input_noise": 1e-4}, "keep", "float32"),
    ("egnn_energy+unroll", "egnn_energy", E, {"unroll": 2}, "keep", "float32"),
    ("egnn_energy-small", "egnn_energy", {**E, "hidden": 16, "layers": 2}, {}, "keep", "float32"),
    ("egnn_energy+long", "egnn_energy", E, {"minutes_factor": 3.0}, "keep", "float32"),
    ("egnn_energy-small+long", "egnn_energy", {**E, "hidden": 16, "layers": 2}, {"minutes_factor": 3.0}, "keep",
     "float32"),  # fmt: skip
    ("diffmd_energy", "diffmd_energy", {"bond_prior": True}, {}, "keep", "float32"),
    ("diffmd_energy+long", "diffmd_energy", {"bond_prior": True}, {"minutes_factor": 3.0}, "keep", "float32"),
    ("diffmd_corrected", "diffmd_corrected", DC, {"lr": 2e-3}, "keep", "float32"),
    ("diffmd_corrected-denoise_last", "diffmd_corrected", DC, {"lr": 2e-3, "set": {"denoise_last": False}}, "keep",
     "float32"),  # fmt: skip
    ("diffmd_corrected-wide", "diffmd_corrected", {**DC, "cutoff": 1.6, "n_root": 2}, {"lr": 2e-3}, "keep",
     "float32"),  # fmt: skip
]

#: The simulation protocol's settings (config.yaml ``simulation:``; diffmd/engine/simulate.py) the probe runs.
PROTOCOL = {"n_starts": 32, "length_fs": 1000.0, "bond_deviation_A": 0.5, "energy_frames": 10,
            "hr": {"bins": 500, "r_max_A": 10.0}}  # fmt: skip


# --- metrics on plain arrays ------------------------------------------------------------------------


def validity_mask(frames: np.ndarray, bonds: np.ndarray, ref_lengths: np.ndarray, tolerance: float = 0.10,
                  clash_A: float = 0.7) -> np.ndarray:  # fmt: skip
    """(frames,) bool: finite, every bond within ``tolerance`` of its reference length, no pair closer than
    ``clash_A`` (the rule of :mod:`diffmd.reports.validity`)."""
    from diffmd.reports.validity import bond_lengths, min_pair_distance

    finite = np.isfinite(frames).all(axis=(1, 2))
    safe = np.where(np.isfinite(frames), frames, 0.0)
    ok = (np.abs(bond_lengths(safe, bonds) - ref_lengths) <= tolerance * ref_lengths).all(axis=1)
    return finite & ok & (min_pair_distance(safe) >= clash_A)


def simulation_metrics(trajs: list[np.ndarray], reference: np.ndarray, numbers: np.ndarray, dt_fs: float,
                       ) -> dict[str, Any]:  # fmt: skip
    """Survival, internal temperature and pooled h(r) MAE of trajectories ``trajs`` (each (n+1, atoms, 3) Å, frame 0
    the start) against ``reference`` frames (F, atoms, 3) Å of the data."""
    from diffmd.distributions import hr_mae, kinetic_temperature
    from diffmd.reports.validity import bond_lengths, find_bonds

    bonds = find_bonds(reference[0], numbers)
    ref_len = bond_lengths(reference, bonds).mean(axis=0)
    survived, loose, horizons, temps, pooled = 0, 0, [], [], []
    for traj in trajs:
        valid = validity_mask(traj[1:], bonds, ref_len)
        first = int(np.argmin(valid)) if not valid.all() else len(valid)
        survived += int(first == len(valid))
        # the distributions table's looser rule: finite, every bond shorter than 1.5x its start-frame length
        safe = np.where(np.isfinite(traj[1:]), traj[1:], np.inf)
        loose += int(bool((bond_lengths(safe, bonds) < 1.5 * bond_lengths(traj[:1], bonds)).all()))
        horizons.append(first * dt_fs)
        good = traj[: first + 1]
        if len(good) >= 3:
            temps.append(kinetic_temperature(good, numbers, dt_fs))
        pooled.append(good[1:])
    pooled_frames = np.concatenate(pooled) if pooled else np.empty((0,) + reference.shape[1:])
    temp = np.concatenate(temps) if temps else np.empty(0)
    return {
        "starts": len(trajs),
        "survived": survived,
        "survived_1.5x": loose,
        "median_horizon_fs": float(np.median(horizons)) if horizons else math.nan,
        "internal_temperature_K": float(np.nanmean(temp)) if temp.size else math.nan,
        "hr_mae": hr_mae(pooled_frames, reference) if len(pooled_frames) else math.nan,
        "valid_frames": int(len(pooled_frames)),
    }


def energy_drift(model: Any, traj: np.ndarray, numbers: np.ndarray, dt_fs: float) -> float:
    """|E + K (last tenth) - E + K (first tenth)| of an energy model's own trajectory, kcal/mol per ps (E from the
    model in u Å²/step², K from central-difference velocities)."""
    from diffmd import batch as B
    from diffmd.elements import masses
    from diffmd.graph import bonded_graph
    from diffmd.units import KCAL_MOL_IN_EV, U_A2_PER_FS2_IN_EV

    finite = np.isfinite(traj).all(axis=(1, 2))
    traj = traj[: int(np.argmin(finite)) if not finite.all() else len(traj)]
    if len(traj) < 23:
        return math.nan
    graph = bonded_graph(traj[0], numbers)
    n = len(numbers)
    frames = torch.as_tensor(traj[1:-1], dtype=torch.float32)
    m = len(frames)
    batch = {
        B.POSITIONS: frames.reshape(-1, 3), B.ATOMIC_NUMBERS: torch.as_tensor(np.tile(numbers, m)),
        B.BATCH: torch.arange(m).repeat_interleave(n), B.NUM_ATOMS: torch.full((m,), n),
        B.BOND_INDEX: torch.as_tensor(graph["bond_index"])[:, None, :].expand(2, m, -1).reshape(2, -1)
        + (torch.arange(m) * n).repeat_interleave(graph["bond_index"].shape[1])[None],
    }  # fmt: skip
    with torch.no_grad():
        e = model.energy(batch).double().numpy()  # u Å²/step²
    v = (traj[2:] - traj[:-2]) / 2.0  # Å/step
    k = 0.5 * np.einsum("a,fai->f", masses(numbers), v**2)
    h = (e + k) / dt_fs**2 * U_A2_PER_FS2_IN_EV / KCAL_MOL_IN_EV  # kcal/mol
    tenth = max(len(h) // 10, 1)
    span_ps = (len(h) - tenth) * dt_fs / 1000.0
    return float(abs(h[-tenth:].mean() - h[:tenth].mean()) / span_ps)


# --- the probe ----------------------------------------------------------------------------------------


def train_variant(split: str, model: str, params: dict, overrides: dict, minutes: float, out: Path,
                  seed: int) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Train to a wall-clock budget: the epochs a two-epoch timing says fit in ``minutes`` (times the variant's
    ``minutes_factor``)."""
    from diffmd.engine import train as T

    overrides = dict(overrides)
    minutes *= float(overrides.pop("minutes_factor", 1.0))
    base = {"device": "cpu", "batch_size": 100, "lr": 1e-3, "select_by": "one_step", "val_frames": 200,
            "early_stop_patience": 40, "scheduler": {"patience": 10, "factor": 0.5, "min_lr": 1e-6},
            **overrides}  # fmt: skip
    t0 = time.perf_counter()
    T.train(split, model, params, {**base, "epochs": 2}, seed, out / "timing", final_rollout=False)
    per_epoch = (time.perf_counter() - t0) / 2.0
    epochs = max(5, int(minutes * 60 / per_epoch))
    t0 = time.perf_counter()
    info = T.train(split, model, params, {**base, "epochs": epochs}, seed, out, final_rollout=False)
    return out / "model.pt", {**info, "epochs_budget": epochs, "seconds_per_epoch": per_epoch,
                              "train_seconds": time.perf_counter() - t0}  # fmt: skip


def one_step_error(model: Any, seg: Any, dtype: torch.dtype = torch.float32) -> float:
    from diffmd.engine.rollout import one_step, one_step_frames

    frames = one_step_frames(seg, 200)
    pred = one_step(model, seg, frames, dtype=dtype)
    return float(np.sqrt(((pred - seg.positions[frames + seg.stride]) ** 2).sum(-1).mean()))


def simulate_variant(model: Any, seg: Any, starts: np.ndarray, steps: int, rigid: str, dtype: torch.dtype,
                     reference: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """The simulation protocol's metrics (diffmd.engine.simulate.simulation_metrics: Fu et al.'s 0.5 Å bond rule,
    internal temperature, rigid share, reference-potential energy drift, pooled h(r)) of ``starts`` rolled out
    ``steps`` steps in one batch, plus the strict rule of the validity table and the model's own energy drift."""
    from diffmd.engine.rollout import rollout_starts
    from diffmd.engine.simulate import simulation_metrics as protocol_metrics

    res = rollout_starts(model, seg, starts, steps, 100.0, "cpu", dtype, rigid=rigid)
    rows, extra = protocol_metrics(res.positions, res.diverged_at, seg, int(model.stride), PROTOCOL,
                                   energies=seg.source == "xtb")  # fmt: skip
    ps = steps * float(seg.dt_fs) * int(model.stride) / 1000.0
    out: dict[str, Any] = {r["metric"]: r["value"] for r in rows}
    strict = simulation_metrics(list(res.positions), reference, seg.atomic_numbers, float(seg.dt_fs))
    out.update(starts=len(starts), survived=int(round(out["survival_fraction"] * len(starts))),
               strict_survived=strict["survived"], strict_median_horizon_fs=strict["median_horizon_fs"],
               reference_t_internal_K=extra["reference"]["t_internal_K"], rollout_seconds=res.seconds,
               seconds_per_ps_per_trajectory=res.seconds / (len(starts) * ps),
               rigid_ke_share_rollout=float(np.mean(res.rigid["ke_share"])), rigid_removed=rigid == "remove",
               dtype=str(dtype).replace("torch.", ""))  # fmt: skip
    if hasattr(model, "energy"):
        out["own_energy_drift_kcal_mol_per_ps"] = float(np.nanmedian(
            [energy_drift(model, t, seg.atomic_numbers, float(seg.dt_fs)) for t in res.positions]))  # fmt: skip
    return out


def cost(out: Path, split: str, labels: list[str], starts: int, steps: int, repeats: int, oracle: str,
         oracle_steps: int) -> dict[str, Any]:  # fmt: skip
    """Cost per simulated ps and trajectory, timed in turns (model A, model B, ..., oracle; ``repeats`` rounds) so that
    a shared machine's drift falls on every row alike: each label's checkpoint from an earlier run in ``out`` rolled
    out ``steps`` steps from ``starts`` starts in one batch (the simulation protocol's batching), the oracle
    ``oracle_steps`` steps from one start (it runs one simulation per start: its cost per trajectory does not depend
    on the number of starts). Minimum and median over the rounds."""
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint
    from diffmd.engine.rollout import rollout_starts
    from diffmd.engine.simulate import simulation_starts
    from diffmd.registry import build_model

    seg = split_segments(load_split(split), "test")[0]
    dt = float(seg.dt_fs)
    models = {label: load_checkpoint(out / label / "model.pt", "cpu")[0] for label in labels}
    if oracle:
        models[oracle] = build_model(oracle, {"dt_fs": dt, "temperature_K": float(seg.temperature_K or 500.0)})
    many = simulation_starts(seg, starts)
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(repeats):
        for label, model in models.items():
            n, k = (many[:1], oracle_steps) if label == oracle else (many, steps)
            t0 = time.perf_counter()
            rollout_starts(model, seg, n, k, 100.0, "cpu", torch.float64 if label == oracle else torch.float32)
            times[label].append((time.perf_counter() - t0) / (len(n) * k * dt / 1000.0))
    rows = {label: {"min_s_per_ps": float(np.min(t)), "median_s_per_ps": float(np.median(t)), "rounds": len(t),
                    "starts": 1 if label == oracle else int(len(many)),
                    "steps": oracle_steps if label == oracle else steps} for label, t in times.items()}  # fmt: skip
    if oracle:
        ref = rows[oracle]["median_s_per_ps"]
        for row in rows.values():
            row["xtb_over_model_median"] = ref / row["median_s_per_ps"]
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=1.5, help="training wall clock per trained variant")
    p.add_argument("--starts", type=int, default=PROTOCOL["n_starts"], help="starts, one batch (the protocol's 32)")
    p.add_argument("--length-fs", type=float, default=PROTOCOL["length_fs"])
    p.add_argument("--oracle", default="xtb_nve")
    p.add_argument("--oracle-starts", type=int, default=4)
    p.add_argument("--variants", nargs="*", default=None, help="labels to run (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="roll out the checkpoints an earlier run left in --out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cost", action="store_true", help="only time the --variants' checkpoints in --out against the "
                   "oracle, in turns (cost.json in --out)")  # fmt: skip
    p.add_argument("--cost-steps", type=int, default=200)
    p.add_argument("--cost-repeats", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cost:
        rows = cost(Path(a.out), a.split, a.variants or [], a.starts, a.cost_steps, a.cost_repeats, a.oracle,
                    a.cost_steps)  # fmt: skip
        (Path(a.out) / "cost.json").write_text(json.dumps({"threads": a.threads, "rows": rows}, indent=1))
        print(json.dumps(rows, indent=1))
        return rows
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint
    from diffmd.engine.simulate import model_steps, simulation_starts
    from diffmd.registry import build_model

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / "probe.json").read_text())["rows"] if (out / "probe.json").exists() else {}
    split = load_split(a.split)
    seg = split_segments(split, "test")[0]
    reference = seg.positions[2 * seg.stride :]  # the strict rule's reference: every frame of the trajectory
    starts = simulation_starts(seg, a.starts)
    steps = model_steps(a.length_fs, float(seg.dt_fs), 1)
    rows: dict[str, Any] = dict(previous)
    trained: dict[str, tuple[Path, dict]] = {}
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    for label, name, params, overrides, rigid, dtype in VARIANTS:
        if a.variants and label not in a.variants:
            continue
        overrides = dict(overrides)
        attrs = overrides.pop("set", {})
        key = json.dumps([name, params, overrides], sort_keys=True)
        if key not in trained:
            run = out / label
            if a.reuse and (run / "model.pt").exists():
                trained[key] = run / "model.pt", dict((previous.get(label) or {}).get("train") or {"reused": True})
            else:
                trained[key] = train_variant(a.split, name, params, overrides, a.minutes, run, a.seed)
        ckpt_path, info = trained[key]
        model, _ = load_checkpoint(ckpt_path, "cpu")
        model = model.to(dtypes[dtype])
        for attr, value in attrs.items():
            setattr(model, attr, value)
        row = simulate_variant(model, seg, starts, steps, rigid, dtypes[dtype], reference)
        row.update(one_step_A=one_step_error(model, seg, dtypes[dtype]), train=info, params=params,
                   overrides=overrides, set=attrs)  # fmt: skip
        rows[label] = row
        print(json.dumps({label: row}, default=str), flush=True)
        _write(out, a, starts, steps, rows)
    if a.oracle_starts > 0 and a.oracle:
        oracle = build_model(a.oracle, {"dt_fs": float(seg.dt_fs), "temperature_K": float(seg.temperature_K or 500)})
        o_starts = starts[:: max(1, len(starts) // a.oracle_starts)][: a.oracle_starts]
        row = simulate_variant(oracle, seg, o_starts, steps, "keep", torch.float64, reference)
        row.update(one_step_A=one_step_error(oracle, seg), oracle_starts=o_starts.tolist())
        rows[a.oracle] = row
        print(json.dumps({a.oracle: row}, default=str), flush=True)
    result = _write(out, a, starts, steps, rows)
    print(markdown(result))
    return result


def _write(out: Path, a: argparse.Namespace, starts: np.ndarray, steps: int, rows: dict) -> dict[str, Any]:
    result = {"split": a.split, "starts": starts.tolist(), "steps": steps, "minutes": a.minutes,
              "torch_threads": a.threads, "protocol": PROTOCOL, "rows": rows}  # fmt: skip
    tmp = out / "probe.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(out / "probe.json")
    return result


def markdown(result: dict[str, Any]) -> str:
    cols = ["survived", "strict_survived", "median_ttf_fs", "t_internal_K", "rigid_share", "hr_mae",
            "energy_drift_kcal_mol_atom_per_ps", "own_energy_drift_kcal_mol_per_ps", "one_step_A",
            "seconds_per_ps_per_trajectory"]  # fmt: skip
    lines = ["| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in result["rows"].items():
        cells = []
        for c in cols:
            v = row.get(c)
            if c in ("survived", "strict_survived") and v is not None:
                cells.append(f"{v}/{row['starts']}")
            elif isinstance(v, float):
                cells.append("NA" if not math.isfinite(v) else f"{v:.3g}")
            else:
                cells.append("" if v is None else str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
