"""Rollout and evaluation: CLIs end to end, divergence, stride and horizon, extended XYZ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_engine_pairs import toy_c7o2h10, toy_md17, toy_positions

from diffmd import batch as B
from diffmd.data.pairs import Segment
from diffmd.engine import evaluate as E
from diffmd.engine import rollout as R
from diffmd.engine import train as T
from diffmd.registry import TrajectoryModel, build_model
from diffmd.rundir import Rollout
from diffmd.testing import ETHANOL_Z

CFG = {"epochs": 1, "val_every": 1, "val_horizon": 10, "batch_size": 64, "device": "cpu"}


class Exploding(TrajectoryModel):
    """Doubles the displacement from the centroid every step (diverges), counting 'score evals'."""

    def __init__(self):
        super().__init__()
        self.evals = 0

    def forward(self, batch):
        self.evals += 3
        x = batch[B.POSITIONS]
        return x + (x - x.mean(0))

    def rollout_stats(self):
        out, self.evals = {"score_evals": float(self.evals), "resamples": 1.0}, 0
        return out


def test_cli_end_to_end_md17(tmp_path):
    split = toy_md17(tmp_path)
    run = tmp_path / "cv"
    T.main(["--split", str(split), "--model", "constant_velocity", "--train-config", json.dumps(CFG),
            "--out", str(run)])  # fmt: skip
    R.main(["--split", str(split), "--checkpoint", str(run / "model.pt"), "--rollout-config",
            json.dumps({"horizon": None}), "--seed", "1", "--out", str(run)])  # fmt: skip
    meta = {"dataset": "md17", "molecule": "ethanol", "model": "constant_velocity", "seed": 1}
    E.main(["--rollout", str(run / "rollout.npz"), "--meta", json.dumps(meta), "--out", str(run / "armse.json")])
    roll = np.load(run / "rollout.npz")
    assert roll["positions"].shape == (91, 9, 3)  # test frames 200..289 -> 90 steps, last target 290
    np.testing.assert_array_equal(roll["frame_indices"], np.arange(200, 291))
    np.testing.assert_array_equal(roll["reference"], toy_positions(300)[200:291])
    read = pytest.importorskip("ase.io").read  # ase: optional where the device check runs (issue 22)
    frames = read(run / "rollout.extxyz", index=":")
    assert len(frames) == 91
    np.testing.assert_allclose(frames[-1].get_positions(), roll["positions"][-1], atol=1e-6)
    rec = json.loads((run / "armse.json").read_text())
    assert rec["model"] == "constant_velocity" and rec["source"] == "xtb" and rec["n_frames"] == 90
    assert rec["armse"] > 0 and rec["armse_unaligned"] >= rec["armse"] - 1e-12
    assert len(rec["rmsd_per_frame"]) == 90 and rec["armse_curve"][-1] == pytest.approx(rec["armse"])
    assert (run / "provenance.json").exists()
    E.main(["summarize", "--out", str(tmp_path / "summary.json"), str(run / "armse.json")])
    assert json.loads((tmp_path / "summary.json").read_text())["runs"][0]["armse"] == rec["armse"]


def test_o2o_target_rollout(tmp_path):
    split = toy_c7o2h10(tmp_path)
    run = tmp_path / "static"
    T.train(str(split), "static", {}, CFG, seed=1, out=run)
    R.main(["--split", str(split), "--checkpoint", str(run / "model.pt"), "--target", "iso3",
                   "--rollout-config", json.dumps({"horizon": 50}), "--out", str(tmp_path / "iso3")])  # fmt: skip
    roll = np.load(tmp_path / "iso3" / "rollout.npz")
    assert str(roll["molecule"]) == "iso3" and roll["positions"].shape[0] == 51


def test_divergence_is_recorded_and_armse_is_null():
    seg = Segment("ethanol", toy_positions(80), ETHANOL_Z, start=2, stop=79)
    res = R.rollout(Exploding(), seg, 10, 40, divergence_bound_A=100.0)
    # each step doubles the spread (~2 Å): > 100 Å after 6 doublings
    assert res.diverged and 5 <= res.diverged_at <= 8
    assert np.isnan(res.positions[res.diverged_at :]).all() and np.isfinite(res.positions[: res.diverged_at]).all()
    assert res.score_evals[0] == 3
    # other counters (e.g. Score Dynamics' bond-check resamples) are summed over the steps taken
    assert res.stats == {"resamples": float(res.diverged_at)}
    roll = Rollout(path="rollout.npz", positions=res.positions, reference=seg.positions[res.frame_indices],
                   atomic_numbers=seg.atomic_numbers, frame_indices=res.frame_indices, stride=1, dt_fs=0.5,
                   diverged=True, diverged_at=res.diverged_at, seconds=res.seconds,
                   score_evals=res.score_evals, model="x", role="baseline")  # fmt: skip
    rec = E.evaluate(roll, {"dataset": "md17", "molecule": "ethanol", "model": "x", "seed": 1})
    assert rec["armse"] is None and rec["armse_unaligned"] is None and rec["diverged"]
    assert len(rec["rmsd_per_frame"]) == res.diverged_at - 1
    assert rec["score_evals_per_frame"] == 3


def test_stride_and_horizon_cover_the_same_time():
    seg = Segment("ethanol", toy_positions(300), ETHANOL_Z, start=200, stop=290)
    coarse = Segment("ethanol", seg.positions, ETHANOL_Z, start=200, stop=286, stride=5)
    assert R.n_steps_for(seg, 1, None, 200) == 90
    assert R.n_steps_for(coarse, 5, None, 200) == 18  # 90 frames / 5
    assert R.n_steps_for(coarse, 5, 50, 200) == 10
    model = build_model("constant_velocity", {"stride": 5})
    res = R.rollout(model, coarse, 200, 18, dtype=torch.float64)
    np.testing.assert_array_equal(res.frame_indices, 200 + 5 * np.arange(19))
    expected = 2 * seg.positions[200] - seg.positions[195]
    np.testing.assert_allclose(res.positions[1], expected, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_and_rollout_on_cuda(tmp_path):
    split = toy_md17(tmp_path)
    run = tmp_path / "egnn"
    T.train(str(split), "egnn", {"hidden": 8, "layers": 2}, {**CFG, "device": "cuda"}, seed=1, out=run)
    R.main(["--split", str(split), "--checkpoint", str(run / "model.pt"), "--rollout-config",
            json.dumps({"horizon": 20, "device": "cuda"}), "--out", str(run)])  # fmt: skip
    roll = np.load(run / "rollout.npz")
    assert roll["positions"].shape == (21, 9, 3) and np.isfinite(roll["positions"]).all()


def test_copies_of_different_molecules_roll_out_as_one_batch():
    """Validation rollouts of several segments run as one batch of copies (issue 21): each copy's trajectory is
    its own rollout's (a per-molecule model, to float round-off), a copy whose frames end earlier is cut there,
    and a diverging copy is frozen without touching the others."""
    from diffmd.testing import FORMALDEHYDE_X, FORMALDEHYDE_Z

    torch.manual_seed(0)
    model = build_model("egnn", {"hidden": 8, "layers": 1}).eval()
    rng = np.random.default_rng(0)
    eth = Segment("eth", toy_positions(40), ETHANOL_Z, start=2, stop=30)
    form = Segment("form", FORMALDEHYDE_X[None] + 0.01 * rng.normal(size=(20, 4, 3)), FORMALDEHYDE_Z, start=2, stop=15)
    res = R.rollout_copies(model, [eth, form], np.array([eth.start, form.start]), 8)
    for i, seg in enumerate((eth, form)):
        alone = R.rollout(model, seg, seg.start, 8)
        np.testing.assert_allclose(res.positions[i], alone.positions, atol=1e-5)
    assert list(res.diverged_at) == [-1, -1] and res.steps_taken == 8
    both = T.validation_rollouts(model, [eth, form], 6, 100.0, torch.device("cpu"))
    one = [T.validation_rollouts(model, [s], 6, 100.0, torch.device("cpu"))["armse"] for s in (eth, form)]
    assert both["armse"] == pytest.approx(np.mean(one), rel=1e-5)
    boom = R.rollout_copies(Exploding(), [eth, eth], np.array([2, 5]), 20, divergence_bound_A=50.0)
    assert (boom.diverged_at > 0).all() and boom.steps_taken == max(boom.diverged_at)
    assert boom.score_evals[boom.steps_taken:].sum() == 0  # the steps after the last divergence are not counted
