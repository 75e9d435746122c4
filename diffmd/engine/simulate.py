"""Simulations at the field's scale (picoseconds, many starts) and proper scores of stochastic models.

A dynamics model is a simulator: besides its error over a few steps it is judged by what a molecular
dynamics practitioner checks on a simulation (docs/simulation.md; Fu et al. 2023, "Forces are not Enough:
Benchmark and Critical Evaluation for Machine Learning Force Fields with Molecular Simulations", TMLR):

* **survival**: a start *fails* at the first frame where any covalent bond's length r deviates from its
  reference length r0 by more than ``bond_deviation_A`` (Fu et al.'s rule |r - r0| > Δ, Δ = 0.5 Å for MD17;
  bonds are the pairs within 1.2 x the sum of covalent radii on the test segment's first frame, r0 their
  mean over the test segment), or where its rollout diverged (NaN/inf, an atom beyond the divergence bound).
  The survival curve is the fraction of starts not failed by time t; the median time to failure is the
  first time the curve is at or below 1/2, *censored* at the simulation length when more than half survive;
* **kinetic energy split**: velocities by central differences of the frames, masses from
  :mod:`diffmd.elements`; per frame the kinetic energy of the centre-of-mass translation, of the rigid-body
  rotation (omega = I^-1 L about the centre of mass) and the rest (internal, vibrational). The internal
  kinetic temperature is 2 KE_int / ((3N - 6) k_B); the rigid-body share is (KE_trans + KE_rot) / KE over
  all frames of a start (a thermostatted molecule with fixed centre of mass has ~3/(3N-3) of it in rotation);
* **reference potential** (``xtb`` source): GFN2-xTB energies of ``energy_frames`` evenly spaced frames per
  start (a subsample: a call costs milliseconds), its excess over the test segment's frames and its drift
  (least-squares slope) per ps, per atom; only frames before the start failed count;
* **structure**: h(r) MAE (Fu et al.'s distance metric) and the bond-length and bond-angle Wasserstein-1
  (:mod:`diffmd.distributions`), of the frames of *all* starts before they failed pooled, against the test
  segment's frames.

Proper scores (:mod:`diffmd.scores`): for ``scores.n_starts`` of the starts, K = ``scores.samples`` copies of
the model run ``scores.horizon_fs``; their end frames are scored against the reference ensemble of M =
``scores.ensemble`` physics re-simulations from the same start (the ``ensemble`` role: the reference
potential in the data's Langevin bath) that share what the model conditions on
(:attr:`diffmd.registry.TrajectoryModel.conditions_on`): ``xv`` models against re-simulations from the data's
x(t) and v(t) (the bath's noise alone differs), ``x`` models against re-simulations from x(t) with
Maxwell-Boltzmann velocities at the bath temperature. A deterministic model's K copies coincide: the same
columns then score a point mass.

CLI::

    python -m diffmd.engine.simulate run --split SPLIT.json --checkpoint model.pt [--target ISO]
        --simulation-config JSON [--ensemble ENSEMBLE.npz] --seed N --out RUN/simulation.json
    python -m diffmd.engine.simulate ensemble --split SPLIT.json --checkpoint ENSEMBLE_MODEL/model.pt
        [--target ISO] --simulation-config JSON --seed N --out ensemble.npz

The rollouts are the engine's batched multi-start rollouts (:func:`diffmd.engine.rollout.rollout_starts` and
:func:`~diffmd.engine.rollout.rollout_copies`: all starts, or all copies, one batch per step, divergence kept
on the device): a diverged start is a failure at its divergence time, never a crash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffmd import distributions as D
from diffmd.elements import masses
from diffmd.graph import find_bonds
from diffmd.units import KB_EV_PER_K, U_A2_PER_FS2_IN_EV

#: The metrics of ``simulation.json`` (rows as the yardstick's: value, interval over starts, n), in table order.
SIMULATION_METRICS = (
    "survival_fraction", "median_ttf_fs", "t_internal_K", "rigid_share", "energy_excess_kcal_mol_atom",
    "energy_drift_kcal_mol_atom_per_ps", "hr_mae", "bond_w1", "angle_w1",
)  # fmt: skip
#: The proper scores' metrics (one start's value each; interval over the scored starts).
SCORE_METRICS = ("energy_score", "energy_score_ideal", "crps", "energy_distance", "energy_distance_null")
#: Reference rows computed from the test segment's own frames (what a model's row is read against).
REFERENCE_KEYS = ("t_internal_K", "rigid_share")


# --- definitions (pure numpy, tested) ------------------------------------------------------------------


def unique_bonds(positions: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Covalent bonds (n, 2), i < j, of one frame (:func:`diffmd.graph.find_bonds`)."""
    b = find_bonds(np.asarray(positions, dtype=np.float64), np.asarray(numbers))
    b = b[:, b[0] < b[1]]
    return b.T.copy()


def failure_frames(positions: np.ndarray, pairs: np.ndarray, r0: np.ndarray, delta_A: float,
                   diverged_at: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Per start, the first frame (>= 1) where a bond deviates from ``r0`` by more than ``delta_A`` Å or a
    coordinate is not finite; -1 for a start that survives every frame (censored).

    ``positions`` (M, n+1, atoms, 3) Å, frame 0 the start; ``pairs`` (b, 2); ``r0`` (b,) Å; ``diverged_at`` (M,)
    the rollout's divergence step (-1 none), a failure at that frame whatever the bonds say."""
    x = np.asarray(positions, dtype=np.float64)
    m, n1 = x.shape[:2]
    with np.errstate(invalid="ignore"):
        r = np.linalg.norm(x[:, :, pairs[:, 0]] - x[:, :, pairs[:, 1]], axis=-1)  # (M, n+1, b)
        bad = ~np.isfinite(x).all(axis=(2, 3))
        if len(pairs):
            bad |= ~(np.abs(r - r0[None, None, :]) <= float(delta_A)).all(axis=-1)
    bad[:, 0] = False
    out = np.where(bad.any(axis=1), bad.argmax(axis=1), -1).astype(np.int64)
    if diverged_at is not None:
        div = np.asarray(diverged_at, dtype=np.int64)
        hit = div >= 0
        out = np.where(hit & ((out < 0) | (div < out)), div, out)
    return out


def survival_curve(failed_at: np.ndarray, n_frames: int) -> np.ndarray:
    """Fraction of starts not failed at each frame 0..``n_frames`` (a failure at frame f counts from f on)."""
    f = np.asarray(failed_at, dtype=np.int64)
    t = np.arange(n_frames + 1)
    alive = (f[:, None] < 0) | (f[:, None] > t[None, :])
    return alive.mean(axis=0)


def median_time_to_failure(failed_at: np.ndarray, n_frames: int, frame_fs: float) -> tuple[float, bool]:
    """(median time to failure in fs, censored): the first time the survival curve is <= 1/2; with more than
    half of the starts surviving the whole run it is censored at the length (``n_frames`` x ``frame_fs``)."""
    s = survival_curve(failed_at, n_frames)
    below = np.nonzero(s <= 0.5)[0]
    if below.size == 0:
        return float(n_frames * frame_fs), True
    return float(below[0] * frame_fs), False


def kinetic_split(positions: np.ndarray, numbers: np.ndarray, frame_fs: float) -> dict[str, np.ndarray]:
    """Kinetic energy (eV) per interior frame of one trajectory (frames, atoms, 3) Å spaced ``frame_fs``:
    ``total``, ``translation`` (centre of mass), ``rotation`` (rigid body about the centre of mass) and
    ``internal`` (the rest), from central-difference velocities; ``t_internal_K`` = 2 KE_int / ((3N-6) k_B).
    Frames without finite neighbours are NaN."""
    x = np.asarray(positions, dtype=np.float64)
    m = masses(numbers)
    n_atoms = x.shape[1]
    if x.shape[0] < 3:
        empty = np.zeros(0)
        return {k: empty for k in ("total", "translation", "rotation", "internal", "t_internal_K")}
    v = (x[2:] - x[:-2]) / (2.0 * frame_fs)  # Å/fs at frames 1 .. F-2
    r = x[1:-1]
    mt = m.sum()
    com_r = np.einsum("a,fai->fi", m, r) / mt
    com_v = np.einsum("a,fai->fi", m, v) / mt
    rr, vv = r - com_r[:, None], v - com_v[:, None]
    total = 0.5 * np.einsum("a,fai,fai->f", m, v, v)
    trans = 0.5 * mt * np.einsum("fi,fi->f", com_v, com_v)
    ang = np.einsum("a,fai->fi", m, np.cross(rr, vv))
    r2 = np.einsum("fai,fai->fa", rr, rr)
    inertia = np.einsum("a,fa->f", m, r2)[:, None, None] * np.eye(3) - np.einsum("a,fai,faj->fij", m, rr, rr)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(inertia).all(axis=(1, 2))
        omega = np.full_like(ang, np.nan)
        if ok.any():
            omega[ok] = np.einsum("fij,fj->fi", np.linalg.pinv(inertia[ok], hermitian=True), ang[ok])
        rot = 0.5 * np.einsum("fi,fi->f", omega, ang)
        internal = total - trans - rot
    conv = U_A2_PER_FS2_IN_EV
    total, trans, rot, internal = total * conv, trans * conv, rot * conv, internal * conv
    dof = max(1, 3 * n_atoms - 6) if n_atoms > 2 else 1
    return {"total": total, "translation": trans, "rotation": rot, "internal": internal,
            "t_internal_K": 2.0 * internal / (dof * KB_EV_PER_K)}  # fmt: skip


#: Below this kinetic temperature (K, all 3N-3 degrees of freedom) a trajectory barely moves (a model that stands
#: still, in float32 round-off): it has no meaningful rigid-body share (NaN).
STILL_K = 1.0


def rigid_share(split: dict[str, np.ndarray], n_atoms: int | None = None) -> float:
    """(KE_translation + KE_rotation) / KE over the finite frames of one :func:`kinetic_split`; NaN for a trajectory
    whose mean kinetic temperature is below :data:`STILL_K` (``n_atoms`` given)."""
    tot = split["total"]
    ok = np.isfinite(tot) & np.isfinite(split["rotation"])
    if not ok.any() or tot[ok].sum() <= 0:
        return float("nan")
    if n_atoms is not None and 2 * tot[ok].mean() / (max(1, 3 * n_atoms - 3) * KB_EV_PER_K) < STILL_K:
        return float("nan")
    return float((split["translation"][ok] + split["rotation"][ok]).sum() / tot[ok].sum())


def mean_finite(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def slope_per_ps(t_fs: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against time, per ps (NaN with fewer than 2 finite points)."""
    t, v = np.asarray(t_fs, dtype=np.float64), np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(t[ok] / 1000.0, v[ok], 1)[0])


def maxwell_boltzmann(numbers: np.ndarray, temperature_K: float, rng: np.random.Generator) -> np.ndarray:
    """Velocities (atoms, 3) Å/fs drawn at ``temperature_K`` (each component N(0, k_B T / m)), centre-of-mass
    velocity removed (the data's simulations fix the centre of mass)."""
    m = masses(numbers)
    sigma = np.sqrt(KB_EV_PER_K * float(temperature_K) / (m * U_A2_PER_FS2_IN_EV))
    v = rng.standard_normal((len(m), 3)) * sigma[:, None]
    return v - (m[:, None] * v).sum(0) / m.sum()


# --- the protocol ----------------------------------------------------------------------------------------


def simulation_starts(seg: Any, n_starts: int) -> np.ndarray:
    """``n_starts`` start frames spread evenly over the test segment (each has its 2-frame history)."""
    frames = seg.frames()
    idx = np.unique(np.linspace(0, len(frames) - 1, max(1, int(n_starts))).round().astype(np.int64))
    return frames[idx]


def model_steps(fs: float, frame_fs: float, stride: int) -> int:
    """Model steps covering ``fs`` (at least one)."""
    return max(1, int(round(float(fs) / (float(frame_fs) * int(stride)))))


def reference_frames(seg: Any, stride: int, limit: int = 4000) -> np.ndarray:
    """The test segment's frames at the model's frame spacing (every ``stride``-th), at most ``limit``."""
    x = seg.positions[seg.start : seg.stop + 1 : int(stride)]
    if len(x) > limit:
        x = x[np.unique(np.linspace(0, len(x) - 1, limit).round().astype(np.int64))]
    return np.asarray(x, dtype=np.float64)


def survival_row(survived: np.ndarray, length_fs: float, n_diverged: int, level: float = 0.95) -> dict[str, Any]:
    """The survival fraction of ``survived`` (one 0/1 per start) with a Wilson score interval (a proportion's
    interval stays inside [0, 1]; a Student t interval on 0/1 values does not, and is degenerate at 0 or 1)."""
    from scipy.stats import binomtest

    from diffmd.engine.yardstick import row

    s = np.asarray(survived, dtype=np.float64).reshape(-1)
    r = row("survival_fraction", length_fs, s, "", n_diverged)
    n, k = int(s.size), int(round(float(s.sum())))
    if n:
        ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
        r.update(ci_low=float(ci.low), ci_high=float(ci.high), ci_method="Wilson", ci_n=n)
    return r


def simulation_metrics(positions: np.ndarray, diverged_at: np.ndarray, seg: Any, stride: int, cfg: dict[str, Any],
                       energies: bool) -> tuple[list[dict], dict[str, Any]]:  # fmt: skip
    """The rows and curves of one model's simulations ``positions`` (M, n+1, atoms, 3) Å from the test segment
    ``seg`` (frames ``stride`` x ``seg.dt_fs`` apart); ``energies``: compute the reference potential's."""
    from diffmd.engine.yardstick import row

    numbers = np.asarray(seg.atomic_numbers)
    frame_fs = float(seg.dt_fs) * int(stride)
    m, n1 = positions.shape[:2]
    length = (n1 - 1) * frame_fs
    ref = reference_frames(seg, stride)
    pairs = unique_bonds(seg.positions[seg.start], numbers)
    r0 = np.linalg.norm(ref[:, pairs[:, 0]] - ref[:, pairs[:, 1]], axis=-1).mean(axis=0)
    failed = failure_frames(positions, pairs, r0, float(cfg["bond_deviation_A"]), diverged_at)
    n_div = int((np.asarray(diverged_at) >= 0).sum())
    survived = (failed < 0).astype(float)
    med, censored = median_time_to_failure(failed, n1 - 1, frame_fs)
    stable_until = np.where(failed < 0, n1, failed)  # frames [0, stable_until) before the failure
    rows = [survival_row(survived, length, n_div)]
    r = row("median_ttf_fs", length, [med], "fs", n_div, m)
    r.update(ci_low=None, ci_high=None, ci_method="", ci_n=0, censored=bool(censored))
    rows.append(r)
    t_int, share = [], []
    t_curve = np.full((m, n1), np.nan)
    for i in range(m):
        x = positions[i, : stable_until[i]]
        ks = kinetic_split(x, numbers, frame_fs)
        t_int.append(mean_finite(ks["t_internal_K"]))
        share.append(rigid_share(ks, len(numbers)))
        t_curve[i, 1 : 1 + len(ks["t_internal_K"])] = ks["t_internal_K"]
    rows += [row("t_internal_K", length, t_int, "K", n_div), row("rigid_share", length, share, "", n_div)]
    ref_split = kinetic_split(ref, numbers, frame_fs)
    reference = {"t_internal_K": mean_finite(ref_split["t_internal_K"]),
                 "rigid_share": rigid_share(ref_split, len(numbers)), "frames": int(len(ref))}  # fmt: skip
    curves: dict[str, Any] = {"t_fs": (frame_fs * np.arange(n1)).tolist(),
                              "survival": survival_curve(failed, n1 - 1).tolist(),
                              "t_internal_K": _list(_column_means(t_curve))}  # fmt: skip
    excess, drift = [np.nan] * m, [np.nan] * m
    n_e = int(cfg.get("energy_frames", 0))
    if energies and n_e > 0:
        from diffmd.data.xtb_energy import reference_energies

        ref_idx = np.unique(np.linspace(0, len(ref) - 1, n_e).round().astype(np.int64))
        e_ref = reference_energies(ref[ref_idx], numbers) / len(numbers)
        e_t, e_v = [], []
        for i in range(m):  # n_e frames spread over each start's stable part
            use = np.unique(np.linspace(0, stable_until[i] - 1, n_e).round().astype(np.int64))
            e = reference_energies(positions[i, use], numbers) / len(numbers)
            e_t.append((use * frame_fs).tolist())
            e_v.append(_list(e))
            excess[i] = mean_finite(e) - mean_finite(e_ref)
            drift[i] = slope_per_ps(use * frame_fs, e)
        curves["energy_t_fs"], curves["energy_kcal_mol_atom"] = e_t, e_v
        reference["energy_kcal_mol_atom"] = mean_finite(e_ref)
    n_e_rows = m if energies and n_e > 0 else 0
    rows += [row("energy_excess_kcal_mol_atom", length, excess, "kcal/mol/atom", n_div, n_e_rows),
             row("energy_drift_kcal_mol_atom_per_ps", length, drift, "kcal/mol/atom/ps", n_div, n_e_rows)]  # fmt: skip
    pooled = np.concatenate([positions[i, : stable_until[i]] for i in range(m)], axis=0)
    pooled = D.finite_frames(pooled) if len(pooled) else pooled
    hr_cfg = cfg.get("hr") or {}
    pooled_rows = {"hr_mae": np.nan, "bond_w1": np.nan, "angle_w1": np.nan}
    if len(pooled) >= 2:
        bond_index = np.concatenate([pairs.T, pairs.T[::-1]], axis=1)
        pooled_rows["hr_mae"] = D.hr_mae(pooled, ref, n_bins=int(hr_cfg.get("bins", D.N_BINS)),
                                         r_max=float(hr_cfg.get("r_max_A", D.R_MAX)))  # fmt: skip
        pooled_rows["bond_w1"] = D.bond_length_w1(pooled, ref, numbers, bond_index)["mean"]
        pooled_rows["angle_w1"] = D.angle_w1(pooled, ref, numbers, bond_index)["mean"]
    units = {"hr_mae": "", "bond_w1": "Å", "angle_w1": "deg"}
    for key, value in pooled_rows.items():
        r = row(key, length, [value], units[key], n_div, m)
        r.update(ci_low=None, ci_high=None, ci_method="pooled", ci_n=int(len(pooled)))
        rows.append(r)
    extra = {"failed_at": failed.tolist(), "censored_median": bool(censored), "reference": reference,
             "bond_deviation_A": float(cfg["bond_deviation_A"]), "n_bonds": int(len(pairs)),
             "pooled_frames": int(len(pooled))}  # fmt: skip
    return rows, {"curves": curves, **extra}


def score_rows(samples: np.ndarray, ensemble: np.ndarray, horizon_fs: float, seed: int = 0) -> list[dict]:
    """Proper-score rows: ``samples`` (S, K, atoms, 3) model end frames (NaN where a copy diverged), ``ensemble``
    (S, M, atoms, 3) the physics re-simulations from the same starts. Interval over the S starts."""
    from diffmd import scores as P
    from diffmd.engine.yardstick import row

    rng = np.random.default_rng(seed)
    vals: dict[str, list[float]] = {k: [] for k in SCORE_METRICS}
    n_bad = 0
    for s in range(samples.shape[0]):
        x = samples[s][np.isfinite(samples[s]).all(axis=(1, 2))]
        y = ensemble[s][np.isfinite(ensemble[s]).all(axis=(1, 2))]
        half = len(y) // 2
        vals["energy_score_ideal"].append(P.energy_score(y[:half], y[half:]) if half >= 1 else np.nan)
        vals["energy_distance_null"].append(P.split_half_null(y, rng) if len(y) >= 4 else np.nan)
        if len(x) == 0 or len(y) == 0:
            n_bad += 1
            for k in ("energy_score", "crps", "energy_distance"):
                vals[k].append(np.nan)
            continue
        vals["energy_score"].append(P.energy_score(x, y))
        vals["crps"].append(P.crps(x, y))
        vals["energy_distance"].append(P.energy_distance(x, y))
    return [row(k, horizon_fs, v, "Å", n_bad if k in ("energy_score", "crps", "energy_distance") else 0)
            for k, v in vals.items()]  # fmt: skip


# --- running a model -------------------------------------------------------------------------------------


def _rollout_cfg() -> dict[str, Any]:
    from diffmd.config import section_defaults

    return section_defaults("rollout")


def simulate(model: Any, seg: Any, cfg: dict[str, Any], device: Any = "cpu",
             ensemble: dict[str, np.ndarray] | None = None, seed: int = 0,
             rigid: str = "keep") -> dict[str, Any]:  # fmt: skip
    """The ``simulation.json`` record of ``model`` on the test segment ``seg`` (module docstring); ``rigid``: the
    row's ``rollout.rigid_motion`` (``remove``: the rigid-body part of every step taken out, as in its rollouts)."""
    from diffmd.engine.rollout import rollout_starts

    k = int(model.stride)
    frame_fs = float(seg.dt_fs) * k
    bound = float(_rollout_cfg()["divergence_bound_A"])
    starts = simulation_starts(seg, int(cfg["n_starts"]))
    steps = model_steps(float(cfg["length_fs"]), float(seg.dt_fs), k)
    out: dict[str, Any] = {"stride": k, "dt_fs": float(seg.dt_fs), "step_fs": frame_fs, "starts": starts.tolist(),
                           "n_starts": int(len(starts)), "steps": steps, "length_fs": steps * frame_fs,
                           "applicable": bool(model.can_rollout), "metrics": [], "conditions_on": None}  # fmt: skip
    spacing = float(np.diff(starts).min() * seg.dt_fs) if len(starts) > 1 else None
    out["start_spacing_fs"] = spacing
    if not model.can_rollout:
        return out
    if rigid != "keep":  # the row's own rollout setting (diffmd.engine.rigid); the paper's protocol keeps it
        out["rigid_motion"] = rigid
    t0 = time.perf_counter()
    print(f"simulation: {len(starts)} starts x {steps} steps ({steps * frame_fs:g} fs), batched", flush=True)
    multi = rollout_starts(model, seg, starts, steps, bound, device, rigid=rigid)
    out["seconds"] = time.perf_counter() - t0
    out["diverged_at"] = [int(d) for d in multi.diverged_at]
    rows, extra = simulation_metrics(multi.positions, multi.diverged_at, seg, k, cfg, energies=seg.source == "xtb")
    out["energy_frames"] = int(cfg.get("energy_frames", 0)) if seg.source == "xtb" else 0
    out["metrics"] = rows
    out.update(extra)
    sc = cfg.get("scores") or {}
    out["conditions_on"] = getattr(model, "conditions_on", "xv")
    out["scores_note"] = ""
    if ensemble is None:
        out["scores_note"] = "no reference ensemble (no ensemble-role model or no reference potential)"
        return out
    tau = float(ensemble["horizon_fs"])
    tau_steps = tau / frame_fs
    if abs(tau_steps - round(tau_steps)) > 1e-6 or round(tau_steps) < 1:
        out["scores_note"] = f"the model's step ({frame_fs:g} fs) does not divide the scoring horizon ({tau:g} fs)"
        return out
    key = "mb" if out["conditions_on"] == "x" else "data_v"
    score_starts = np.asarray(ensemble["starts"], dtype=np.int64)
    n_samples = int(sc.get("samples", 8))
    t1 = time.perf_counter()
    res = rollout_starts(model, seg, np.repeat(score_starts, n_samples), int(round(tau_steps)), bound, device,
                         rigid=rigid)  # fmt: skip
    samples = res.positions[:, -1].reshape(len(score_starts), n_samples, seg.n_atoms, 3)
    out["metrics"] += score_rows(samples, np.asarray(ensemble[key]), tau, seed)
    out["scores_seconds"] = time.perf_counter() - t1
    out["scores_ensemble"] = key
    out["score_samples"] = n_samples
    out["score_ensemble_size"] = int(np.asarray(ensemble[key]).shape[1])
    spread = float(np.nanstd(samples, axis=1).mean())
    out["sample_spread_A"] = spread if np.isfinite(spread) else None
    return out


def build_ensemble(model: Any, seg: Any, cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """The reference ensemble of ``scores.ensemble`` physics re-simulations (``model``: an ``ensemble``-role
    simulator, one frame per step) from each of the first ``scores.n_starts`` simulation starts, over
    ``scores.horizon_fs``: ``data_v`` from the data's x(t), v(t) (the bath's noise differs per member), ``mb``
    from x(t) with Maxwell-Boltzmann velocities at the bath temperature; (S, M, atoms, 3) end frames each."""
    from diffmd.data.pairs import Segment
    from diffmd.engine.rollout import rollout_copies, rollout_starts

    sc = cfg["scores"]
    starts = simulation_starts(seg, int(cfg["n_starts"]))[: int(sc["n_starts"])]
    size = int(sc["ensemble"])
    tau = float(sc["horizon_fs"])
    steps = model_steps(tau, float(seg.dt_fs), int(model.stride))
    h = float(seg.dt_fs) * int(model.stride)
    bound = float(_rollout_cfg()["divergence_bound_A"])
    print(f"ensemble: {len(starts)} starts x {size} members x {steps} steps, two conditionings", flush=True)
    if hasattr(model, "seed"):  # the members' noise: a stream of their own, never the scored model's copies'
        model.seed = int(np.random.SeedSequence([int(seed), 23, int(model.seed)]).generate_state(1)[0])
    data_v = rollout_starts(model, seg, np.repeat(starts, size), steps, bound).positions[:, -1]
    rng = np.random.default_rng([int(seed), 7])
    temperature = float(seg.temperature_K) or float(getattr(model, "temperature_K", 0.0))
    segs = []
    for s in starts:
        x = np.asarray(seg.positions[s], dtype=np.float64)
        for _ in range(size):
            v = maxwell_boltzmann(seg.atomic_numbers, temperature, rng) * h
            frames = np.stack([x - 2 * v, x - v, x, x])
            segs.append(Segment(name=seg.name, positions=frames, atomic_numbers=seg.atomic_numbers, start=2, stop=3,
                                stride=1, dt_fs=h, source=seg.source, graph=seg.graph,
                                temperature_K=seg.temperature_K))  # fmt: skip
    mb = np.stack(rollout_copies(model, segs, np.full(len(segs), 2), steps, bound).positions)[:, -1]
    shape = (len(starts), size, seg.n_atoms, 3)
    return {"starts": starts, "horizon_fs": np.float64(steps * h), "data_v": data_v.reshape(shape),
            "mb": mb.reshape(shape), "temperature_K": np.float64(temperature)}  # fmt: skip


def _column_means(a: np.ndarray) -> np.ndarray:
    """Mean over the finite entries of each column of ``a`` (M, n); NaN for a column with none."""
    ok = np.isfinite(a)
    counts = ok.sum(axis=0)
    return np.where(counts > 0, np.where(ok, a, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)


def _list(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


# --- command line ----------------------------------------------------------------------------------------


def simulation_config(args: argparse.Namespace) -> dict[str, Any]:
    """The job's ``--simulation-config`` JSON (the plan's simulation config of the data set) over the section's
    defaults (``scores`` key by key), with the device and compile switch of its command line (the workflow's
    environment, never params); one line naming the option and key when wrong."""
    from diffmd.config import section_defaults
    from diffmd.engine.cli import machine_arguments, section_argument

    given = section_argument(args.simulation_config, "--simulation-config", "simulation", "train")
    machine = machine_arguments(args, given)
    defaults = section_defaults("simulation")
    cfg = {**defaults, **given, "scores": {**defaults["scores"], **(given.get("scores") or {})}, **machine}
    if isinstance(cfg["scores"]["horizon_fs"], dict):
        raise ValueError("--simulation-config: scores.horizon_fs: one number (the plan resolves the dataset's)")
    return cfg


def _load(args: argparse.Namespace) -> tuple[Any, dict, Any, Any, dict[str, Any]]:
    import torch

    from diffmd.data.pairs import load_split, split_segments
    from diffmd.engine.capture import apply_compile
    from diffmd.engine.common import load_checkpoint, resolve_device, seed_everything
    from diffmd.registry import uses_accelerator

    cfg = simulation_config(args)
    device = resolve_device(cfg.get("device", "auto"))
    model, ckpt = load_checkpoint(args.checkpoint, device)
    if not uses_accelerator(model):  # reference rows, oracles, force fields run on the CPU
        device = torch.device("cpu")
        model = model.to(device)
    else:
        apply_compile(model, device, cfg.get("compile", "auto"))
    seg = split_segments(load_split(args.split), "test", stride=model.stride, isomer=args.target)[0]
    seed_everything(args.seed)
    return model, ckpt, seg, device, cfg


def run_simulation(args: argparse.Namespace, model: Any, ckpt: dict, seg: Any, device: Any, cfg: dict[str, Any],
                   out: str | Path, rigid: str = "keep") -> dict[str, Any]:  # fmt: skip
    """Simulate ``model`` (loaded, on ``device``; the global RNGs seeded with ``args.seed`` just before) on the test
    segment ``seg`` and write the record to ``out``: the ``run`` command's work, which the rollout job also does
    in the same process when it is given ``--simulation-out`` (one start-up for both: issue 23/25), with the row's
    ``rigid`` setting. The record names the row ``--meta`` gives (a variant: its own name; the checkpoint stores the
    model it builds)."""
    from diffmd.engine.cli import META_SCHEMA, schema_argument
    from diffmd.io import write_json
    from diffmd.provenance import collect_provenance

    meta = schema_argument(args.meta, "--meta", META_SCHEMA)
    ensemble = None
    if args.ensemble:
        with np.load(args.ensemble, allow_pickle=False) as data:
            ensemble = {k: data[k] for k in data.files}
    rec = simulate(model, seg, cfg, device, ensemble, args.seed, rigid)
    rec.update(dataset=meta.get("dataset"), molecule=meta.get("molecule", seg.name),
               model=meta.get("model", ckpt["model"]), role=getattr(model, "role", ""),
               seed=meta.get("seed", args.seed), source=seg.source)  # fmt: skip
    # provenance inside the record (the run directory's provenance.json belongs to train and rollout)
    inputs = [args.split, seg.path, args.checkpoint] + ([args.ensemble] if args.ensemble else [])
    rec["provenance"] = collect_provenance(config={"simulation": cfg, "seed": args.seed}, inputs=inputs,
                                           device=str(device))  # fmt: skip
    write_json(out, rec)
    print(json.dumps({k: rec[k] for k in ("model", "molecule", "n_starts", "steps", "length_fs")}))
    return rec


def main(argv: list[str] | None = None) -> None:
    from diffmd.engine.cli import (
        META_SCHEMA,
        OneLineArgumentParser,
        add_machine_arguments,
        add_simulation_arguments,
        schema_argument,
    )
    from diffmd.engine.common import set_threads
    from diffmd.io import save_npz

    p = OneLineArgumentParser(prog="python -m diffmd.engine.simulate", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "ensemble"))
    p.add_argument("--split", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--target", default=None, help="C7O2H10 target isomer (O2O)")
    add_simulation_arguments(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    add_machine_arguments(p, "rollout.compile")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    schema_argument(args.meta, "--meta", META_SCHEMA)  # one line on a bad --meta, before any work
    set_threads(args.threads)
    model, ckpt, seg, device, cfg = _load(args)
    out = Path(args.out)
    if args.command == "ensemble":
        ens = build_ensemble(model, seg, cfg, args.seed)
        save_npz(out, **ens)
        print(json.dumps({"ensemble": str(out), "starts": ens["starts"].tolist(), "members": ens["mb"].shape[1]}))
        return
    run_simulation(args, model, ckpt, seg, device, cfg, out)


if __name__ == "__main__":
    from diffmd.engine.cli import run_cli

    sys.exit(run_cli(main))
