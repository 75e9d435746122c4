"""Each stage gets only the keys it reads (diffmd/stages.py): the plan's argument sets, the machine outside them,
and the command lines' strict reading (a key a stage is not given cannot be read from a default)."""

from __future__ import annotations

import copy

import pytest
import yaml
from workflow_copy import REPO, TINY_CONFIG

from diffmd.config import deep_update
from diffmd.plan import Plan
from diffmd.stages import MACHINE_ENV, StageConfig, stage_args, stage_config, stage_keys


def _plan(**changes) -> Plan:
    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    return Plan(deep_update(deep_update(quick, copy.deepcopy(TINY_CONFIG)), changes))


def test_each_stage_gets_its_own_keys_and_never_the_machine():
    plan = _plan()
    train, roll, ev = (plan.stage_args(s) for s in ("train", "rollout", "evaluate"))
    for args in (train, roll, ev):
        assert not {"device", "compile"} & set(args)
    assert "divergence_bound_A" in train and "epochs" in train and "horizons_fs" not in train
    assert set(roll) == {"horizon", "divergence_bound_A", "n_starts", "start_horizon_fs", "one_step_frames",
                         "rigid_motion"}
    assert set(ev) == {"horizons_fs", "energy_frames"}
    assert plan.machine_environment() == {"DIFFMD_DEVICE": "cpu", "DIFFMD_TRAIN_COMPILE": "auto",
                                          "DIFFMD_ROLLOUT_COMPILE": "auto"}  # fmt: skip
    assert set(MACHINE_ENV) == set(plan.machine_environment())


def test_a_change_reaches_only_the_stages_that_read_it():
    base = _plan()
    changes = {"train": {"device": "auto", "compile": True}, "rollout": {"horizons_fs": [1.0], "compile": False}}
    for section, values in changes.items():
        for key, value in values.items():
            other = _plan(**{section: {key: value}})
            changed = [s for s in ("train", "rollout", "evaluate") if other.stage_args(s) != base.stage_args(s)]
            assert changed == (["evaluate"] if key == "horizons_fs" else []), (section, key)
    other = _plan(rollout={"divergence_bound_A": 50.0})  # read by the trainer's validation and the rollout
    assert [s for s in ("train", "rollout", "evaluate") if other.stage_args(s) != base.stage_args(s)] == [
        "train", "rollout"]


def test_stage_config_refuses_a_key_the_stage_is_not_given():
    cfg = stage_config("evaluate", {"horizons_fs": [5.0], "horizon": 10})
    assert isinstance(cfg, StageConfig) and cfg["horizons_fs"] == [5.0] and "horizon" not in cfg
    assert cfg["energy_frames"] == 5  # the schema default of a key it reads
    with pytest.raises(KeyError, match="evaluate stage reads 'horizon'"):
        cfg["horizon"]
    with pytest.raises(KeyError, match="diffmd/stages.py"):
        cfg.get("n_starts")
    roll = stage_config("rollout", {"horizon": 3}, {"device": "cpu", "compile": "auto"})
    assert roll["device"] == "cpu" and roll["horizon"] == 3 and roll.get("compile") == "auto"


def test_stage_keys_are_keys_of_the_schema():
    from diffmd.config import load_schema

    props = load_schema()["properties"]
    for stage in ("train", "rollout", "evaluate"):
        for section, keys in stage_keys(stage).items():
            assert set(keys) <= set(props[section]["properties"]), (stage, section)
    assert stage_args("evaluate", {"rollout": {"horizons_fs": [1.0], "energy_frames": 0, "horizon": 3}}) == {
        "horizons_fs": [1.0], "energy_frames": 0}
