"""Held-out force errors of the rows that compute forces: rollout.npz -> armse.json -> the one-step table."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.engine.evaluate import evaluate, yardstick
from diffmd.engine.yardstick import force_rows
from diffmd.reports.yardstick import load_yardstick, one_step_report
from diffmd.rundir import OneStep, load_rollout, write_record, write_rollout
from diffmd.units import force_step


def _one_step(forces_error: float | None, n_frames: int = 30, seed: int = 0, gaussian: bool = False) -> OneStep:
    """One-step part with forces off by ±``forces_error`` on every component (or Gaussian errors of that std)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_frames, 3, 3))
    one = OneStep(np.arange(2, 2 + n_frames), x + 1e-3, x, x, x)
    if forces_error is not None:
        target = rng.normal(scale=20.0, size=(n_frames, 3, 3))
        noise = rng.normal(size=target.shape) if gaussian else rng.choice([-1.0, 1.0], size=target.shape)
        one.forces_target = target
        one.forces_predicted = target + forces_error * noise
    return one


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # BCa of identical values
def test_force_rows_known_values():
    """A force error of ±e on every component: MAE = RMSE = e, and the one-step error it predicts is
    |F_err|·dt²/m per atom (RMS over atoms)."""
    numbers = np.array([8, 1, 1])
    one = _one_step(2.0)
    rows = {r["metric"]: r for r in force_rows(one.forces_predicted, one.forces_target, numbers, 0.5)}
    assert rows["force_mae"]["value"] == pytest.approx(2.0) and rows["force_rmse"]["value"] == pytest.approx(2.0)
    per_atom = np.linalg.norm(force_step(np.full((3, 3), 2.0), numbers, 0.5), axis=-1)
    assert rows["force_step_rmse"]["value"] == pytest.approx(np.sqrt((per_atom**2).mean()), rel=1e-9)
    assert rows["force_rmse"]["unit"] == "kcal/mol/Å" and rows["force_step_rmse"]["unit"] == "Å"


def test_force_errors_reach_the_one_step_table(tmp_path):
    """Written with the one-step part, read back, turned into metric rows, and shown as their own sections of
    the one-step table for the rows that have them (others are not listed there)."""
    paths = []
    for model, err in (("sgdml", 1.5), ("egnn", None)):
        run = tmp_path / "md17" / "ethanol" / model / "seed1"
        run.mkdir(parents=True)
        x = np.random.default_rng(1).normal(size=(3, 3, 3))
        write_rollout(run, positions=x, reference=x, frame_indices=np.arange(3), atomic_numbers=np.array([8, 1, 1]),
                      diverged_at=-1, stride=1, dt_fs=0.5, seconds=1.0, score_evals=np.zeros(2), source="xtb",
                      molecule="ethanol", model=model, one_step=_one_step(err, gaussian=True),
                      extxyz=False)  # fmt: skip
        roll = load_rollout(run / "rollout.npz")
        assert (roll.one_step.forces_predicted is None) == (err is None)
        rec = evaluate(roll, {"dataset": "md17", "molecule": "ethanol", "model": model, "seed": 1})
        rec.update(yardstick(roll, {"horizons_fs": [0.5], "energy_frames": 0}))
        metrics = {m["metric"] for m in rec["metrics"]}
        assert ({"force_mae", "force_rmse", "force_step_rmse"} <= metrics) == (err is not None)
        write_record(run / "armse.json", rec)
        paths.append(run / "armse.json")
    ys = [load_yardstick(p) for p in paths]
    report = one_step_report(ys, models=["egnn", "sgdml"])
    md = report.markdown()
    assert "Force MAE on the held-out one-step frames" in md
    force_section = md.split("Force RMSE")[1].split("\n\n")[1]
    assert "sgdml" in force_section and "egnn" not in force_section
    cell = next(line for line in force_section.splitlines() if "sgdml" in line).split("|")[2].strip()
    assert 1.2 < float(cell.split()[0]) < 1.8 and "[" in cell  # the RMSE of N(0, 1.5²) errors, with its interval
