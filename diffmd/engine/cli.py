"""The engine CLIs' shared plumbing, torch-free so light CLIs (``diffmd.engine.evaluate``) start in a fraction of
a second: a bad argument or input is one line ``error: <file or key>: <what>`` and exit status 1, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line ``error: <what>`` and exit status 1 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def json_argument(text: str, name: str) -> dict[str, Any]:
    """The JSON object given to argument ``name``; a one-line :class:`ValueError` naming it otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def _check_value(value: Any, schema: dict[str, Any], where: str) -> None:
    """``value`` against a JSON schema (``$ref`` into the experiment schema's definitions); one-line ``ValueError``
    naming ``where`` and the offending key path."""
    import jsonschema

    from diffmd.config import load_schema

    root = load_schema()
    try:
        jsonschema.validate(value, {**schema, "definitions": root.get("definitions", {})})
    except jsonschema.ValidationError as exc:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        raise ValueError(f"{where}{path}: {exc.message}") from None


def section_argument(text: str, name: str, *sections: str) -> dict[str, Any]:
    """The JSON object given to option ``name`` whose keys come from the experiment config's ``sections`` (e.g.
    ``train`` and ``rollout``: the plan passes the trainer its section plus the rollout's divergence bound):
    every key must be one of theirs and every value of the type the schema gives it, else one line
    ``<option>: <key>: <what>`` (no TypeError deep inside the job)."""
    from diffmd.config import load_schema

    value = json_argument(text, name)
    props: dict[str, Any] = {}
    for section in sections:
        props.update(load_schema()["properties"][section].get("properties", {}))
    for key, item in value.items():
        if key not in props:
            raise ValueError(f"{name}: unknown key {key!r}; known: {', '.join(sorted(props))}")
        _check_value(item, props[key], f"{name}: {key}")
    return value


#: ``--meta`` of the evaluate CLI: which run a rollout belongs to
META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"dataset": {"enum": ["md17", "c7o2h10"]}, "molecule": {"type": "string"},
                   "model": {"type": "string"}, "seed": {"type": "integer", "minimum": 0}},
}
#: ``--grid`` of the tuning CLI: ``<model>.grid``, each key a list of numbers
GRID_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": {"$ref": "#/definitions/grid_values"}}


def schema_argument(text: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object given to option ``name``, checked against ``schema`` (one line naming the option and key)."""
    value = json_argument(text, name)
    _check_value(value, schema, name)
    return value


def model_params_argument(text: str, name: str, model: str) -> dict[str, Any]:
    """``--params`` of a model: a JSON object of its constructor parameters (checked against its signature and
    declared choices, :func:`diffmd.registry.check_params`) and an optional ``train`` mapping of trainer keys."""
    from diffmd.registry import check_params

    value = json_argument(text, name)
    params = {k: v for k, v in value.items() if k != "train"}
    if "train" in value:
        train = value["train"]
        if not isinstance(train, dict):
            raise ValueError(f"{name}: train: expected a JSON object of trainer keys, got {type(train).__name__}")
        section_argument(json.dumps(train), f"{name}: train", "train")
    if "stride" in params and (not isinstance(params["stride"], int) or isinstance(params["stride"], bool)
                               or params["stride"] < 1):  # fmt: skip
        raise ValueError(f"{name}: stride: must be an integer >= 1, got {params['stride']!r}")
    check_params(model, params, name)
    return value


DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


def add_machine_arguments(p: argparse.ArgumentParser, compile_key: str) -> None:
    """``--device`` and ``--compile``: where and how the job runs, from the workflow's environment (the rules pass
    ``"$DIFFMD_DEVICE"``; :mod:`diffmd.stages`), never from the experiment sections (so never a rerun trigger)."""
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (the config's train.device)")
    p.add_argument("--compile", default=None,
                   help=f"torch.compile the network: auto (CUDA only), true, false (the config's {compile_key})")


def add_simulation_arguments(p: argparse.ArgumentParser, out_flag: str = "--out") -> None:
    """The options of a job that simulates (``diffmd.engine.simulate run``; ``diffmd.engine.rollout`` with
    ``out_flag`` ``--simulation-out``, the simulation after the rollout in the same process)."""
    p.add_argument("--simulation-config", default="{}", help="JSON: the config's simulation section")
    p.add_argument("--ensemble", default=None, help="ensemble.npz (run: proper scores against it)")
    p.add_argument("--meta", default="{}", help='JSON: {"dataset", "molecule", "model", "seed"} (run)')
    if out_flag != "--out":
        p.add_argument(out_flag, default=None, help="also simulate (after the rollout): RUN/simulation.json")


def machine_arguments(a: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
    """``{device, compile}`` of a job: the command line's, else the section's (a hand-written --train-config or
    --rollout-config may still carry them), else auto; an empty value (an unset variable) counts as not given. A
    bad value is one line naming the option."""
    import re

    device = a.device or given.get("device", "auto")
    if not isinstance(device, str) or not re.match(DEVICE_PATTERN, device):
        raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    compile_ = a.compile or given.get("compile", "auto")
    if isinstance(compile_, str) and compile_.lower() in ("true", "false"):
        compile_ = compile_.lower() == "true"
    if compile_ not in ("auto", True, False):
        raise ValueError(f"--compile: expected auto, true or false, got {compile_!r}")
    return {"device": device, "compile": compile_}


def run_cli(body: Callable[[], object]) -> int:
    """Run a CLI's ``body``: 0 on success; a bad argument or input (``ValueError``, ``KeyError``,
    ``FileNotFoundError``, so ``json.JSONDecodeError`` too) prints ``error: <file or key>: <what>`` on one
    line to stderr and gives 1, no traceback."""
    try:
        body()
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        first = str(message).strip().splitlines()
        print(f"error: {first[0] if first else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0
