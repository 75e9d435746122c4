"""The paper-scale cost model (benchmarks/paper_cost.py): prices, the paper DAG's jobs and work from the code
paths, the schedule, the units file, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import paper_cost as P

ROOT = Path(__file__).resolve().parent.parent
CONSTS = {"format": P.CONSTANTS_FORMAT, "device": "test GPU", "source": "test", "t_op_s": 1e-5, "t_node_s": 2e-6,
          "t_sync_s": 1e-4, "flops_per_s": {"float32": 1e12, "tf32": 4e12, "bf16": 8e12}, "nodes_per_kernel": 0.5,
          "job_start_s": 10.0, "job_start_compiled_s": 20.0, "evaluate_s": 60.0}  # fmt: skip


@pytest.fixture(scope="module")
def paper_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def few_models(config, *models):
    """The paper config with fewer models (a plan imports every model it lists: seconds each)."""
    config = json.loads(json.dumps(config))
    config["models"] = list(models)
    return config


@pytest.fixture(scope="module")
def paper_plan(paper_config):
    # the counts only: the quick profile's short trajectories on disk must not stop the paper config
    return P.counting_plan(paper_config)


def test_price_is_launches_or_flops_plus_syncs():
    unit = {"ops": 1000, "kernels": 800, "launches": 10, "syncs": 2, "flops": 5e9}
    # eager: max(1000 x 10 us, 5 GFLOP / 1 TFLOP/s) + 2 x 100 us
    assert P.price(unit, "eager", CONSTS) == pytest.approx(max(1e-2, 5e-3) + 2e-4)
    # a batch of 4 molecules: the FLOPs scale, the launches do not
    assert P.price(unit, "eager", CONSTS, batch=4) == pytest.approx(2e-2 + 2e-4)
    # captured: max(10 launches x 10 us, 800 x 0.5 nodes x 2 us, FLOPs at the precision's rate) + syncs
    assert P.price(unit, "captured", CONSTS) == pytest.approx(max(1e-4, 8e-4, 5e-3) + 2e-4)
    assert P.price(unit, "captured", CONSTS, "tf32") == pytest.approx(max(1e-4, 8e-4, 1.25e-3) + 2e-4)
    assert 0 < P.occupancy(unit, "eager", CONSTS) < P.occupancy(unit, "captured", CONSTS) <= 1


def test_paper_jobs(paper_plan):
    jobs = P.paper_jobs(paper_plan)
    by_rule: dict[str, int] = {}
    for j in jobs:
        by_rule[j["rule"]] = by_rule.get(j["rule"], 0) + 1
    # the default search, successive halving: 96 + 32 + 11 + 4 slots x (8 MD17 molecules + the O2O training)
    assert by_rule["diffmd_rung"] == (96 + 32 + 11 + 4) * 9
    # diffmd_corrected's own grid, searched in full: 3 points x 9 runs, trained and validated
    assert by_rule["diffmd_train_point"] == by_rule["diffmd_validate"] == 3 * 9
    # the engine's other learned models (6 baselines + Score Dynamics) x 9; CPU rows hold no GPU and are not here
    assert by_rule["train"] == 7 * 9
    assert not any(j["model"] in ("static", "constant_velocity", "force_verlet", "sgdml") for j in jobs)
    # rollouts of the 9 learned models: 8 MD17 molecules + 5 C7O2H10 targets, each followed by an evaluation; every
    # one simulates in the same job (rollout_simulate: one start-up)
    assert by_rule["rollout_simulate"] == by_rule["evaluate"] == 9 * (8 + 5) and "rollout" not in by_rule
    assert all(j["gpu"] for j in jobs if j["rule"] != "evaluate")
    # the halving chain: rung r's slots wait for every slot of rung r - 1 of the same run
    rungs = [j for j in jobs if j["rule"] == "diffmd_rung" and j["dataset"] == "c7o2h10"]
    r1 = next(j for j in rungs if j["rung"] == 1)
    assert sorted(r1["deps"]) == sorted(j["id"] for j in rungs if j["rung"] == 0)


def test_simulations_are_in_the_paper_dag(paper_plan):
    """Every learned model's simulations (workflow/rules/simulation.smk): in its rollout job, after the rollout
    (one start-up), all starts one batch over simulation.length_fs, plus the proper scores' copies where the
    model's step divides the horizon."""
    jobs = P.paper_jobs(paper_plan)
    sims = [j for j in jobs if j["rule"] == "rollout_simulate"]
    assert len(sims) == 9 * (8 + 5) and not [j for j in jobs if j["rule"] in ("rollout", "simulate")]
    egnn = next(j for j in sims if j["model"] == "egnn" and j["dataset"] == "md17")
    assert [w["unit"] for w in egnn["work"]] == [w["unit"] for w in P.rollout_work(paper_plan, "egnn", "md17")] + [
        "rollout_step"]  # the rollout's units, then the simulation's
    assert egnn["work"][-1]["batch"] == 32 and egnn["work"][-1]["count"] == 2000  # 32 starts x 1 ps at 0.5 fs
    # downloaded MD17: no reference potential, no physics ensemble (no ensemble job to wait for), no scores
    assert not [j for j in jobs if j["rule"] == "simulation_ensemble"]


def test_a_simulating_rollout_costs_one_start_up(paper_config):
    """The merged job is priced as one process: the rollout's and the simulation's units after one start-up, so it
    costs one start-up less than the two jobs it replaces; it waits for the molecule's physics ensemble (a CPU job)."""
    config = few_models(paper_config, "egnn", "xtb_langevin")
    config["data"]["md17"]["source"] = "xtb"
    plan = P.counting_plan(config)
    jobs = P.paper_jobs(plan)
    job = next(j for j in jobs if j["rule"] == "rollout_simulate" and j["dataset"] == "md17")
    ens = jobs[job["deps"][-1]]
    assert ens["rule"] == "simulation_ensemble" and not ens["gpu"] and ens["run"] == job["run"]
    units = {"rollout_step": {m: {"ops": 1000, "kernels": 1000, "syncs": 0, "flops": 0, "launches": 1000}
                              for m in ("eager", "captured")} | {"batch": 1},
             "predict": {m: {"ops": 900, "kernels": 900, "syncs": 0, "flops": 0, "launches": 900}
                         for m in ("eager", "captured")} | {"batch": 1}}  # fmt: skip
    records = {"egnn|md17": {"units": units}}
    consts = P.read_constants(P.DEFAULT_CONSTANTS)
    modes = {"train": "eager", "rollout": "eager"}
    merged = P.price_job(job, records, consts, modes, {}, 120.0)
    n = len(P.rollout_work(plan, "egnn", "md17"))
    alone = [P.price_job({**job, "rule": "rollout", "work": w}, records, consts, modes, {}, 120.0)
             for w in (job["work"][:n], job["work"][n:])]  # fmt: skip
    assert merged["seconds"] == pytest.approx(sum(p["seconds"] for p in alone) - consts["job_start_s"])


def test_simulation_work_with_a_reference_potential(paper_config):
    config = few_models(paper_config, "egnn", "score_dynamics", "xtb_langevin")
    config["data"]["md17"]["source"] = "xtb"
    plan = P.counting_plan(config)
    egnn, sd = P.simulation_work(plan, "egnn", "md17"), P.simulation_work(plan, "score_dynamics", "md17")
    assert egnn[1]["batch"] == 8 * 8 and egnn[1]["count"] == 100  # 8 starts x K 8 copies, 50 fs at 0.5 fs
    assert sd[0]["count"] == 20 and sd[1]["count"] == 1  # 50 fs per step


def test_no_simulations_when_the_config_has_none(paper_config):
    config = few_models(paper_config, "egnn", "xtb_langevin")
    config["simulation"] = {"datasets": []}
    jobs = P.paper_jobs(P.counting_plan(config))
    assert not [j for j in jobs if j["rule"] in ("rollout_simulate", "simulation_ensemble")]
    assert len([j for j in jobs if j["rule"] == "rollout"]) == 8 + 5


def test_training_work_follows_the_trainer(paper_plan):
    work = {w["what"].split(" ")[0] + w["unit"]: w for w in P.training_work(paper_plan, "egnn", "md17")}
    # EGNN on MD17: 200 epochs x 20,000 / 200 steps
    assert work["200train_step"]["count"] == 200 * 100
    # select_by one_step: the one-step loss every epoch, 2,000 frames in batches of 200
    one = next(w for w in work.values() if w["unit"] == "predict")
    assert one["count"] == 200 * 10 and one["batch"] == 200
    # no rollout during training (nothing reads one), one for the selected checkpoint: 1,000 steps
    roll = [w for w in work.values() if w["unit"] == "rollout_step"]
    assert len(roll) == 1 and roll[0]["count"] == 1000
    assert not [w for w in P.training_work(paper_plan, "egnn", "md17", final_rollout=False)
                if w["unit"] == "rollout_step"]  # fmt: skip


@pytest.mark.parametrize("val_every", [5, 20])
def test_val_every_changes_the_rollouts_only_where_they_select(paper_config, val_every):
    """The counts come from the trainer's own schedule (diffmd.engine.train.rollout_epochs): with select_by
    rollout_armse a rollout every val_every epochs and at the last; with one_step val_every changes nothing."""
    config = few_models(paper_config, "egnn")
    config["train"] = {**config["train"], "val_every": val_every, "select_by": "rollout_armse"}
    plan = P.counting_plan(config)
    steps = sum(w["count"] for w in P.training_work(plan, "egnn", "md17") if w["unit"] == "rollout_step")
    assert steps == (200 // val_every) * 1000
    config["train"]["select_by"] = "one_step"
    plan = P.counting_plan(config)
    assert sum(w["count"] for w in P.training_work(plan, "egnn", "md17") if w["unit"] == "rollout_step") == 1000


def test_validation_work_rolls_out_where_a_selection_or_the_report_reads_it(paper_plan):
    earlier = P.validation_work(paper_plan, "diffmd", "md17", report=False)
    assert [w["unit"] for w in earlier] == ["predict@eps0.1"]  # one integration to the smallest eps, no rollout
    last = P.validation_work(paper_plan, "diffmd", "md17", report=True)
    assert [w["unit"] for w in last] == ["predict@eps0.1", "rollout_step@eps0.2"]  # the best eps's (nominal)
    corrected = P.validation_work(paper_plan, "diffmd_corrected", "md17", report=True)
    assert [w["unit"] for w in corrected] == ["predict", "predict", "rollout_step"]  # eps by eps, one rollout


def test_schedule_shares_the_gpu_and_follows_the_chains():
    jobs = [{"id": 0, "deps": [], "gpu": True}, {"id": 1, "deps": [], "gpu": True},
            {"id": 2, "deps": [0, 1], "gpu": True}, {"id": 3, "deps": [2], "gpu": False}]  # fmt: skip
    seconds = [100.0, 100.0, 50.0, 10.0]
    assert P.critical_path(jobs, seconds)[0] == 160.0
    assert P.schedule(jobs, seconds, [0.1] * 4, cores=8, gpu_slots=1) == pytest.approx(260.0)  # one at a time
    assert P.schedule(jobs, seconds, [0.1] * 4, cores=8, gpu_slots=2) == pytest.approx(160.0)  # light: no slowdown
    # two jobs that each keep the device fully busy share it: each at half speed
    assert P.schedule(jobs, seconds, [1.0] * 4, cores=8, gpu_slots=2) == pytest.approx(260.0)
    assert P.schedule(jobs, seconds, [0.1] * 4, cores=1, gpu_slots=2) == pytest.approx(260.0)  # one core


def test_constants_file_is_checked(tmp_path):
    assert P.read_constants(P.DEFAULT_CONSTANTS)["device"].startswith("NVIDIA H200")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({**CONSTS, "t_op_s": "fast"}))
    with pytest.raises(SystemExit, match=r"c.json: key 't_op_s'"):
        P.read_constants(bad)
    bad.write_text(json.dumps({**CONSTS, "flops_per_s": {"float32": 1.0}}))
    with pytest.raises(SystemExit, match=r"c.json: key 'flops_per_s'"):
        P.read_constants(bad)


def test_cli_units_out_then_in(paper_config, tmp_path):
    """Counting here (a tiny model set) writes the units file; projecting from it (another config, other device
    constants, a device check's measured seconds) needs no counting; a damaged file stops with one line."""
    config = few_models(paper_config, "static", "rf")
    units = tmp_path / "units.json"
    consts = tmp_path / "consts.json"
    consts.write_text(json.dumps(CONSTS))
    first = P.main(["--config-json", json.dumps(config), "--device-constants", str(consts), "--units-out", str(units),
                    "--out-csv", str(tmp_path / "a.csv"), "--out-md", str(tmp_path / "a.md")])  # fmt: skip
    md = (tmp_path / "a.md").read_text()
    assert first["total_h"] > 0 and "test GPU" in md and "rf" in md and "static" not in md
    assert (tmp_path / "a.csv").read_text().splitlines()[0].startswith("rule,model,dataset,unit,mode,what")
    record = json.loads(units.read_text())
    assert record["format"] == P.UNITS_FORMAT and record["records"]["rf|md17"]["units"]["train_step"]["eager"]["ops"]
    assert record["records"]["rf|md17"]["units"]["train_step"]["eager"]["syncs"] == 0
    # a device check's measured seconds replace the priced ones
    record["records"]["rf|md17"]["units"]["train_step"]["seconds"] = {"eager": 0.0, "captured": 0.0}
    units.write_text(json.dumps(record))
    second = P.main(["--config-json", json.dumps(config), "--units-in", str(units), "--device-constants", str(consts),
                     "--out-csv", str(tmp_path / "b.csv"), "--out-md", str(tmp_path / "b.md")])  # fmt: skip
    assert second["per_rule"]["train"]["hours"] < first["per_rule"]["train"]["hours"]
    assert "units read from" in (tmp_path / "b.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**record, "records": {"rf|md17": {"units": {"train_step": {"eager": {"ops": "x"}}}}}}))
    with pytest.raises(SystemExit, match=r"bad.json: records.rf\|md17.units.train_step.eager"):
        P.main(["--units-in", str(bad), "--out-csv", str(tmp_path / "c.csv"), "--out-md", str(tmp_path / "c.md")])
    bad.write_text("{}")
    with pytest.raises(SystemExit, match=r"bad.json: not a paper_cost --units-out file"):
        P.main(["--units-in", str(bad), "--out-csv", str(tmp_path / "c.csv"), "--out-md", str(tmp_path / "c.md")])
