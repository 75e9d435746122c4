"""DiffMD grid search: point names, validation through the trainer's validation, selection of the best point by
the trainer's ``select_by`` metric, one-line CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffmd.data.trajectory import Trajectory, save_trajectory
from diffmd.engine.common import load_torch
from diffmd.io import write_json
from diffmd.models.diffmd import tune
from diffmd.testing import ETHANOL_X, ETHANOL_Z

GRID = {"sigma_s": [1e-2, 1.0], "a_bar": [1.0], "eta_sigma": [1.0], "eps": [0.5, 0.9]}
TINY = {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "n_time_freq": 2,
        "sampler_options": {"ode": {"rtol": 1e-3, "atol": 1e-3}}}  # fmt: skip


def test_grid_points_and_params():
    points = tune.grid_points(GRID)
    assert list(points) == ["s0.01_a1_h1", "s1_a1_h1"]
    full = {"sigma_s": [1e-3, 1e-2, 1e-1, 1], "a_bar": [1e-2, 1e-1, 1, 2, 5, 10],
            "eta_sigma": [1e-2, 1e-1, 1, 10], "eps": [0.1, 0.2, 0.4, 0.8, 0.9, 0.99]}  # fmt: skip
    assert len(tune.grid_points(full)) == 96 and len(set(tune.grid_points(full))) == 96
    params = tune.point_params({"d_model": 8}, GRID, "s1_a1_h1")
    assert params == {"d_model": 8, "sigma_s": 1.0, "a_bar": 1.0, "eta_sigma": 1.0, "train_eps": 0.5}
    with pytest.raises(KeyError, match="not in diffmd.grid"):
        tune.point_params({}, GRID, "s5_a1_h1")
    with pytest.raises(ValueError, match="eps"):
        tune.grid_points({**GRID, "eps": [1.5]})


def _fake_run(tmp_path, values, extra=None):
    """Validation files with the given ARMSE per (point, eps) and a dummy checkpoint per point; ``extra``:
    further keys per row, a function of (point name, eps)."""
    grid_dir = tmp_path / "grid"
    for (name, point), eps_vals in zip(tune.grid_points(GRID).items(), values):
        (grid_dir / name).mkdir(parents=True)
        ckpt = grid_dir / name / "model.pt"
        torch.save({"model": "diffmd", "params": {**point, "eps": 0.2}, "state_dict": {}, "epoch": 1,
                    "val_armse": 0.0}, ckpt)  # fmt: skip
        for eps, val in zip(GRID["eps"], eps_vals):
            write_json(
                grid_dir / name / f"val_eps{tune.fmt(eps)}.json",
                {
                    "point": name,
                    **point,
                    "eps": eps,
                    "val_armse": val,
                    "checkpoint": str(ckpt),
                    **(extra(name, eps) if extra else {}),
                },  # fmt: skip
            )
    return grid_dir


def test_select_picks_lowest_finite(tmp_path):
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]])
    summary = tune.write_selection(str(grid_dir), GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
    assert summary["best"]["point"] == "s1_a1_h1" and summary["best"]["eps"] == 0.5
    ckpt = load_torch(tmp_path / "model.pt")
    assert ckpt["params"]["eps"] == 0.5 and ckpt["params"]["sigma_s"] == 1.0 and ckpt["val_armse"] == 0.3
    sel = json.loads((tmp_path / "sel.json").read_text())
    assert sel["val_armse"] == [0.5, None, 0.3, 0.7] and sel["best_val_armse_by_eps"] == {
        "0.5": 0.3,
        "0.9": 0.7,
    }


def test_select_all_diverged_flags(tmp_path):
    grid_dir = _fake_run(tmp_path, [[None, None], [None, None]])
    summary = tune.write_selection(str(grid_dir), GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
    assert summary["all_diverged"] and math.isinf(load_torch(tmp_path / "model.pt")["val_armse"])


def test_select_reads_the_validation_metric(tmp_path):
    """Rows with ``val_metric`` (the trainer's select_by) are chosen by it, not by their rollout ARMSE."""
    metric = {("s0.01_a1_h1", 0.5): 0.2, ("s0.01_a1_h1", 0.9): None, ("s1_a1_h1", 0.5): 0.4, ("s1_a1_h1", 0.9): 0.1}
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]],
                         lambda name, eps: {"val_metric": metric[name, eps], "select_by": "one_step"})  # fmt: skip
    summary = tune.write_selection(str(grid_dir), GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
    assert summary["best"]["point"] == "s1_a1_h1" and summary["best"]["eps"] == 0.9
    assert summary["select_by"] == "one_step" and summary["val_metric"] == [0.2, None, 0.4, 0.1]
    assert summary["best_val_metric_by_eps"] == {"0.5": 0.2, "0.9": 0.1}
    ckpt = load_torch(tmp_path / "model.pt")
    assert ckpt["val_metric"] == 0.1 and ckpt["select_by"] == "one_step" and ckpt["val_armse"] == 0.7


def test_select_refuses_rows_of_different_metrics(tmp_path):
    grid_dir = _fake_run(tmp_path, [[0.5, 0.6], [0.3, 0.7]], lambda name, eps: (
        {"val_metric": 0.1, "select_by": "one_step"} if name == "s1_a1_h1" else {}))  # fmt: skip
    with pytest.raises(ValueError, match="different metrics"):
        tune.select(str(grid_dir), GRID)


def _main(args, capsys):
    try:
        rc = tune.main(args)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    """Issue 15 row 12: ``error: <file or key>: <what>``, status 1, no traceback."""
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]])
    sel = ["select", "--grid-dir", str(grid_dir), "--out-model", str(tmp_path / "m.pt"), "--out-selection",
           str(tmp_path / "s.json")]  # fmt: skip
    rc, err = _main(sel + ["--grid", "{sigma_s: [1]}"], capsys)
    assert rc == 1 and err.startswith("error: --grid: not valid JSON") and err.count("\n") == 1, err
    missing = grid_dir / "s1_a1_h1" / "val_eps0.9.json"
    missing.unlink()
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err == f"error: {missing}: file not found\n", err
    missing.write_text("{not json")
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err.startswith(f"error: {missing}: not valid JSON") and err.count("\n") == 1, err
    missing.write_text("[]")
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err.startswith(f"error: {missing}: not a validation row"), err
    rc, err = _main(sel + ["--grid", json.dumps({"sigma_s": [1.0]})], capsys)
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    val = ["validate", "--split", str(tmp_path / "split.json"), "--checkpoint", str(tmp_path / "none.pt"), "--eps",
           "0.5", "--out", str(tmp_path / "v.json")]  # fmt: skip
    rc, err = _main(val, capsys)
    assert rc == 1 and err == f"error: {tmp_path / 'none.pt'}: checkpoint not found\n", err
    rc, err = _main(val + ["--train-config", '{"select_by": "loss"}'], capsys)
    assert rc == 1 and err.startswith("error: train.select_by: 'loss'"), err
    rc, err = _main(["validate", "--eps", "small"], capsys)
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1, err


def _synthetic_split(tmp_path):
    """A vibrating ethanol (40 frames) and an MD17-style split over it."""
    t = np.arange(40)[:, None, None]
    rng = np.random.default_rng(0)
    pos = ETHANOL_X[None] + 0.02 * np.sin(0.3 * t + rng.uniform(0, 6, (1, 9, 3)))
    traj = Trajectory(positions=pos, atomic_numbers=ETHANOL_Z, dt_fs=0.5, temperature_K=300.0,
                      name="ethanol", dataset="md17", source="xtb")  # fmt: skip
    save_trajectory(tmp_path / "ethanol.npz", traj)
    split = {"dataset": "md17", "molecule": "ethanol", "trajectory": str(tmp_path / "ethanol.npz"),
             "source": "xtb", "stride": 1, "n_frames": 40, "train": {"start": 2, "stop": 22},
             "val": {"start": 22, "stop": 30}, "test": {"start": 30, "stop": 38}}  # fmt: skip
    write_json(tmp_path / "split.json", split)
    return str(tmp_path / "split.json")


def test_train_validate_select_end_to_end(tmp_path):
    from diffmd.engine.train import train

    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    cfg = {"batch_size": 10, "epochs": 1, "val_every": 1, "val_horizon": 3, "device": "cpu"}
    for name in tune.grid_points(GRID):
        params = tune.point_params(TINY, GRID, name)
        train(split, "diffmd", params, cfg, 1, tmp_path / "grid" / name)
        for eps in GRID["eps"]:
            row = tune.validate(split, str(tmp_path / "grid" / name / "model.pt"), eps, cfg, 1)
            assert row["point"] == name and row["eps"] == eps and row["score_evals"] > 0
            assert row["val_armse"] is None or row["val_armse"] > 0
            assert row["select_by"] == "one_step" and row["val_metric"] == row["val_one_step"] > 0
            write_json(tmp_path / "grid" / name / f"val_eps{tune.fmt(eps)}.json", row)
    summary = tune.write_selection(str(tmp_path / "grid"), GRID, str(tmp_path / "model.pt"), str(tmp_path / "s.json"))
    finite = [r["val_metric"] for r in summary["points"] if r["val_metric"] is not None]
    assert finite and summary["best"]["val_metric"] == min(finite) and summary["select_by"] == "one_step"
    assert load_torch(tmp_path / "model.pt")["params"]["eps"] == summary["best"]["eps"]
