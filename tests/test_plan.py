"""The experiment plan (diffmd/plan/): every decision the workflow used to make in its rule files."""

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from diffmd.config import deep_update
from diffmd.plan import O2O_TRAINED, Plan

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())
QUICK = deep_update(PAPER, yaml.safe_load((REPO / "config" / "quick.yaml").read_text()))


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """Plans read existing data files relative to the working directory: use an empty one."""
    monkeypatch.chdir(tmp_path)


def plan(cfg=None, **over) -> Plan:
    return Plan(deep_update(cfg or QUICK, over))


def test_tasks_split_files_and_run_directories():
    p = plan()
    assert p.task("md17") == "s2l" and p.task("c7o2h10") == "o2o"
    assert p.split_path("md17", "ethanol") == "data/splits/md17/ethanol.json"
    assert p.split_path("c7o2h10", "xtb03") == "data/splits/c7o2h10.json"
    assert p.train_run("md17", "ethanol") == "ethanol" and p.train_run("c7o2h10", "xtb03") == O2O_TRAINED
    w = SimpleNamespace(dataset="c7o2h10", molecule="xtb03", model="egnn", seed="1")
    assert p.rollout_inputs(w)["checkpoint"] == "results/c7o2h10/trained/egnn/seed1/model.pt"
    assert p.rollout_target(w) == "--target xtb03"
    with pytest.raises(ValueError, match="no training run results/md17/trained"):
        p.check_train_run("md17", O2O_TRAINED)


def test_model_parameters_strides_and_history():
    p = plan()
    assert p.stride("score_dynamics", "md17") == 20 and p.stride("egnn", "md17") == 1  # quick: score_dynamics.stride
    assert p.model_params("egnn", "md17")["hidden"] == 32  # YAML 64, quick model_params 32
    assert p.history_frames("c7o2h10") == 2 * 20  # every O2O rollout starts after the largest stride's history
    oracle = p.model_params("xtb_langevin", "c7o2h10")
    assert (oracle["dt_fs"], oracle["temperature_K"]) == (1.0, 100.0)  # the simulated source's own settings
    assert p.split_config("c7o2h10")["history_frames"] == 40


def test_roles_trainers_and_tuning_come_from_the_registry():
    p = plan()
    assert p.tuned_models("diffmd_grid") == ["diffmd", "diffmd_corrected"]
    assert not {"diffmd", "diffmd_corrected"} & set(p.engine_models())
    assert p.models_with_role("reference") == ["static", "constant_velocity"]
    assert set(p.cost_models()) >= {"egnn", "diffmd", "sgdml"} and "static" not in p.cost_models()
    assert p.grid_point_names("diffmd") == ["s0.01_a1_h1"] and p.grid_eps("diffmd") == ["0.2", "0.8"]
    params = p.point_params("diffmd", "md17", "s0.01_a1_h1")
    assert params["train_eps"] == 0.2 and params["sigma_s"] == 0.01 and params["d_model"] == 32
    # the quick profile's corrected grid: one point (its kernel_scale), two eps; its train_eps is its own
    assert p.grid_point_names("diffmd_corrected") == ["kernel_scale1"]
    assert p.grid_eps("diffmd_corrected") == ["0.001", "0.01"] and p.search("diffmd_corrected") == "full"
    params = p.point_params("diffmd_corrected", "md17", "kernel_scale1")
    assert params["kernel_scale"] == 1.0 and params["train_eps"] == 1e-3 and params["d_model"] == 32


def test_a_second_tuned_model_has_its_own_grid_points_and_jobs():
    p = plan(PAPER)
    # DiffMD: paper Table 3 under diffmd.grid, names and search as before
    assert len(p.grid_point_names("diffmd")) == 96 and p.grid_point_names("diffmd")[0] == "s0.001_a0.01_h0.01"
    assert p.search("diffmd") == "halving"
    assert [r["points"] for r in p.halving_schedule("diffmd", "md17")] == [96, 32, 11, 4]
    assert p.tuning_jobs("diffmd", "md17") == {"diffmd_rung": 143, "diffmd_rank": 3, "diffmd_select": 1}
    # diffmd_corrected: its own section diffmd_corrected.grid, searched in full
    assert p.grid_point_names("diffmd_corrected") == ["kernel_scale0.5", "kernel_scale1", "kernel_scale2"]
    assert p.search("diffmd_corrected") == "full" and p.halving_schedule("diffmd_corrected", "md17") == []
    assert p.tuning_jobs("diffmd_corrected", "md17") == {"diffmd_train_point": 3, "diffmd_validate": 3,
                                                         "diffmd_select": 1}  # fmt: skip
    w = SimpleNamespace(dataset="md17", molecule="ethanol", model="diffmd_corrected", seed="1", point="kernel_scale2")
    assert p.grid_validations(w) == [f"results/md17/ethanol/diffmd_corrected/seed1/grid/kernel_scale{k}/validation.json"
                                     for k in ("0.5", "1", "2")]  # fmt: skip
    assert p.grid_eps_arg(w) == "0.001 0.01" and p.batch_eps_arg(w) == ""
    assert yaml.safe_load(p.grid_arg(w).strip("'")) == {"kernel_scale": [0.5, 1.0, 2.0], "eps": [1e-3, 1e-2]}
    assert yaml.safe_load(p.grid_point_arg(w).strip("'"))["kernel_scale"] == 2.0
    # one wildcard pattern for every tuned model's points; a point of the other grid is refused
    pattern = p.grid_point_pattern()
    assert "kernel_scale0\\.5" in pattern and "s0\\.01_a1_h1" in pattern
    with pytest.raises(KeyError, match="'s0.01_a1_h1' is not in diffmd_corrected.grid"):
        p.point_params("diffmd_corrected", "md17", "s0.01_a1_h1")
    # each section applies to its own model only
    q = plan(PAPER, diffmd={"search": "full"}, diffmd_corrected={"grid": {"kernel_scale": [1.0]}})
    assert q.tuning_jobs("diffmd", "md17")["diffmd_train_point"] == 96
    assert q.grid_point_names("diffmd_corrected") == ["kernel_scale1"]
    assert q.batch_eps("diffmd") and plan(PAPER, diffmd={"batch_eps": False}).batch_eps_arg(
        SimpleNamespace(model="diffmd")) == "--no-batch-eps"  # fmt: skip


@pytest.mark.parametrize(
    "section, message",
    [
        ({"grid": None}, "diffmd_corrected.grid: missing or empty key.s. kernel_scale, eps"),
        ({"grid": {"kernel_scale": [1.0], "eps": [1e-3], "sigma_s": [1.0]}}, "diffmd_corrected.grid"),
        ({"grid": {"kernel_scale": [0.0], "eps": [1e-3]}}, "diffmd_corrected.grid.kernel_scale.0"),
        ({"batch_eps": False}, "diffmd_corrected"),
    ],
)
def test_a_bad_second_grid_is_refused_with_its_section_named(section, message):
    cfg = copy.deepcopy(PAPER)
    cfg["diffmd_corrected"] = {k: v for k, v in {**cfg["diffmd_corrected"], **section}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        Plan(cfg)


def test_models_whose_data_is_missing_are_left_out_with_a_reason():
    paper = Plan(PAPER)
    assert "xtb_nh" not in paper.models_for("md17") and "sgdml" in paper.models_for("md17")
    reasons = paper.na_reasons("c7o2h10")
    assert reasons["xtb_nh"] == "no reference potential for source 'download'"
    assert "force labels" in reasons["force_verlet"] and "sgdml" in reasons
    quick = plan()
    # quick: Nosé-Hoover MD17 data stores its chain (the xtb_nh oracle runs), Langevin C7O2H10 data does not
    assert {"xtb_nh", "xtb_langevin", "force_verlet"} <= set(quick.models_for("md17"))
    assert {"xtb_langevin", "force_verlet"} <= set(quick.models_for("c7o2h10"))
    assert quick.na_reasons("c7o2h10")["xtb_nh"] == ("the c7o2h10 xtb data stores no Nosé-Hoover chain state "
                                                     "(xtb.thermostat langevin)")  # fmt: skip
    assert "sgdml" not in quick.models_for("c7o2h10")  # one model per molecule: no transfer to O2O
    assert not any("/xtb_nh/" in f for f in paper.run_files("md17", ["ethanol"], "armse.json"))


def test_cost_runs_and_targets():
    p = plan()
    labels = [r.label for r in p.cost_runs("ethanol")]
    assert "score_dynamics (stride 20)" in labels and "score_dynamics (stride 10)" in labels
    assert p.cost_extra_strides() == [10]
    targets = p.static_targets()
    for name in ("table1_md17.csv", "one_step_md17.csv", "distributions_c7o2h10.md", "cost_md17.csv"):
        assert f"results/tables/{name}" in targets
    assert "results/figures/hr_md17.png" in targets
    assert "results/md17/ethanol/sgdml/seed1/armse.json" in targets


@pytest.mark.parametrize(
    "over, message",
    [
        ({"model_params": {"rf": {"hiddn": 3}}}, "unknown parameter 'hiddn' for model 'rf'"),
        ({"model_params": {"rf": {"hidden": "32"}}}, "parameter 'hidden' of model 'rf' must be int"),
        ({"model_params": {"rf": {"train": {"epoch": 3}}}}, "model_params.rf.train"),
        ({"model_params": {"rf": {"train": {"batch_size": 0}}}}, "batch_size"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"score_dynamics": {"strid": {"md17": 2}}}, "score_dynamics"),
        ({"report": {"snapshot_evry": 3}}, "report"),
        ({"models": ["static", "egnn", "nope"]}, "models.2"),
    ],
)
def test_a_bad_config_is_refused_at_parse_time_with_the_key_named(over, message):
    cfg = copy.deepcopy(QUICK)
    if "models" in over:
        cfg["models"] = over.pop("models")
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Plan(deep_update(cfg, over))


def test_cost_molecules_must_be_md17_molecules():
    with pytest.raises(ValueError, match="cost_molecules: 'aspirin'"):
        plan(score_dynamics={"cost_molecules": ["aspirin"]})


def test_a_short_or_corrupt_trajectory_is_refused_before_anything_is_deleted(tmp_path, monkeypatch):
    """Issue 15 row 10: the plan reads an existing trajectory's header at parse time (nothing deleted yet)."""
    import numpy as np

    from diffmd.data.trajectory import Trajectory, save_trajectory
    from diffmd.testing import ETHANOL_X, ETHANOL_Z

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/md17").mkdir(parents=True)
    short = Trajectory(positions=np.repeat(ETHANOL_X[None], 50, axis=0), atomic_numbers=ETHANOL_Z, dt_fs=0.5,
                       temperature_K=500.0, name="ethanol", dataset="md17", source="xtb")  # fmt: skip
    save_trajectory(tmp_path / "data/md17/ethanol.npz", short)
    with pytest.raises(ValueError, match=r"data/md17/ethanol\.npz: 50 frames, splits\.md17 needs 1203"):
        plan()
    (tmp_path / "data/md17/ethanol.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"ethanol\.npz: corrupt or truncated npz"):
        plan()
    (tmp_path / "data/md17/ethanol.npz").unlink()
    plan()  # absent: it will be made


def test_command_line_lists_are_coerced_to_the_schemas_types():
    """Issue 16 row 4: ``--config 'seeds=[1,2]'`` reaches the workflow as ['1', '2']."""
    from diffmd.config import coerce_to_schema, validate_config

    cfg = copy.deepcopy(QUICK)
    cfg["seeds"] = ["1", "2"]
    cfg["rollout"]["horizons_fs"] = ["5", "50.5"]
    cfg["rollout"]["horizon"] = "null"
    out = coerce_to_schema(cfg)
    assert out["seeds"] == [1, 2] and out["rollout"]["horizons_fs"] == [5.0, 50.5] and out["rollout"]["horizon"] is None
    validate_config(out)
    bad = coerce_to_schema({**cfg, "seeds": ["1", "x"]})
    with pytest.raises(ValueError, match="seeds.1"):
        validate_config(bad)


def test_a_dataset_can_be_switched_off():
    only_md17 = plan(datasets=["md17"])
    targets = only_md17.static_targets()
    assert not any("c7o2h10" in t for t in targets)
    assert "results/tables/table1_md17.csv" in targets and "results/tables/cost_md17.csv" in targets
    assert only_md17.run_files("c7o2h10", ["iso1"], "armse.json") == []
    only_c7 = plan(datasets=["c7o2h10"])
    targets = only_c7.static_targets()
    assert not any("md17" in t for t in targets) and "results/tables/table2_c7o2h10.csv" in targets
    assert plan().datasets == ["md17", "c7o2h10"]  # default: both
    with pytest.raises(ValueError, match="datasets"):
        plan(datasets=["qm9"])


def test_simulation_section_per_dataset_and_its_jobs():
    p = plan(PAPER)
    assert p.simulation_datasets() == ["md17", "c7o2h10"]
    cfg = p.simulation_config("c7o2h10")
    assert cfg["scores"]["horizon_fs"] == 20.0 and "datasets" not in cfg
    assert "device" not in cfg  # the machine is not an experiment parameter
    files = p.simulation_files("md17", ["aspirin"])
    assert "results/md17/aspirin/egnn/seed1/simulation.json" in files
    assert not any("/force_verlet/" in f for f in files)  # a one-step model does not simulate
    assert p.ensemble_model("md17") is None  # downloaded MD17: no reference potential, no physics ensemble
    w = SimpleNamespace(dataset="md17", molecule="aspirin", model="egnn", seed="1")
    assert "ensemble" not in p.simulation_inputs(w) and p.ensemble_arg(w, SimpleNamespace(keys=lambda: [])) == ""
    off = plan(PAPER, simulation={"datasets": ["c7o2h10"]})
    assert off.simulation_files("md17", ["aspirin"]) == [] and off.simulation_datasets() == ["c7o2h10"]
    quick = plan()  # GFN2-xTB data: xtb_langevin is the ensemble, its re-simulations an input of every simulation
    assert quick.simulation_datasets() == ["md17"] and quick.ensemble_model("md17") == "xtb_langevin"
    assert quick.simulation_inputs(w)["ensemble"] == "results/md17/aspirin/simulation_ensemble/seed1.npz"
    with pytest.raises(ValueError, match="simulation.scores.horizon_fs: no value for 'c7o2h10'"):
        plan(simulation={"datasets": ["md17", "c7o2h10"], "scores": {"horizon_fs": {"md17": 50.0}}})
