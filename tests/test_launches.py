"""Launch-light, sync-free hot loops (issue 21), counted on the CPU with the dispatch counter (diffmd.profiling):
zero host syncs per training step and per network evaluation of every engine-trained model, zero per step of a
fixed-step sampler, the masked ODE solver only at its done-checks, the rollout loop once per 64 steps; and
benchmarks/launches.py's units at the quick sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models_all import MODELS, quick_params

from benchmarks import launches as L
from diffmd.profiling import count
from diffmd.registry import get_model_class, uses_accelerator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ENGINE = [m for m in MODELS if uses_accelerator(get_model_class(m))]
CFG = {"lr": 1e-3, "batch_size": 8}


def test_the_counter_flags_host_reads():
    x = torch.arange(6.0)

    def reads():
        int(x.max())  # .item()-like
        x[x > 2]  # a boolean mask (a hidden nonzero)
        torch.nonzero(x)
        x.tolist()

    c = count(reads)
    assert c.syncs == 4 and len(c.sync_sites) == 4
    assert count(lambda: torch.where(x > 2, x, 0.0) + 1).syncs == 0


def test_engine_models_are_the_learned_ones():
    assert {"diffmd", "diffmd_corrected", "egnn", "gmn", "scfnn", "score_dynamics", "tfn", "rf"} <= set(ENGINE)
    assert not {"static", "constant_velocity", "force_verlet", "sgdml", "xtb_nve"} & set(ENGINE)


@pytest.mark.parametrize("name", ENGINE)
def test_no_host_sync_in_a_training_step_or_a_network_call(name):
    model, k = L.paper_model(name, quick_params(name))
    seg = L.segment_of(L.md17_molecule("ethanol"), k)
    step = L.train_step_counts(model, CFG, seg, 8)
    assert step["eager"]["syncs"] == 0, step["sync_sites"]
    assert step["captured"]["launches"] < step["eager"]["launches"]
    ev = L.inference_counts(model, seg, "eval")
    assert ev["eager"]["syncs"] == 0, ev["sync_sites"]


@pytest.mark.parametrize("sampler", ["euler_maruyama", "pc"])
def test_fixed_step_samplers_never_read_the_device(sampler):
    options = {"n_steps": 3, **({"n_corrector": 1} if sampler == "pc" else {})}
    params = {**quick_params("diffmd"), "sampler": sampler, "sampler_options": {sampler: options}}
    model, k = L.paper_model("diffmd", params)
    seg = L.segment_of(L.md17_molecule("ethanol"), k)
    pred = L.inference_counts(model, seg, "predict", batch=2)
    assert pred["eager"]["syncs"] == 0, pred["sync_sites"]
    model, k = L.paper_model("diffmd_corrected", quick_params("diffmd_corrected"))
    assert L.inference_counts(model, seg, "predict")["eager"]["syncs"] == 0


def test_masked_ode_reads_the_device_at_its_done_checks_only():
    model, k = L.paper_model("diffmd", quick_params("diffmd"))
    model.sampler_options = {**model.sampler_options, "compact": False}
    pred = L.inference_counts(model, L.segment_of(L.md17_molecule("ethanol"), k), "predict", batch=2)
    iterations = (pred["evals"] - 2) / 6
    assert 0 < pred["eager"]["syncs"] <= iterations / 4 + 1, pred["sync_sites"]
    # captured: the score network is one launch per call; the solver's own ops stay eager
    assert pred["captured"]["launches"] < pred["eager"]["launches"] / 2


def test_rollout_loop_reads_the_device_once_per_check():
    over = L.rollout_overhead(L.md17_molecule("ethanol"))
    assert over["syncs"] == pytest.approx(1 / 64) and 0 < over["ops"] < 60


def test_units_and_rows_at_quick_size():
    rec = L.model_units("egnn", quick_params("egnn"), CFG, L.md17_molecule("ethanol"),
                        overhead=L.rollout_overhead(L.md17_molecule("ethanol")))  # fmt: skip
    assert {"train_step", "eval", "predict", "rollout_step"} <= set(rec["units"])
    rows = L.rows_of(rec, "md17")
    assert {r["mode"] for r in rows} == {"eager", "captured"} and all(r["syncs"] < 1 for r in rows)
    train = next(r for r in rows if r["unit"] == "train_step" and r["mode"] == "eager")
    assert train["gflop"] > 0 and train["batch"] == 8
    mol = L.c7o2h10_molecule()
    assert mol.atoms == 19 and np.isfinite(mol.positions).all()
