# Shared helpers for every rule file: config validation, the experiment's axes, wildcard
# constraints and the target registry behind `rule all`.
import json
import os
import shlex
import sys

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

# Rules call `python -m diffmd...`: make that the interpreter running Snakemake (the project's
# venv), also when the venv is not activated (`.venv/bin/snakemake ...`). Jobs inherit PATH.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

SEEDS = [int(s) for s in config["seeds"]]
MODELS = list(config["models"])
MD17_MOLECULES = list(config["data"]["md17"]["molecules"])

# Each rule file appends the final outputs it owns; `rule all` asks for all of them.
ALL_TARGETS = []


def all_targets():
    return ALL_TARGETS


def as_json_arg(obj):
    """A config section as one shell-quoted JSON argument for the package's entry points."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


wildcard_constraints:
    model="|".join(MODELS),
    seed=r"\d+",
    molecule=r"[a-z0-9_]+",
    dataset="md17|c7o2h10",


def model_params(model, dataset):
    """Hyper-parameters of `model` for `dataset`: config/models/<model>.yaml + model_params.<model>.

    Score Dynamics takes its stride (frames per step) from score_dynamics.stride.<dataset>.
    """
    from diffmd.config import resolve_model_config

    overrides = dict(config.get("model_params", {}).get(model, {}))
    if model == "score_dynamics":
        stride = config.get("score_dynamics", {}).get("stride", {}).get(dataset)
        if stride is not None:
            overrides.setdefault("stride", int(stride))
    return resolve_model_config(model, overrides)
