"""Config values checked at parse time with the key path named, and nested command-line values coerced like
top-level ones (issue 27, rows 5 and 13).

Row 5: ``sgdml.dynamics: nose``, ``diffmd.sampler: bogus``, ``gmn.sticks: bogus``, ``sgdml.sigma: []`` used to
pass the parse and fail in the job, after Snakemake had deleted the finished model; each model now declares
the values its constructor accepts (``param_schema``) and the plan checks them. Every string option a
constructor refuses must be declared, or the dry run would not catch it (checked over every registered model).
Row 13: ``--config 'model_params={"egnn":{"hidden":64}}'`` arrives as ``{"hidden": "64"}``; it is coerced to
the parameter's type, while a quoted ``"32"`` in a YAML file is still refused.
"""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import pytest
import yaml

from diffmd.config import coerce_command_line, coerce_to_schema, deep_update
from diffmd.plan import Plan
from diffmd.registry import available_models, build_model, get_model_class

REPO = Path(__file__).resolve().parents[1]
QUICK = deep_update(yaml.safe_load((REPO / "config.yaml").read_text()),
                    yaml.safe_load((REPO / "config/quick.yaml").read_text()))


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data files: only the config is checked


@pytest.mark.parametrize("model, params, message", [
    ("sgdml", {"dynamics": "nose"}, "parameter sgdml.dynamics must be one of ['data', 'nve', 'nose_hoover', "
                                    "'langevin'], got 'nose'"),
    ("diffmd", {"sampler": "bogus"}, "parameter diffmd.sampler must be one of ['euler_maruyama', 'ode', 'pc'],"
                                     " got 'bogus'"),
    ("gmn", {"sticks": "bogus"}, "parameter gmn.sticks must be one of ['bonds', 'heavy', 'none'], got 'bogus'"),
    ("sgdml", {"sigma": []}, "parameter sgdml.sigma: [] should be non-empty"),
    ("sgdml", {"sigma": [10, -1]}, "parameter sgdml.sigma[1]: -1 is less than or equal to the minimum of 0"),
    ("diffmd", {"sampler_options": {"odee": {}}}, "parameter diffmd.sampler_options must be one of"
                                                  " ['euler_maruyama', 'ode', 'pc'], got 'odee'"),
    ("score_dynamics", {"sampler": "ddim"}, "parameter score_dynamics.sampler must be one of ['dpm3', 'ancestral'],"
                                            " got 'ddim'"),
])
def test_a_bad_model_value_fails_the_parse_with_its_key_path(model, params, message):
    cfg = deep_update(QUICK, {"model_params": {model: params}})
    assert model in cfg["models"]
    with pytest.raises(ValueError) as info:
        Plan(cfg)
    msg = str(info.value)
    assert msg.startswith(f"config: model_params.{model} ") and message in msg and "\n" not in msg, msg


def test_good_values_pass():
    Plan(deep_update(QUICK, {"model_params": {"sgdml": {"dynamics": "nve", "sigma": 20},
                                              "gmn": {"sticks": "heavy"}}}))


def test_every_string_option_a_constructor_refuses_is_declared():
    """Build each registered model with a nonsense value for each of its string options: an option the
    constructor refuses must be in the model's ``param_schema``, so the plan refuses it at parse time too."""
    undeclared = []
    for name in available_models():
        cls = get_model_class(name)
        for key, param in inspect.signature(cls.__init__).parameters.items():
            if not isinstance(param.default, str) or key in cls.param_schema:
                continue
            try:
                build_model(name, {key: "no-such-choice"})
            except (ValueError, KeyError):
                undeclared.append(f"{name}.{key}")
    assert not undeclared, f"options refused only by the constructor (declare them in param_schema): {undeclared}"


# ------------------------------------------------------------------------------------------- row 13


def test_nested_command_line_values_are_coerced_like_top_level_ones():
    command_line = {"model_params": {"egnn": {"hidden": "64", "train": {"epochs": "3", "lr": "1e-3"}},
                                     "sgdml": {"sigma": ["10", "20"], "use_E": "false", "dt_fs": "0.5"}},
                    "seeds": ["1", "2"]}  # what Snakemake's --config gives: every nested scalar a string
    cfg = deep_update(QUICK, command_line)
    with pytest.raises(ValueError, match="must be int, got str '64'"):
        Plan(coerce_to_schema(cfg))  # what the workflow did with them
    out = coerce_command_line(cfg, command_line)
    egnn = out["model_params"]["egnn"]
    assert egnn["hidden"] == 64 and (egnn["train"]["epochs"], egnn["train"]["lr"]) == (3, 0.001)
    assert out["model_params"]["sgdml"] == {**cfg["model_params"].get("sgdml", {}), "sigma": [10.0, 20.0],
                                            "use_E": False, "dt_fs": 0.5}
    assert out["seeds"] == [1, 2]
    Plan(out)
    yaml_file = deep_update(QUICK, {"model_params": {"rf": {"hidden": "32"}}})  # a string in a YAML file
    with pytest.raises(ValueError, match="parameter 'hidden' of model 'rf' must be int"):
        Plan(coerce_command_line(yaml_file, {}))


@pytest.mark.slow
def test_the_dry_run_coerces_nested_command_line_values_and_names_a_bad_one(tmp_path):
    from workflow_copy import TINY_CONFIG, make_workdir, snakemake_cmd, workflow_env

    wd = make_workdir(tmp_path / "wf", TINY_CONFIG)

    def dry(*config: str) -> subprocess.CompletedProcess:
        cmd = snakemake_cmd("-n", "--config", *config, "--", "results/md17/ethanol/egnn/seed1/model.pt")
        return subprocess.run(cmd, cwd=wd, env=workflow_env(), capture_output=True, text=True, timeout=300)

    proc = dry('model_params={"egnn":{"hidden":64,"train":{"epochs":3}}}')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    proc = dry('model_params={"egnn":{"hidden":"x"}}')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "parameter 'hidden' of model 'egnn' must be int, got str 'x'" in out, out[-3000:]
