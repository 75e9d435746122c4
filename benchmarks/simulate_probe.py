"""A measured probe of models that simulate (issue 24; not the study): train a few variants on one split, roll each
out from several starts for a picosecond with the batched rollout, and judge the simulations against the data and
a GFN2-xTB oracle from the same starts.

Variants (each against its own ablation on the same data and starts):

* ``egnn``: EGNN as the paper's rows train it (no option);
* ``egnn+rigid``: the same checkpoint, rolled out with ``rollout.rigid_motion: remove``;
* ``egnn+noise``: EGNN trained with ``train.input_noise`` (diffmd/engine/objectives.py);
* ``egnn+unroll``: EGNN trained with ``train.unroll`` (the pushforward loss);
* ``egnn_energy``: the energy-conserving head with its harmonic bond prior (diffmd/models/conservative.py);
* ``egnn_energy-prior``: the same without the prior;
* ``diffmd_energy``: DiffMD's EGT as the energy (SBF to 3 Å), with the bond prior.

Per variant: survival (starts whose every frame keeps every bond within the validity rule of
:mod:`diffmd.reports.validity`: 10% of the data's mean length, no clash under 0.7 Å; and the median time to the
first invalid frame), internal temperature (:func:`diffmd.distributions.kinetic_temperature`, centre-of-mass and
rotation removed, over the valid frames), the rigid-body share of the steps' kinetic energy (measured by the
rollout, :mod:`diffmd.engine.rigid`), pooled h(r) MAE against the data's frames
(:func:`diffmd.distributions.hr_mae`) over the valid frames (the reference: every frame of the trajectory), the
teacher-forced one-step error on the test frames (RMS per atom, Å), the energy drift of
energy models (their own E + K, per ps), and the cost per simulated ps of one trajectory with the starts batched
(rollout wall clock / (starts x ps)). The oracle (``--oracle``, default ``xtb_nve``: GFN2-xTB through tblite, one
ASE simulation per start, one OpenMP thread) is judged the same way on ``--oracle-starts`` starts.

The functions :func:`simulation_metrics` and :func:`validity_mask` take plain arrays, so a simulation protocol can
reuse them. Results: a JSON file (``--out``/probe.json) and a Markdown table on stdout.

Usage (docs/models_that_simulate.md has the command and the measured numbers)::

    python -m benchmarks.simulate_probe --split data/splits/md17/ethanol.json --out results/probe --minutes 3
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

#: (label, model, params, train overrides, rollout rigid_motion); the checkpoint is shared by labels whose
#: (model, params, train) agree.
VARIANTS: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("egnn", "egnn", {"hidden": 32, "layers": 4}, {}, "keep"),
    ("egnn+rigid", "egnn", {"hidden": 32, "layers": 4}, {}, "remove"),
    ("egnn+noise", "egnn", {"hidden": 32, "layers": 4}, {"input_noise": 5e-4}, "keep"),
    ("egnn+unroll", "egnn", {"hidden": 32, "layers": 4}, {"unroll": 4}, "keep"),
    ("egnn_energy", "egnn_energy", {"hidden": 32, "layers": 3, "bond_prior": True}, {}, "keep"),
    ("egnn_energy-prior", "egnn_energy", {"hidden": 32, "layers": 3, "bond_prior": False}, {}, "keep"),
    ("diffmd_energy", "diffmd_energy", {"bond_prior": True}, {}, "keep"),
]


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
    """Train to a wall-clock budget: the epochs a one-epoch timing says fit in ``minutes``."""
    from diffmd.engine import train as T

    base = {"device": "cpu", "batch_size": 100, "lr": 1e-3, "select_by": "one_step", "val_frames": 200,
            "early_stop_patience": 40, "scheduler": {"patience": 10, "factor": 0.5, "min_lr": 1e-6},
            **overrides}  # fmt: skip
    t0 = time.perf_counter()
    T.train(split, model, params, {**base, "epochs": 2}, seed, out / "timing", final_rollout=False)
    per_epoch = (time.perf_counter() - t0) / 2.0
    epochs = max(5, int(minutes * 60 / per_epoch))
    t0 = time.perf_counter()
    info = T.train(split, model, params, {**base, "epochs": epochs}, seed, out, final_rollout=False)
    return out / "model.pt", {**info, "epochs_budget": epochs, "train_seconds": time.perf_counter() - t0}


def rollout_variant(model: Any, seg: Any, starts: np.ndarray, steps: int, rigid: str) -> tuple[list, Any]:
    from diffmd.engine.rollout import rollout_copies

    res = rollout_copies(model, [seg] * len(starts), starts, steps, 100.0, "cpu", rigid=rigid)
    return res.positions, res


def one_step_error(model: Any, seg: Any) -> float:
    from diffmd.engine.rollout import one_step, one_step_frames

    frames = one_step_frames(seg, 200)
    pred = one_step(model, seg, frames)
    return float(np.sqrt(((pred - seg.positions[frames + seg.stride]) ** 2).sum(-1).mean()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=3.0, help="training wall clock per trained variant")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000, help="model steps per start (2000 x 0.5 fs = 1 ps)")
    p.add_argument("--oracle", default="xtb_nve")
    p.add_argument("--oracle-starts", type=int, default=4)
    p.add_argument("--variants", nargs="*", default=None, help="labels to run (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="roll out the checkpoints an earlier run left in --out")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.common import load_checkpoint
    from diffmd.registry import build_model

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split(a.split)
    seg = split_segments(split, "test")[0]
    reference = seg.positions[2 * seg.stride :]  # the data's distribution: every frame of the trajectory
    numbers, dt = seg.atomic_numbers, seg.dt_fs
    starts = np.unique(np.linspace(seg.start, seg.stop - 1, a.starts).round().astype(np.int64))
    ps = a.steps * dt / 1000.0
    rows: dict[str, Any] = {"data": simulation_metrics([seg.positions[s : s + a.steps + 1] for s in starts
                                                        if s + a.steps < len(seg.positions)] or [reference],
                                                       reference, numbers, dt)}  # fmt: skip
    rows["data"]["note"] = ("the data's own frames from the starts where the trajectory holds the horizon, else the "
                            "whole trajectory: h(r)'s floor against itself is 0, so the finite-sample floor shows "
                            "in the oracle's row")  # fmt: skip
    trained: dict[str, tuple[Path, dict]] = {}
    for label, name, params, overrides, rigid in VARIANTS:
        if a.variants and label not in a.variants:
            continue
        key = json.dumps([name, params, overrides], sort_keys=True)
        if key not in trained:
            run = out / label
            if a.reuse and (run / "model.pt").exists():
                trained[key] = run / "model.pt", {"reused": str(run / "model.pt")}
            else:
                trained[key] = train_variant(a.split, name, params, overrides, a.minutes, run, a.seed)
        ckpt_path, info = trained[key]
        model, _ = load_checkpoint(ckpt_path, "cpu")
        trajs, res = rollout_variant(model, seg, starts, a.steps, rigid)
        row = simulation_metrics(trajs, reference, numbers, dt)
        row.update(one_step_A=one_step_error(model, seg), rollout_seconds=res.seconds,
                   seconds_per_ps_per_trajectory=res.seconds / (len(starts) * ps),
                   rigid_ke_share=float(np.mean(res.rigid["ke_share"])),
                   rigid_removed=rigid == "remove", train=info)  # fmt: skip
        if hasattr(model, "energy"):
            row["energy_drift_kcal_mol_per_ps"] = float(np.nanmedian([energy_drift(model, t, numbers, dt)
                                                                       for t in trajs]))  # fmt: skip
        rows[label] = row
        print(json.dumps({label: row}, default=str), flush=True)
    if a.oracle_starts > 0 and a.oracle:
        oracle = build_model(a.oracle, {"dt_fs": dt, "temperature_K": float(seg.temperature_K or 500.0)})
        o_starts = starts[:: max(1, len(starts) // a.oracle_starts)][: a.oracle_starts]
        trajs, res = rollout_variant(oracle, seg, o_starts, a.steps, "keep")
        row = simulation_metrics(trajs, reference, numbers, dt)
        row.update(one_step_A=one_step_error(oracle, seg), rollout_seconds=res.seconds,
                   seconds_per_ps_per_trajectory=res.seconds / (len(o_starts) * ps),
                   rigid_ke_share=float(np.mean(res.rigid["ke_share"])))  # fmt: skip
        rows[a.oracle] = row
        print(json.dumps({a.oracle: row}, default=str), flush=True)
    result = {"split": a.split, "starts": starts.tolist(), "steps": a.steps, "dt_fs": dt, "minutes": a.minutes,
              "torch_threads": a.threads, "rows": rows}  # fmt: skip
    (out / "probe.json").write_text(json.dumps(result, indent=1, default=str))
    print(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    cols = ["survived", "survived_1.5x", "median_horizon_fs", "internal_temperature_K", "rigid_ke_share", "hr_mae",
            "one_step_A", "energy_drift_kcal_mol_per_ps", "seconds_per_ps_per_trajectory"]  # fmt: skip
    lines = ["| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in result["rows"].items():
        cells = []
        for c in cols:
            v = row.get(c)
            if c.startswith("survived") and v is not None:
                cells.append(f"{v}/{row['starts']}")
            elif isinstance(v, float):
                cells.append("NA" if not math.isfinite(v) else f"{v:.3g}")
            else:
                cells.append("" if v is None else str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
