"""The engine's unit-scale loss, early stopping and post-step hook (issue 13 items 1-2).

* ``acceleration_scale`` against a hand computation; the constant-velocity loss on its own training
  pairs is then exactly 1, and a model's checkpoint carries the scale it was trained with.
* Early stopping on the selection number: stops ``early_stop_patience`` epochs after the best, and a run
  killed after the stop point resumes to the same final checkpoint.
* ``after_optimizer_step`` is called once per optimiser step.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from test_engine_pairs import toy_md17

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, load_split, split_segments
from diffmd.engine import train as T
from diffmd.engine.common import load_torch
from diffmd.registry import build_model, get_model_class

PARAMS = {"hidden": 8, "layers": 2}
CFG = {"epochs": 8, "val_every": 4, "val_horizon": 10, "batch_size": 32, "device": "cpu", "max_train_pairs": 64,
       "val_frames": 16, "scheduler": {"patience": 0, "factor": 0.5, "min_lr": 1e-7}}  # fmt: skip


def _pairs(split_path) -> PairDataset:
    return PairDataset(split_segments(load_split(split_path), "train"), 64)


def test_acceleration_scale_is_the_rms_second_difference(tmp_path):
    data = _pairs(toy_md17(tmp_path))
    diffs = []
    for i in range(len(data)):
        seg, t = data.segments[data.seg_of[i]], int(data.frame_of[i])
        x = seg.positions.astype(np.float64)
        diffs.append(x[t + 1] - 2 * x[t] + x[t - 1])
    expected = math.sqrt(float(np.mean(np.square(diffs))))
    assert T.acceleration_scale(data, batch_size=7) == pytest.approx(expected, rel=1e-9)


def test_constant_velocity_scores_one_and_the_scale_is_in_the_checkpoint(tmp_path):
    split = toy_md17(tmp_path)
    data = _pairs(split)
    model = build_model("constant_velocity")
    model.loss_scale = T.acceleration_scale(data)
    batch = data.batch(np.arange(len(data)), dtype=torch.float64)
    assert float(model.loss(batch)) == pytest.approx(1.0, rel=1e-6)
    # the old Å² loss is the new one times the scale squared
    raw = float(((model(batch) - batch[B.TARGET_POSITIONS]) ** 2).mean())
    assert raw == pytest.approx(model.loss_scale**2, rel=1e-6)
    T.train(str(split), "egnn", PARAMS, {**CFG, "epochs": 1}, seed=1, out=tmp_path / "run")
    ckpt = load_torch(tmp_path / "run" / "model.pt")
    assert ckpt["loss_scale"] == pytest.approx(model.loss_scale, rel=1e-6)


def _fake_one_step(monkeypatch, values):
    calls = []

    def fake(model, data, batch_size, device):
        calls.append(1)
        return values[len(calls) - 1]

    monkeypatch.setattr(T, "validation_one_step", fake)
    return calls


def test_early_stopping_stops_patience_epochs_after_the_best(tmp_path, monkeypatch, capsys):
    split = toy_md17(tmp_path)
    _fake_one_step(monkeypatch, [3.0, 1.0, 2.0, 2.5, 2.6, 0.5, 0.4, 0.3])  # best at 2, then worse for 3
    info = T.train(str(split), "egnn", PARAMS, {**CFG, "early_stop_patience": 3}, seed=1, out=tmp_path / "run")
    with open(tmp_path / "run" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert info["epochs"] == 5 and info["best_epoch"] == 2
    assert "early stop after epoch 5" in capsys.readouterr().out
    assert load_torch(tmp_path / "run" / "model.pt")["epoch"] == 2


def test_no_early_stopping_with_patience_zero(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    _fake_one_step(monkeypatch, [3.0, 1.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9])
    info = T.train(str(split), "egnn", PARAMS, {**CFG, "early_stop_patience": 0}, seed=1, out=tmp_path / "run")
    assert info["epochs"] == CFG["epochs"]


def test_a_run_killed_after_the_stop_decision_resumes_without_training_more(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    cfg = {**CFG, "early_stop_patience": 2}
    _fake_one_step(monkeypatch, [3.0, 1.0, 2.0, 2.5, 0.1, 0.1, 0.1, 0.1])  # best 2: stops after epoch 4
    assert T.train(str(split), "egnn", PARAMS, cfg, seed=3, out=tmp_path / "run")["epochs"] == 4
    first = load_torch(tmp_path / "run" / "model.pt")
    # as if killed after the last epoch's last.pt but before model.pt was written
    (tmp_path / "run" / "model.pt").unlink()
    (tmp_path / "run" / "last.done.pt").rename(tmp_path / "run" / "last.pt")
    monkeypatch.setattr(T, "train_epoch", lambda *a: pytest.fail("a stopped run trained another epoch"))
    assert T.train(str(split), "egnn", PARAMS, cfg, seed=3, out=tmp_path / "run")["epochs"] == 4
    again = load_torch(tmp_path / "run" / "model.pt")
    assert again["epoch"] == first["epoch"] == 2
    assert all(torch.equal(first["state_dict"][k], again["state_dict"][k]) for k in first["state_dict"])


def test_after_optimizer_step_is_called_once_per_step(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    cls = get_model_class("egnn")
    calls = []
    monkeypatch.setattr(cls, "after_optimizer_step", lambda self: calls.append(1), raising=False)
    T.train(str(split), "egnn", PARAMS, {**CFG, "epochs": 2}, seed=1, out=tmp_path / "run")
    n_pairs = len(_pairs(split))
    assert len(calls) == 2 * math.ceil(n_pairs / CFG["batch_size"])


def test_val_loss_selects_the_checkpoint_and_is_logged(tmp_path, monkeypatch):
    split = toy_md17(tmp_path)
    values = iter([3.0, 1.0, 2.0, 2.5])
    monkeypatch.setattr(T, "validation_loss", lambda *a: next(values))
    cfg = {**CFG, "epochs": 4, "select_by": "val_loss"}
    info = T.train(str(split), "egnn", PARAMS, cfg, seed=1, out=tmp_path / "run")
    with open(tmp_path / "run" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["val_loss"] for r in rows] == ["3.0", "1.0", "2.0", "2.5"]
    assert info["best_epoch"] == 2 and info["select_by"] == "val_loss"
    assert load_torch(tmp_path / "run" / "model.pt")["val_metric"] == 1.0


def test_validation_loss_is_the_models_loss_on_the_validation_pairs(tmp_path):
    data = _pairs(toy_md17(tmp_path))
    model = build_model("constant_velocity")
    model.loss_scale = T.acceleration_scale(data)
    assert T.validation_loss(model, data, 7, torch.device("cpu")) == pytest.approx(1.0, rel=1e-5)
