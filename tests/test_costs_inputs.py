"""The costs table's inputs are declared (workflow/rules/reports.smk): the plan lists the benchmark TSV of every
training job behind the tables' runs from the rules' own patterns; nothing globs results/benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from diffmd.config import deep_update
from diffmd.plan import O2O_TRAINED, Plan

REPO = Path(__file__).resolve().parents[1]
QUICK = deep_update(yaml.safe_load((REPO / "config.yaml").read_text()),
                    yaml.safe_load((REPO / "config" / "quick.yaml").read_text()))  # fmt: skip
PATTERNS = {"train": "b/train/{dataset}/{molecule}/{model}/seed{seed}.tsv",
            "point": "b/point/{dataset}/{molecule}/{model}/seed{seed}/{point}.tsv",
            "rung": "b/point/{dataset}/{molecule}/{model}/seed{seed}/rung{rung}_slot{slot}.tsv"}  # fmt: skip


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data on disk: the plan's check of existing files finds none


def test_every_training_job_of_every_run_once():
    plan = Plan(QUICK)
    files = plan.training_benchmarks(PATTERNS)
    assert len(files) == len(set(files))
    for dataset, runs in (("md17", plan.md17_molecules), ("c7o2h10", [O2O_TRAINED])):
        for model in plan.models_for(dataset):
            for run in runs:
                mine = [f for f in files if f"/{dataset}/{run}/{model}/seed" in f]
                if model in plan.engine_models():
                    assert mine == [f"b/train/{dataset}/{run}/{model}/seed{s}.tsv" for s in plan.seeds]
                else:  # a tuned model: each trained point (full search) or halving slot, every seed
                    jobs = plan.tuning_jobs(model, dataset)
                    assert len(mine) == len(plan.seeds) * jobs.get("diffmd_train_point", jobs.get("diffmd_rung"))


def test_a_halving_search_lists_its_slots():
    grid = {"sigma_s": [0.01, 0.1, 1.0], "a_bar": [1.0], "eta_sigma": [1.0], "eps": [0.5]}
    cfg = deep_update(QUICK, {"diffmd": {"grid": grid, "search": "halving", "halving": {"eta": 3}}})
    plan = Plan(cfg)
    schedule = plan.halving_schedule("diffmd", "md17")
    files = [f for f in plan.training_benchmarks(PATTERNS) if "/md17/" in f and "/diffmd/" in f]
    per_run = sum(r["points"] for r in schedule) * len(plan.seeds) * len(plan.md17_molecules)
    assert len(schedule) > 1 and len(files) == per_run and all("_slot" in f for f in files)
