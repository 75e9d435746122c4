"""The selection metric is decided once (diffmd/selection.py): the trainer and the grid search select by the same
number for every ``train.select_by`` (before, a grid row labelled ``val_loss`` held the rollout ARMSE); and the
data facts a model takes travel with the data file."""

from __future__ import annotations

import pytest
import torch
from test_diffmd_tune import DIFFMD, GRID, TINY, _synthetic_split

from diffmd import selection
from diffmd.engine import grid as search
from diffmd.engine import train as T
from diffmd.engine.common import load_checkpoint, load_torch


def test_metric_names_one_number_per_select_by():
    assert selection.SELECT_BY == T.SELECT_BY == ("one_step", "rollout_armse", "val_loss")
    numbers = {"one_step": 1.0, "rollout_armse": 2.0, "val_loss": 3.0}
    for select_by, expected in numbers.items():
        assert selection.metric(select_by, 1.0, 2.0, 3.0) == expected
        assert T.select_metric(select_by, 1.0, 2.0, 3.0) == expected
    assert [s for s in selection.SELECT_BY if selection.needs_rollout(s)] == ["rollout_armse"]
    with pytest.raises(ValueError, match="train.select_by: 'best'"):
        selection.metric("best", 1.0, 2.0, 3.0)


@pytest.mark.parametrize("select_by", selection.SELECT_BY)
def test_trainer_and_grid_search_select_by_the_same_number(tmp_path, select_by):
    torch.set_num_threads(1)
    split = _synthetic_split(tmp_path)
    cfg = {"batch_size": 10, "epochs": 1, "val_every": 1, "val_horizon": 3, "device": "cpu", "select_by": select_by,
           "val_frames": 8}  # fmt: skip
    params = search.point_params(TINY, GRID, "s0.01_a1_h1", DIFFMD)
    T.train(split, "diffmd", params, cfg, 1, tmp_path / "p")
    ckpt = load_torch(tmp_path / "p" / "model.pt")
    assert ckpt["select_by"] == select_by and ckpt["val_metric"] is not None
    if select_by == "val_loss":  # the trainer's number is the model's validation loss
        model, _ = load_checkpoint(tmp_path / "p" / "model.pt", torch.device("cpu"))
        pairs = T.validation_pairs(T.split_segments(T.load_split(split), "val", stride=1), 8)
        assert ckpt["val_metric"] == pytest.approx(T.selection_val_loss(model, pairs, 10, torch.device("cpu"), 1))
    doc = search.validate_point(split, str(tmp_path / "p" / "model.pt"), [0.2, 0.8], cfg, 1)
    for row in doc["rows"]:
        assert row["select_by"] == select_by
        expected = selection.metric(select_by, row["val_one_step"], row["val_armse"], row["val_loss"])
        assert row["val_metric"] == expected and row["val_metric"] is not None, row
        assert row["val_metric"] == T.select_metric(select_by, row["val_one_step"], row["val_armse"], row["val_loss"])
    if select_by == "val_loss":  # the grid computes the trainer's validation loss, not a rollout ARMSE
        assert all(r["val_loss"] is not None for r in doc["rows"]) and len(doc["rollouts"]) == 1
        model, _ = load_checkpoint(tmp_path / "p" / "model.pt", torch.device("cpu"))
        model.eps = 0.2
        pairs = T.validation_pairs(T.split_segments(T.load_split(split), "val", stride=1), 8)
        assert doc["rows"][0]["val_loss"] == pytest.approx(
            T.selection_val_loss(model, pairs, 10, torch.device("cpu"), 1))


def test_data_facts_come_from_the_trajectory_file(tmp_path):
    """diffmd_corrected's kernel takes dt and temperature from the training data's file (300 K here), never from a
    config section that may describe another source (its YAML says 500 K)."""
    from test_diffmd_tune import CORRECTED

    split = _synthetic_split(tmp_path)
    params = search.point_params({"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ffn": 16},
                               {"kernel_scale": [1.0], "eps": [0.5]}, "kernel_scale1", CORRECTED)  # fmt: skip
    assert T.data_facts(split) == {"dt_fs": 0.5, "temperature_K": 300.0}
    T.train(split, "diffmd_corrected", {**params, "temperature_K": 500.0}, {"epochs": 1, "batch_size": 10,
            "val_horizon": 3, "val_frames": 8, "device": "cpu"}, 1, tmp_path / "c")  # fmt: skip
    ckpt = load_torch(tmp_path / "c" / "model.pt")
    assert ckpt["params"]["temperature_K"] == 300.0 and ckpt["params"]["dt_fs"] == 0.5
