"""Rows named for options (config ``variants:``): a registered model with some parameters, training or rollout
settings changed, a row of its own beside the model's (issue 24: the paper's rows keep the options off)."""

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from diffmd.config import deep_update
from diffmd.plan import Plan

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())
QUICK = deep_update(PAPER, yaml.safe_load((REPO / "config" / "quick.yaml").read_text()))
VARIANTS = {
    "egnn_noise": {"model": "egnn", "params": {"layers": 2, "train": {"input_noise": 1e-4}}},
    "egnn_rigid": {"model": "egnn", "rollout": {"rigid_motion": "remove"}},
    "static_still": {"model": "static"},
}


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """Plans read existing data files relative to the working directory: use an empty one."""
    monkeypatch.chdir(tmp_path)


def plan(models=("static", "egnn", "egnn_noise", "egnn_rigid"), variants=None, **over) -> Plan:
    cfg = deep_update(QUICK, over)
    cfg["variants"] = copy.deepcopy(VARIANTS if variants is None else variants)
    cfg["models"] = list(models)
    return Plan(cfg)


def w(model, dataset="md17", molecule="ethanol"):
    return SimpleNamespace(dataset=dataset, molecule=molecule, model=model, seed="1")


def test_a_variants_parameters_are_its_models_row_then_its_params_then_its_model_params():
    p = plan(model_params={"egnn": {"hidden": 24, "train": {"lr": 1e-3}}, "egnn_noise": {"layers": 3}})
    base, noise = p.model_params("egnn", "md17"), p.model_params("egnn_noise", "md17")
    assert base["hidden"] == noise["hidden"] == 24  # model_params.egnn reaches its variants
    assert noise["layers"] == 3 and base["layers"] != 3  # model_params.<variant> over variants.<row>.params
    assert noise["train"]["input_noise"] == 1e-4 and noise["train"]["lr"] == 1e-3  # train merged key by key
    assert "input_noise" not in base.get("train", {})  # the model's own row keeps the option off
    assert p.model_params("egnn_rigid", "md17") == base  # a rollout-only variant trains exactly as its model


def test_a_variant_is_its_models_card_under_its_own_name():
    p = plan()
    assert [p.base_model(m) for m in p.models] == ["static", "egnn", "egnn", "egnn"]
    assert p.role("egnn_noise") == p.role("egnn") == "baseline" and p.gpu("egnn_noise") == 1
    assert p.engine_models() == ["static", "egnn", "egnn_noise", "egnn_rigid"]  # the train rule makes each
    assert p.cost_models() == ["egnn", "egnn_noise", "egnn_rigid"]
    assert p.simulation_models("md17") == ["static", "egnn", "egnn_noise", "egnn_rigid"]
    assert p.run_dir("md17", "ethanol", "egnn_noise", 1) == "results/md17/ethanol/egnn_noise/seed1"
    assert p.base_model_of(w("egnn_noise")) == "egnn" and p.base_model_of(w("egnn")) == "egnn"
    assert p.rows_arg() == "static egnn egnn_noise=egnn egnn_rigid=egnn"
    assert "egnn_noise/seed1/train_log.csv" in " ".join(p.train_logs("md17"))


def test_a_rows_rollout_settings_reach_only_its_own_rollout_jobs():
    p = plan(model_params={"static": {"rollout": {"rigid_motion": "remove"}}})
    stage = p.stage_args("rollout")
    assert stage["rigid_motion"] == "keep"
    assert p.rollout_args("egnn") == stage and p.rollout_args("egnn_noise") == stage
    assert p.rollout_args("egnn_rigid") == {**stage, "rigid_motion": "remove"}
    assert p.rollout_args("static")["rigid_motion"] == "remove"  # model_params.<model>.rollout: a registered row
    assert "rollout" not in p.model_params("static", "md17")  # never a constructor parameter
    assert '"rigid_motion": "remove"' in p.rollout_arg(w("egnn_rigid"))
    assert p.rollout_arg(w("egnn")) == p.stage_arg("rollout")  # the other rows' rerun trigger is unchanged
    # a variant starts from its model's row: model_params.egnn.rollout reaches egnn_noise, egnn_rigid overrides it
    q = plan(model_params={"egnn": {"rollout": {"rigid_motion": "remove"}}},
             variants={**VARIANTS, "egnn_rigid": {"model": "egnn", "rollout": {"rigid_motion": "keep"}}})  # fmt: skip
    assert q.rollout_args("egnn_noise")["rigid_motion"] == "remove" and q.rollout_args("egnn_rigid") == stage


def test_the_paper_rows_are_unchanged_by_the_variants_config_yaml_defines():
    p = Plan(PAPER)
    assert set(p.variants) >= {"egnn_noise", "egnn_unroll", "egnn_rigid", "egnn_energy_noise"}
    assert not set(p.variants) & set(p.models)  # defined, not run: the paper's rows keep every option off
    stage = p.stage_args("rollout")
    assert all(p.rollout_args(m) == stage for m in p.models) and stage["rigid_motion"] == "keep"
    assert p.rows_arg() == " ".join(p.models)
    for m in p.engine_models():
        train = p.model_params(m, "md17").get("train", {})
        assert train.get("input_noise", 0.0) == 0.0 and train.get("unroll", 1) == 1, m
    with_all = Plan({**PAPER, "models": PAPER["models"] + list(p.variants)})
    assert with_all.model_params("egnn_unroll", "md17")["train"]["unroll"] == 2
    assert with_all.role("egnn_energy_noise") == with_all.role("egnn_energy")
    assert with_all.rollout_args("egnn_rigid")["rigid_motion"] == "remove"


@pytest.mark.parametrize(
    "variants, models, message",
    [
        ({"egnn_x": {"model": "egn"}}, ["egnn_x"], "variants.egnn_x.model: unknown model 'egn'"),
        ({"egnn": {"model": "rf"}}, ["egnn"], "variants.egnn: 'egnn' is a registered model's name"),
        ({"a": {"model": "egnn"}, "b": {"model": "a"}}, ["b"], "variants.b.model: 'a' is itself a variant"),
        ({"Egnn-Noise": {"model": "egnn"}}, ["egnn"], "variants: 'Egnn-Noise' does not match"),
        ({"cost": {"model": "egnn"}}, ["cost"], "variants.cost: 'cost' names a folder beside the run directories"),
        ({"egnn_x": {"model": "egnn", "params": {"hiddn": 3}}}, ["egnn_x"],
         "variants.egnn_x.params: unknown parameter 'hiddn' for model 'egnn'"),
        ({"egnn_x": {"model": "egnn", "params": {"hidden": "3"}}}, ["egnn_x"], "variants.egnn_x.params"),
        ({"egnn_x": {"model": "egnn", "params": {"train": {"unroll": 0}}}}, ["egnn_x"],
         "variants.egnn_x.params.train: unroll"),
        ({"static_x": {"model": "static", "params": {"train": {"input_noise": 1e-4}}}}, ["static_x"],
         "variants.static_x.params.train: 'static' is not trained by the engine (fit: none)"),
        ({"sgdml_x": {"model": "sgdml", "params": {"train": {"unroll": 2}}}}, ["sgdml_x"],
         "variants.sgdml_x.params.train: 'sgdml' is not trained by the engine (fit: own)"),
        ({"diffmd_x": {"model": "diffmd"}}, ["diffmd_x"], "variants.diffmd_x.model: 'diffmd' is tuned by a grid"),
        ({"egnn_x": {"model": "egnn", "rollout": {"n_starts": 4}}}, ["egnn_x"],
         "variants.egnn_x.rollout: 'n_starts' is not a row's own rollout setting"),
        ({"egnn_x": {"model": "egnn", "rollout": {"rigid_motion": "drop"}}}, ["egnn_x"],
         "variants.egnn_x.rollout: rigid_motion: 'drop' is not one of"),
        ({"egnn_x": {"model": "egnn", "params": {"rollout": {"rigid_motion": "remove"}}}}, ["egnn_x"],
         "variants.egnn_x.params.rollout: a row's rollout settings go in variants.egnn_x.rollout"),
        ({"egnn_x": {"model": "egnn", "steps": 2}}, ["egnn_x"], "variants.egnn_x: Additional properties"),
        ({}, ["egnn_noise"], "models.0: 'egnn_noise' is not one of"),
    ],
)
def test_a_bad_variant_is_refused_at_parse_time_with_the_key_named(variants, models, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(models=models, variants=variants)


@pytest.mark.parametrize(
    "model_params, message",
    [
        ({"egnn": {"rollout": {"horizon": 3}}}, "model_params.egnn.rollout: 'horizon' is not a row's own"),
        ({"static_still": {"train": {"epochs": 3}}}, "model_params.static_still.train: 'static' is not trained"),
        ({"egnn_noise": {"hiddn": 3}}, "unknown parameter 'hiddn' for model 'egnn'"),
    ],
)
def test_a_bad_rows_model_params_are_refused_with_the_key_named(model_params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(models=("static", "egnn", "egnn_noise", "static_still"), model_params=model_params)


def test_the_reports_name_a_variant_row_with_its_models_role():
    from diffmd.reports import yardstick

    yardstick.ROW_MODELS.clear()
    try:
        rows = yardstick.parse_rows(["static", "egnn_noise=egnn", "static_still=static"])
        assert rows == ["static", "egnn_noise", "static_still"]
        assert yardstick.role_in({}, "egnn_noise") == "baseline"
        assert yardstick.role_in({}, "static_still") == "reference"
    finally:
        yardstick.ROW_MODELS.clear()


def test_the_rules_build_a_variants_model_and_write_under_its_row(tmp_path):
    """A dry run of a tiny config with variants: the train job of row egnn_noise builds ``--model egnn`` with the
    variant's training noise into egnn_noise's run directory; only egnn_rigid's rollout removes rigid motion; the
    tables name each variant as ``row=model``."""
    from workflow_copy import TINY_CONFIG, make_workdir, run_snakemake

    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["models"] = ["static", "egnn", "egnn_noise", "egnn_rigid"]
    cfg["variants"] = {"egnn_noise": VARIANTS["egnn_noise"], "egnn_rigid": VARIANTS["egnn_rigid"]}
    wd = make_workdir(tmp_path / "wf", cfg)
    proc = run_snakemake(wd, "results/tables/table1_md17.csv", extra_args=("-n", "-p", "--cores", "1"),
                         profile_args=())  # fmt: skip
    out = proc.stdout + proc.stderr
    commands = [line[line.index("python -m "):] for line in out.splitlines() if "python -m " in line]
    train = {c.split("--out ")[1].split()[0]: c for c in commands if "diffmd.engine.train" in c}
    assert set(train) == {f"results/md17/ethanol/{m}/seed1" for m in ("static", "egnn", "egnn_noise", "egnn_rigid")}
    noise = train["results/md17/ethanol/egnn_noise/seed1"]
    assert "--model egnn " in noise and '"input_noise": 0.0001' in noise and '"layers": 2' in noise
    assert "--model egnn " in train["results/md17/ethanol/egnn_rigid/seed1"]
    assert '"input_noise": 0.0,' in train["results/md17/ethanol/egnn/seed1"]  # the model's own row: off
    rollouts = {c.split("--out ")[1].split()[0]: c for c in commands if "diffmd.engine.rollout" in c}
    removes = sorted(run for run, c in rollouts.items() if '"rigid_motion": "remove"' in c)
    assert removes == ["results/md17/ethanol/egnn_rigid/seed1"] and len(rollouts) == 4
    table = next(c for c in commands if "diffmd.reports tables" in c)
    assert "--models static egnn egnn_noise=egnn egnn_rigid=egnn " in table


def test_a_variants_model_params_on_the_command_line_take_its_models_types():
    from diffmd.config import coerce_command_line

    cfg = {"variants": {"egnn_noise": {"model": "egnn"}},
           "model_params": {"egnn_noise": {"layers": "3", "rollout": {"rigid_motion": "remove"}}}}  # fmt: skip
    out = coerce_command_line(cfg, {"model_params": {"egnn_noise": {"layers": "3", "rollout": {}}}})
    assert out["model_params"]["egnn_noise"] == {"layers": 3, "rollout": {"rigid_motion": "remove"}}


def test_cost_benchmark_model_is_score_dynamics_whatever_the_row_order():
    """The cost benchmark's settings live under ``score_dynamics:``: another strided row listed first (the stochastic
    DiffMD) does not take them; without Score Dynamics the first strided row does."""
    assert plan(models=("static", "diffmd_stochastic", "score_dynamics")).cost_strided_model() == "score_dynamics"
    assert plan(models=("score_dynamics", "diffmd_stochastic")).cost_strided_model() == "score_dynamics"
    assert plan(models=("static", "diffmd_stochastic")).cost_strided_model() == "diffmd_stochastic"
    assert plan(models=("static", "egnn")).cost_strided_model() is None
