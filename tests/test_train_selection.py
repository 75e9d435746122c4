"""Checkpoint selection (issue 12 item 7): ``train.select_by`` one_step (default) or rollout_armse.

The one-step loss against a hand computation, what drives the best checkpoint and the LR schedule in
each mode, the log's columns (empty cells, never "nan"), the checkpoint keys, reference rows with both
numbers, the one-step loss leaving the training untouched, and the printed epoch line.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from test_engine_pairs import toy_md17, toy_positions

from diffmd.data.pairs import load_split, split_segments
from diffmd.engine import train as T
from diffmd.engine.common import load_torch
from diffmd.registry import build_model

PARAMS = {"hidden": 8, "layers": 2}
CFG = {"epochs": 4, "val_every": 3, "val_horizon": 10, "batch_size": 32, "device": "cpu", "max_train_pairs": 64,
       "val_frames": 16, "scheduler": {"patience": 0, "factor": 0.5, "min_lr": 1e-7}}  # fmt: skip


def read_log(path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def fake_one_step(monkeypatch, values: list[float]) -> list[int]:
    """Replace the one-step loss by ``values`` in call order; returns the list of calls made (their count)."""
    calls: list[int] = []

    def fake(model, data, batch_size, device):
        calls.append(len(calls))
        return values[len(calls) - 1]

    monkeypatch.setattr(T, "validation_one_step", fake)
    return calls


def test_defaults_come_from_the_schema():
    assert T.DEFAULTS["select_by"] == "one_step" and T.DEFAULTS["val_frames"] == 2000
    with pytest.raises(ValueError, match="train.select_by"):
        T.resolve_train_config({"select_by": "loss"})
    with pytest.raises(ValueError, match="train.val_frames"):
        T.resolve_train_config({"val_frames": 0})


def test_one_step_loss_is_the_rms_per_atom_error_on_evenly_spread_frames(tmp_path):
    split = load_split(toy_md17(tmp_path))  # validation frames 150..199
    segs = split_segments(split, "val", stride=1)
    data = T.validation_pairs(segs, 10)
    frames = 150 + np.unique(np.linspace(0, 49, 10).round().astype(int))
    np.testing.assert_array_equal(data.frame_of, frames)
    assert len(T.validation_pairs(segs, 5000)) == 50  # all frames when fewer than asked

    x = toy_positions(300)
    model = build_model("constant_velocity", {})
    pred = 2 * x[frames] - x[frames - 1]  # x(t) + v(t)
    expected = math.sqrt(np.mean(((pred - x[frames + 1]) ** 2).sum(-1)))
    got = T.validation_one_step(model, data, 3, torch.device("cpu"))  # batches of 3: batching changes nothing
    assert got == pytest.approx(expected, rel=1e-5) and expected > 0
    static = math.sqrt(np.mean(((x[frames] - x[frames + 1]) ** 2).sum(-1)))
    assert T.validation_one_step(build_model("static", {}), data, 64, torch.device("cpu")) == pytest.approx(
        static, rel=1e-5
    )


def test_one_step_selects_the_checkpoint_and_drives_the_schedule(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    calls = fake_one_step(monkeypatch, [3.0, 1.0, 2.0, 2.5])  # best at epoch 2, which has no rollout
    info = T.train(str(split), "egnn", PARAMS, CFG, seed=1, out=tmp_path / "run")
    assert len(calls) == 4  # every epoch
    rows = read_log(tmp_path / "run" / "train_log.csv")
    assert list(rows[0]) == ["epoch", "loss", "val_one_step", "val_armse", "lr", "seconds", "val_loss"]
    assert [r["val_one_step"] for r in rows] == ["3.0", "1.0", "2.0", "2.5"]
    # nothing reads a rollout while selecting by one_step: none during training (issue 21), one at the end
    assert [r["val_armse"] == "" for r in rows] == [True, True, True, True]
    assert "nan" not in (tmp_path / "run" / "train_log.csv").read_text()
    # patience 0: every epoch without a new best halves the learning rate
    assert [float(r["lr"]) for r in rows] == [5e-4, 5e-4, 2.5e-4, 1.25e-4]
    ckpt = load_torch(tmp_path / "run" / "model.pt")
    assert ckpt["epoch"] == 2 and ckpt["select_by"] == "one_step" and ckpt["val_metric"] == 1.0
    assert ckpt["val_armse"] is not None and math.isfinite(ckpt["val_armse"])  # rolled out at the end
    assert info == {**info, "best_epoch": 2, "best_val_metric": 1.0, "select_by": "one_step"}
    best = load_torch(tmp_path / "run" / "best.pt")
    assert best["val_armse"] == ckpt["val_armse"]


def test_rollout_armse_keeps_the_papers_selection(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    calls = fake_one_step(monkeypatch, [9.0, 9.0])
    cfg = {**CFG, "select_by": "rollout_armse", "val_every": 2}
    T.train(str(split), "egnn", PARAMS, cfg, seed=1, out=tmp_path / "run")
    assert len(calls) == 2  # only with the validation rollouts (epochs 2 and 4)
    rows = read_log(tmp_path / "run" / "train_log.csv")
    assert [r["val_one_step"] for r in rows] == ["", "9.0", "", "9.0"]
    assert [r["val_armse"] != "" for r in rows] == [False, True, False, True]
    ckpt = load_torch(tmp_path / "run" / "model.pt")
    vals = {int(r["epoch"]): float(r["val_armse"]) for r in rows if r["val_armse"]}
    assert ckpt["select_by"] == "rollout_armse" and ckpt["epoch"] == min(vals, key=vals.get)
    assert ckpt["val_metric"] == ckpt["val_armse"] == vals[ckpt["epoch"]]


def test_the_one_step_loss_leaves_the_training_unchanged(tmp_path, monkeypatch):
    """rollout_armse with the one-step loss (even one that draws random numbers) trains bitwise as without it,
    for a training that itself draws from the global RNG (as the diffusion models' losses do)."""
    split = toy_md17(tmp_path)
    cfg = {**CFG, "select_by": "rollout_armse", "val_every": 1, "epochs": 3}
    real, real_epoch = T.validation_one_step, T.train_epoch

    def noisy(model, data, batch_size, device):
        torch.rand(7), np.random.rand(3)
        return real(model, data, batch_size, device)

    def random_epoch(model, opt, data, cfg, seed, epoch, device):
        loss = real_epoch(model, opt, data, cfg, seed, epoch, device)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-4 * torch.randn_like(p))
        return loss

    monkeypatch.setattr(T, "validation_one_step", noisy)
    monkeypatch.setattr(T, "train_epoch", random_epoch)
    T.train(str(split), "egnn", PARAMS, cfg, seed=4, out=tmp_path / "with")
    monkeypatch.setattr(T, "isolated_rng", lambda seed, fn: None)  # no one-step loss at all
    T.train(str(split), "egnn", PARAMS, cfg, seed=4, out=tmp_path / "without")
    a, b = load_torch(tmp_path / "with" / "model.pt"), load_torch(tmp_path / "without" / "model.pt")
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    ra, rb = read_log(tmp_path / "with" / "train_log.csv"), read_log(tmp_path / "without" / "train_log.csv")
    assert [(r["loss"], r["val_armse"], r["lr"]) for r in ra] == [(r["loss"], r["val_armse"], r["lr"]) for r in rb]
    assert all(r["val_one_step"] for r in ra) and not any(r["val_one_step"] for r in rb)


@pytest.mark.parametrize("select_by", ["one_step", "rollout_armse"])
def test_reference_models_get_both_numbers_in_one_row(tmp_path, capsys, select_by):
    split = toy_md17(tmp_path)
    T.train(str(split), "constant_velocity", {}, {**CFG, "select_by": select_by}, seed=1, out=tmp_path / "cv")
    (row,) = read_log(tmp_path / "cv" / "train_log.csv")
    assert float(row["val_one_step"]) > 0 and float(row["val_armse"]) > 0
    ckpt = load_torch(tmp_path / "cv" / "model.pt")
    assert ckpt["select_by"] == select_by and ckpt["val_armse"] == float(row["val_armse"])
    assert ckpt["val_metric"] == float(row["val_one_step" if select_by == "one_step" else "val_armse"])
    assert "nan" not in capsys.readouterr().out


def test_printed_epoch_line_counts_epochs_and_leaves_blanks():
    row = {"epoch": 3, "loss": 1.5e-3, "val_one_step": 0.012, "val_armse": None, "lr": 5e-4, "seconds": 2.0}
    line = T.format_epoch_line(row, 200, elapsed_s=6.0, eta_s=3994.0)
    assert line.startswith("epoch   3/200  loss") and "val_one_step 1.2000e-02" in line
    assert "nan" not in line and "val_armse             lr" in line
    assert line.endswith("2.0s  elapsed 0:06  eta 1:06:34")
