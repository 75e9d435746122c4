"""ARMSE tables on synthetic armse.json files with known values (diffmd.reports.tables): the paper
layout of the paper column (the ``armse`` key; files without the issue-12 keys), rendered with pandas."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from diffmd.io import write_json
from diffmd.reports import tables
from diffmd.reports.__main__ import main
from diffmd.reports.results import load_records
from diffmd.rundir import role_of

MODELS = ["static", "constant_velocity", "rf", "egnn", "gmn", "score_dynamics", "diffmd"]


def _write(root, molecule, model, armse, seed=1, source="xtb", dataset="md17", stride=1):
    path = root / dataset / molecule / model / f"seed{seed}" / "armse.json"
    write_json(
        path,
        {
            "dataset": dataset,
            "molecule": molecule,
            "model": model,
            "role": role_of(model),  # as the rollout writes it (from the model's card)
            "seed": seed,
            "source": source,
            "stride": stride,
            "armse": armse,
            "armse_unaligned": armse,
            "diverged": armse is None,
        },
    )
    return path


@pytest.fixture
def runs(tmp_path):
    # static is the lowest number on purpose: reference rows must never be bold.
    values = {
        "static": 0.05,
        "constant_velocity": 0.9,
        "rf": None,
        "egnn": 0.40,
        "gmn": 0.50,
        "score_dynamics": 0.45,
        "diffmd": 0.30,
    }
    paths = [_write(tmp_path, "ethanol", m, v, stride=5 if m == "score_dynamics" else 1) for m, v in values.items()]
    uracil = {"gmn": 0.2, "static": 1.0, "constant_velocity": 1.5}  # the other models 1.2
    paths += [_write(tmp_path, "uracil", m, uracil.get(m, 1.2)) for m in values]
    return paths


def _md_row(md, label):
    """The stripped cells (label first) of the Markdown table row whose label starts with ``label``."""
    line = next(line for line in md.splitlines() if line.startswith("| ") and line[2:].startswith(label))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_bold_second_na_and_improvement(runs):
    table = tables.make_table(load_records(runs), MODELS, ["ethanol", "uracil"])
    md = tables.render_markdown(table)
    assert _md_row(md, "diffmd")[1] == "**0.300**"  # best learned model, not static (0.05)
    assert _md_row(md, "egnn")[1] == "<u>0.400</u>"
    assert _md_row(md, "static")[:2] == ["static (reference)", "0.050"]
    assert _md_row(md, "rf")[1] == "NA"
    # another step size (5 frames per step): shown, never ranked with the 1-frame rows
    assert _md_row(md, "score_dynamics")[:2] == ["score_dynamics (every 5th frame; not ranked)", "0.450"]
    # uracil: gmn best (0.2), ties at 1.2 all second, diffmd is not better than the best baseline
    assert _md_row(md, "gmn")[2] == "**0.200**"
    assert _md_row(md, "diffmd")[2] == "<u>1.200</u>"
    assert _md_row(md, "static")[2] == "1.000"  # a reference row is never marked
    assert _md_row(md, "Relative improvement")[1:3] == ["25.0%", "-500.0%"]  # (0.40-0.30)/0.40, (0.2-1.2)/0.2
    assert md.startswith("Data source: GFN2-xTB simulation")
    assert "| Model" in md and "|:--" in md  # tabulate's pipe table (left-aligned label column)
    frame = pd.read_csv(io.StringIO(tables.render_csv(table)), keep_default_na=False)
    paper = frame[frame["metric"] == "armse_paper"].set_index(["model", "molecule"])
    assert paper.loc[("rf", "ethanol"), "value"] == "" and paper.loc[("rf", "ethanol"), "n_diverged"] == "1"
    assert float(paper.loc[("score_dynamics", "uracil"), "value"]) == 1.2
    assert paper.loc[("score_dynamics", "ethanol"), "role"] == "baseline"
    improvement = frame[frame["metric"] == "relative_improvement"].set_index("molecule")
    assert float(improvement.loc["ethanol", "value"]) == pytest.approx(25.0)
    assert float(improvement.loc["uracil", "value"]) == pytest.approx(-500.0)
    assert set(improvement["unit"]) == {"%"} and set(improvement["model"]) == {"diffmd"}


def test_no_improvement_row_without_diffmd(runs):
    records = [r for r in load_records(runs) if r.model != "diffmd"]
    md = tables.render_markdown(tables.make_table(records, MODELS))
    assert "Relative improvement" not in md
    assert _md_row(md, "egnn")[1] == "**0.400**" and _md_row(md, "score_dynamics")[1] == "0.450"
    assert _md_row(md, "gmn")[1] == "<u>0.500</u>"  # second: Score Dynamics' 0.450 is over every 5th frame


def test_seeds_mean_std_and_partial_divergence(tmp_path):
    paths = [_write(tmp_path, "ethanol", "egnn", v, seed=s) for s, v in ((1, 0.2), (2, 0.4), (3, None))]
    cell = tables.make_table(load_records(paths)).grid[("egnn", "ethanol")]
    assert cell.mean == pytest.approx(0.3) and cell.std == pytest.approx(0.1414213562)
    assert cell.text() == "0.300 ± 0.141 (1/3 NA)"


def test_refuses_mixed_sources(tmp_path):
    paths = [
        _write(tmp_path, "ethanol", "egnn", 0.2, source="xtb"),
        _write(tmp_path / "other", "ethanol", "gmn", 0.3, source="download"),
    ]
    with pytest.raises(ValueError, match="refusing to mix"):
        tables.make_table(load_records(paths))


def test_bad_file_names_file_and_key(tmp_path):
    path = tmp_path / "armse.json"
    write_json(path, {"dataset": "md17", "molecule": "x", "model": "egnn", "seed": 1, "source": "xtb"})
    with pytest.raises(ValueError, match=r"armse.json: missing key\(s\) armse, diverged"):
        load_records([path])


def test_cli_writes_both_files(runs, tmp_path):
    out_csv, out_md = tmp_path / "t.csv", tmp_path / "t.md"
    assert (
        main(["tables", "--inputs", *map(str, runs), "--models", *MODELS, "--csv", str(out_csv), "--md", str(out_md)])
        == 0
    )
    assert "**0.300**" in out_md.read_text() and out_csv.read_text().startswith("dataset,molecule,model,role,")


def test_html_twin_keeps_marks_and_escapes(runs, tmp_path):
    from diffmd.reports.html import markdown_to_html

    page = tables.render_html(tables.make_table(load_records(runs), MODELS))
    assert "<td><b>0.300</b></td>" in page and "<td><u>0.400</u></td>" in page
    assert "<th>Model</th>" in page and "<th>ethanol</th>" in page and "---" not in page
    assert "&lt;script&gt;" in markdown_to_html("| a |\n|---|\n| <script> |", "t")
