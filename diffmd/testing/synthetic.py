"""Synthetic run directories for testing the report layer (tests only; production code never imports
:mod:`diffmd.testing`). Written through :mod:`diffmd.rundir`, the run files' one writer.

A "ground truth" is the first MD17 ethanol frame (Chmiela et al. 2017, copied from the fixture
``md17_ethanol_first3.xyz``) vibrating with small sinusoidal displacements; a fake rollout of a
model is that truth plus a perturbation whose per-frame RMSD is known in closed form, so the
ARMSE written into ``armse.json`` is known exactly. Files follow docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.catalogue import unit
from diffmd.distributions import distance_histogram
from diffmd.rundir import role_of, write_record, write_rollout
from diffmd.testing import ETHANOL_X, ETHANOL_Z

# the first MD17 ethanol frame, shared with the model tests
ETHANOL_XYZ = ETHANOL_X


def vibrating_truth(n_frames: int, seed: int = 0, amplitude: float = 0.03, period: float = 40.0) -> np.ndarray:
    """(n_frames, 9, 3) Å: ethanol with each atom oscillating along a random direction."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=ETHANOL_XYZ.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, size=(ETHANOL_XYZ.shape[0], 1))
    t = np.arange(n_frames)[:, None, None]
    return ETHANOL_XYZ[None] + amplitude * np.sin(2 * np.pi * t / period + phase[None]) * direction[None]


def write_run(
    root: str | Path,
    dataset: str,
    molecule: str,
    model: str,
    seed: int,
    source: str,
    truth: np.ndarray,
    offset: float,
    stride: int = 1,
    diverged: bool = False,
    dt_fs: float = 0.5,
    score_evals: int = 0,
    *,
    role: str | None = None,
    rollout_applicable: bool | None = None,
    n_starts: int = 4,
    horizons_fs: Sequence[float] = (1.0, 5.0, 10.0),
    yardstick: bool = True,
) -> float | None:
    """Write rollout.npz + armse.json for a fake model whose every atom is shifted by ``offset`` Å
    along x on every generated frame (frame 0 is the start frame). Returns the ARMSE written (Å):
    exactly ``offset``, or None when ``diverged`` or the model has no rollout.

    ``role`` overrides the registered role; ``rollout_applicable`` (default: ``role != "floor"``)
    False writes a one-step-only model (``armse`` null, not diverged, no curves). With ``yardstick``
    the issue-12 keys are written too, with the known values of :func:`yardstick_keys`."""
    run = Path(root) / dataset / molecule / model / f"seed{seed}"
    role = role or role_of(model)
    applicable = role != "floor" if rollout_applicable is None else bool(rollout_applicable)
    ref = truth[::stride]
    pred = ref.copy()
    pred[1:, :, 0] += offset
    n = ref.shape[0] - 1
    if diverged:
        pred[n // 2 :] = np.nan
    rmsd = np.sqrt(((pred[1:] - ref[1:]) ** 2).sum(-1).mean(-1))
    curve = np.sqrt(np.cumsum(rmsd**2) / np.arange(1, n + 1))
    armse = None if diverged or not applicable else float(math.sqrt(float(np.mean(rmsd**2))))
    if not applicable:
        diverged, rmsd, curve = False, rmsd[:0], curve[:0]
    kept = n + 1 if applicable else 1  # a one-step-only model's rollout.npz holds the start frame only, as the engine's
    write_rollout(
        run,
        positions=pred[:kept],
        reference=ref[:kept],
        frame_indices=np.arange(kept) * stride,
        atomic_numbers=ETHANOL_Z,
        diverged_at=n // 2 if diverged else -1,
        stride=stride,
        dt_fs=dt_fs,
        seconds=0.01 * n,
        score_evals=np.full(kept - 1, score_evals, dtype=np.int64),
        source=source,
        molecule=molecule,
        model=model,
        extxyz=False,
        applicable=applicable,
    )
    record: dict[str, Any] = {
        "dataset": dataset,
        "molecule": molecule,
        "model": model,
        "role": role,
        "seed": seed,
        "source": source,
        "stride": stride,
        "n_frames": n,
        "armse": armse,
        "armse_unaligned": armse,
        "diverged": diverged,
        "diverged_at": n // 2 if diverged else -1,
        "rmsd_per_frame": [None if not np.isfinite(v) else float(v) for v in rmsd],
        "armse_curve": [None if not np.isfinite(v) else float(v) for v in curve],
        "score_evals_per_frame": float(score_evals),
        "rollout_seconds": 0.01 * n,
        "frames_per_second": 100.0,
    }
    if yardstick:
        record.update(
            yardstick_keys(pred, ref, offset, stride, dt_fs, diverged, source, applicable, n_starts, horizons_fs)
        )
    write_record(run / "armse.json", record)
    return armse


#: Bins of the synthetic h(r) (Å): 50 bins of 0.1 Å.
HR_EDGES = np.linspace(0.0, 5.0, 51)


def _ci(value: float | None) -> tuple[float | None, float | None]:
    return (None, None) if value is None else (0.9 * value, 1.1 * value)


def metric_row(
    metric: str, horizon_fs: float | None, value: float | None, n_starts: int, n_diverged: int, unit: str
) -> dict[str, Any]:
    """One ``metrics`` row of ``armse.json`` with the synthetic interval [0.9 value, 1.1 value], labelled as the
    engine labels it (:func:`diffmd.stats.interval`: Student t below 30 values, BCa from 30)."""
    lo, hi = _ci(value)
    n_ci = n_starts - n_diverged
    method = "" if lo is None else ("t" if n_ci < 30 else "BCa")
    return {"metric": metric, "horizon_fs": horizon_fs, "value": value, "ci_low": lo, "ci_high": hi,
            "ci_method": method, "ci_n": n_ci if method else None, "n_starts": n_starts, "n_diverged": n_diverged,
            "unit": unit}  # fmt: skip


def yardstick_keys(
    pred: np.ndarray,
    ref: np.ndarray,
    offset: float,
    stride: int,
    dt_fs: float,
    diverged: bool,
    source: str,
    applicable: bool = True,
    n_starts: int = 4,
    horizons_fs: Sequence[float] = (1.0, 5.0, 10.0),
) -> dict[str, Any]:
    """The issue-12 keys of ``armse.json`` with known values for a fake model shifted by ``offset`` Å.

    Every start is the same fake rollout, so: ``armse`` and ``rmsd`` at each horizon = ``offset``
    (null, all starts diverged, at horizons at or after the divergence time); ``one_step_rmse`` =
    offset / 10 (n_starts = the number of frames); ``accel_r2`` = 1 - offset; ``hr_mae`` = offset;
    ``bond_w1`` = offset / 10; ``angle_w1`` = 10 offset; ``temperature_K`` = 300 + 100 offset;
    ``temperature_ref_K`` = 300; drift = 50 offset; ``energy_excess_kcal_mol_atom`` = offset for the
    ``xtb`` source, else null; ``stable_fraction`` = 0 if diverged else 1. Every interval is
    [0.9 value, 1.1 value]. ``curve``: the per-frame RMSD (band 0.9-1.1 of it) against t = i step_fs;
    ``hr``: :func:`~diffmd.distributions.distance_histogram` of ``pred`` and ``ref`` on :data:`HR_EDGES`.
    """
    n = ref.shape[0] - 1
    step_fs = stride * dt_fs
    out: dict[str, Any] = {"dt_fs": dt_fs, "step_fs": step_fs, "rollout_applicable": applicable}
    rows = [
        metric_row("one_step_rmse", step_fs, offset / 10, n, 0, "Å"),
        metric_row("accel_r2", step_fs, 1.0 - offset, n, 0, ""),
    ]
    if not applicable:
        out["metrics"] = rows
        return out
    t_div = (n // 2) * step_fs if diverged else math.inf
    for metric in ("armse", "rmsd"):
        for h in horizons_fs:
            gone = h >= t_div
            rows.append(metric_row(metric, float(h), None if gone else offset, n_starts, n_starts if gone else 0, "Å"))
    horizon = n * step_fs
    nd = n_starts if diverged else 0
    for metric, value in (
        ("hr_mae", offset),
        ("bond_w1", offset / 10),
        ("angle_w1", 10 * offset),
        ("temperature_K", 300.0 + 100.0 * offset),
        ("temperature_ref_K", 300.0),
        ("temperature_drift_K_per_ps", 50.0 * offset),
        ("energy_excess_kcal_mol_atom", offset if source == "xtb" else None),
        ("stable_fraction", 0.0 if diverged else 1.0),
    ):
        rows.append(metric_row(metric, horizon, value, n_starts, nd, unit(metric)))  # the engine's (catalogue) units
    out["metrics"] = rows
    rmsd = np.sqrt(((pred[1:] - ref[1:]) ** 2).sum(-1).mean(-1))
    curve = np.sqrt(np.cumsum(rmsd**2) / np.arange(1, n + 1))

    def listed(x: np.ndarray) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in x]

    out["curve"] = {
        "t_fs": [float(i * step_fs) for i in range(1, n + 1)],
        "rmsd_mean": listed(rmsd),
        "rmsd_lo": listed(0.9 * rmsd),
        "rmsd_hi": listed(1.1 * rmsd),
        "armse_mean": listed(curve),
    }
    _, h_pred = distance_histogram(pred, bins=HR_EDGES)
    _, h_ref = distance_histogram(ref, bins=HR_EDGES)
    out["hr"] = {"edges": HR_EDGES.tolist(), "pred": listed(h_pred), "ref": listed(h_ref)}
    return out


def write_benchmark(path: str | Path, seconds: float, max_rss: float) -> None:
    """A Snakemake-style benchmark TSV with one repeat."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    path.write_text(cols + f"{seconds}\t0:00:01\t{max_rss}\t{2 * max_rss}\t1\t1\t0\t0\t50\t{seconds}\n")
