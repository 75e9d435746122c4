"""The grid search (diffmd/engine/grid.py) of DiffMD and diffmd_corrected: point names, validation through the
trainer's validation (every eps of a point in one batch, against one eps at a time), selection of the best point by
the trainer's ``select_by`` metric, the successive-halving ranking and slots, one-line CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffmd.data.trajectory import Trajectory, save_trajectory
from diffmd.engine import grid as search
from diffmd.engine.common import load_torch
from diffmd.io import write_json
from diffmd.provenance import sha256_file
from diffmd.testing import ETHANOL_X, ETHANOL_Z

GRID = {"sigma_s": [1e-2, 1.0], "a_bar": [1.0], "eta_sigma": [1.0], "eps": [0.5, 0.9]}
DIFFMD = search.GridSpec.of("diffmd")
CORRECTED = search.GridSpec.of("diffmd_corrected")
TINY = {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "n_time_freq": 2,
        "sampler_options": {"ode": {"rtol": 1e-3, "atol": 1e-3}}}  # fmt: skip


def test_grid_points_and_params():
    points = search.grid_points(GRID, DIFFMD)
    assert list(points) == ["s0.01_a1_h1", "s1_a1_h1"]
    full = {"sigma_s": [1e-3, 1e-2, 1e-1, 1], "a_bar": [1e-2, 1e-1, 1, 2, 5, 10],
            "eta_sigma": [1e-2, 1e-1, 1, 10], "eps": [0.1, 0.2, 0.4, 0.8, 0.9, 0.99]}  # fmt: skip
    assert len(search.grid_points(full, DIFFMD)) == 96 and len(set(search.grid_points(full, DIFFMD))) == 96
    params = search.point_params({"d_model": 8}, GRID, "s1_a1_h1", DIFFMD)
    assert params == {"d_model": 8, "sigma_s": 1.0, "a_bar": 1.0, "eta_sigma": 1.0, "train_eps": 0.5}
    with pytest.raises(KeyError, match="not in diffmd.grid"):
        search.point_params({}, GRID, "s5_a1_h1", DIFFMD)
    with pytest.raises(ValueError, match="eps"):
        search.grid_points({**GRID, "eps": [1.5]}, DIFFMD)

    # the names DiffMD's results are filed under: its class declares the keys and their labels
    assert DIFFMD.train_keys == ("sigma_s", "a_bar", "eta_sigma") and DIFFMD.labels == ("s", "a", "h")
    assert DIFFMD.train_eps and not CORRECTED.train_eps
    assert list(search.grid_points({"sigma_s": [1e-3], "a_bar": [0.1], "eta_sigma": [10.0], "eps": [0.1]}, DIFFMD)) \
        == ["s0.001_a0.1_h10"]  # fmt: skip


def test_a_second_model_has_its_own_grid_keys_and_names():
    grid = {"kernel_scale": [0.5, 1.0, 2.0], "eps": [1e-3, 1e-2]}
    assert list(search.grid_points(grid, CORRECTED)) == ["kernel_scale0.5", "kernel_scale1", "kernel_scale2"]
    # its train_eps stays the model's own (no train_eps = min(eps) as for DiffMD)
    assert search.point_params({"d_model": 8}, grid, "kernel_scale2", CORRECTED) == {"d_model": 8, "kernel_scale": 2.0}
    with pytest.raises(KeyError, match="not in diffmd_corrected.grid"):
        search.point_params({}, grid, "s1_a1_h1", CORRECTED)
    with pytest.raises(ValueError, match="diffmd_corrected.grid: missing or empty key.s. kernel_scale"):
        search.grid_points({"eps": [1e-3]}, CORRECTED)
    with pytest.raises(ValueError, match="diffmd_corrected.grid: unknown key.s. sigma_s"):
        search.grid_points({**grid, "sigma_s": [1.0]}, CORRECTED)
    with pytest.raises(ValueError, match="its card .* has no grid"):
        search.GridSpec.of("egnn")


def _fake_run(tmp_path, values, extra=None):
    """A validation.json per point with the given ARMSE per eps and a dummy checkpoint per point; ``extra``:
    further keys per row, a function of (point name, eps). Returns the validation files, in grid order."""
    grid_dir = tmp_path / "grid"
    files = []
    for (name, point), eps_vals in zip(search.grid_points(GRID, DIFFMD).items(), values):
        (grid_dir / name).mkdir(parents=True)
        ckpt = grid_dir / name / "model.pt"
        torch.save({"model": "diffmd", "params": {**point, "eps": 0.2}, "state_dict": {}, "epoch": 1,
                    "val_armse": 0.0}, ckpt)  # fmt: skip
        rows = [{"point": name, **point, "eps": eps, "val_armse": val, "checkpoint": str(ckpt),
                 **(extra(name, eps) if extra else {})} for eps, val in zip(GRID["eps"], eps_vals)]  # fmt: skip
        write_json(grid_dir / name / "validation.json", {"point": name, "rows": rows})
        files.append(str(grid_dir / name / "validation.json"))
    return files


def test_select_picks_lowest_finite(tmp_path):
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]])
    summary = search.write_selection(grid_dir, GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
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
    summary = search.write_selection(grid_dir, GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
    assert summary["all_diverged"] and math.isinf(load_torch(tmp_path / "model.pt")["val_armse"])


def test_select_reads_the_validation_metric(tmp_path):
    """Rows with ``val_metric`` (the trainer's select_by) are chosen by it, not by their rollout ARMSE."""
    metric = {("s0.01_a1_h1", 0.5): 0.2, ("s0.01_a1_h1", 0.9): None, ("s1_a1_h1", 0.5): 0.4, ("s1_a1_h1", 0.9): 0.1}
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]],
                         lambda name, eps: {"val_metric": metric[name, eps], "select_by": "one_step"})  # fmt: skip
    summary = search.write_selection(grid_dir, GRID, str(tmp_path / "model.pt"), str(tmp_path / "sel.json"))
    assert summary["best"]["point"] == "s1_a1_h1" and summary["best"]["eps"] == 0.9
    assert summary["select_by"] == "one_step" and summary["val_metric"] == [0.2, None, 0.4, 0.1]
    assert summary["best_val_metric_by_eps"] == {"0.5": 0.2, "0.9": 0.1}
    ckpt = load_torch(tmp_path / "model.pt")
    assert ckpt["val_metric"] == 0.1 and ckpt["select_by"] == "one_step" and ckpt["val_armse"] == 0.7


def test_select_refuses_rows_of_different_metrics(tmp_path):
    grid_dir = _fake_run(tmp_path, [[0.5, 0.6], [0.3, 0.7]], lambda name, eps: (
        {"val_metric": 0.1, "select_by": "one_step"} if name == "s1_a1_h1" else {}))  # fmt: skip
    with pytest.raises(ValueError, match="different metrics"):
        search.select(grid_dir)


def _main(args, capsys):
    try:
        rc = search.main(args)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    """Issue 15 row 12: ``error: <file or key>: <what>``, status 1, no traceback."""
    grid_dir = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]])
    sel = ["select", "--validations", *grid_dir, "--out-model", str(tmp_path / "m.pt"), "--out-selection",
           str(tmp_path / "s.json")]  # fmt: skip
    rc, err = _main(sel + ["--grid", "{sigma_s: [1]}"], capsys)
    assert rc == 1 and err.startswith("error: --grid: not valid JSON") and err.count("\n") == 1, err
    missing = tmp_path / "grid" / "s1_a1_h1" / "validation.json"
    missing.unlink()
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err == f"error: {missing}: file not found\n", err
    missing.write_text("{not json")
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err.startswith(f"error: {missing}: not valid JSON") and err.count("\n") == 1, err
    missing.write_text("[]")
    rc, err = _main(sel + ["--grid", json.dumps(GRID)], capsys)
    assert rc == 1 and err.startswith(f"error: {missing}: not a point's validation"), err
    rc, err = _main(sel + ["--grid", json.dumps({"sigma_s": [1.0]})], capsys)
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    val = ["validate", "--split", str(tmp_path / "split.json"), "--checkpoint", str(tmp_path / "none.pt"), "--eps",
           "0.5", "--out", str(tmp_path / "v.json")]  # fmt: skip
    rc, err = _main(val, capsys)
    assert rc == 1 and err == f"error: {tmp_path / 'none.pt'}: checkpoint not found\n", err
    rc, err = _main(val + ["--train-config", '{"select_by": "loss"}'], capsys)
    assert rc == 1 and err.startswith("error: --train-config: select_by: 'loss'"), err
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
             "val": {"start": 22, "stop": 30}, "test": {"start": 30, "stop": 38},
             "trajectory_sha256": sha256_file(tmp_path / "ethanol.npz")}  # fmt: skip
    write_json(tmp_path / "split.json", split)
    return str(tmp_path / "split.json")


def test_train_validate_select_end_to_end(tmp_path):
    from diffmd.engine.train import train

    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    cfg = {"batch_size": 10, "epochs": 1, "val_every": 1, "val_horizon": 3, "device": "cpu"}
    files = []
    for name in search.grid_points(GRID, DIFFMD):
        params = search.point_params(TINY, GRID, name, DIFFMD)
        train(split, "diffmd", params, cfg, 1, tmp_path / "grid" / name)
        doc = search.validate_point(split, str(tmp_path / "grid" / name / "model.pt"), GRID["eps"], cfg, 1)
        assert doc["batched"] and [r["eps"] for r in doc["rows"]] == GRID["eps"]
        # one rollout per point, at its best eps (the report's val_armse); the others are not rolled out
        best = min(doc["rows"], key=lambda r: r["val_metric"])
        assert [r["rollout"] for r in doc["rows"]] == [r is best for r in doc["rows"]]
        assert doc["rollouts"] == [best["eps"]] and best["score_evals"] > 0
        for row in doc["rows"]:
            assert row["point"] == name and (row["rollout"] or row["val_armse"] is None)
            assert row["val_armse"] is None or row["val_armse"] > 0
            assert row["select_by"] == "one_step" and row["val_metric"] == row["val_one_step"] > 0
        write_json(tmp_path / "grid" / name / "validation.json", doc)
        files.append(str(tmp_path / "grid" / name / "validation.json"))
    summary = search.write_selection(files, GRID, str(tmp_path / "model.pt"), str(tmp_path / "s.json"))
    finite = [r["val_metric"] for r in summary["points"] if r["val_metric"] is not None]
    assert finite and summary["best"]["val_metric"] == min(finite) and summary["select_by"] == "one_step"
    selected = load_torch(tmp_path / "model.pt")
    assert selected["params"]["eps"] == summary["best"]["eps"]
    assert summary["best"]["rollout"] and selected["val_armse"] is not None  # the selected model's ARMSE is reported


def test_corrected_model_grid_validates_one_eps_after_another(tmp_path):
    """diffmd_corrected's sampler is not DiffMD's ODE: its points are validated eps by eps (model.eps set for
    each, each row as a separate validation of that eps gives), and the selection writes the chosen eps."""
    from diffmd.engine.train import train

    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    cfg = {"batch_size": 10, "epochs": 1, "val_every": 1, "val_horizon": 3, "device": "cpu"}
    grid = {"kernel_scale": [1.0], "eps": [1e-3, 0.5]}
    tiny = {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "dropout": 0.0, "n_time_freq": 2}
    (name,) = search.grid_points(grid, CORRECTED)
    out = tmp_path / "grid" / name
    train(split, "diffmd_corrected", search.point_params(tiny, grid, name, CORRECTED), cfg, 1, out)
    doc = search.validate_point(split, str(out / "model.pt"), grid["eps"], cfg, 1)
    assert doc["point"] == "kernel_scale1" and not doc["batched"]
    rows = doc["rows"]
    assert [r["eps"] for r in rows] == grid["eps"] and all(r["params"] == {"kernel_scale": 1.0} for r in rows)
    assert rows[0]["val_one_step"] != rows[1]["val_one_step"]  # the sampler ran to each eps
    for row in rows:  # exactly one validation per eps (its rollout where the point's best eps rolled out)
        alone = search.validate_point(split, str(out / "model.pt"), [row["eps"]], cfg, 1)["rows"][0]
        assert alone["val_one_step"] == row["val_one_step"]
        assert alone["val_armse"] == row["val_armse"] if row["rollout"] else row["val_armse"] is None
    assert sum(r["rollout"] for r in rows) == 1
    write_json(out / "validation.json", doc)
    summary = search.write_selection([str(out / "validation.json")], grid, str(tmp_path / "model.pt"),
                                   str(tmp_path / "s.json"))  # fmt: skip
    ckpt = load_torch(tmp_path / "model.pt")
    assert ckpt["params"]["eps"] == summary["best"]["eps"] and ckpt["selection"]["kernel_scale"] == 1.0
    assert search.rank([str(out / "validation.json")], keep=1)["survivors"][0]["params"] == {"kernel_scale": 1.0}


def test_batched_eps_validation_matches_one_eps_at_a_time(tmp_path):
    """Every eps in one batch (one-step: one integration stepping onto each eps; rollouts: per-molecule clocks)
    gives each eps's numbers to the ODE's accuracy: both it and one eps at a time are checked against a
    tight-tolerance reference (at rtol 1e-5 the whole-batch RMS norm of one eps at a time lets ~4% through at
    eps 0.3 here; the batched path is within 1%). batch_eps off is exactly one validation per eps."""
    from diffmd.engine.common import save_torch
    from diffmd.engine.train import train

    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    # selected by rollout ARMSE, so every eps rolls out (with one_step only the best eps does)
    cfg = {"batch_size": 10, "epochs": 1, "val_every": 1, "val_horizon": 4, "device": "cpu",
           "select_by": "rollout_armse"}  # fmt: skip
    eps = [0.1, 0.3, 0.8, 0.99]
    params = {**search.point_params(TINY, GRID, "s0.01_a1_h1", DIFFMD),
              "sampler_options": {"ode": {"rtol": 1e-5, "atol": 1e-5}}}  # fmt: skip
    train(split, "diffmd", params, cfg, 1, tmp_path / "p")
    ckpt = str(tmp_path / "p" / "model.pt")
    tight = load_torch(ckpt)
    tight["params"]["sampler_options"] = {"ode": {"rtol": 1e-7, "atol": 1e-7}}
    save_torch(tmp_path / "tight.pt", tight)
    batched = search.validate_point(split, ckpt, eps, cfg, 1)
    single = search.validate_point(split, ckpt, eps, cfg, 1, batch_eps=False)
    ref = search.validate_point(split, str(tmp_path / "tight.pt"), eps, cfg, 1, batch_eps=False)
    assert batched["batched"] and not single["batched"]
    for b, one, r in zip(batched["rows"], single["rows"], ref["rows"]):
        assert one == {**search.validate(split, ckpt, one["eps"], cfg, 1), "seconds": one["seconds"],
                       "one_step_seconds": one["one_step_seconds"]} | {"batched": False}  # fmt: skip
        assert b["val_one_step"] == pytest.approx(r["val_one_step"], rel=1e-2)
        assert one["val_one_step"] == pytest.approx(r["val_one_step"], rel=5e-2)
        # a rollout feeds float32 predictions of an untrained network back in: solver-sized differences grow
        assert b["val_armse"] == pytest.approx(r["val_armse"], rel=5e-2)
    # the one-step losses differ between eps (the batch really integrates each to its own eps)
    assert len({round(r["val_one_step"], 9) for r in batched["rows"]}) == len(eps)


def test_per_molecule_eps_ode_matches_each_eps_alone():
    """The ODE sampler with one eps per molecule (clocks s_i = 1 - tau (1 - eps_i)) reproduces each molecule's
    own integration, and ode_path gives x(eps) at every eps of one integration."""
    from diffmd.models.diffmd.samplers import ode_path, ode_sampler
    from diffmd.models.diffmd.sde import ConditionalVESDE

    torch.manual_seed(0)
    sde = ConditionalVESDE(sigma_s=0.5)
    n_mol, n = 3, 4
    x0 = torch.randn(n_mol * n, 3, dtype=torch.float64)
    sigma = torch.full((n_mol * n,), 0.5, dtype=torch.float64)
    idx = torch.arange(n_mol).repeat_interleave(n)
    w = torch.randn(n_mol * n, 3, dtype=torch.float64)

    def score(x, s):  # a smooth, x- and s-dependent score
        return -(x - w) * (1 + s[:, None] if s.dim() else 1 + s)

    eps = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    x_all, nfe = ode_sampler(score, x0, sde, sigma, eps, batch_index=idx, rtol=1e-7, atol=1e-7)
    assert nfe > 0
    for i, e in enumerate(eps.tolist()):
        sl = slice(i * n, (i + 1) * n)
        alone, _ = ode_sampler(lambda x, s, sl=sl: score_slice(score, x, s, w[sl]), x0[sl], sde, sigma[sl], e,
                               rtol=1e-7, atol=1e-7)  # fmt: skip
        torch.testing.assert_close(x_all[sl], alone, rtol=1e-4, atol=1e-5)
    path, _ = ode_path(lambda x, s: score_slice(score, x, s, w[:n]), x0[:n], sde, sigma[:n], [0.9, 0.1, 0.5],
                       rtol=1e-7, atol=1e-7)  # fmt: skip
    for e, got in zip([0.9, 0.1, 0.5], path):
        alone, _ = ode_sampler(lambda x, s: score_slice(score, x, s, w[:n]), x0[:n], sde, sigma[:n], e,
                               rtol=1e-7, atol=1e-7)  # fmt: skip
        torch.testing.assert_close(got, alone, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eps values for"):
        ode_sampler(score, x0, sde, sigma, eps[:2], batch_index=idx)


def score_slice(score, x, s, w):
    return -(x - w) * (1 + (s[:, None] if s.dim() else s))


def test_rank_keeps_the_best_points_by_their_best_eps(tmp_path):
    files = _fake_run(tmp_path, [[0.5, None], [0.3, 0.7]],
                      lambda name, eps: {"val_metric": {0.5: 0.4, 0.9: None}[eps] if name == "s1_a1_h1" else
                                         {0.5: 0.2, 0.9: 0.1}[eps], "select_by": "one_step"})  # fmt: skip
    out = search.rank(files, keep=1)
    assert [r["point"] for r in out["survivors"]] == ["s0.01_a1_h1"] and out["ranked"][1]["score"] == 0.4
    assert [search.slot_point(GRID, DIFFMD, j, None) for j in (0, 1)] == ["s0.01_a1_h1", "s1_a1_h1"]
    write_json(tmp_path / "ranking.json", out)
    assert search.slot_point(GRID, DIFFMD, 0, str(tmp_path / "ranking.json")) == "s0.01_a1_h1"
    with pytest.raises(ValueError, match="no survivor 1"):
        search.slot_point(GRID, DIFFMD, 1, str(tmp_path / "ranking.json"))
    with pytest.raises(ValueError, match="--keep"):
        search.rank(files, keep=0)


def test_train_slot_trains_the_ranked_point_for_its_epochs(tmp_path):
    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    cfg = {"batch_size": 10, "epochs": 5, "val_every": 1, "val_horizon": 3, "device": "cpu"}
    files = _fake_run(tmp_path, [[0.5, 0.6], [0.3, 0.7]])
    write_json(tmp_path / "ranking.json", search.rank(files, keep=1))  # by val_armse: s1_a1_h1 first
    doc = search.train_slot(split, "diffmd", TINY, GRID, 0, 2, str(tmp_path / "ranking.json"), cfg, 1,
                          str(tmp_path / "rung1" / "slot0"))  # fmt: skip
    assert doc["point"] == "s1_a1_h1" and doc["epochs"] == 2 and len(doc["rows"]) == len(GRID["eps"])
    log = (tmp_path / "rung1" / "slot0" / "train_log.csv").read_text().strip().splitlines()
    assert len(log) == 1 + 2  # header + the slot's 2 epochs, not the config's 5
    assert json.loads((tmp_path / "rung1" / "slot0" / "validation.json").read_text())["slot"] == 0


def test_rollouts_run_only_where_a_selection_or_the_report_reads_them(tmp_path, monkeypatch):
    """one_step: the point's best eps only (report), or none (an earlier halving rung); rollout_armse: every eps,
    all of them in one batch of copies; the grid training itself rolls nothing out (--no-final-rollout)."""
    from diffmd.engine import train as T

    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    calls = []  # every validation rollout goes through validation_rollouts_eps: (eps of the batch's copies)
    real_eps = T.validation_rollouts_eps

    def count_eps(model, segs, eps_values, *a):
        calls.append([float(model.eps) if e is None else float(e) for e in eps_values])
        return real_eps(model, segs, eps_values, *a)

    monkeypatch.setattr(T, "validation_rollouts_eps", count_eps)
    eps = [0.2, 0.8]
    cfg = {"batch_size": 10, "epochs": 2, "val_every": 1, "val_horizon": 3, "device": "cpu"}
    params = search.point_params(TINY, GRID, "s0.01_a1_h1", DIFFMD)
    T.train(split, "diffmd", params, cfg, 1, tmp_path / "p", final_rollout=False)
    assert calls == []  # select_by one_step: no rollout during or after the grid training
    ckpt = str(tmp_path / "p" / "model.pt")
    doc = search.validate_point(split, ckpt, eps, cfg, 1, report_rollout=False)
    assert calls == [] and not any(r["rollout"] for r in doc["rows"])
    doc = search.validate_point(split, ckpt, eps, cfg, 1)
    best = min(doc["rows"], key=lambda r: r["val_metric"])["eps"]
    assert calls == [[best]] and doc["rollouts"] == [best]
    calls.clear()
    doc = search.validate_point(split, ckpt, eps, {**cfg, "select_by": "rollout_armse"}, 1, report_rollout=False)
    assert calls == [eps] and all(r["rollout"] for r in doc["rows"])  # every eps, one batch
    calls.clear()
    T.train(split, "diffmd", params, {**cfg, "select_by": "rollout_armse"}, 1, tmp_path / "q")
    assert len(calls) == 2  # every val_every (1) epoch of 2; the selected epoch had one, so none at the end
