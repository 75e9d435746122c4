"""Model cards: one per model, in diffmd/models/cards.yaml, read here without importing torch.

A card says what a model is, once: its role in the tables, how its checkpoint is fitted (``none``, ``engine``,
``own``, ``grid``), what it needs from the data, whether it is judged at one step only, where its stride comes
from, the constructor parameters the simulated source fills, the training precisions it refuses and, for a grid
model, its grid's training keys. Everything that asks such a question (the plan, the rules' GPU slots, the cost
model, the reports, the tests) reads the card; :func:`diffmd.registry.register_model` checks that the class
agrees and gives it the card's facts as class attributes (``role``, ``trainable``, ``trainer``, ``tuning``,
``requires``, ``can_rollout``, ...), so model code never states them a second time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARDS_PATH = Path(__file__).resolve().parent / "models" / "cards.yaml"

#: What a model is in the tables: ``reference`` rows (static, constant velocity) and ``floor`` rows (one-step error
#: floors from the data itself) are shown but not ranked; ``baseline`` and ``proposed`` rows are the learned models
#: the paper ranks; ``oracle`` rows continue the data's own dynamics with the reference potential; ``ensemble`` rows
#: re-simulate with the reference potential under another dynamics (a Langevin bath with new noise: what a
#: physically right stochastic model scores); ``force_field`` rows are force fields (trained on forces, or any ASE
#: calculator) run with the data's dynamics.
ROLES = ("reference", "floor", "baseline", "proposed", "oracle", "ensemble", "force_field")
#: Roles whose rows are ranked (bold / underline) and enter the relative improvement.
RANKED_ROLES = ("baseline", "proposed")
#: How a checkpoint is made: nothing to learn, the engine's trainer, the model's own package, a grid search.
FITS = ("none", "engine", "own", "grid")
#: What a model may need from the data (the plan's :meth:`diffmd.plan.Plan.offers` says which a dataset has).
NEEDS = ("forces", "reference_potential", "thermostat_state", "one_molecule")
#: The tuning procedure of ``fit: grid`` (the plan's name for it).
GRID_TUNING = "diffmd_grid"
#: The keys a card may have.
CARD_KEYS = ("module", "role", "fit", "needs", "one_step_only", "stride", "data_params", "source_params", "refuses",
             "grid", "params")
#: Facts every trajectory file carries (diffmd/data/trajectory.py) that a model may take as parameters.
DATA_FACTS = ("dt_fs", "temperature_K")


@dataclass(frozen=True)
class GridCard:
    """The grid of a ``fit: grid`` model: ``train_keys`` (one training per combination of their values),
    ``labels`` (each key's prefix in a point's name) and ``train_eps`` (train at the grid's smallest eps)."""

    train_keys: tuple[str, ...]
    labels: tuple[str, ...]
    train_eps: bool


@dataclass(frozen=True)
class Card:
    name: str
    module: str
    role: str
    fit: str
    needs: tuple[str, ...] = ()
    one_step_only: bool = False
    stride: str = "1"
    source_params: tuple[str, ...] = ()
    refuses: dict[str, str] = field(default_factory=dict)
    grid: GridCard | None = None
    #: JSON schemas of constructor parameters constrained beyond their default's type (choices, ranges)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: constructor parameters the trainer sets from the training data's own file (:data:`DATA_FACTS`)
    data_params: tuple[str, ...] = ()

    @property
    def learned(self) -> bool:
        """A learned simulator: fitted to the data (by the engine, a grid search or its own package), the rows the
        cost benchmark times and the paper compares; not a reference, a floor or an oracle."""
        return self.fit != "none"

    @property
    def engine_trained(self) -> bool:
        """A network the engine trains (directly or per grid point): its jobs run on the accelerator and hold a
        GPU slot; every other row runs on the CPU whatever ``train.device`` says."""
        return self.fit in ("engine", "grid")

    @property
    def tuning(self) -> str | None:
        return GRID_TUNING if self.fit == "grid" else None

    @property
    def ranked(self) -> bool:
        return self.role in RANKED_ROLES

    def class_attributes(self) -> dict[str, Any]:
        """The card as the class attributes the engine reads (:class:`diffmd.registry.TrajectoryModel`)."""
        out: dict[str, Any] = {
            "role": self.role, "trainable": self.engine_trained, "trainer": "own" if self.fit == "own" else "engine",
            "tuning": self.tuning, "requires": self.needs, "can_rollout": not self.one_step_only,
            "stride_from_config": self.stride == "config", "source_params": self.source_params,
            "data_params": self.data_params,
            "bf16_refused": self.refuses.get("bf16"), "tf32_refused": self.refuses.get("tf32"),
        }  # fmt: skip
        if self.grid is not None:
            out.update(grid_train_keys=self.grid.train_keys, grid_point_labels=self.grid.labels,
                       grid_train_eps=self.grid.train_eps)  # fmt: skip
        return out


def _card(name: str, raw: Any) -> Card:
    where = f"{CARDS_PATH.name}: {name}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of {', '.join(CARD_KEYS)}")
    unknown = sorted(set(raw) - set(CARD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; a card has {', '.join(CARD_KEYS)}")
    for key in ("module", "role", "fit"):
        if not isinstance(raw.get(key), str):
            raise ValueError(f"{where}: {key} is required (a string)")
    if raw["role"] not in ROLES:
        raise ValueError(f"{where}: role {raw['role']!r} is not one of {', '.join(ROLES)}")
    if raw["fit"] not in FITS:
        raise ValueError(f"{where}: fit {raw['fit']!r} is not one of {', '.join(FITS)}")
    needs = tuple(raw.get("needs") or ())
    if not set(needs) <= set(NEEDS):
        raise ValueError(f"{where}: needs {sorted(set(needs) - set(NEEDS))} are not among {', '.join(NEEDS)}")
    stride = str(raw.get("stride", 1))
    if stride not in ("1", "config"):
        raise ValueError(f"{where}: stride must be 1 or config, got {raw['stride']!r}")
    refuses = dict(raw.get("refuses") or {})
    if not set(refuses) <= {"bf16", "tf32"} or not all(isinstance(v, str) and v for v in refuses.values()):
        raise ValueError(f"{where}: refuses maps bf16 / tf32 to the reason, got {refuses!r}")
    grid = None
    if (raw["fit"] == "grid") != ("grid" in raw):
        raise ValueError(f"{where}: a grid (train_keys, labels, train_eps) goes with fit: grid, and only with it")
    if "grid" in raw:
        g = raw["grid"] or {}
        keys = tuple(g.get("train_keys") or ())
        labels = tuple(g.get("labels") or keys)
        if not keys or "eps" in keys or len(labels) != len(keys) or set(g) - {"train_keys", "labels", "train_eps"}:
            raise ValueError(f"{where}: grid: train_keys (not eps), one label per key and train_eps, got {g!r}")
        grid = GridCard(keys, labels, bool(g.get("train_eps", False)))
    one_step_only = raw.get("one_step_only", False)
    if not isinstance(one_step_only, bool):
        raise ValueError(f"{where}: one_step_only must be true or false")
    params = raw.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise ValueError(f"{where}: params maps a constructor parameter to its JSON schema")
    data_params = tuple(raw.get("data_params") or ())
    if not set(data_params) <= set(DATA_FACTS):
        raise ValueError(f"{where}: data_params {sorted(set(data_params) - set(DATA_FACTS))} are not facts a "
                         f"trajectory file carries ({', '.join(DATA_FACTS)})")  # fmt: skip
    source_params = tuple(raw.get("source_params") or ())
    if set(source_params) & set(data_params):
        raise ValueError(f"{where}: {sorted(set(source_params) & set(data_params))} come from the data file "
                         "(data_params), not the source's settings (source_params)")  # fmt: skip
    return Card(name, raw["module"], raw["role"], raw["fit"], needs, one_step_only, stride, source_params, refuses,
                grid, params, data_params)  # fmt: skip


@functools.lru_cache(maxsize=1)
def cards() -> dict[str, Card]:
    """Every model's card, by name (diffmd/models/cards.yaml, read once per process)."""
    import yaml

    raw = yaml.safe_load(CARDS_PATH.read_text()) or {}
    return {name: _card(name, entry) for name, entry in raw.items()}


def card(name: str) -> Card:
    """The card of model ``name``; an unknown name raises a one-line ``KeyError`` naming the known ones."""
    known = cards()
    if name not in known:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(known))}")
    return known[name]


#: The schema of a parameter whose default is None: a number, a boolean or null as YAML reads them, else a string.
UNTYPED = {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
                     {"type": "string"}]}  # fmt: skip


def _schema_of(default: Any) -> dict[str, Any] | None:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int):
        return {"type": "integer"}
    if isinstance(default, float):
        return {"type": "number"}
    if isinstance(default, str):
        return {"type": "string"}
    if isinstance(default, list | tuple) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                  for v in default):  # fmt: skip
        return {"type": "array", "items": {"type": "number"}}
    if default is None:
        return UNTYPED
    return None  # a mapping or a mixed list: checked by the constructor


def param_schemas(name: str) -> dict[str, dict[str, Any] | None]:
    """Every constructor parameter of model ``name`` and its JSON schema, without importing the model: the
    parameters are the keys of its YAML (diffmd/models/configs/<name>.yaml, which lists every one with its
    default; registration checks it against the constructor), each typed by its card's ``params:`` entry, else by
    its default's type (None: untyped); ``stride`` (the engine's) an integer >= 1."""
    from diffmd.config import load_model_file

    c = card(name)
    out: dict[str, dict[str, Any] | None] = {"stride": {"type": "integer", "minimum": 1}}
    for key, default in load_model_file(name).items():
        if key not in ("train", "stride"):
            out[key] = c.params.get(key) or _schema_of(default)
    return out


def check_params(name: str, params: dict[str, Any], source: str = "model parameters") -> None:
    """Check constructor parameters without building the model (or importing torch): an unknown key, or a value
    its schema refuses (:func:`param_schemas`: a declared choice or range, else the default's type), raises a
    one-line ``ValueError`` naming ``source`` and the key."""
    schemas = param_schemas(name)
    for key, value in params.items():
        if key == "stride":
            continue
        if key not in schemas:
            allowed = [k for k in schemas if k != "stride"]
            raise ValueError(f"{source}: unknown parameter {key!r} for model {name!r}; allowed: "
                             f"{', '.join(allowed) or '(none)'}")  # fmt: skip
        schema = schemas[key]
        if schema is None or value is None and key not in card(name).params:
            continue
        _check_value(name, key, value, schema, source)


def _check_value(name: str, key: str, value: Any, schema: dict[str, Any], source: str) -> None:
    """``value`` against the schema of parameter ``key`` (one line with the key path)."""
    from diffmd.config import schema_error

    exc = schema_error(value, schema)
    if exc is None:
        return
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
    if key in card(name).params:
        message = f": {exc.message}"
        if exc.validator == "enum":
            message = f" must be one of {exc.validator_value}, got {exc.instance!r}"
        elif exc.validator in ("anyOf", "oneOf") and "description" in exc.schema:  # what would do, not each branch
            message = f": {exc.instance!r} is not {exc.schema['description']}"
        raise ValueError(f"{source}: parameter {name}.{key}{where}{message}") from None
    kind = {"boolean": "bool", "integer": "int", "number": "float", "string": "str"}.get(schema.get("type"), "a list")
    raise ValueError(f"{source}: parameter {key!r} of model {name!r} must be {kind}, got {type(value).__name__} "
                     f"{value!r}")  # fmt: skip


def data_values(name: str, facts: dict[str, float]) -> dict[str, float]:
    """The parameters model ``name`` takes from its training data's file (``data_params``), from ``facts``
    (``{dt_fs, temperature_K}`` of the trajectory, :data:`DATA_FACTS`)."""
    return {k: float(facts[k]) for k in card(name).data_params}


def learned(name: str) -> bool:
    """Whether ``name`` is a learned simulator (:attr:`Card.learned`)."""
    return card(name).learned


__all__ = ["Card", "GridCard", "ROLES", "RANKED_ROLES", "FITS", "NEEDS", "CARDS_PATH", "card", "cards", "learned",
           "param_schemas", "check_params"]
