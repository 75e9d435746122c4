"""The ARMSE tables in the paper's shape (Table 1: MD17, Table 2: C7O2H10), with the horizon-resolved
ARMSE of the multi-start rollouts beside the paper's column (issue 12).

Rows are models (in config order), columns are molecules or target isomers. The paper column of a
molecule (headed by its name) is the ARMSE (Å, Kabsch-aligned; the paper's accumulative RMSE over the
n rolled-out frames, ``ARMSE = sqrt(1/n sum_i ||x~(i) - x(i)||^2)``) of the single paper-protocol test
rollout (the ``armse`` key), as the mean ± sample standard deviation over seeds when there is more
than one. Beside it, ``{molecule} @ h fs`` columns hold the multi-start ARMSE up to each configured
horizon as ``mean [lo, hi]`` (95% bootstrap interval over starts, :mod:`diffmd.reports.yardstick`).

The table is built in long format first (the CSV: columns :data:`diffmd.reports.yardstick.LONG_COLUMNS`,
metric ``armse_paper`` for the paper column, ``armse`` and ``rmsd`` per horizon, and the
``relative_improvement`` rows); Markdown and HTML are rendered from it with pandas + tabulate.

Choices (also printed under every table):

* Rows are ranked by their model's registered role (:data:`diffmd.registry.ROLES`, carried in each
  ``armse.json``): ``baseline`` and ``proposed`` rows are ranked; reference rows (static, constant
  velocity), floors, physics oracles and force fields are kept in the table, never bold or underlined,
  and never the "best baseline". A force-field row says that it sees force labels the others do not.
* Bold = best, underlined = second best among the ranked rows, per column (ties share a mark). A
  ranked model whose every ARMSE number in a column (paper column, each horizon's ARMSE and RMSD; at
  least three of them) is within :data:`SAME_REL` (1%) of a reference row's behaves as that reference
  there (``diffmd`` as published is ``static`` to 3e-4: its rollout does not move; a model that moves
  differs from ``static`` by far more at the shortest horizons): it is shown, labelled, and neither
  ranked nor given a relative improvement. Rows that step over k > 1 frames (Score Dynamics) are not
  ranked with the others.
* NA = every seed of that cell diverged (``armse`` null). When only some seeds diverged, the cell
  shows the converged seeds and says how many diverged (``2/3 NA``). ``—``: a one-step-only model
  (role ``floor``) has no rollout. An oracle named in ``--models`` without runs (a data source with no
  reference potential) is printed as NA with the reason.
* "Relative improvement" = (best baseline - proposed) / best baseline, in %, for each proposed model
  (negative when it is worse), as in the paper's last row; also for the horizon columns. Only models that
  move enter it (neither a copy of a reference row nor a row of another step).
* A model with ``stride`` k > 1 (Score Dynamics) is evaluated on every k-th frame only; its row
  label says so.
* A table holds one data set from one data source; mixing raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from diffmd import catalogue
from diffmd.cards import RANKED_ROLES
from diffmd.reports import yardstick as ys_mod
from diffmd.reports.results import RunRecord, single_source
from diffmd.reports.yardstick import ROLE_WORDS, Report, Section, Yardstick, ordered, ordinal, role_in  # noqa: F401

TITLES = {
    "md17": "Table 1 (this run): ARMSE (Å, lower is better) of the test rollouts, MD17 molecules, S2L split",
    "c7o2h10": "Table 2 (this run): ARMSE (Å, lower is better) on the C7O2H10 target isomers, O2O split",
}
#: The paper column's cell format (mean ± std over seeds): the metrics catalogue's (diffmd/catalogue.py)
PAPER_FORMAT = catalogue.metric(ys_mod.PAPER_METRIC).fmt
#: The paper's ARMSE formula as printed (summed over atoms, unaligned): in the CSV only (yardstick.ARMSE_NOTE).
LITERAL_METRICS = ("armse_literal", "armse_paper_literal")


@dataclass
class Cell:
    """All seeds of one (model, molecule): paper-protocol ARMSE values (Å) of the converged ones."""

    values: list[float] = field(default_factory=list)
    n_seeds: int = 0
    n_diverged: int = 0
    stride: int = 1
    applicable: bool = True  # False: a one-step-only model, no rollout ("—")
    note: str = ""  # why there is no run (printed as NA)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1) over converged seeds; None for fewer than two."""
        if len(self.values) < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def text(self, fmt: str = PAPER_FORMAT) -> str:
        if self.note:
            return "NA"
        if self.n_seeds == 0:
            return "not run"
        if not self.applicable:
            return "—"
        if self.mean is None:
            return "NA"
        out = format(self.mean, fmt)
        if self.std is not None:
            out += f" ± {format(self.std, fmt)}"
        if self.n_diverged:
            out += f" ({self.n_diverged}/{self.n_seeds} NA)"
        return out


Grid = dict[tuple[str, str], Cell]


def _as_yardstick(rec: RunRecord | Yardstick) -> Yardstick:
    if isinstance(rec, Yardstick):
        return rec
    return Yardstick(rec, rollout_applicable=bool(rec.rollout_applicable))  # as the run's file says


def build_grid(records: Sequence[RunRecord | Yardstick]) -> Grid:
    """Group run records by (model, molecule)."""
    grid: Grid = {}
    for item in records:
        y = _as_yardstick(item)
        rec = y.record
        cell = grid.setdefault((rec.model, rec.molecule), Cell(stride=rec.stride))
        cell.n_seeds += 1
        cell.stride = max(cell.stride, rec.stride)
        if not y.rollout_applicable or (rec.armse is None and not rec.diverged):
            cell.applicable = False
        elif rec.armse is None:
            cell.n_diverged += 1
        else:
            cell.values.append(rec.armse)
    return grid


Roles = dict[str, str]


def ranked_models(models: list[str], roles: Roles) -> list[str]:
    return [m for m in models if role_in(roles, m) in RANKED_ROLES]


def proposed_models(models: list[str], roles: Roles) -> list[str]:
    return [m for m in models if roles.get(m) == "proposed"]


def improvement(values: dict[str, float | None], roles: Roles, proposed: str,
                unranked: Sequence[str] = ()) -> float | None:  # fmt: skip
    """(best baseline - proposed) / best baseline x 100 (%) from per-model values of one column; None
    without the proposed value or a positive finite baseline, or when the proposed model is in ``unranked``
    (a copy of a reference row, another step); baselines in ``unranked`` do not count."""
    mine = values.get(proposed)
    if mine is None or proposed in unranked:
        return None
    baselines = [v for m, v in values.items()
                 if role_in(roles, m) == "baseline" and v is not None and m not in unranked]  # fmt: skip
    if not baselines or min(baselines) <= 0:
        return None
    best = min(baselines)
    return 100.0 * (best - mine) / best


def row_label(model: str, grid: Grid, columns: list[str], roles: Roles, steps: dict[str, float] | None = None,
              off_step: bool = False, copy_of: str = "") -> str:  # fmt: skip
    stride = max((grid[(model, c)].stride for c in columns if (model, c) in grid), default=1)
    label = ys_mod.row_label(model, role_in(roles, model), stride, (steps or {}).get(model), off_step)
    return label + copy_label(copy_of)


def copy_label(copy_of: str) -> str:
    """What a row label gains when its model behaves as reference row ``copy_of`` (:func:`reference_copies`)."""
    return f" (≈ {copy_of}: does not move; not ranked)" if copy_of else ""


#: Relative tolerance under which a model's ARMSE numbers are a reference row's (it does not move otherwise).
SAME_REL = 0.01
#: The fewest numbers of a column compared before a model is called a reference's copy.
SAME_MIN_NUMBERS = 3
#: The metrics a copy of a reference row reproduces, all of them (the paper column, every horizon).
COPY_METRICS = (ys_mod.PAPER_METRIC, "armse", "rmsd")


def reference_copies(frame: pd.DataFrame, models: Sequence[str], columns: Sequence[str], roles: Roles,
                     metrics: Sequence[str] = COPY_METRICS) -> dict[tuple[str, str], str]:  # fmt: skip
    """``{(model, column): reference}`` for ranked-role models whose every number of ``metrics`` in that column
    (default the ARMSE ones: paper column, each horizon's ARMSE and RMSD; at least :data:`SAME_MIN_NUMBERS`
    finite ones) is within :data:`SAME_REL` of the reference row's: it behaves as the reference (e.g. a rollout
    that stands still, as ``static``)."""
    sub = frame[frame["metric"].isin(metrics) & frame["value"].notna()]
    out: dict[tuple[str, str], str] = {}
    refs = [m for m in models if roles.get(m) == "reference"]
    for col in columns:
        here = sub[sub["molecule"] == col]
        values = {m: dict(zip(zip(g["metric"], g["horizon_fs"].fillna(-1.0)), g["value"]))
                  for m, g in here.groupby("model", sort=False)}  # fmt: skip
        for model in models:
            if role_in(roles, model) not in ys_mod.RANKED_ROLES or len(values.get(model, {})) < SAME_MIN_NUMBERS:
                continue
            mine = values[model]
            for ref in refs:
                theirs = values.get(ref, {})
                if set(mine) == set(theirs) and all(
                        abs(mine[k] - theirs[k]) <= SAME_REL * max(abs(theirs[k]), 1e-300) for k in mine):
                    out[(model, col)] = ref
                    break
    return out


@dataclass
class ArmseTable:
    """A rendered-ready ARMSE table: one data set, one data source; ``frame`` is the long format."""

    dataset: str
    source: str
    models: list[str]
    columns: list[str]
    grid: Grid
    roles: Roles = field(default_factory=dict)
    frame: pd.DataFrame | None = None
    missing: dict[str, str] = field(default_factory=dict)  # model -> why it has no run
    steps: dict[str, float] = field(default_factory=dict)  # model -> fs per model step
    overlap: str = ""  # whether the multi-start windows overlap (yardstick.overlap_note)

    @property
    def proposed(self) -> list[str]:
        return proposed_models(self.models, self.roles)

    @property
    def has_proposed(self) -> bool:
        return bool(self.proposed)

    def copies(self) -> dict[tuple[str, str], str]:
        """``{(model, column): reference}``: ranked models that reproduce a reference row (:func:`reference_copies`)."""
        if self.frame is None:
            return {}
        return reference_copies(self.frame, self.models, self.columns, self.roles)

    def horizons(self, column: str) -> list[float]:
        """The multi-start ARMSE horizons (fs) present for ``column``."""
        if self.frame is None:
            return []
        sub = self.frame[(self.frame["metric"] == "armse") & (self.frame["molecule"] == column)]
        return sorted(set(sub["horizon_fs"].dropna()))

    def horizon_summary(self, model: str, column: str, h: float) -> ys_mod.Summary:
        f = self.frame
        sub = f[(f["metric"] == "armse") & (f["model"] == model) & (f["molecule"] == column)]
        sub = sub[(sub["horizon_fs"] == h) | sub["horizon_fs"].isna()]
        return ys_mod.summarise(sub, "armse")

    def layout(self) -> tuple[Section, list[dict]]:
        """The paper layout as a :class:`~diffmd.reports.yardstick.Section` (paper column, then the
        horizon columns, per molecule) and the relative-improvement values as long-format rows."""
        header, keys = ["Model"], []
        for col in self.columns:
            header.append(col)
            keys.append((col, None))
            for h in self.horizons(col):
                header.append(f"{col} @ {h:g} fs")
                keys.append((col, h))
        strides = {m: max((c.stride for (mm, _), c in self.grid.items() if mm == m), default=1) for m in self.models}
        other_step = ys_mod.off_step(strides, self.roles, self.models)
        copies = self.copies()
        rows, values = [], []
        for model in self.models:
            cells, vals = [], []
            for col, h in keys:
                if h is None:
                    cell = self.grid.get((model, col), Cell(note=self.missing.get(model, "")))
                    cells.append(cell.text())
                    vals.append(cell.mean)
                else:
                    s = self.horizon_summary(model, col, h)
                    step = self.steps.get(model)
                    if s.text == "not run" and (model, col) in self.grid and step and step > h:
                        s = ys_mod.Summary(f"— (one step is {step:g} fs)")  # no frame of this model before h
                    cells.append("NA" if model in self.missing else s.text)
                    vals.append(s.value)
            copy_everywhere = {copies.get((model, c)) for c in self.columns}
            copy_of = next(iter(copy_everywhere)) if len(copy_everywhere) == 1 else ""
            rows.append((row_label(model, self.grid, self.columns, self.roles, self.steps, model in other_step,
                                   copy_of or ""), cells))  # fmt: skip
            values.append(vals)
        marks = {}
        for j, (col, _) in enumerate(keys):
            column_values = {m: values[i][j] for i, m in enumerate(self.models)}
            unranked = other_step + [m for m in self.models if (m, col) in copies]
            for model, mark in ys_mod.rank_marks(column_values, self.roles, unranked).items():
                marks[(self.models.index(model), j)] = mark
        long_rows = []
        for model in self.proposed:
            label = "Relative improvement" + (f" ({model})" if len(self.proposed) > 1 else "")
            cells = []
            for j, (col, h) in enumerate(keys):
                unranked = other_step + [m for m in self.models if (m, col) in copies]
                v = improvement({m: values[i][j] for i, m in enumerate(self.models)}, self.roles, model, unranked)
                if (model, col) in copies:
                    cells.append(f"— (≈ {copies[(model, col)]})")
                elif model in other_step:
                    cells.append("— (another step)")
                else:
                    cells.append("NA" if v is None else f"{v:.1f}%")
                long_rows.append({"dataset": self.dataset, "molecule": col, "model": model, "role": "proposed",
                                  "metric": "relative_improvement", "horizon_fs": h, "value": v, "unit": "%",
                                  "source": self.source,
                                  "note": f"of {ys_mod.PAPER_METRIC if h is None else 'armse'}"})  # fmt: skip
            rows.append((label, cells))
        title = TITLES.get(self.dataset, f"ARMSE (Å) on {self.dataset}")
        return Section(title, header, rows, marks), long_rows


def make_table(
    records: Sequence[RunRecord | Yardstick], models: list[str] | None = None, columns: list[str] | None = None
) -> ArmseTable:
    """Build a table from ``armse.json`` records (:class:`RunRecord`: the paper column only, or
    :class:`~diffmd.reports.yardstick.Yardstick`: with the horizon columns); ``models``/``columns``
    give the order. Oracle models named in ``models`` without records are kept with their reason."""
    ys = [_as_yardstick(r) for r in records]
    dataset, source = single_source([y.record for y in ys], "ARMSE table")
    grid = build_grid(ys)
    missing = ys_mod.missing_oracles(ys, models, source)
    model_order = ordered(models, [y.model for y in ys] + list(missing))
    col_order = ordered(columns, [y.record.molecule for y in ys])
    roles = {y.model: y.role for y in ys} | {m: ys_mod._registered_role(m) for m in missing}
    frame = ys_mod.long_frame(ys, ys_mod.ARMSE_METRICS + LITERAL_METRICS, paper=True, models=models, columns=col_order)
    return ArmseTable(dataset, source, model_order, col_order, grid, roles, frame, missing, ys_mod.steps_of(ys),
                      ys_mod.overlap_note(ys))


def footnotes(table: ArmseTable) -> list[str]:
    unranked = [m for m in table.models if m not in ranked_models(table.models, table.roles)]
    notes = [
        "Bold: best; underlined: second best, per column, among learned models. "
        f"Rows {', '.join(unranked)} are shown but not ranked." * bool(unranked),
        "Paper column (molecule name): the paper's protocol, one rollout from one start. NA: the rollout diverged "
        "(NaN, inf or atoms beyond the divergence bound); —: a one-step-only model has no rollout. "
        "Several seeds: mean ± sample std over the converged seeds.",
    ]
    if any(table.horizons(c) for c in table.columns):
        notes.append(
            "'@ h fs' columns: ARMSE up to h of the multi-start rollouts, mean over starts [95% interval "
            "over starts]; (d/n div.): d of n starts diverged before h and the mean is over the others; NA: all "
            "did. The CSV also holds the RMSD at each horizon (metric rmsd)."
        )
        if table.frame is not None:
            notes.append(ys_mod.interval_note(table.frame[table.frame["metric"].isin(ys_mod.ARMSE_METRICS)]))
    from diffmd.engine.yardstick import ARMSE_NOTE

    notes.append(ARMSE_NOTE)
    if table.overlap:
        notes.append(table.overlap)
    if table.has_proposed:
        notes.append(
            "Relative improvement: (best baseline - proposed) / best baseline; baselines are the ranked rows "
            "other than the proposed model(s), among the models that move at the table's own step."
        )
    copies: dict[str, dict[str, list[str]]] = {}
    for (model, col), ref in table.copies().items():
        copies.setdefault(model, {}).setdefault(ref, []).append(col)
    for model, refs in copies.items():
        for ref, cols in refs.items():
            notes.append(f"{model} is within {100 * SAME_REL:g}% of {ref} on every ARMSE number of {', '.join(cols)}"
                         f" (paper column and every horizon): its rollout behaves as {ref}'s, so it is neither "
                         "ranked nor given a relative improvement there.")
    strides = {m: max((c.stride for (mm, _), c in table.grid.items() if mm == m), default=1) for m in table.models}
    other = ys_mod.off_step(strides, table.roles, table.models)
    if other:
        notes.append(f"Not ranked with the other rows: {', '.join(other)}, which step over "
                     f"{', '.join(str(strides[m]) for m in other)} frames at a time (ARMSE over every k-th frame).")
    for model in table.models:
        if table.roles.get(model) == "force_field":
            notes.append(f"{model} is a machine-learned force field: it sees force labels the other models do not.")
    for model, reason in table.missing.items():
        notes.append(f"{model}: NA, {reason}.")
    strided = sorted({c.stride for c in table.grid.values() if c.stride > 1})
    if strided:
        notes.append(
            f"Rows marked 'every k-th frame' step k = {', '.join(map(str, strided))} source frames per model "
            "step, so their ARMSE averages over every k-th frame of the same horizon."
        )
    return [n for n in notes if n]


def report(table: ArmseTable) -> Report:
    """The table as a :class:`~diffmd.reports.yardstick.Report` (long frame + the paper-layout section)."""
    section, improvement_rows = table.layout()
    frame = table.frame
    if improvement_rows:
        extra = pd.DataFrame(improvement_rows, columns=list(ys_mod.LONG_COLUMNS))
        frame = pd.concat([frame, extra.astype(frame.dtypes.to_dict())], ignore_index=True)
    return Report(table.dataset, table.source, section.title, frame, [section], footnotes(table))


def render_markdown(table: ArmseTable) -> str:
    """Markdown rendered from the long frame through pandas/tabulate (``DataFrame.to_markdown``)."""
    return report(table).markdown()


def render_html(table: ArmseTable, extra_html: str = "") -> str:
    """The same table as one HTML page (``DataFrame.to_html``); ``extra_html`` is appended."""
    return report(table).html(extra_html)


def render_csv(table: ArmseTable) -> str:
    """The long-format CSV (full precision, empty cells for NA), with the relative-improvement rows."""
    return report(table).csv()
