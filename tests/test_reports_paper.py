"""The paper's Table 1 / Table 2 shipped as data, and the side-by-side tables (diffmd.reports.paper)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffmd.io import write_json
from diffmd.reports import paper
from diffmd.reports.results import load_records

EXCERPT = Path(__file__).parent / "data" / "diffmd_paper_tables_excerpt.txt"
PAPER_ROWS = {
    "TFN": "tfn",
    "RF": "rf",
    "SE(3)-Tr.": "se3_transformer",
    "EGNN": "egnn",
    "GMN": "gmn",
    "SCFNN": "scfnn",
    "<b>DIFFMD</b>": "diffmd",
}


def _paper_text_rows(header: str) -> dict[str, list[float | None]]:
    """Parse one table of the paper's text (tab-separated, <u>/<b> markup) into registry-named rows."""
    lines = EXCERPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("Relative"):
            break
        cells = line.split("\t")
        values = [None if c == "NA" else float(re.sub(r"<[^>]+>", "", c)) for c in cells[1:]]
        rows[PAPER_ROWS[cells[0]]] = values
    return rows


@pytest.mark.parametrize("dataset,header", [("md17", "Methods\tAspirin"), ("c7o2h10", "Methods\tISO_1004")])
def test_paper_data_matches_paper_text(dataset, header):
    table = paper.load_paper(dataset)
    text_rows = _paper_text_rows(header)
    assert set(text_rows) == set(table.models)
    for model, values in text_rows.items():
        assert [table.values[(model, c)] for c in table.columns] == values, model


def test_a_few_cells_by_hand():
    t1, t2 = paper.load_paper("md17"), paper.load_paper("c7o2h10")
    assert t1.values[("diffmd", "aspirin")] == 0.648
    assert t1.values[("rf", "benzene")] == 19.724
    assert t1.values[("tfn", "uracil")] is None
    assert t2.values[("gmn", "iso2134")] == 0.363
    assert t2.columns == ["iso1004", "iso2134", "iso2126", "iso3001", "iso1007"]
    assert t1.relative_improvement["naphthalene"] == 38.4
    assert "AAAI 2023" in t1.source


def test_side_by_side_labels_source_and_keeps_paper_values(tmp_path):
    path = tmp_path / "md17" / "ethanol" / "egnn" / "seed1" / "armse.json"
    write_json(
        path,
        {
            "dataset": "md17",
            "molecule": "ethanol",
            "model": "egnn",
            "role": "baseline",
            "seed": 1,
            "source": "xtb",
            "armse": 0.1234,
            "diverged": False,
        },
    )
    sbs = paper.side_by_side(load_records([path]), "md17", ["egnn"])
    md = paper.render_side_by_side_md(sbs)
    assert md.startswith("Paper: Table 1 of the paper, MD17 download")
    assert "Ours: GFN2-xTB simulation of the MD17 molecules (tblite) - NOT the MD17 data set" in md
    egnn = next(line for line in md.splitlines() if line.startswith("| egnn "))
    cells = [c.strip() for c in egnn.strip("|").split("|")]
    assert cells[:2] == ["egnn", "0.719 / 0.123"]  # ethanol column first (ours), paper's value beside it
    rows = paper.render_side_by_side_csv(sbs).splitlines()
    assert rows[1].startswith("ethanol,egnn,0.719,")
    label = "GFN2-xTB simulation of the MD17 molecules (tblite) - NOT the MD17 data set"
    assert rows[1].endswith(f",0.1234,,1,0,{label},xtb")
    with pytest.raises(ValueError, match="expected 'c7o2h10'"):
        paper.side_by_side(load_records([path]), "c7o2h10")
