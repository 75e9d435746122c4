"""Model hyper-parameters: ``config/models/<model>.yaml`` merged with ``model_params.<model>``.

The YAML file gives the paper's settings for the model; the experiment config may override any
key (the quick profile shrinks the models). A model file may carry a ``train:`` mapping that
overrides the global ``train`` section for that model (e.g. batch 100 for the SE(3)-Transformer).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIG_DIR = REPO_ROOT / "config" / "models"


def deep_update(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """Recursive dict merge (override wins); returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config_path(name: str, config_dir: Path | None = None) -> Path:
    return (config_dir or MODEL_CONFIG_DIR) / f"{name}.yaml"


def load_model_file(name: str, config_dir: Path | None = None) -> dict[str, Any]:
    """The model's YAML file as a dict (empty if the model has no file, e.g. ``static``)."""
    path = model_config_path(name, config_dir)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of hyper-parameters, got {type(data).__name__}")
    return data


def resolve_model_config(
    name: str, overrides: dict[str, Any] | None = None, config_dir: Path | None = None
) -> dict[str, Any]:
    """Merged hyper-parameters for ``name`` (``train`` sub-mapping included, if any)."""
    return deep_update(load_model_file(name, config_dir), overrides)


def split_train_overrides(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the model's constructor parameters from its ``train:`` overrides."""
    params = dict(params)
    train = params.pop("train", {}) or {}
    return params, train
