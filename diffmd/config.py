"""Configuration: the experiment schema (with every default), and each model's hyper-parameters.

* The experiment config (``config.yaml`` + profiles) is validated against ``diffmd/config.schema.yaml``
  (JSON Schema), which is also the one home of every default: :func:`fill_defaults` writes them into a
  config, :func:`section_defaults` returns one section's (the engine's trainer and rollout read theirs
  from here, so a default is never repeated in code).
* A model's hyper-parameters: ``diffmd/models/configs/<model>.yaml`` (the paper's settings, shipped with
  the package) merged key by key with ``model_params.<model>`` of the experiment. A model file may carry
  a ``train:`` mapping that overrides the global ``train`` section for that model.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_DIR / "config.schema.yaml"
MODEL_CONFIG_DIR = PACKAGE_DIR / "models" / "configs"


def deep_update(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """Recursive dict merge (override wins); returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- the experiment schema ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("diffmd").joinpath("config.schema.yaml").read_text()


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    """The schema file, with the model names from the model cards (the one list of models)."""
    from diffmd.cards import cards

    schema = yaml.safe_load(_schema_text())
    schema["definitions"]["model_name"]["enum"] = sorted(cards())
    schema["definitions"]["row_name"]["enum"] = sorted(cards())  # + the config's variants (validate_config)
    return schema


def load_schema() -> dict[str, Any]:
    """The experiment config schema (a fresh copy; parsed once per process)."""
    return copy.deepcopy(_schema())


def _fill(instance: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in (schema.get("properties") or {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and "properties" in sub:
            _fill(instance[key], sub)


def fill_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every missing key that has a schema default filled in (recursively)."""
    out = copy.deepcopy(config)
    _fill(out, load_schema())
    return out


def section_defaults(*path: str) -> dict[str, Any]:
    """The defaults of one config section, e.g. ``section_defaults("train")``: ``{key: default}``."""
    schema = load_schema()
    for key in path:
        schema = schema["properties"][key]
    out: dict[str, Any] = {}
    _fill(out, schema)
    return out


def definition_defaults(name: str) -> dict[str, Any]:
    """The defaults of a shared definition of the schema (``definitions.<name>``), e.g. ``trajectory_checks``."""
    out: dict[str, Any] = {}
    _fill(out, load_schema()["definitions"][name])
    return out


#: YAML 1.1's words for true and false (what a YAML file would have read as a boolean)
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


def _coerce(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root.get("definitions", {}).get(ref, schema)
    for branch in schema.get("anyOf") or schema.get("oneOf") or ():  # the first branch the value can be made to fit
        out = _coerce(value, branch, root)
        if _fits(out, branch):
            return out
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if isinstance(value, str):
        text = value.strip()
        try:
            if "integer" in types and text.lstrip("+-").isdigit():
                return int(text)
            if "number" in types:
                return float(text)
        except ValueError:
            return value
        if "boolean" in types and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        if "null" in types and text.lower() in ("null", "none", "~"):
            return None
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(v, schema["items"], root) for v in value]
    if isinstance(value, dict) and "properties" in schema:
        return {k: _coerce(v, schema["properties"][k], root) if k in schema["properties"] else v
                for k, v in value.items()}  # fmt: skip
    return value


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(value)


def coerce_to_schema(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` whose strings are numbers, booleans (or null) where the schema wants them: Snakemake's
    ``--config 'seeds=[1,2]'`` gives the list ``['1', '2']``; anything else is left for the validation."""
    schema = load_schema()
    return _coerce(copy.deepcopy(config), schema, schema)


def coerce_command_line(config: dict[str, Any], command_line: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`coerce_to_schema`, and the model parameters given on the command line coerced too.

    Snakemake parses a nested ``--config`` value with YAML's base loader, so every scalar in it is a string:
    ``--config 'model_params={"egnn":{"hidden":64}}'`` arrives as ``{"hidden": "64"}``. The experiment schema
    does not know model parameters (each model's constructor does), so the values of ``model_params`` given on
    ``command_line`` (``workflow.config_settings.config``) are coerced to the type the model declares for them
    (:func:`diffmd.registry.param_types`; ``train:`` by the ``train`` section's schema). Values from YAML files
    keep their types: ``hidden: "32"`` in a config file is still refused.
    """
    out = coerce_to_schema(config)
    given = (command_line or {}).get("model_params")
    params = out.get("model_params")
    variants = out.get("variants") if isinstance(out.get("variants"), dict) else {}
    if isinstance(given, dict) and isinstance(params, dict):
        for row, values in given.items():
            if isinstance(values, dict) and isinstance(params.get(row), dict):
                base = variants.get(row, {}).get("model", row) if isinstance(variants.get(row), dict) else row
                params[row] = coerce_model_params(base, params[row], only=set(values))
    return out


def coerce_model_params(model: str, params: dict[str, Any], only: set[str] | None = None) -> dict[str, Any]:
    """``params`` of ``model`` with string values coerced to the parameter's declared type (``only``: these keys)."""
    from diffmd.registry import param_types

    schema = load_schema()
    types = param_types(model)
    out = dict(params)
    for key, value in params.items():
        if only is not None and key not in only:
            continue
        if key in ("train", "rollout") and isinstance(value, dict):  # a row's train / rollout overrides
            out[key] = _coerce(value, schema["properties"][key], schema)
        elif key in types:
            out[key] = _coerce(value, types[key], schema)
    return out


@functools.lru_cache(maxsize=512)
def _validator(schema_text: str) -> Any:
    import jsonschema

    schema = json.loads(schema_text)
    return jsonschema.validators.validator_for(schema)(schema)


def schema_error(instance: Any, schema: dict[str, Any]) -> Any:
    """The most relevant ``jsonschema.ValidationError`` of ``instance`` against ``schema`` (this project's own
    schemas: their validator is built once per process and the schema itself not re-checked), or None."""
    import jsonschema

    return jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(instance))


def validate_config(config: dict[str, Any], origin: str = "config") -> None:
    """Validate against the schema; a failure raises ``ValueError`` naming the key path (one line)."""
    import jsonschema

    schema = load_schema()
    variants = config.get("variants") if isinstance(config, dict) else None
    if isinstance(variants, dict):  # a row is a registered model or one of this config's variants
        schema["definitions"]["row_name"]["enum"] += sorted(v for v in variants if isinstance(v, str))
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValueError(f"{origin}: {where}: {exc.message}") from None


# --- model hyper-parameters ---------------------------------------------------------------------


def model_config_path(name: str, config_dir: Path | None = None) -> Path:
    return (config_dir or MODEL_CONFIG_DIR) / f"{name}.yaml"


#: Parsed model files by (path, modification time, size): the workflow resolves a model's parameters for every
#: job it plans (4,152 times in the paper DAG, 80% of a dry run's time when each re-parsed its YAML).
_MODEL_FILES: dict[tuple[str, int, int], dict[str, Any]] = {}


def load_model_file(name: str, config_dir: Path | None = None) -> dict[str, Any]:
    """The model's YAML file as a dict (empty if the model has no file, e.g. ``static``); a fresh copy each call,
    parsed once per version of the file."""
    path = model_config_path(name, config_dir)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _MODEL_FILES:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of hyper-parameters, got {type(data).__name__}")
        _MODEL_FILES[key] = data
    return copy.deepcopy(_MODEL_FILES[key])


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
