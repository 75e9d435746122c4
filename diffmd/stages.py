"""What each stage of the workflow reads from the experiment config, decided here once (torch-free).

A rule's ``params`` are Snakemake's rerun trigger: a job whose params change is planned again. So each stage
gets only the keys it reads (:data:`STAGE_KEYS`), and the machine it runs on (``train.device``, the
``compile`` switches) never enters ``params``: the workflow exports them as environment variables when it
parses the config (:func:`machine_environment`; jobs inherit them, on a cluster too, where each job parses the
workflow again) and the rules hand them to the command lines as ``--device "$DIFFMD_DEVICE" --compile ...``.
Changing the device, or a horizon only ``evaluate`` reads, therefore replans only the jobs that read it
(tests/test_stages.py builds the DAG of a finished run and counts).

The command lines read their section through :func:`stage_config`: the stage's defaults for its own keys,
the given values over them, and a :class:`KeyError` naming this module when the stage reads a key it is not
declared to read, so a new key cannot be read silently from the defaults while the plan never passes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The keys of the train section that say where and how the job runs, not what it computes.
MACHINE_TRAIN_KEYS = ("device", "compile")
#: The keys of the rollout section that say how the job runs (``rollout.compile``).
MACHINE_ROLLOUT_KEYS = ("compile",)

#: Per stage: ``{section: keys}`` of the experiment config the stage's command line reads (None: every key of
#: the section but the machine's). ``train`` is every training run (the train rule, the grid points, the
#: halving rungs, the grid validation, the cost benchmark's extra strides): the trainer's section and the
#: divergence bound of its validation rollouts.
STAGE_KEYS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "train": {"train": None, "rollout": ("divergence_bound_A",)},
    "rollout": {"rollout": ("horizon", "divergence_bound_A", "n_starts", "start_horizon_fs", "one_step_frames",
                            "rigid_motion")},
    "evaluate": {"rollout": ("horizons_fs", "energy_frames")},
}

#: Per section, the keys of a stage a row may set for itself (``variants.<row>.rollout``,
#: ``model_params.<row>.rollout``; :meth:`diffmd.plan.Plan.rollout_args`): how its model steps. Every other key
#: (horizons, starts, the divergence bound) is the yardstick's and judges every row alike.
ROW_KEYS: dict[str, tuple[str, ...]] = {"rollout": ("rigid_motion",)}

#: Environment variables the workflow exports (machine settings; never rule params) -> (section, key).
MACHINE_ENV = {"DIFFMD_DEVICE": ("train", "device"), "DIFFMD_TRAIN_COMPILE": ("train", "compile"),
               "DIFFMD_ROLLOUT_COMPILE": ("rollout", "compile")}  # fmt: skip


def _machine_keys(section: str) -> tuple[str, ...]:
    return MACHINE_TRAIN_KEYS if section == "train" else MACHINE_ROLLOUT_KEYS if section == "rollout" else ()


def stage_keys(stage: str) -> dict[str, tuple[str, ...]]:
    """``{section: keys}`` a stage reads, every key spelt out (from the schema where :data:`STAGE_KEYS` says all)."""
    from diffmd.config import load_schema

    if stage not in STAGE_KEYS:
        raise KeyError(f"unknown stage {stage!r}; known: {', '.join(STAGE_KEYS)}")
    props = load_schema()["properties"]
    out = {}
    for section, keys in STAGE_KEYS[stage].items():
        if keys is None:
            keys = tuple(k for k in props[section]["properties"] if k not in _machine_keys(section))
        out[section] = tuple(keys)
    return out


def stage_args(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The stage's argument set from a validated config (defaults filled): only the keys it reads, one flat
    mapping (the sections' key names do not collide)."""
    out: dict[str, Any] = {}
    for section, keys in stage_keys(stage).items():
        out.update({k: config[section][k] for k in keys if k in config[section]})
    return out


def machine_environment(config: Mapping[str, Any]) -> dict[str, str]:
    """The machine settings of a validated config as the environment variables the rules' commands read."""
    return {var: str(config[section][key]).lower() for var, (section, key) in MACHINE_ENV.items()}


class StageConfig(dict):
    """A stage's settings: reading a key the stage is not declared to read raises (one line naming the stage)."""

    def __init__(self, stage: str, values: Mapping[str, Any], allowed: Iterable[str]):
        super().__init__(values)
        self.stage, self.allowed = stage, frozenset(allowed)

    def _check(self, key: Any) -> None:
        if key not in self.allowed:
            raise KeyError(f"the {self.stage} stage reads {key!r}, which diffmd/stages.py does not give it "
                           f"(STAGE_KEYS[{self.stage!r}]: {', '.join(sorted(self.allowed))})")

    def __getitem__(self, key: Any) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)


def stage_config(stage: str, given: Mapping[str, Any], machine: Mapping[str, Any] | None = None) -> StageConfig:
    """The settings a stage's command line runs with: its keys' schema defaults <- ``given`` (keys of other
    stages are dropped) <- ``machine`` (device, compile: from the command line, not the experiment config)."""
    from diffmd.config import section_defaults

    allowed: set[str] = set()
    values: dict[str, Any] = {}
    for section, keys in stage_keys(stage).items():
        defaults = section_defaults(section)
        allowed.update(keys)
        values.update({k: defaults[k] for k in keys if k in defaults})
    values.update({k: v for k, v in given.items() if k in allowed})
    machine = {k: v for k, v in (machine or {}).items() if v is not None}
    allowed.update(machine)
    values.update(machine)
    return StageConfig(stage, values, allowed)


__all__ = ["STAGE_KEYS", "ROW_KEYS", "MACHINE_ENV", "stage_keys", "stage_args", "stage_config", "machine_environment",
           "StageConfig"]
