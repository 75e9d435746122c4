"""Tuning: the ``diffmd_grid`` grid of each tuned model (its card declares the grid's keys; the config section named
after the model holds the values and the search settings) and the successive-halving schedule over it."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

from diffmd.config import deep_update, split_train_overrides
from diffmd.plan.core import _card, fmt

#: Tuning procedures the plan knows (a model's ``tuning`` attribute names one).
TUNINGS = ("diffmd_grid",)
#: The sampling key of every ``diffmd_grid`` grid: each trained point is validated at every value.
GRID_SAMPLE_KEY = "eps"


@dataclass(frozen=True)
class GridSpec:
    """The ``diffmd_grid`` tuning grid of one model, as its card declares it (``grid:`` in diffmd/models/cards.yaml):
    ``train_keys`` (one training per combination of their values), ``labels`` (each key's prefix in a point's name;
    default the keys) and ``train_eps`` (True: the point trains with train_eps = the grid's smallest eps). ``eps``
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


class TuningPlan:
    """The plan's tuning part (a part of :class:`diffmd.plan.Plan`)."""

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

    def batch_eps(self, model: str) -> bool:
        return bool(self.grid_section(model).get("batch_eps", True))

    def tuning_jobs(self, model: str, dataset: str) -> dict[str, int]:
        """Jobs per tuning rule of one run (training run x seed) of a tuned model."""
        points = len(self.grid_point_names(model))
        if self.search(model) == "full":
            return {"diffmd_train_point": points, "diffmd_validate": points, "diffmd_select": 1}
        schedule = self.halving_schedule(model, dataset)
        return {"diffmd_rung": sum(r["points"] for r in schedule), "diffmd_rank": len(schedule) - 1,
                "diffmd_select": 1}  # fmt: skip
