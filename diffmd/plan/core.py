"""The plan's core: the validated config, its checks at parse time, the datasets and their tasks, what each
dataset offers and which models run on it, each model's resolved parameters, the stage argument sets and the run
directories. The other parts (:mod:`.tuning`, :mod:`.costs`, :mod:`.simulation`, :mod:`.rules`) build on it;
:class:`diffmd.plan.Plan` is all of them together.

Paths (docs/ARCHITECTURE.md): ``data/md17/{molecule}.npz``, ``data/c7o2h10/{isomer}.npz``, split files
``data/splits/md17/{molecule}.json`` (S2L) and ``data/splits/c7o2h10.json`` (O2O), run directories
``results/{dataset}/{molecule}/{model}/seed{seed}``; an O2O model is trained once, under the run name
``trained``, and rolled out on every target isomer.
"""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

from diffmd.config import (
    deep_update,
    fill_defaults,
    load_schema,
    resolve_model_config,
    split_train_overrides,
    validate_config,
)

#: The paper's two tasks: S2L (short-to-long, one trajectory per molecule) and O2O (one-to-others).
TASKS = {"md17": "s2l", "c7o2h10": "o2o"}
#: The paper's table of each dataset (Table 1: MD17 short-to-long, Table 2: C7O2H10 one-to-others).
PAPER_TABLES = {"md17": "table1_md17", "c7o2h10": "table2_c7o2h10"}
#: Run name of O2O models, trained once for every target isomer.
O2O_TRAINED = "trained"
#: Folders beside the model run directories of a molecule (the cost benchmark's extra strides, the reference ensemble):
#: never a row's name.
RESERVED_RUN_NAMES = ("cost", "simulation_ensemble")
#: ``{molecule}`` of C7O2H10 isomers: ``iso<ID>`` downloaded, ``xtb<NN>`` simulated (never "trained").
ISOMER_PATTERN = r"iso\d+|xtb\d+"


def fmt(value: float) -> str:
    """Compact, file-name-safe number: 0.001 -> 0.001, 1e-05 -> 1e-05, 10.0 -> 10."""
    return f"{float(value):g}"


class PlanCore:
    """The config, its checks, datasets, models and run directories (the base of :class:`diffmd.plan.Plan`; its
    check at parse time also asks the tuning, cost and simulation parts)."""

    def __init__(self, config: dict[str, Any], origin: str = "config"):
        validate_config(config, origin)
        self.config = fill_defaults(config)
        self.origin = origin
        self.seeds: list[int] = [int(s) for s in self.config["seeds"]]
        self.models: list[str] = list(self.config["models"])
        #: rows named for options, ``{row: {model, params, rollout}}`` (``variants``): a registered model's row with
        #: some of its parameters, training or rollout settings changed; run wherever ``models`` names them
        self.variants: dict[str, dict[str, Any]] = {row: dict(v) for row, v in self.config["variants"].items()}
        self._check_variants()
        #: the datasets this run makes (``datasets``; default both): a switched-off one has no jobs
        self.datasets: list[str] = list(self.config["datasets"])
        self.md17_molecules: list[str] = list(self.config["data"]["md17"]["molecules"])
        # what each row is: its model's card (diffmd/models/cards.yaml; no torch), a variant's that of its model
        self._cards = {m: _card(self.base_model(m)) for m in self.models}
        # memos of values the workflow asks for per job (the config does not change after validation)
        self._memo_params: dict[tuple[str, str], dict[str, Any]] = {}
        self._memo_points: dict[str, list[str]] = {}
        self._memo_schedule: dict[tuple[str, str], list[dict[str, int]]] = {}
        self._memo_rollout: dict[str, dict[str, Any]] = {}
        self._check()

    def base_model(self, row: str) -> str:
        """The registered model a row builds: a variant's ``model``, else the row itself. Decided here once: the rules
        pass it to the entry points that build a class (``--model``; the checkpoint stores it), while run directories,
        tables, figures and the cost model use the row."""
        variant = self.variants.get(row)
        return variant["model"] if variant is not None else row

    def card(self, row: str):
        """The card of ``row`` (a variant's is its model's: role, fit, needs, stride, ...)."""
        return self._cards[row] if row in self._cards else _card(self.base_model(row))

    def _check_variants(self) -> None:
        """Refuse, one line naming the key, a variant that could not be a row: a registered model's name, an unknown
        model or another variant as its model, a grid-tuned model (its rows are its config section's grid), train
        settings for a model the engine does not train, a parameter its model's card refuses, a rollout key that is not
        a row's own."""
        from diffmd.cards import cards, check_params

        known = cards()
        train_schema = load_schema()["properties"]["train"]
        model_params = self.config.get("model_params", {})
        for row, variant in self.variants.items():
            key = f"{self.origin}: variants.{row}"
            base = variant["model"]
            if row in known:
                raise ValueError(f"{key}: {row!r} is a registered model's name; name the variant for its option "
                                 f"(e.g. {row}_noise)")  # fmt: skip
            if row in RESERVED_RUN_NAMES:
                raise ValueError(f"{key}: {row!r} names a folder beside the run directories "
                                 f"(results/<dataset>/<molecule>/{row}/); choose another name")  # fmt: skip
            if base in self.variants:
                raise ValueError(f"{key}.model: {base!r} is itself a variant; a variant's model is a registered model")
            if base not in known:
                raise ValueError(f"{key}.model: unknown model {base!r}; known models: {', '.join(sorted(known))}")
            fit = known[base].fit
            if fit == "grid":
                raise ValueError(f"{key}.model: {base!r} is tuned by a grid search (fit: grid; its settings are the "
                                 f"config's {base} section): variants of it are not supported")  # fmt: skip
            params, train = split_train_overrides(variant.get("params") or {})
            if "rollout" in params:
                raise ValueError(f"{key}.params.rollout: a row's rollout settings go in variants.{row}.rollout")
            row_train = (model_params.get(row) or {}).get("train")
            for where, given in ((f"{key}.params.train", train),
                                 (f"{self.origin}: model_params.{row}.train", row_train)):
                if given and not known[base].engine_trained:
                    raise ValueError(f"{where}: {base!r} is not trained by the engine (fit: {fit}): train settings "
                                     "change nothing")  # fmt: skip
            check_params(base, params, f"{key}.params")
            _validate_section(deep_update(self.config["train"], train), train_schema, f"{key}.params.train")
            self._check_row_rollout(variant.get("rollout") or {}, f"{key}.rollout")

    def _check_row_rollout(self, given: Any, where: str) -> None:
        """A row's own rollout settings: only :data:`diffmd.stages.ROW_KEYS`, each a value the rollout schema takes."""
        from diffmd.stages import ROW_KEYS

        allowed = ROW_KEYS["rollout"]
        if not isinstance(given, dict):
            raise ValueError(f"{where}: expected a mapping of {', '.join(allowed)}, got {given!r}")
        extra = sorted(set(given) - set(allowed))
        if extra:
            raise ValueError(f"{where}: {extra[0]!r} is not a row's own rollout setting (the yardstick's settings "
                             f"judge every row alike; per row: {', '.join(allowed)})")  # fmt: skip
        props = load_schema()["properties"]["rollout"]["properties"]
        _validate_section(given, {"type": "object", "properties": {k: props[k] for k in allowed}}, where)

    def _check(self) -> None:
        from diffmd.cards import check_params
        from diffmd.plan.tuning import grid_points  # the tuning part builds on this one

        train_schema = load_schema()["properties"]["train"]
        for model in self.models:
            base = self.base_model(model)
            for dataset in TASKS:
                params, train = split_train_overrides(self.model_params(model, dataset))
                source = f"{self.origin}: model_params.{model} (with diffmd/models/configs/{base}.yaml" + (
                    f", model_params.{base} and variants.{model})" if base != model else ")")
                check_params(base, params, source)
                stride = params.get("stride", 1)
                if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
                    raise ValueError(f"{source}: stride must be an integer >= 1, got {stride!r}")
                _validate_section(deep_update(self.config["train"], train), train_schema,
                                  f"{self.origin}: model_params.{model}.train")
        for model, given in self.config.get("model_params", {}).items():
            if model not in self._cards and model not in self.variants:
                _card(model)  # an unknown name raises with the known ones
            self._check_row_rollout(given.get("rollout") or {}, f"{self.origin}: model_params.{model}.rollout")
        for molecule in self.cost_molecules() if self.enabled("md17") else []:
            if molecule not in self.md17_molecules:
                raise ValueError(
                    f"{self.origin}: score_dynamics.cost_molecules: {molecule!r} is not in data.md17.molecules"
                )
        targets, isomers = self.config_targets(), self.static_isomers()
        if isomers and targets and not set(targets) <= set(isomers):
            raise ValueError(
                f"{self.origin}: splits.c7o2h10.targets {targets} are not simulated isomers "
                f"({isomers[0]}..{isomers[-1]}) with data.c7o2h10.source: xtb; name xtb isomers or use targets: []"
            )
        for model in self.tuned_models("diffmd_grid"):
            try:
                grid_points(self.grid(model), self.grid_spec(model))
            except ValueError as exc:
                raise ValueError(f"{self.origin}: {exc}") from None
        for dataset in self.simulation_datasets():
            self.simulation_config(dataset)  # a per-dataset scoring horizon missing for a simulated data set
        self.check_existing_data()

    def check_existing_data(self, root: str = ".") -> None:
        """Refuse, at parse time, any existing data file a job would refuse (a trajectory too short, corrupt,
        of another molecule or implausible; a hand-edited index or split; a split whose trajectory changed), so
        Snakemake fails before it deletes any finished output that depends on it: :mod:`diffmd.data.preflight`."""
        from diffmd.data.preflight import check_existing_inputs

        check_existing_inputs(self, root)

    def enabled(self, dataset: str) -> bool:
        """Whether ``dataset`` is made in this run (``datasets``); an unknown name raises."""
        self.task(dataset)
        return dataset in self.datasets

    @staticmethod
    def task(dataset: str) -> str:
        if dataset not in TASKS:
            raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(TASKS)}")
        return TASKS[dataset]

    def source(self, dataset: str) -> str:
        return self.config["data"][dataset]["source"]

    def source_settings(self, dataset: str) -> dict[str, Any]:
        """Only the config a dataset's source reads, ``{"xtb": ...}`` or ``{"download": ...}`` (editing the
        other source's settings or adding a molecule does not rerun the data rules)."""
        section = self.config["data"][dataset]
        key = "xtb" if section["source"] == "xtb" else "download"
        return {key: section.get(key, {})}

    def static_isomers(self) -> list[str]:
        """C7O2H10 isomer names known at parse time (simulated ones, ``xtb01``...); [] for downloads,
        whose names come from the archive (the split checkpoint)."""
        if self.source("c7o2h10") != "xtb":
            return []
        from diffmd.data.isomers import xtb_isomer_names

        xtb = self.config["data"]["c7o2h10"].get("xtb", {})
        return xtb_isomer_names(int(xtb.get("n_isomers", 20)), xtb.get("isomers"))

    def config_targets(self) -> list[str]:
        """``splits.c7o2h10.targets`` ([] = chosen from the data by the split rule)."""
        return list(self.config["splits"]["c7o2h10"].get("targets") or [])

    def split_path(self, dataset: str, molecule: str) -> str:
        """The split file a run of ``molecule`` reads: per molecule (S2L) or one for every isomer (O2O)."""
        if self.task(dataset) == "s2l":
            return f"data/splits/{dataset}/{molecule}.json"
        return f"data/splits/{dataset}.json"

    def split_config(self, dataset: str) -> dict[str, Any]:
        """``splits.<dataset>``; O2O adds the history frames every target rollout starts after; ``checks``: the
        plausibility bounds ``data.<dataset>.checks`` when the config sets them (the split job checks every
        trajectory it splits, against the schema's defaults otherwise)."""
        cfg = dict(self.config["splits"][dataset])
        if self.task(dataset) == "o2o":
            cfg["history_frames"] = self.history_frames(dataset)
        if self.config["data"][dataset].get("checks"):
            cfg["checks"] = dict(self.config["data"][dataset]["checks"])
        return cfg

    def history_frames(self, dataset: str) -> int:
        """2 x the largest stride of any model (or of the split), so every model starts from the same
        frame and has its v and a history."""
        strides = [int(self.config["splits"][dataset].get("stride", 1))]
        strides += [int(self.model_params(m, dataset).get("stride", 1)) for m in self.models]
        return 2 * max(strides)

    def train_run(self, dataset: str, molecule: str) -> str:
        """The run name a test run's model was trained under: the molecule (S2L) or ``trained`` (O2O)."""
        return molecule if self.task(dataset) == "s2l" else O2O_TRAINED

    def check_train_run(self, dataset: str, run: str) -> None:
        """Refuse a training run name that does not fit the dataset's task (one line)."""
        if (self.task(dataset) == "s2l") == (run == O2O_TRAINED):
            raise ValueError(
                f"no training run results/{dataset}/{run}: use results/md17/<molecule>/... "
                f"or results/c7o2h10/{O2O_TRAINED}/..."
            )

    def train_run_names(self) -> list[str]:
        return [*self.md17_molecules, O2O_TRAINED]

    def offers(self, dataset: str) -> dict[str, str | None]:
        """Each requirement a model may declare (``requires``) -> None when the dataset's data offers it,
        else the reason it does not (printed by the tables beside NA)."""
        source = self.source(dataset)
        from diffmd.data.sources import has_force_labels, has_reference_potential

        no_forces = None if has_force_labels(source, self.task(dataset)) else (
            f"the {dataset} {source} data has no force labels")
        thermostat = (self.config["data"][dataset].get("xtb") or {}).get("thermostat", "langevin")
        return {
            "forces": no_forces,
            "reference_potential": None if has_reference_potential(source) else (
                f"no reference potential for source {source!r}"),
            "thermostat_state": None if source == "xtb" and thermostat == "nose_hoover" else (
                f"the {dataset} {source} data stores no Nosé-Hoover chain state"
                + (f" (xtb.thermostat {thermostat})" if source == "xtb" else "")),
            "one_molecule": None if self.task(dataset) == "s2l" else "a single-molecule model (no transfer to O2O)",
        }

    def unavailable(self, model: str, dataset: str) -> str | None:
        """Why ``model`` cannot run on ``dataset`` (None when it can)."""
        offers = self.offers(dataset)
        for need in self.card(model).needs:
            if need not in offers:
                raise ValueError(f"model {model!r} requires {need!r}, which the plan does not know")
            if offers[need] is not None:
                return offers[need]
        return None

    def models_for(self, dataset: str) -> list[str]:
        """The models that run on ``dataset`` (config order); the others are NA in its tables."""
        return [m for m in self.models if self.unavailable(m, dataset) is None]

    def na_reasons(self, dataset: str) -> dict[str, str]:
        return {m: r for m in self.models if (r := self.unavailable(m, dataset)) is not None}

    def role(self, model: str) -> str:
        return self.card(model).role

    def models_with_role(self, *roles: str) -> list[str]:
        return [m for m in self.models if self._cards[m].role in roles]

    def train_models(self, dataset: str) -> list[str]:
        """Models the ``train`` rule makes a checkpoint for on ``dataset``."""
        return [m for m in self.engine_models() if m in self.models_for(dataset)]

    def engine_models(self) -> list[str]:
        """Models whose checkpoint the ``train`` rule makes (everything without a tuning procedure)."""
        return [m for m in self.models if self._cards[m].tuning is None]

    def gpu(self, model: str) -> int:
        """The GPU slots a job of ``model`` holds (the rules' ``resources: gpu``): 1 for a network the engine trains
        (:func:`diffmd.registry.uses_accelerator`), 0 for rows that run on the CPU (references, floors, physics
        oracles, own-trainer force fields). A slot is one concurrent GPU job: the default profile gives one GPU
        several (profiles/default/config.yaml; docs/paper_scale.md), ``--resources gpu=1`` one at a time."""
        return int(self._cards[model].engine_trained)

    def tuned_models(self, tuning: str | None = None) -> list[str]:
        return [m for m in self.models if self._cards[m].tuning is not None
                and (tuning is None or self._cards[m].tuning == tuning)]  # fmt: skip

    def model_params(self, model: str, dataset: str) -> dict[str, Any]:
        """``diffmd/models/configs/<model>.yaml`` + ``model_params.<model>``, with the stride from
        ``<model>.stride.<dataset>`` for models whose stride comes from the config; a variant: its model's resolved
        parameters, deep-updated by ``variants.<row>.params``, then by ``model_params.<row>``. Without the row's
        ``rollout:`` (:meth:`rollout_args`). A fresh copy; resolved once per (row, dataset): the workflow asks for
        every job it plans."""
        key = (model, dataset)
        if key not in self._memo_params:
            self._memo_params[key] = self._model_params(model, dataset)
        return copy.deepcopy(self._memo_params[key])

    def _model_params(self, model: str, dataset: str) -> dict[str, Any]:
        given = {k: v for k, v in self.config.get("model_params", {}).get(model, {}).items() if k != "rollout"}
        base = self.base_model(model)
        if base != model:  # a variant: its model's row, then its own params, then model_params.<variant>
            return deep_update(deep_update(self.model_params(base, dataset), self.variants[model].get("params")), given)
        overrides = copy.deepcopy(given)
        # a simulated source's settings, for what its files do not carry; dt and temperature come from the data
        # file itself at training time (the card's data_params), whatever the source
        source = self.config["data"][dataset].get("xtb", {}) if self.source(dataset) == "xtb" else {}
        for key in self.card(model).source_params:
            if key in source:
                overrides.setdefault(key, source[key])
        if self.card(model).stride == "config":
            stride = (self.config.get(model) or {}).get("stride", {}).get(dataset)
            if stride is not None:
                overrides.setdefault("stride", int(stride))
        return resolve_model_config(model, overrides)

    def stride(self, model: str, dataset: str) -> int:
        return int(self.model_params(model, dataset).get("stride", 1))

    def train_config(self) -> dict[str, Any]:
        """The ``train`` section plus the rollout's divergence bound (used by validation rollouts), the machine's
        keys included (the cost model reads them; the rules get :meth:`stage_args` instead)."""
        return {**self.config["train"], "divergence_bound_A": self.config["rollout"]["divergence_bound_A"]}

    def rollout_config(self) -> dict[str, Any]:
        return {**self.config["rollout"], "device": self.config["train"]["device"]}

    def stage_args(self, stage: str) -> dict[str, Any]:
        """What one stage (``train``, ``rollout``, ``evaluate``) reads from the config, and nothing else: a rule's
        params, so that a change reruns only the jobs that read it (:mod:`diffmd.stages`)."""
        from diffmd.stages import stage_args

        return stage_args(stage, self.config)

    def stage_arg(self, stage: str) -> str:
        return shell_arg(self.stage_args(stage))

    def row_rollout(self, row: str) -> dict[str, Any]:
        """The rollout settings ``row`` sets for itself (:data:`diffmd.stages.ROW_KEYS`): its model's
        ``model_params.<model>.rollout``, then a variant's ``variants.<row>.rollout`` and
        ``model_params.<row>.rollout``."""
        given, base = self.config.get("model_params", {}), self.base_model(row)
        out = dict((given.get(base) or {}).get("rollout") or {})
        if base != row:
            out.update(self.variants[row].get("rollout") or {})
            out.update((given.get(row) or {}).get("rollout") or {})
        return out

    def rollout_args(self, row: str) -> dict[str, Any]:
        """What the rollout job of ``row`` reads (the rollout and rollout_simulate rules' params): the rollout stage's
        keys (:meth:`stage_args`) with the row's own settings (:meth:`row_rollout`) over them, so that a row's setting
        reruns that row's rollouts only; the one place a row's rollout settings are resolved."""
        if row not in self._memo_rollout:
            self._memo_rollout[row] = {**self.stage_args("rollout"), **self.row_rollout(row)}
        return dict(self._memo_rollout[row])

    def machine_environment(self) -> dict[str, str]:
        """The machine's settings (device, compile) as the environment the rules' commands read, never params."""
        from diffmd.stages import machine_environment

        return machine_environment(self.config)

    @staticmethod
    def run_dir(dataset: str, molecule: str, model: str, seed: int | str) -> str:
        return f"results/{dataset}/{molecule}/{model}/seed{seed}"

    def run_files(self, dataset: str, molecules: list[str], filename: str, seeds: list[int] | None = None) -> list[str]:
        """``filename`` in every run directory of ``dataset`` (molecules x models x seeds), table order."""
        if not self.enabled(dataset):
            return []
        models = self.models_for(dataset)
        return [f"{self.run_dir(dataset, mol, model, seed)}/{filename}"
                for mol in molecules for model in models for seed in (seeds or self.seeds)]  # fmt: skip

    def figure_seed(self) -> int:
        return min(self.seeds)


def _validate_section(instance: dict[str, Any], schema: dict[str, Any], origin: str) -> None:
    from diffmd.config import schema_error

    exc = schema_error(instance, schema)  # a validator built once per process (30 sections per parse)
    if exc is not None:
        where = ".".join(str(p) for p in exc.absolute_path) or "(section)"
        raise ValueError(f"{origin}: {where}: {exc.message}") from None


def _card(name: str):
    from diffmd.cards import card

    try:
        return card(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None


def as_json(obj: Any) -> str:
    """Canonical JSON of a plan value (sorted keys), as the rules pass it on the command line."""
    return json.dumps(obj, sort_keys=True)


def shell_arg(obj: Any) -> str:
    """A plan value as one shell-quoted JSON argument for the package's entry points."""
    return shlex.quote(as_json(obj))
