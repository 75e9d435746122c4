"""The paper-scale cost model (benchmarks/paper_cost.py): projection arithmetic, the paper plan's counts, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.paper_cost import count_jobs, counting_plan, main, paper_counts, project, unit_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def paper_plan():
    # the counts only: the quick profile's short trajectories on disk must not stop the paper config
    return counting_plan(yaml.safe_load((ROOT / "config.yaml").read_text()))


def test_project_multiplies_unit_costs_by_counts() -> None:
    costs = {"a": {"train_step": 2.0, "predict_1": 0.5}, "b": {"train_step": 3.6}}
    counts = [
        {"rule": "train", "model": "a", "unit": "train_step", "count": 1800},  # 3600 s = 1 h
        {"rule": "train", "model": "b", "unit": "train_step", "count": 1000},  # 3600 s = 1 h
        {"rule": "rollout", "model": "a", "unit": "predict_1", "count": 3600},  # 1800 s = 0.5 h
        {"rule": "rollout", "model": "b", "unit": "predict_1", "count": 10},  # not measured: NA
    ]
    out = project(costs, counts)
    assert out["per_rule_h"] == pytest.approx({"train": 2.0, "rollout": 0.5})
    assert out["total_h"] == pytest.approx(2.5)
    assert out["missing"] == [("b", "predict_1")]
    assert out["rows"][2]["seconds"] == pytest.approx(1800.0)
    assert out["rows"][3]["device_hours"] is None


def test_unit_names() -> None:
    assert unit_name("predict_1") == "predict_1"
    assert unit_name("predict_batched", 0.2) == "predict_batched@eps0.2"


def test_paper_counts(paper_plan) -> None:
    counts = paper_counts(paper_plan)
    jobs = count_jobs(counts)
    # the default search, successive halving: 96 + 32 + 11 + 4 slots x (8 MD17 molecules + the O2O training)
    assert jobs["diffmd_rung"] == (96 + 32 + 11 + 4) * 9
    # diffmd_corrected's own grid (diffmd_corrected.grid, searched in full): 3 kernel_scale points x 9 runs, each
    # trained and validated at both eps in one job (one eps after another: its sampler is not DiffMD's ODE)
    assert jobs["diffmd_train_point"] == 3 * 9 and jobs["diffmd_validate"] == 3 * 9
    corrected = [r for r in counts if r["rule"] == "diffmd_validate"]
    assert {r["model"] for r in corrected} == {"diffmd_corrected"} and {r["eps"] for r in corrected} == {1e-3, 1e-2}
    # timed trainings: 7 engine-trained learned models (the 6 baselines, Score Dynamics; not the tuned DiffMD and
    # diffmd_corrected, sGDML, references, floors or oracles) x 9
    assert jobs["train"] == 7 * 9
    rows = {(r["rule"], r["model"], r["dataset"], r["unit"]): r["count"] for r in counts}
    # EGNN on MD17: 8 molecules x 200 epochs x 20,000 / 200 steps
    assert rows[("train", "egnn", "md17", "train_step")] == 8 * 200 * 100
    # its validation rollouts: 200 / 5 epochs x 1,000 frames; one-step: 200 epochs x 2,000 frames
    assert rows[("train", "egnn", "md17", "predict_1")] == 8 * 40 * 1000
    assert rows[("train", "egnn", "md17", "predict_batched")] == 8 * 200 * 2000
    # DiffMD's rung 0: 768 MD17 slots x 8 of 200 epochs x 100 steps
    rung0 = [r for r in counts if r["rule"] == "diffmd_rung" and r.get("rung") == 0 and r["dataset"] == "md17"]
    assert next(r["count"] for r in rung0 if r["unit"] == "train_step") == 768 * 8 * 100
    # the rollout rule: 10,000 test frames; 32 starts x 500 fs / 0.5 fs + 1,000 one-step frames, batched
    assert rows[("rollout", "egnn", "md17", "predict_1")] == 8 * 10000
    assert rows[("rollout", "egnn", "md17", "predict_batched")] == 8 * (32 * 1000 + 1000)
    # Score Dynamics (stride 100 in config.yaml) takes a hundredth of the steps
    assert rows[("rollout", "score_dynamics", "md17", "predict_1")] == 8 * 10000 // 100
    assert not any(r["model"] in ("static", "xtb_nve", "sgdml", "force_verlet") for r in counts)


def test_cli_tiny_budget(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["models"] = ["static", "rf", "egnn"]
    out_csv, out_md = tmp_path / "paper_cost.csv", tmp_path / "paper_cost.md"
    result = main(["--config-json", json.dumps(config), "--device", "cpu", "--budget-s", "2",
                   "--out-csv", str(out_csv), "--out-md", str(out_md)])  # fmt: skip
    assert result["total_h"] > 0
    md = out_md.read_text()
    assert "CPU-hours" in md and "| total" in md and "egnn" in md
    head = out_csv.read_text().splitlines()[0]
    assert head == "rule,model,dataset,unit,count,unit_s,device_hours,device"


def test_paper_counts_full_grid() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["diffmd"]["search"] = "full"
    plan = counting_plan(config)
    counts = paper_counts(plan)
    jobs = count_jobs(counts)
    # 96 grid points (+ diffmd_corrected's 3) x 9 training runs, one validation per point (all 6 eps, batched)
    assert jobs["diffmd_train_point"] == (96 + 3) * 9 and jobs["diffmd_validate"] == (96 + 3) * 9
    rows = {(r["rule"], r["dataset"], r["unit"]): r["count"] for r in counts
            if r["rule"] == "diffmd_validate" and r["model"] == "diffmd" and "rollout" in r["what"]}  # fmt: skip
    # 768 MD17 points x 1,000 rollout frames per eps copy, batched, each copy at its own eps's cost per step
    eps = [float(e) for e in config["diffmd"]["grid"]["eps"]]
    assert {u for (_, d, u) in rows if d == "md17"} == {unit_name("predict_batched", e) for e in eps}
    assert all(rows[("diffmd_validate", "md17", unit_name("predict_batched", e))] == 768 * 1000 for e in eps)


def test_units_out_then_in_reprojects_without_measuring(tmp_path: Path) -> None:
    """A device check's unit costs (--units-out) project another config anywhere (--units-in), labelled with the
    device they came from; a damaged file stops with one line naming it and the key."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["models"] = ["static", "rf"]
    units = tmp_path / "units.json"
    first = main(["--config-json", json.dumps(config), "--device", "cpu", "--budget-s", "1", "--units-out",
                  str(units), "--out-csv", str(tmp_path / "a.csv"), "--out-md", str(tmp_path / "a.md")])  # fmt: skip
    record = json.loads(units.read_text())
    assert record["unit"] == "CPU-hours" and record["device"].startswith("CPU") and record["costs"]["rf"]["train_step"]
    record["device"], record["unit"] = "NVIDIA H200 (cuda:0)", "GPU-hours"  # as a GPU's device check writes it
    record["costs"]["rf"] = {k: v / 100 for k, v in record["costs"]["rf"].items()}
    units.write_text(json.dumps(record))
    config["splits"]["md17"]["n_train"] = 2 * int(config["splits"]["md17"]["n_train"])  # another config
    out_md = tmp_path / "b.md"
    second = main(["--config-json", json.dumps(config), "--units-in", str(units), "--out-csv", str(tmp_path / "b.csv"),
                   "--out-md", str(out_md)])  # fmt: skip
    md = out_md.read_text()
    assert "GPU-hours" in md and "NVIDIA H200" in md and "read from" in md
    train_a, train_b = first["per_rule_h"]["train"], second["per_rule_h"]["train"]
    assert 0 < train_b < train_a  # 1/100 of the unit cost, 2x the training steps (validation unchanged)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**record, "costs": {"rf": {"train_step": "fast"}}}))
    with pytest.raises(SystemExit, match=r"bad.json: costs.rf"):
        main(["--units-in", str(bad), "--out-csv", str(tmp_path / "c.csv"), "--out-md", str(tmp_path / "c.md")])
    bad.write_text("{}")
    with pytest.raises(SystemExit, match=r"bad.json: not a paper_cost --units-out file"):
        main(["--units-in", str(bad), "--out-csv", str(tmp_path / "c.csv"), "--out-md", str(tmp_path / "c.md")])


def test_cli_full_grid_beside_halving(tmp_path: Path) -> None:
    """The default search (halving) is projected, and the full grid's total is printed beside it."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["models"] = ["static", "diffmd"]
    config["model_params"] = {"diffmd": {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16,
                                         "sampler_options": {"ode": {"rtol": 1e-3, "atol": 1e-3}}}}  # fmt: skip
    out_md = tmp_path / "paper_cost.md"
    result = main(["--config-json", json.dumps(config), "--device", "cpu", "--budget-s", "3",
                   "--out-csv", str(tmp_path / "paper_cost.csv"), "--out-md", str(out_md)])  # fmt: skip
    assert "diffmd_rung" in result["per_rule_h"] and result["other"]["search"] == "full"
    full = result["other"]["result"]
    assert "diffmd_train_point" in full["per_rule_h"] and full["total_h"] > result["total_h"] > 0
    assert "other search (diffmd.search: full)" in out_md.read_text()
