"""The ARMSE tables in the paper's shape (Table 1: MD17, Table 2: C7O2H10).

Rows are models (in config order), columns are molecules or target isomers. Each cell is the
ARMSE (Å, Kabsch-aligned; the paper's accumulative RMSE over the n rolled-out frames,
``ARMSE = sqrt(1/n sum_i ||x~(i) - x(i)||^2)``) of the test rollout, as the mean ± sample
standard deviation over seeds when there is more than one.

Choices (also printed under every table):

* Rows are ranked by their model's registered role (:data:`diffmd.registry.ROLES`, carried in each
  ``armse.json``): ``baseline`` and ``proposed`` rows are ranked; reference rows (static, constant
  velocity), floors, physics oracles and force fields are kept in the table, never bold or underlined,
  and never the "best baseline".
* Bold = best, underlined = second best among the ranked rows, per column (ties share a mark).
* NA = every seed of that cell diverged (``armse`` null). When only some seeds diverged, the cell
  shows the converged seeds and says how many diverged (``2/3 NA``).
* "Relative improvement" = (best baseline - proposed) / best baseline, in %, for each proposed model
  (negative when it is worse), as in the paper's last row.
* A model with ``stride`` k > 1 (Score Dynamics) is evaluated on every k-th frame only; its row
  label says so.
* A table holds one data set from one data source; mixing raises ``ValueError``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from diffmd.registry import RANKED_ROLES
from diffmd.reports.results import RunRecord, single_source, source_label

#: Row-label suffix of the roles that are shown but not ranked.
ROLE_WORDS = {"reference": "reference", "floor": "floor", "oracle": "physics oracle",
              "force_field": "force field, trained on forces"}  # fmt: skip

TITLES = {
    "md17": "Table 1 (this run): ARMSE (Å, lower is better) of the test rollouts, MD17 molecules, S2L split",
    "c7o2h10": "Table 2 (this run): ARMSE (Å, lower is better) on the C7O2H10 target isomers, O2O split",
}
DIGITS = 3


@dataclass
class Cell:
    """All seeds of one (model, molecule): ARMSE values (Å) of the converged ones."""

    values: list[float] = field(default_factory=list)
    n_seeds: int = 0
    n_diverged: int = 0
    stride: int = 1

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

    def text(self, digits: int = DIGITS) -> str:
        if self.n_seeds == 0:
            return "not run"
        if self.mean is None:
            return "NA"
        out = f"{self.mean:.{digits}f}"
        if self.std is not None:
            out += f" ± {self.std:.{digits}f}"
        if self.n_diverged:
            out += f" ({self.n_diverged}/{self.n_seeds} NA)"
        return out


Grid = dict[tuple[str, str], Cell]


def build_grid(records: list[RunRecord]) -> Grid:
    """Group run records by (model, molecule)."""
    grid: Grid = {}
    for rec in records:
        cell = grid.setdefault((rec.model, rec.molecule), Cell(stride=rec.stride))
        cell.n_seeds += 1
        cell.stride = max(cell.stride, rec.stride)
        if rec.armse is None:
            cell.n_diverged += 1
        else:
            cell.values.append(rec.armse)
    return grid


def ordered(preferred: list[str] | None, present: list[str]) -> list[str]:
    """``preferred`` order first (those present), then the rest as first seen."""
    preferred = list(preferred or [])
    seen = [p for p in preferred if p in present]
    return seen + [p for p in dict.fromkeys(present) if p not in seen]


Roles = dict[str, str]


def ranked_models(models: list[str], roles: Roles) -> list[str]:
    return [m for m in models if roles.get(m, "baseline") in RANKED_ROLES]


def proposed_models(models: list[str], roles: Roles) -> list[str]:
    return [m for m in models if roles.get(m) == "proposed"]


def column_marks(grid: Grid, models: list[str], column: str, roles: Roles) -> dict[str, str]:
    """``{model: "best" | "second"}`` for one column among the ranked rows; ties share a mark."""
    means = {m: grid[(m, column)].mean for m in ranked_models(models, roles) if (m, column) in grid}
    finite = sorted({v for v in means.values() if v is not None})
    marks: dict[str, str] = {}
    for model, value in means.items():
        if value is None:
            continue
        if value == finite[0]:
            marks[model] = "best"
        elif len(finite) > 1 and value == finite[1]:
            marks[model] = "second"
    return marks


def relative_improvement(grid: Grid, models: list[str], column: str, roles: Roles, proposed: str) -> float | None:
    """(best baseline - proposed) / best baseline x 100 (%); None without it or a finite baseline."""
    cell = grid.get((proposed, column))
    if cell is None or cell.mean is None:
        return None
    baselines = [
        grid[(m, column)].mean
        for m in ranked_models(models, roles)
        if roles.get(m, "baseline") == "baseline" and (m, column) in grid and grid[(m, column)].mean is not None
    ]
    if not baselines or min(baselines) <= 0:
        return None
    best = min(baselines)
    return 100.0 * (best - cell.mean) / best


def ordinal(k: int) -> str:
    """2 -> "2nd", 5 -> "5th", 11 -> "11th"."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def row_label(model: str, grid: Grid, columns: list[str], roles: Roles) -> str:
    stride = max((grid[(model, c)].stride for c in columns if (model, c) in grid), default=1)
    label = model
    if roles.get(model, "baseline") in ROLE_WORDS:
        label += f" ({ROLE_WORDS[roles[model]]})"
    if stride > 1:
        label += f" (every {ordinal(stride)} frame)"
    return label


@dataclass
class ArmseTable:
    """A rendered-ready ARMSE table: one data set, one data source."""

    dataset: str
    source: str
    models: list[str]
    columns: list[str]
    grid: Grid
    roles: Roles = field(default_factory=dict)

    @property
    def proposed(self) -> list[str]:
        return proposed_models(self.models, self.roles)

    @property
    def has_proposed(self) -> bool:
        return bool(self.proposed)

    def improvement_rows(self) -> list[tuple[str, list[str]]]:
        """(label, cells) per proposed model: "Relative improvement" [+ " (name)" when several]."""
        rows = []
        for model in self.proposed:
            vals = [relative_improvement(self.grid, self.models, c, self.roles, model) for c in self.columns]
            label = "Relative improvement" + (f" ({model})" if len(self.proposed) > 1 else "")
            rows.append((label, ["NA" if v is None else f"{v:.1f}%" for v in vals]))
        return rows


def make_table(
    records: list[RunRecord], models: list[str] | None = None, columns: list[str] | None = None
) -> ArmseTable:
    """Build a table from ``armse.json`` records; ``models``/``columns`` give the order."""
    dataset, source = single_source(records, "ARMSE table")
    grid = build_grid(records)
    model_order = ordered(models, [r.model for r in records])
    col_order = ordered(columns, [r.molecule for r in records])
    roles = {r.model: r.role for r in records}
    return ArmseTable(dataset, source, model_order, col_order, grid, roles)


def footnotes(table: ArmseTable) -> list[str]:
    unranked = [m for m in table.models if m not in ranked_models(table.models, table.roles)]
    notes = [
        "Bold: best; underlined: second best, per column, among learned models. "
        f"Reference rows ({', '.join(unranked)}) are shown but not ranked.",
        "NA: the rollout diverged (NaN, inf or atoms beyond the divergence bound). "
        "Several seeds: mean ± sample std over the converged seeds.",
    ]
    if table.has_proposed:
        notes.append(
            "Relative improvement: (best baseline - proposed) / best baseline; baselines are the ranked rows "
            "other than the proposed model(s)."
        )
    strided = sorted({c.stride for c in table.grid.values() if c.stride > 1})
    if strided:
        notes.append(
            f"Rows marked 'every k-th frame' step k = {', '.join(map(str, strided))} source frames per model "
            "step, so their ARMSE averages over every k-th frame of the same horizon."
        )
    return notes


def _md_cell(text: str, mark: str | None) -> str:
    if mark == "best":
        return f"**{text}**"
    if mark == "second":
        return f"<u>{text}</u>"
    return text


def render_markdown(table: ArmseTable) -> str:
    title = TITLES.get(table.dataset, f"ARMSE (Å) on {table.dataset}")
    lines = [
        f"Data source: {source_label(table.dataset, table.source)} (armse.json source = {table.source!r}).",
        "",
        f"{title}.",
        "",
        "| Model | " + " | ".join(table.columns) + " |",
        "|---|" + "---:|" * len(table.columns),
    ]
    marks = {c: column_marks(table.grid, table.models, c, table.roles) for c in table.columns}
    for model in table.models:
        cells = [_md_cell(table.grid.get((model, c), Cell()).text(), marks[c].get(model)) for c in table.columns]
        lines.append(f"| {row_label(model, table.grid, table.columns, table.roles)} | " + " | ".join(cells) + " |")
    for label, cells in table.improvement_rows():
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in footnotes(table)]
    return "\n".join(lines) + "\n"


def render_csv(table: ArmseTable) -> str:
    """CSV in the same shape; extra columns say each row's role, stride and the data source."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", *table.columns, "role", "stride", "data_source"])
    label = source_label(table.dataset, table.source)
    for model in table.models:
        cells = [table.grid.get((model, c), Cell()).text() for c in table.columns]
        role = table.roles.get(model, "baseline")
        stride = max((table.grid[(model, c)].stride for c in table.columns if (model, c) in table.grid), default=1)
        writer.writerow([model, *cells, role, stride, label])
    for row, cells in table.improvement_rows():
        writer.writerow([row.lower().replace(" ", "_"), *cells, "summary", "", label])
    return buf.getvalue()
