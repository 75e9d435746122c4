"""The experiment plan: what the workflow runs, decided here from the validated config (and tested).

The Snakemake rule files only name file patterns and call the package; every decision with a branch
lives in :class:`Plan`: the task of each dataset (S2L or O2O), run directories, each model's resolved
parameters (strides from the config included), the trainer and rollout settings, history frames,
the tuning points of tuned models, the cost benchmark's runs and the final targets. Models are
asked for their role, tuning and stride source through the registry (:mod:`diffmd.registry`), never
by name.

Paths (docs/ARCHITECTURE.md): ``data/md17/{molecule}.npz``, ``data/c7o2h10/{isomer}.npz``, split files
``data/splits/md17/{molecule}.json`` (S2L) and ``data/splits/c7o2h10.json`` (O2O), run directories
``results/{dataset}/{molecule}/{model}/seed{seed}``; an O2O model is trained once, under the run name
``trained``, and rolled out on every target isomer.
"""

from __future__ import annotations

import copy
import itertools
import json
import shlex
from dataclasses import dataclass
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
#: ``{molecule}`` of C7O2H10 isomers: ``iso<ID>`` downloaded, ``xtb<NN>`` simulated (never "trained").
ISOMER_PATTERN = r"iso\d+|xtb\d+"
#: Tuning procedures the plan knows (a model's ``tuning`` attribute names one).
TUNINGS = ("diffmd_grid",)
#: The sampling key of every ``diffmd_grid`` grid: each trained point is validated at every value.
GRID_SAMPLE_KEY = "eps"


def fmt(value: float) -> str:
    """Compact, file-name-safe number: 0.001 -> 0.001, 1e-05 -> 1e-05, 10.0 -> 10."""
    return f"{float(value):g}"


@dataclass(frozen=True)
class GridSpec:
    """The ``diffmd_grid`` tuning grid of one model, as its class declares it: ``grid_train_keys`` (one training
    per combination of their values), ``grid_point_labels`` (each key's prefix in a point's name; default the
    keys) and ``grid_train_eps`` (True: the point trains with train_eps = the grid's smallest eps). ``eps``
    (:data:`GRID_SAMPLE_KEY`) is always the sampling key. The grid itself is the config section named after
    the model, ``<model>.grid`` (also ``<model>.search``, ``.halving``, ``.batch_eps``)."""

    model: str
    train_keys: tuple[str, ...]
    labels: tuple[str, ...]
    train_eps: bool

    @classmethod
    def of(cls, model: str) -> GridSpec:
        """The grid its card declares (``fit: grid``, ``grid:``; checked when the cards are read)."""
        grid = _card(model).grid
        if grid is None:
            raise ValueError(f"model {model!r}: its card (diffmd/models/cards.yaml) has no grid (fit: grid)")
        return cls(model, grid.train_keys, grid.labels, grid.train_eps)

    @property
    def section(self) -> str:
        return f"{self.model}.grid"

    def point_name(self, values: dict[str, float]) -> str:
        """A point's directory name: ``<label><value>`` per training key joined by ``_`` (DiffMD:
        ``s<sigma_s>_a<a_bar>_h<eta_sigma>``; diffmd_corrected: ``kernel_scale<value>``)."""
        return "_".join(f"{label}{fmt(values[key])}" for label, key in zip(self.labels, self.train_keys))


def grid_points(grid: dict[str, list[float]], spec: GridSpec) -> dict[str, dict[str, float]]:
    """Training points of ``spec``'s grid (its training keys x eps), ``{name: {training key: value}}``."""
    keys = spec.train_keys + (GRID_SAMPLE_KEY,)
    missing = [k for k in keys if not grid.get(k)]
    if missing:
        raise ValueError(f"{spec.section}: missing or empty key(s) {', '.join(missing)}")
    unknown = sorted(set(grid) - set(keys))
    if unknown:
        raise ValueError(f"{spec.section}: unknown key(s) {', '.join(unknown)}; the grid has {', '.join(keys)}")
    bad = [e for e in grid[GRID_SAMPLE_KEY] if not 0 < float(e) < 1]
    if bad:
        raise ValueError(f"{spec.section}.eps: values must lie in (0, 1), got {bad}")
    points = {}
    for combo in itertools.product(*(grid[k] for k in spec.train_keys)):
        values = dict(zip(spec.train_keys, map(float, combo)))
        points[spec.point_name(values)] = values
    return points


def point_params(base: dict[str, Any], grid: dict[str, list[float]], point: str, spec: GridSpec) -> dict[str, Any]:
    """Model parameters of one training point: ``base`` + the point's values (+ train_eps = min(grid eps) where
    ``spec.train_eps``)."""
    points = grid_points(grid, spec)
    if point not in points:
        raise KeyError(f"grid point {point!r} is not in {spec.section}")
    extra = {"train_eps": float(min(grid[GRID_SAMPLE_KEY]))} if spec.train_eps else {}
    return {**base, **points[point], **extra}


@dataclass(frozen=True)
class CostRun:
    """One simulator of the cost-of-simulated-time benchmark (benchmarks/cost.py)."""

    label: str
    checkpoint: str
    armse_json: str | None  # the table run's armse.json, or None for a cost-only checkpoint


class Plan:
    """Everything the workflow needs, from one validated experiment config (defaults filled in)."""

    def __init__(self, config: dict[str, Any], origin: str = "config"):
        validate_config(config, origin)
        self.config = fill_defaults(config)
        self.origin = origin
        self.seeds: list[int] = [int(s) for s in self.config["seeds"]]
        self.models: list[str] = list(self.config["models"])
        #: the datasets this run makes (``datasets``; default both): a switched-off one has no jobs
        self.datasets: list[str] = list(self.config["datasets"])
        self.md17_molecules: list[str] = list(self.config["data"]["md17"]["molecules"])
        self._cards = {m: _card(m) for m in self.models}  # what each model is (diffmd/models/cards.yaml; no torch)
        # memos of values the workflow asks for per job (the config does not change after validation)
        self._memo_params: dict[tuple[str, str], dict[str, Any]] = {}
        self._memo_points: dict[str, list[str]] = {}
        self._memo_schedule: dict[tuple[str, str], list[dict[str, int]]] = {}
        self._check()

    # --- checks at parse time (before Snakemake deletes anything) --------------------------------
    def _check(self) -> None:
        from diffmd.cards import check_params

        train_schema = load_schema()["properties"]["train"]
        for model in self.models:
            for dataset in TASKS:
                params, train = split_train_overrides(self.model_params(model, dataset))
                source = f"{self.origin}: model_params.{model} (with diffmd/models/configs/{model}.yaml)"
                check_params(model, params, source)
                stride = params.get("stride", 1)
                if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
                    raise ValueError(f"{source}: stride must be an integer >= 1, got {stride!r}")
                _validate_section(deep_update(self.config["train"], train), train_schema,
                                  f"{self.origin}: model_params.{model}.train")
        for model in self.config.get("model_params", {}):
            if model not in self._cards:
                _card(model)  # an unknown name raises with the known ones
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

    # --- datasets and tasks ---------------------------------------------------------------------
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

    # --- what each dataset offers, and which models it can run -------------------------------------
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
        for need in _card(model).needs:
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

    # --- models -----------------------------------------------------------------------------------
    def role(self, model: str) -> str:
        return _card(model).role

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

    def gpu_of(self, w: Any) -> int:
        """:meth:`gpu` of a job's ``{model}`` wildcard."""
        return self.gpu(w.model)

    def report_rollout_arg(self, w: Any) -> str:
        """``--no-report-rollout`` for a halving rung before the last (its points cannot become the run's model,
        so no rollout for the report; tune.rollout_plan), else nothing."""
        schedule = self.halving_schedule(w.model, w.dataset)
        return "" if not schedule or int(w.rung) == schedule[-1]["rung"] else "--no-report-rollout"

    def tuned_models(self, tuning: str | None = None) -> list[str]:
        return [m for m in self.models if self._cards[m].tuning is not None
                and (tuning is None or self._cards[m].tuning == tuning)]  # fmt: skip

    def model_params(self, model: str, dataset: str) -> dict[str, Any]:
        """``diffmd/models/configs/<model>.yaml`` + ``model_params.<model>``, with the stride from
        ``<model>.stride.<dataset>`` for models whose stride comes from the config (a fresh copy; resolved once
        per (model, dataset): the workflow asks for every job it plans)."""
        key = (model, dataset)
        if key not in self._memo_params:
            self._memo_params[key] = self._model_params(model, dataset)
        return copy.deepcopy(self._memo_params[key])

    def _model_params(self, model: str, dataset: str) -> dict[str, Any]:
        overrides = copy.deepcopy(self.config.get("model_params", {}).get(model, {}))
        # a simulated source's settings, for what its files do not carry; dt and temperature come from the data
        # file itself at training time (the card's data_params), whatever the source
        source = self.config["data"][dataset].get("xtb", {}) if self.source(dataset) == "xtb" else {}
        for key in _card(model).source_params:
            if key in source:
                overrides.setdefault(key, source[key])
        if _card(model).stride == "config":
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

    def machine_environment(self) -> dict[str, str]:
        """The machine's settings (device, compile) as the environment the rules' commands read, never params."""
        from diffmd.stages import machine_environment

        return machine_environment(self.config)

    # --- tuning (diffmd_grid: a grid per tuned model, in the config section named after the model) -------
    def grid_spec(self, model: str) -> GridSpec:
        return GridSpec.of(model)

    def grid_section(self, model: str) -> dict[str, Any]:
        """``<model>`` of the config (``diffmd``, ``diffmd_corrected``): the grid and its search settings."""
        return dict(self.config.get(model) or {})

    def grid(self, model: str) -> dict[str, list[float]]:
        return dict(self.grid_section(model).get("grid") or {})

    def grid_point_names(self, model: str) -> list[str]:
        if model not in self._memo_points:
            self._memo_points[model] = list(grid_points(self.grid(model), self.grid_spec(model)))
        return list(self._memo_points[model])

    def grid_eps(self, model: str) -> list[str]:
        return [fmt(e) for e in self.grid(model)[GRID_SAMPLE_KEY]]

    def grid_point_pattern(self) -> str:
        """The ``{point}`` wildcard's regex: any point of any tuned model's grid ("^$" when none is tuned;
        a point of another model's grid fails in :meth:`point_params`)."""
        import re

        names = sorted({p for m in self.tuned_models("diffmd_grid") for p in self.grid_point_names(m)})
        return "|".join(re.escape(p) for p in names) or "^$"

    def point_params(self, model: str, dataset: str, point: str) -> dict[str, Any]:
        """Model parameters of one training point: the model's + the point's values (+ train_eps, GridSpec)."""
        return point_params(self.model_params(model, dataset), self.grid(model), point, self.grid_spec(model))

    def search(self, model: str) -> str:
        """``<model>.search`` as run: ``halving`` only when the grid has at least ``eta`` training points (a
        smaller grid cannot be halved and is searched in full, e.g. the quick profile's single point)."""
        section = self.grid_section(model)
        asked = section.get("search", "halving")
        if asked == "halving" and len(self.grid_point_names(model)) < int(section.get("halving", {}).get("eta", 3)):
            return "full"
        return asked

    def grid_epochs(self, model: str, dataset: str) -> int:
        """The epochs a full training of ``model`` on ``dataset`` runs (``train`` + the model's ``train:``)."""
        _, overrides = split_train_overrides(self.model_params(model, dataset))
        return int(deep_update(self.config["train"], overrides).get("epochs", 200))

    def halving_schedule(self, model: str, dataset: str) -> list[dict[str, int]]:
        """Successive halving over the grid's N training points: rung r trains ``points`` = ceil(N / eta^r)
        points from scratch for ``epochs`` = ceil(E / eta^(R-1-r)) epochs (E: the full training's), R =
        ``<model>.halving.rungs``; the rungs stop at the first that keeps a single point. Rung 0 trains every
        point; the last rung trains to E. Empty when the search is not halving."""
        key = (model, dataset)
        if key not in self._memo_schedule:
            self._memo_schedule[key] = self._halving_schedule(model, dataset)
        return copy.deepcopy(self._memo_schedule[key])

    def _halving_schedule(self, model: str, dataset: str) -> list[dict[str, int]]:
        if self.search(model) != "halving":
            return []
        section = self.grid_section(model).get("halving", {})
        eta, n_rungs = int(section.get("eta", 3)), int(section.get("rungs", 4))
        n_points, total = len(self.grid_point_names(model)), self.grid_epochs(model, dataset)
        sizes = []
        for r in range(n_rungs):
            sizes.append(max(1, -(-n_points // eta**r)))
            if sizes[-1] == 1:
                break
        last = len(sizes) - 1
        return [{"rung": r, "points": n, "epochs": max(1, -(-total // eta ** (last - r)))}
                for r, n in enumerate(sizes)]  # fmt: skip

    def rung(self, w: Any) -> dict[str, int]:
        """The halving rung of a job's wildcards (``{rung}``); a rung or slot outside the schedule: KeyError."""
        schedule = self.halving_schedule(w.model, w.dataset)
        r, slot = int(w.rung), getattr(w, "slot", None)
        if r >= len(schedule) or (slot is not None and int(slot) >= schedule[r]["points"]):
            raise KeyError(f"{w.model} halving: no rung {w.rung} slot {slot} in {schedule}")
        return schedule[r]

    def grid_arg(self, w: Any) -> str:
        return shell_arg(self.grid(w.model))

    def grid_eps_arg(self, w: Any) -> str:
        return " ".join(self.grid_eps(w.model))

    def batch_eps(self, model: str) -> bool:
        return bool(self.grid_section(model).get("batch_eps", True))

    def batch_eps_arg(self, w: Any) -> str:
        return "" if self.batch_eps(w.model) else "--no-batch-eps"

    def grid_validations(self, w: Any) -> list[str]:
        """The validation files the selection reads: every point's (full) or the last rung's (halving)."""
        if self.search(w.model) == "full":
            return [f"{self.grid_dir(w)}/{p}/validation.json" for p in self.grid_point_names(w.model)]
        last = self.halving_schedule(w.model, w.dataset)[-1]
        return self.rung_validations(w, last["rung"])

    def rung_validations(self, w: Any, rung: int | None = None) -> list[str]:
        r = int(w.rung) if rung is None else rung
        n = self.halving_schedule(w.model, w.dataset)[r]["points"]
        return [f"{self.grid_dir(w)}/rung{r}/slot{j}/validation.json" for j in range(n)]

    def rung_inputs(self, w: Any) -> dict[str, str]:
        """A halving slot's inputs: the split, and from rung 1 on the ranking of the rung before."""
        self.rung(w)
        out = {"split": self.split_of(w)}
        if int(w.rung) > 0:
            out["ranking"] = f"{self.grid_dir(w)}/rung{int(w.rung) - 1}/ranking.json"
        return out

    def rung_keep(self, w: Any) -> int:
        """How many points rung ``w.rung``'s ranking keeps: the next rung's size."""
        schedule = self.halving_schedule(w.model, w.dataset)
        r = int(w.rung)
        if r + 1 >= len(schedule):
            raise KeyError(f"{w.model} halving: rung {r} is the last; nothing ranks it")
        return schedule[r + 1]["points"]

    def tuning_jobs(self, model: str, dataset: str) -> dict[str, int]:
        """Jobs per tuning rule of one run (training run x seed) of a tuned model."""
        points = len(self.grid_point_names(model))
        if self.search(model) == "full":
            return {"diffmd_train_point": points, "diffmd_validate": points, "diffmd_select": 1}
        schedule = self.halving_schedule(model, dataset)
        return {"diffmd_rung": sum(r["points"] for r in schedule), "diffmd_rank": len(schedule) - 1,
                "diffmd_select": 1}  # fmt: skip

    # --- runs and targets --------------------------------------------------------------------------
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

    def train_logs(self, dataset: str, w: Any = None) -> list[str]:
        """The learning-curve figure's inputs for ``dataset`` (per molecule for S2L, the one O2O training run;
        none when the dataset is switched off), every trained model in the config's order: the figure seed's
        ``train_log.csv`` of a model the ``train`` rule trains, the ``selection.json`` of a model tuned over a
        grid (its selected point's log sits in that point's directory, which the selection names)."""
        if not self.enabled(dataset):
            return []
        runs = self.md17_molecules if self.task(dataset) == "s2l" else [O2O_TRAINED]
        engine, tuned = set(self.engine_models()), set(self.tuned_models())
        out = []
        for run in runs:
            for model in self.models_for(dataset):
                run_dir = self.run_dir(dataset, run, model, self.figure_seed())
                if model in engine:
                    out.append(f"{run_dir}/train_log.csv")
                elif model in tuned:
                    out.append(f"{run_dir}/selection.json")
        return out

    def train_logs_of(self, w: Any) -> list[str]:
        return self.train_logs(w.dataset)

    def figure_seed(self) -> int:
        return min(self.seeds)

    # --- cost of simulated time (benchmarks/cost.py) -------------------------------------------------
    def cost_molecules(self) -> list[str]:
        chosen = self.config["score_dynamics"].get("cost_molecules")
        return list(self.md17_molecules[:1] if chosen is None else chosen)

    def cost_models(self) -> list[str]:
        """Learned simulators of the table whose rollout the cost benchmark times (:attr:`diffmd.cards.Card.learned`:
        no reference, floor or oracle rows)."""
        return [m for m in self.models if self._cards[m].learned and m in self.models_for("md17")]

    def cost_strided_model(self) -> str | None:
        """The model the cost benchmark also trains at ``score_dynamics.cost_strides`` (its stride comes
        from the config), or None."""
        strided = [m for m in self.models if self._cards[m].stride == "config"]
        return strided[0] if strided else None

    def cost_extra_strides(self) -> list[int]:
        """Cost strides that need their own checkpoint (the one equal to the table run's reuses it)."""
        model = self.cost_strided_model()
        strides = [int(k) for k in self.config["score_dynamics"]["cost_strides"]]
        if model is None:
            return []
        reuse = self.stride(model, "md17")
        return [k for k in strides if k != reuse]

    def cost_runs(self, molecule: str) -> list[CostRun]:
        seed = self.figure_seed()
        runs = []
        for model in self.cost_models():
            run = self.run_dir("md17", molecule, model, seed)
            k = self.stride(model, "md17")
            label = f"{model} (stride {k})" if self._cards[model].stride == "config" else model
            runs.append(CostRun(label, f"{run}/model.pt", f"{run}/armse.json"))
        model = self.cost_strided_model()
        for k in self.cost_extra_strides():
            ckpt = f"results/md17/{molecule}/cost/{model}/stride{k}/seed{seed}/model.pt"
            runs.append(CostRun(f"{model} (stride {k})", ckpt, None))
        return runs

    def cost_inputs(self) -> list[str]:
        files = []
        for molecule in self.cost_molecules():
            files.append(self.split_path("md17", molecule))
            for run in self.cost_runs(molecule):
                files += [run.checkpoint] + ([run.armse_json] if run.armse_json else [])
        return files

    def cost_manifest(self) -> dict[str, Any]:
        sd = self.config["score_dynamics"]
        molecules = {m: {"split": self.split_path("md17", m),
                         "runs": [{"label": r.label, "checkpoint": r.checkpoint, "armse_json": r.armse_json}
                                  for r in self.cost_runs(m)]}
                     for m in self.cost_molecules()}  # fmt: skip
        return {"molecules": molecules, "xtb": self.config["data"]["md17"].get("xtb", {}),
                "md_steps": int(sd["cost_md_steps"]), "frames": sd["cost_frames"],
                "seed": self.figure_seed()}  # fmt: skip (device and threads: the rule's command line)

    def cost_train_params(self, stride: int) -> dict[str, Any]:
        model = self.cost_strided_model()
        return {**self.model_params(model, "md17"), "stride": int(stride)}

    def has_cost_table(self) -> bool:
        return self.enabled("md17") and bool(self.cost_extra_strides() or self.cost_models())

    # --- simulations (diffmd/engine/simulate.py, workflow/rules/simulation.smk) ------------------------
    def simulation_section(self) -> dict[str, Any]:
        """The ``simulation`` section with its defaults (``scores`` and ``hr`` merged key by key)."""
        from diffmd.config import section_defaults

        base, given = section_defaults("simulation"), dict(self.config.get("simulation") or {})
        out = {**base, **given}
        for key in ("scores", "hr"):
            out[key] = {**base[key], **(given.get(key) or {})}
        return out

    def simulation_datasets(self) -> list[str]:
        """The enabled data sets whose test segments are simulated (``simulation.datasets``)."""
        return [d for d in TASKS if self.enabled(d) and d in self.simulation_section()["datasets"]]

    def simulation_config(self, dataset: str) -> dict[str, Any]:
        """What a simulation job of ``dataset`` reads: the section without ``datasets`` and with the scoring horizon
        of ``dataset``. No device: the job takes CUDA where its model uses it and there is one (``auto``)."""
        sec = self.simulation_section()
        horizon = sec["scores"]["horizon_fs"]
        if isinstance(horizon, dict):
            if dataset not in horizon:
                raise ValueError(f"{self.origin}: simulation.scores.horizon_fs: no value for {dataset!r}")
            horizon = horizon[dataset]
        out = {k: v for k, v in sec.items() if k != "datasets"}
        out["scores"] = {**sec["scores"], "horizon_fs": float(horizon)}
        return out

    def simulation_config_arg(self, w: Any) -> str:
        return shell_arg(self.simulation_config(w.dataset))

    def simulation_models(self, dataset: str) -> list[str]:
        """The models of ``dataset`` that roll out (one-step floors are '—' in the simulation table)."""
        return [m for m in self.models_for(dataset) if not self._cards[m].one_step_only]

    def ensemble_model(self, dataset: str) -> str | None:
        """The model whose re-simulations are the proper scores' reference ensemble: the first ``ensemble``-role
        model that runs on ``dataset`` (a reference potential in the data's bath), or None (no scores)."""
        found = [m for m in self.models_for(dataset) if self._cards[m].role == "ensemble"]
        return found[0] if found else None

    @staticmethod
    def ensemble_path(dataset: str, molecule: str, seed: int | str) -> str:
        return f"results/{dataset}/{molecule}/simulation_ensemble/seed{seed}.npz"

    def simulation_files(self, dataset: str, molecules: list[str], seeds: list[int] | None = None) -> list[str]:
        """``simulation.json`` of every run of ``dataset`` that simulates (none for a data set not simulated)."""
        if dataset not in self.simulation_datasets():
            return []
        return [f"{self.run_dir(dataset, mol, model, seed)}/simulation.json"
                for mol in molecules for model in self.simulation_models(dataset)
                for seed in (seeds or self.seeds)]  # fmt: skip

    def simulation_inputs(self, w: Any) -> dict[str, str]:
        """A simulation job's inputs: the split, the model's checkpoint and, where the data set has an ensemble
        model, the reference ensemble of the molecule."""
        out = self.rollout_inputs(w)
        if self.ensemble_model(w.dataset) is not None:
            out["ensemble"] = self.ensemble_path(w.dataset, w.molecule, w.seed)
        return out

    def ensemble_inputs(self, w: Any) -> dict[str, str]:
        model = self.ensemble_model(w.dataset)
        if model is None:
            raise KeyError(f"no ensemble-role model runs on {w.dataset}: no reference ensemble")
        run = self.run_dir(w.dataset, self.train_run(w.dataset, w.molecule), model, w.seed)
        return {"split": self.split_of(w), "checkpoint": f"{run}/model.pt"}

    def ensemble_arg(self, w: Any, input: Any) -> str:
        return f"--ensemble {input.ensemble}" if "ensemble" in input.keys() else ""

    # --- input functions of the rules: Snakemake calls them with the job's wildcards -------------------
    def split_of(self, w: Any) -> str:
        return self.split_path(w.dataset, w.molecule)

    def train_inputs(self, w: Any) -> dict[str, str]:
        self.check_train_run(w.dataset, w.molecule)
        return {"split": self.split_of(w)}

    def rollout_inputs(self, w: Any) -> dict[str, str]:
        run = self.run_dir(w.dataset, self.train_run(w.dataset, w.molecule), w.model, w.seed)
        return {"split": self.split_of(w), "checkpoint": f"{run}/model.pt"}

    def rollout_target(self, w: Any) -> str:
        return "" if self.task(w.dataset) == "s2l" else f"--target {w.molecule}"

    def model_params_arg(self, w: Any) -> str:
        return shell_arg(self.model_params(w.model, w.dataset))

    def run_meta(self, w: Any) -> str:
        return shell_arg({"dataset": w.dataset, "molecule": w.molecule, "model": w.model, "seed": int(w.seed)})

    def grid_point_arg(self, w: Any) -> str:
        return shell_arg(self.point_params(w.model, w.dataset, w.point))

    def grid_dir(self, w: Any) -> str:
        return f"{self.run_dir(w.dataset, w.molecule, w.model, w.seed)}/grid"

    def na_reasons_arg(self, w: Any) -> str:
        return shell_arg(self.na_reasons(w.dataset))

    def cost_inputs_of(self, w: Any) -> list[str]:
        return self.cost_inputs()

    def cost_train_arg(self, w: Any) -> str:
        return shell_arg(self.cost_train_params(int(w.k)))

    # --- the report (snakemake --report) ---------------------------------------------------------------
    def report_html_targets(self) -> list[str]:
        """The HTML twins of the benchmark tables this config builds (reports.smk's table_html)."""
        names = (["cost_md17"] if self.has_cost_table() else []) + ["paper_cost"]
        return [f"results/tables/{name}.html" for name in names]

    def report_files(self) -> list[str]:
        """The report's pages and figures known at parse time (every final table's HTML and every figure)."""
        return [p for p in self.static_targets() + self.report_html_targets() if p.endswith((".html", ".png"))]

    def check_report_inputs(self, run_root: str, basedir: Any) -> None:
        """Refuse ``snakemake --report`` with one line naming the run it needs when this config's run is not built
        (before Snakemake stops at the first missing file)."""
        import os
        from pathlib import Path

        files = self.report_files()
        missing = [p for p in files if not os.path.exists(p)]
        if not missing:
            return
        where = "the repository root" if os.path.normpath(run_root) == "." else run_root
        msg = (f"snakemake --report: {len(missing)} of this config's {len(files)} report files are missing under "
               f"{where} (e.g. {missing[0]}): the report bundles a finished run of the same config, so run it first "
               "(the same command without --report)")  # fmt: skip
        if os.path.normpath(run_root) == "." and (Path(basedir) / "runs" / "quick" / "results").is_dir():
            msg += ("; for the quick profile's run (runs/quick/): "
                    "snakemake --workflow-profile profiles/quick --report results/report.html")
        raise ValueError(msg)

    # --- the final targets (rule all) ------------------------------------------------------------------
    def static_targets(self) -> list[str]:
        """Every final output known at parse time (the C7O2H10 targets may come from the split checkpoint:
        their files are asked for by the workflow's input functions); only the enabled ``datasets``."""
        md17 = self.md17_molecules if self.enabled("md17") else []
        on = [d for d in TASKS if self.enabled(d)]
        out = [f"data/md17/{m}.npz" for m in md17]
        out += [f"data/md17/{m}.report.{ext}" for m in md17 for ext in ("csv", "md")]  # equilibrium of the data
        out += [self.split_path("md17", m) for m in md17]
        if self.enabled("c7o2h10"):
            out += ["data/c7o2h10/index.json", self.split_path("c7o2h10", "")]
        out += self.run_files("md17", md17, "armse.json")
        if self.has_cost_table():
            out.append("results/tables/cost_md17.csv")
        out += ["results/tables/paper_cost.csv", "results/tables/paper_cost.md", "results/tables/launches.csv",
                "results/tables/launches.md"]
        kinds = ("paper_vs_ours", "validity", "one_step", "distributions")
        tables = [PAPER_TABLES[d] for d in on] + [f"{k}_{d}" for k in kinds for d in on]
        out += [f"results/tables/{name}.{ext}" for name in tables for ext in ("csv", "md", "html")]
        out += [f"results/figures/{kind}_{d}.png" for kind in ("armse_curves", "hr", "learning_curves") for d in on]
        out += [f"results/figures/snapshots_md17_{m}.png" for m in md17]
        out += [f"results/tables/costs.{ext}" for ext in ("csv", "md", "html")]
        sims = self.simulation_datasets()
        out += self.simulation_files("md17", md17)
        out += [f"results/tables/simulation_{d}.{ext}" for d in sims for ext in ("csv", "md", "html")]
        out += [f"results/figures/survival_{d}.png" for d in sims]
        return out


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


__all__ = ["Plan", "CostRun", "GridSpec", "TASKS", "O2O_TRAINED", "ISOMER_PATTERN", "GRID_SAMPLE_KEY", "grid_points",
           "point_params", "fmt", "deep_update"]
