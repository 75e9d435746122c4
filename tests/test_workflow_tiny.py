"""The real DAG end to end on a tiny config, through the special paths: DiffMD's grid tuning, Score
Dynamics' stride from the config, a one-step-only floor, the physics oracles re-simulating with the
reference potential (xtb_nh continuing the stored Nose-Hoover chain), the reference rows and a row named for
options (a variant of EGNN), up to Table 1 (one molecule, GFN2-xTB data)."""

from __future__ import annotations

import copy
import json

import pytest
from workflow_copy import TINY_CONFIG, make_workdir, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

MODELS = ["static", "constant_velocity", "force_verlet", "xtb_nh", "xtb_nve", "egnn", "score_dynamics", "diffmd"]
#: a row named for options (config variants:): EGNN trained with input noise, its rigid-body motion removed
VARIANT = "egnn_noise_rigid"


def test_tiny_dag_through_every_special_path(tmp_path):
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["models"] = MODELS + [VARIANT, "xtb_langevin"]  # xtb_langevin: the proper scores' physics ensemble
    cfg["variants"] = {VARIANT: {"model": "egnn", "params": {"train": {"input_noise": 1e-4}},
                                 "rollout": {"rigid_motion": "remove"}}}  # fmt: skip
    cfg["simulation"] = {"n_starts": 2, "length_fs": 10.0, "energy_frames": 2,
                         "scores": {"n_starts": 2, "samples": 2, "ensemble": 4, "horizon_fs": 5.0}}  # fmt: skip
    cfg["rollout"] = {"horizon": 40, "n_starts": 3, "start_horizon_fs": 5.0, "horizons_fs": [1.0, 5.0],
                      "one_step_frames": 20, "energy_frames": 1}  # fmt: skip
    cfg["train"]["epochs"] = 1
    cfg["score_dynamics"] = {"stride": {"md17": 5, "c7o2h10": 5}}  # 2.5 fs: 2 steps within the 5 fs horizon
    wd = make_workdir(tmp_path / "wf", cfg)
    run_snakemake(wd, "results/tables/table1_md17.csv", "results/tables/simulation_md17.csv",
                  extra_args=("--cores", "2"), profile_args=(), timeout=900)  # fmt: skip
    runs = wd / "results/md17/ethanol"
    records = {m: json.loads((runs / m / "seed1/armse.json").read_text()) for m in MODELS}
    assert {m: r["role"] for m, r in records.items()} == {
        "static": "reference", "constant_velocity": "reference", "force_verlet": "floor", "xtb_nh": "oracle",
        "xtb_nve": "oracle", "egnn": "baseline", "score_dynamics": "baseline", "diffmd": "proposed"}  # fmt: skip
    assert (runs / "diffmd/seed1/selection.json").exists()  # the grid's selection made DiffMD's checkpoint
    assert records["score_dynamics"]["stride"] == 5  # score_dynamics.stride.md17 from the config
    assert records["force_verlet"]["rollout_applicable"] is False and records["force_verlet"]["armse"] is None
    for model, rec in records.items():
        metrics = {(r["metric"], r["horizon_fs"]) for r in rec["metrics"]}
        assert ("one_step_rmse", 0.5 * rec["stride"]) in metrics, model
        if rec["rollout_applicable"]:
            assert ("armse", 5.0) in metrics and rec["n_starts"] >= 1, model
    one_step = {m: next(r["value"] for r in rec["metrics"] if r["metric"] == "one_step_rmse")
                for m, rec in records.items() if rec["stride"] == 1}  # fmt: skip
    # the floors order as physics says: the data's own force beats constant velocity beats standing still,
    # and the exact potential re-run one step without the thermostat is the force floor itself (same forces,
    # same Verlet step); continuing the data's Nose-Hoover chain (stored in the trajectory, carried through
    # the split and the rollout) is the data's own next frame, far below that floor
    assert one_step["force_verlet"] < one_step["constant_velocity"] < one_step["static"]
    assert one_step["xtb_nve"] == pytest.approx(one_step["force_verlet"], rel=0.05)
    assert one_step["xtb_nh"] < 0.1 * one_step["force_verlet"]
    assert (wd / "results/tables/table1_md17.csv").exists()
    # the variant: its own row and run directory, its model's class, card and role, its options on, the model's off
    variant = json.loads((runs / VARIANT / "seed1/armse.json").read_text())
    assert variant["model"] == VARIANT and variant["role"] == "baseline"
    trained = json.loads((runs / VARIANT / "seed1/provenance.json").read_text())["stages"]["train"]["config"]
    assert trained["model"] == "egnn" and trained["train"]["input_noise"] == 1e-4
    plain = json.loads((runs / "egnn/seed1/provenance.json").read_text())["stages"]["train"]["config"]
    assert plain["train"]["input_noise"] == 0.0
    assert f"| {VARIANT} " in (wd / "results/tables/table1_md17.md").read_text()
    # the simulations (workflow/rules/simulation.smk): every model that rolls out, the oracle intact, a deterministic
    # model's copies coincide (a point mass), Score Dynamics (x(t) only) against Maxwell-Boltzmann re-simulations,
    # the others against the data's velocities (a 1-epoch Score Dynamics has every sample rejected by its bond check
    # and holds still, so its copies coincide here too)
    sims = {m: json.loads((runs / m / "seed1/simulation.json").read_text()) for m in MODELS if m != "force_verlet"}
    assert not (runs / "force_verlet/seed1/simulation.json").exists()
    by = {m: {r["metric"]: r for r in rec["metrics"]} for m, rec in sims.items()}
    assert by["xtb_nh"]["survival_fraction"]["value"] == 1.0 and sims["xtb_nh"]["n_starts"] == 2
    assert sims["score_dynamics"]["scores_ensemble"] == "mb" and sims["egnn"]["scores_ensemble"] == "data_v"
    assert sims["egnn"]["sample_spread_A"] == 0.0 and sims["score_dynamics"]["score_samples"] == 2
    assert all(by[m]["energy_score"]["value"] is not None for m in sims), {m: by[m]["energy_score"] for m in sims}
    assert by["xtb_nh"]["energy_excess_kcal_mol_atom"]["value"] is not None
    table = (wd / "results/tables/simulation_md17.md").read_text()
    assert "Survival" in table and "Energy score" in table and (wd / "results/figures/survival_md17.png").exists()
    sim = json.loads((runs / VARIANT / "seed1/simulation.json").read_text())  # the row's own rigid_motion: removed
    assert sim["model"] == VARIANT and sim["rigid_motion"] == "remove" and "rigid_motion" not in sims["egnn"]
    assert VARIANT in table
    # reruns redo only what changed (diffmd/stages.py): the device is not a param, a horizon only evaluate reads
    target = "results/tables/table1_md17.csv"
    assert planned_jobs(wd, cfg, target) == {}
    device = copy.deepcopy(cfg)
    device["train"]["device"], device["rollout"]["compile"] = "auto", False
    assert planned_jobs(wd, device, target) == {}
    horizons = copy.deepcopy(cfg)
    horizons["rollout"]["horizons_fs"] = [1.0, 2.5, 5.0]
    jobs = planned_jobs(wd, horizons, target)
    assert jobs.pop("evaluate") == len(cfg["models"]) and set(jobs) <= {"aggregate", "md17_molecule"}, jobs
    # a row's own rollout setting reruns that row's rollout only (not its training, not the other rows)
    kept = copy.deepcopy(cfg)
    kept["variants"][VARIANT]["rollout"]["rigid_motion"] = "keep"
    jobs = planned_jobs(wd, kept, target)
    assert jobs.pop("rollout_simulate") == 1 and jobs.pop("evaluate") == 1, jobs
    assert set(jobs) <= {"aggregate", "md17_molecule"}, jobs
