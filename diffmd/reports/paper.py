"""The paper's Table 1 and Table 2 as data, and the side-by-side "paper vs ours" tables.

The values live in ``paper_tables.json`` beside this module (transcribed from Wu & Li, AAAI
2023; the file says so in its ``source`` key). Our numbers are printed under a header that names
the data source that produced them, so a GFN2-xTB run is never presented as an MD17 figure.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources

from diffmd.reports.results import RunRecord, source_label
from diffmd.reports.tables import Cell, make_table, ordered

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


def render_side_by_side_md(sbs: SideBySide) -> str:
    ours_label = source_label(sbs.dataset, sbs.source)
    paper_label = f"{sbs.paper.label} of the paper, {sbs.paper.data}"
    lines = [
        f"Paper: {paper_label}. Ours: {ours_label} (source = {sbs.source!r}).",
        "",
        "ARMSE (Å), each cell 'paper / ours'. '-' = not in that table (model or molecule not run).",
        "",
        "| Model | " + " | ".join(sbs.columns) + " |",
        "|---|" + "---:|" * len(sbs.columns),
    ]
    for model in sbs.models:
        cells = []
        for col in sbs.columns:
            p = _fmt(sbs.paper.values.get((model, col)), (model, col) in sbs.paper.values)
            cell = sbs.ours.get((model, col))
            o = cell.text() if cell is not None else "-"
            cells.append(f"{p} / {o}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    if sbs.source != "download":
        lines.append(
            f"- Our numbers come from a different data source ({ours_label}); they are not a reproduction of "
            "the paper's figures, only the same protocol on other data."
        )
    lines.append(f"- Paper values: {sbs.paper.source}")
    lines += [f"- Paper note: {n}" for n in sbs.paper.notes]
    return "\n".join(lines) + "\n"


def render_side_by_side_csv(sbs: SideBySide) -> str:
    """Long format: one row per (column, model) with the paper's value and ours, labelled by source."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "molecule",
            "model",
            "paper_armse",
            "paper_data",
            "ours_armse",
            "ours_std",
            "ours_seeds",
            "ours_diverged_seeds",
            "ours_data_source",
            "ours_source_key",
        ]
    )
    ours_label = source_label(sbs.dataset, sbs.source)
    for col in sbs.columns:
        for model in sbs.models:
            in_paper = (model, col) in sbs.paper.values
            paper_val = _fmt(sbs.paper.values.get((model, col)), in_paper)
            cell = sbs.ours.get((model, col))
            if cell is None:
                ours = ["-", "", 0, 0]
            else:
                mean = "NA" if cell.mean is None else f"{cell.mean:.6g}"
                std = "" if cell.std is None else f"{cell.std:.6g}"
                ours = [mean, std, cell.n_seeds, cell.n_diverged]
            w.writerow([col, model, paper_val, sbs.paper.data if in_paper else "", *ours, ours_label, sbs.source])
    return buf.getvalue()
