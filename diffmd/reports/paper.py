"""The paper's Table 1 and Table 2 as data, and the side-by-side "paper vs ours" tables.

The values live in ``paper_tables.json`` beside this module (transcribed from Wu & Li, AAAI
2023; the file says so in its ``source`` key). Our numbers are printed under a header that names
the data source that produced them, so a GFN2-xTB run is never presented as an MD17 figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from diffmd.reports.results import RunRecord, source_label
from diffmd.reports.tables import Cell, make_table, ordered
from diffmd.reports.yardstick import Report, Section

PAPER_FILE = "paper_tables.json"


@dataclass
class PaperTable:
    """One of the paper's tables: ``values[(model, column)]`` = ARMSE (Å) or None for NA."""

    dataset: str
    label: str
    caption: str
    data: str
    source: str
    models: list[str]  # registry names, in the paper's row order
    columns: list[str]  # our column ids (molecule names, iso1004, ...), in the paper's order
    paper_columns: list[str]  # the paper's own headers (Aspirin, ISO_1004, ...)
    values: dict[tuple[str, str], float | None]
    relative_improvement: dict[str, float]  # column -> % as printed
    notes: list[str]


def load_paper(dataset: str) -> PaperTable:
    """The paper's table for ``dataset`` ("md17" -> Table 1, "c7o2h10" -> Table 2)."""
    raw = json.loads(resources.files("diffmd.reports").joinpath(PAPER_FILE).read_text())
    if dataset not in raw["tables"]:
        raise KeyError(f"{PAPER_FILE}: no table for dataset {dataset!r}; have {', '.join(raw['tables'])}")
    tab = raw["tables"][dataset]
    paper_cols, columns = list(tab["columns"]), list(tab["columns"].values())
    values: dict[tuple[str, str], float | None] = {}
    for model, row in tab["rows"].items():
        if len(row) != len(columns):
            where = f"{PAPER_FILE}: tables.{dataset}.rows.{model}"
            raise ValueError(f"{where} has {len(row)} values, expected {len(columns)}")
        for col, val in zip(columns, row):
            values[(model, col)] = None if val is None else float(val)
    return PaperTable(
        dataset=dataset,
        label=tab["label"],
        caption=tab["caption"],
        data=tab["data"],
        source=raw["source"],
        models=list(tab["rows"]),
        columns=columns,
        paper_columns=paper_cols,
        values=values,
        relative_improvement=dict(zip(columns, tab["relative_improvement_percent"])),
        notes=list(tab.get("notes", [])),
    )


def _fmt(value: float | None, present: bool) -> str:
    if not present:
        return "-"
    return "NA" if value is None else f"{value:.3f}"


@dataclass
class SideBySide:
    paper: PaperTable
    dataset: str
    source: str
    models: list[str]
    columns: list[str]
    ours: dict[tuple[str, str], Cell]


def side_by_side(
    records: list[RunRecord], dataset: str, models: list[str] | None = None, columns: list[str] | None = None
) -> SideBySide:
    """Union of the paper's rows/columns and ours; ours from one data source only."""
    paper = load_paper(dataset)
    table = make_table(records, models, columns)
    if table.dataset != dataset:
        raise ValueError(f"paper vs ours: results are for dataset {table.dataset!r}, expected {dataset!r}")
    model_order = ordered(table.models, table.models + paper.models)
    col_order = ordered(table.columns, table.columns + paper.columns)
    return SideBySide(paper, dataset, table.source, model_order, col_order, table.grid)


def side_by_side_report(sbs: SideBySide) -> Report:
    """Paper and ours side by side as a :class:`~diffmd.reports.yardstick.Report`: each cell "paper / ours",
    the CSV one row per (column, model) with both values, each labelled by its data source."""
    ours_label = source_label(sbs.dataset, sbs.source)
    paper_label = f"{sbs.paper.label} of the paper, {sbs.paper.data}"
    body = []
    for model in sbs.models:
        cells = []
        for col in sbs.columns:
            p = _fmt(sbs.paper.values.get((model, col)), (model, col) in sbs.paper.values)
            cell = sbs.ours.get((model, col))
            cells.append(f"{p} / {cell.text() if cell is not None else '-'}")
        body.append((model, cells))
    title = "ARMSE (Å), each cell 'paper / ours'. '-' = not in that table (model or molecule not run)"
    notes = []
    if sbs.source != "download":
        notes.append(f"Our numbers come from a different data source ({ours_label}); they are not a reproduction of "
                     "the paper's figures, only the same protocol on other data.")  # fmt: skip
    notes.append(f"Paper values: {sbs.paper.source}")
    notes += [f"Paper note: {n}" for n in sbs.paper.notes]
    preamble = f"Paper: {paper_label}. Ours: {ours_label} (source = {sbs.source!r})."
    section = Section(title, ["Model", *sbs.columns], body)
    return Report(sbs.dataset, sbs.source, title, side_by_side_frame(sbs), [section], notes, preamble=preamble)


def render_side_by_side_md(sbs: SideBySide) -> str:
    return side_by_side_report(sbs).markdown()


def side_by_side_frame(sbs: SideBySide) -> pd.DataFrame:
    """Long format: one row per (column, model) with the paper's value and ours, labelled by source."""
    ours_label = source_label(sbs.dataset, sbs.source)
    rows = []
    for col in sbs.columns:
        for model in sbs.models:
            in_paper = (model, col) in sbs.paper.values
            cell = sbs.ours.get((model, col))
            if cell is None:
                ours = ["-", "", 0, 0]
            else:
                mean = "NA" if cell.mean is None else f"{cell.mean:.6g}"
                std = "" if cell.std is None else f"{cell.std:.6g}"
                ours = [mean, std, cell.n_seeds, cell.n_diverged]
            rows.append([col, model, _fmt(sbs.paper.values.get((model, col)), in_paper),
                         sbs.paper.data if in_paper else "", *ours, ours_label, sbs.source])  # fmt: skip
    columns = ["molecule", "model", "paper_armse", "paper_data", "ours_armse", "ours_std", "ours_seeds",
               "ours_diverged_seeds", "ours_data_source", "ours_source_key"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def render_side_by_side_csv(sbs: SideBySide) -> str:
    return side_by_side_frame(sbs).to_csv(index=False, lineterminator="\n")
