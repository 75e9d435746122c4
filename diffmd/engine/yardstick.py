"""The yardstick's metrics of one run: horizon-resolved ARMSE/RMSD over many starts with bootstrap
intervals, the one-step (teacher-forced) error and explained acceleration variance, and
distributional fidelity of the multi-start frames against the reference frames.

Every metric is one row ``{"metric", "horizon_fs", "value", "ci_low", "ci_high", "n_starts",
"n_diverged", "unit"}`` of ``armse.json``'s ``metrics`` list (long format; the tables read it as is).

What each can and cannot see:

* ``armse`` at a horizon H (Å): the paper's accumulative RMSE up to H, averaged over starts. At long H
  it cannot tell exact physics from standing still (both decorrelate from the one reference
  realisation); at short H it can.
* ``rmsd`` at H: the error of the frame at H alone.
* ``one_step_rmse`` (Å RMS per atom): the error of x̂(t+k) from the true history, to be read against
  its floors (``constant_velocity``; ``force_verlet`` where the data has forces: the thermostat
  noise no deterministic model can predict). ``accel_r2``: the fraction of the variance of the true
  second difference a = x(t+k) - 2x(t) + x(t-k) that the implied acceleration â = x̂(t+k) - 2x(t) +
  x(t-k) explains, 1 - |â - a|² / |a - ā|² (1 = exact; 0 = no better than the mean acceleration;
  negative = worse; constant velocity scores about 0).
* distributions (Fu et al. 2022): h(r) MAE, per-type bond-length and angle Wasserstein-1, kinetic
  temperature and its drift, stability (every bond kept), and for the ``xtb`` source the reference
  potential's energy of rollout frames over the ground truth's, per atom. They see whether a model
  samples the right ensemble, not whether it tracks one trajectory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffmd import catalogue
from diffmd import distributions as D
from diffmd.catalogue import BOND_BREAK_FACTOR  # the stable fraction's rule, decided there
from diffmd.graph import find_bonds
from diffmd.metrics import rmsd_per_frame
from diffmd.rundir import MultiStart, OneStep
from diffmd.stats import interval

#: The two ARMSE definitions (written under the tables, docs/simulation.md): ``armse`` is the one this project
#: ranks by, ``armse_literal`` the paper's formula as printed (DiffMD, Wu & Li 2023, "Evaluation metric").
ARMSE_NOTE = ("ARMSE (Å): sqrt((1/n) Σ_t (1/N) ||R_t(x̃_t - c(x̃_t)) - (x_t - c(x_t))||²) over the n rolled-out frames: "
              "the per-atom RMS displacement after centring and the Kabsch rotation, root-mean-square over frames. The "
              "CSV's armse_literal (each horizon) and armse_paper_literal (paper column) are the paper's formula as "
              "printed, sqrt((1/n) Σ_t ||x̃_t - x_t||²): summed over the N atoms (no 1/N, so sqrt(N) times larger "
              "for equal per-atom errors) and unaligned (translation and rotation count as error).")


def row(metric: str, horizon_fs: float | None, values: np.ndarray | list[float], unit: str | None = None,
        n_diverged: int = 0, n: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One metrics row: the mean of ``values`` (non-finite dropped) with its 95% interval
    (:func:`diffmd.stats.interval`: Student t for few values, BCa bootstrap for many), the interval's method
    and the number of values it used. The unit is the metrics catalogue's (:mod:`diffmd.catalogue`); a caller that
    names one must name that one."""
    known = catalogue.unit(metric)
    if unit is not None and unit != known:
        raise ValueError(f"metric {metric}: unit {unit!r}, but the catalogue (diffmd/catalogue.py) says {known!r}")
    unit = known
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    est, lo, hi, n_ci, method = interval(vals[np.isfinite(vals)])

    def num(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {"metric": metric, "horizon_fs": None if horizon_fs is None else float(horizon_fs), "value": num(est),
            "ci_low": num(lo), "ci_high": num(hi), "n_starts": int(vals.size if n is None else n),
            "n_diverged": int(n_diverged), "unit": unit, "ci_method": method, "ci_n": int(n_ci)}  # fmt: skip


def per_start_rmsd(multi: MultiStart, align: bool = True) -> np.ndarray:
    """RMSD (Å) of every predicted frame of every start, (M, n), aligned (centring + Kabsch) or not; NaN after a
    divergence."""
    m, n1 = multi.positions.shape[:2]
    out = np.full((m, n1 - 1), np.nan)
    for i in range(m):
        done = n1 - 1 if multi.diverged_at[i] < 0 else int(multi.diverged_at[i]) - 1
        if done > 0:
            out[i, :done] = rmsd_per_frame(multi.positions[i, 1 : done + 1], multi.reference[i, 1 : done + 1], align)
    return out


def horizon_rows(multi: MultiStart, step_fs: float, horizons_fs: list[float]) -> tuple[list[dict], dict]:
    """``armse`` and ``rmsd`` rows at each horizon, ``armse_literal`` (the paper's formula as printed: summed over
    atoms, no alignment; :data:`LITERAL_NOTE`), and the per-frame curve over starts."""
    rmsd = per_start_rmsd(multi)
    literal = per_start_rmsd(multi, align=False) * np.sqrt(multi.positions.shape[2])
    m, n = rmsd.shape
    t_fs = step_fs * np.arange(1, n + 1)
    rows = []
    for h in horizons_fs:
        # the last model frame at or before h: a strided model's ARMSE up to h averages its frames <= h, so
        # every model reports under the same horizons; none before h (h shorter than one step): no row
        j = int(np.searchsorted(t_fs, float(h) + 1e-9, side="right")) - 1
        if j < 0 or t_fs[-1] < float(h) - 1e-9:
            continue
        died = (multi.diverged_at >= 0) & (multi.diverged_at <= j + 1)
        armse = np.sqrt(np.mean(rmsd[:, : j + 1] ** 2, axis=1))
        armse[died] = np.nan
        frame = rmsd[:, j].copy()
        frame[died] = np.nan
        lit = np.sqrt(np.mean(literal[:, : j + 1] ** 2, axis=1))
        lit[died] = np.nan
        for metric, values in (("armse", armse), ("rmsd", frame), ("armse_literal", lit)):
            r = row(metric, float(h), values, "Å", int(died.sum()), m)
            r["frame_fs"] = float(t_fs[j])  # the model frame the number ends at (h for unstrided models)
            rows.append(r)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(rmsd)
        counts = finite.sum(axis=0)
        mean = np.where(counts > 0, np.nansum(rmsd, axis=0) / np.maximum(counts, 1), np.nan)
        lo = np.array([np.percentile(c[np.isfinite(c)], 2.5) if np.isfinite(c).any() else np.nan for c in rmsd.T])
        hi = np.array([np.percentile(c[np.isfinite(c)], 97.5) if np.isfinite(c).any() else np.nan for c in rmsd.T])
        running = np.sqrt(np.nancumsum(rmsd**2, axis=1) / np.arange(1, n + 1))
        running[~finite] = np.nan
        armse_mean = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in running.T])
    curve = {"t_fs": t_fs.tolist(), "rmsd_mean": _list(mean), "rmsd_lo": _list(lo), "rmsd_hi": _list(hi),
             "armse_mean": _list(armse_mean)}  # fmt: skip
    return rows, curve


def one_step_rows(one: OneStep, step_fs: float, numbers: np.ndarray | None = None) -> list[dict]:
    """``one_step_rmse`` (Å, RMS per atom, CI over frames) and ``accel_r2`` of the teacher-forced predictions."""
    err = np.sqrt(((one.predicted - one.target) ** 2).sum(-1).mean(-1))  # (F,) per-frame RMS per atom
    a_true = one.target - 2 * one.current + one.previous
    a_pred = one.predicted - 2 * one.current + one.previous
    resid = ((a_pred - a_true) ** 2).sum()
    total = ((a_true - a_true.mean(axis=0, keepdims=True)) ** 2).sum()
    r2 = 1.0 - resid / total if total > 0 else np.nan
    sq = err**2
    est, lo, hi, n_ci, method = interval(sq[np.isfinite(sq)], statistic=_root_mean)
    base = {**row("one_step_rmse", step_fs, err, "Å"), "value": _num(est), "ci_low": _num(lo), "ci_high": _num(hi),
            "ci_method": method, "ci_n": n_ci}  # fmt: skip
    out = [base, row("accel_r2", step_fs, [r2], "", n=len(err))]
    out[1]["ci_low"] = out[1]["ci_high"] = None
    out[1]["ci_method"], out[1]["ci_n"] = "", 0
    if one.forces_predicted is not None and one.forces_target is not None and numbers is not None:
        out += force_rows(one.forces_predicted, one.forces_target, numbers, step_fs)
    return out


def force_rows(predicted: np.ndarray, target: np.ndarray, numbers: np.ndarray, step_fs: float) -> list[dict]:
    """``force_mae``, ``force_rmse`` (kcal/mol/Å per component, interval over frames) of forces (F, atoms, 3)
    against the data's, and ``force_step_rmse`` (Å, RMS per atom): the one-step error the force error alone
    causes, |F_err|·h²/m (one position-Verlet step of h = ``step_fs``; :func:`diffmd.units.force_step`).
    ``numbers`` (atoms,) atomic numbers."""
    from diffmd.units import force_step

    err = np.asarray(predicted, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    err = err[np.isfinite(err).all(axis=(1, 2))]
    disp = force_step(err, numbers, step_fs, 1)
    per_frame_step = np.sqrt((disp**2).sum(-1).mean(-1))
    rmse = row("force_rmse", step_fs, (err**2).reshape(len(err), -1).mean(-1), "kcal/mol/Å")
    step = row("force_step_rmse", step_fs, per_frame_step, "Å")
    for r, sq in ((rmse, (err**2).reshape(len(err), -1).mean(-1)), (step, per_frame_step**2)):
        est, lo, hi, n_ci, method = interval(sq, statistic=_root_mean)  # RMS over frames, as one_step_rmse
        r.update(value=_num(est), ci_low=_num(lo), ci_high=_num(hi), ci_method=method, ci_n=int(n_ci))
    return [row("force_mae", step_fs, np.abs(err).reshape(len(err), -1).mean(-1), "kcal/mol/Å"), rmse, step]


def distribution_rows(multi: MultiStart, numbers: np.ndarray, dt_fs: float, stride: int, horizon_fs: float,
                      energies: tuple[np.ndarray, np.ndarray] | None) -> tuple[list[dict], dict]:  # fmt: skip
    """Distribution metrics per start (mean and interval over starts) and the pooled h(r) of all starts."""
    bonds = find_bonds(multi.reference[0, 0], numbers)
    per: dict[str, list[float]] = {k: [] for k in ("hr_mae", "bond_w1", "angle_w1", "temperature_K",
                                                   "temperature_ref_K", "temperature_drift_K_per_ps")}  # fmt: skip
    stable = []
    for i in range(multi.positions.shape[0]):
        pred, ref = multi.positions[i], multi.reference[i]
        d = D.distribution_metrics(pred, ref, numbers, bonds, dt_fs, stride)
        per["hr_mae"].append(_nan(d["hr_mae"]))
        per["bond_w1"].append(_nan(d["bond_w1_mean"]))
        per["angle_w1"].append(_nan(d["angle_w1_mean"]))
        per["temperature_K"].append(_nan(d["temperature_pred_K"]))
        per["temperature_ref_K"].append(_nan(d["temperature_ref_K"]))
        per["temperature_drift_K_per_ps"].append(_nan(d["temperature_drift_K_per_ps"]))
        stable.append(float(multi.diverged_at[i] < 0 and _bonds_kept(pred, bonds)))
    n_div = int((multi.diverged_at >= 0).sum())
    rows = [row(k, horizon_fs, v, n_diverged=n_div) for k, v in per.items()]
    rows.append(row("stable_fraction", horizon_fs, stable))
    excess = [np.nan]
    if energies is not None:
        pred_e, ref_e = energies
        excess = [D.energy_excess(pred_e[i], ref_e[i], len(numbers)) for i in range(len(pred_e))]
    rows.append(row("energy_excess_kcal_mol_atom", horizon_fs, excess, "kcal/mol/atom", n_div,
                    len(excess) if energies is not None else 0))  # fmt: skip
    pooled_pred = multi.positions.reshape(-1, *multi.positions.shape[2:])
    pooled_ref = multi.reference.reshape(-1, *multi.reference.shape[2:])
    edges, h_ref = D.distance_histogram(pooled_ref, r_max=D.R_MAX)
    _, h_pred = D.distance_histogram(pooled_pred, bins=edges)
    return rows, {"edges": _list(edges), "pred": _list(h_pred), "ref": _list(h_ref)}


def energy_samples(multi: MultiStart, numbers: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Reference-potential (GFN2-xTB) energies of ``n_frames`` evenly spaced frames per start, predicted and
    ground truth, (M, n_frames) kcal/mol each; None when ``n_frames`` is 0."""
    if n_frames <= 0:
        return None
    from diffmd.data.xtb_energy import reference_energies

    n1 = multi.positions.shape[1]
    idx = np.unique(np.linspace(1, n1 - 1, n_frames).round().astype(np.int64))
    pred = np.stack([reference_energies(p[idx], numbers) for p in multi.positions])
    ref = np.stack([reference_energies(r[idx], numbers) for r in multi.reference])
    return pred, ref


def _bonds_kept(pred: np.ndarray, bonds: np.ndarray) -> bool:
    i, j = bonds
    if i.size == 0:
        return True
    length = np.linalg.norm(pred[:, i] - pred[:, j], axis=-1)
    return bool(np.isfinite(length).all() and (length <= BOND_BREAK_FACTOR * length[0]).all())


def _root_mean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """sqrt(mean(x)): the RMS over frames from per-frame mean squares (the one-step error's statistic)."""
    return np.sqrt(np.mean(x, axis=axis))


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _nan(x: float | None) -> float:
    return np.nan if x is None else float(x)


def _list(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]
