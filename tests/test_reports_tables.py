"""ARMSE tables on synthetic armse.json files with known values (diffmd.reports.tables)."""

from __future__ import annotations

import pytest

from diffmd.io import write_json
from diffmd.reports import tables
from diffmd.reports.__main__ import main
from diffmd.reports.results import load_records

MODELS = ["static", "constant_velocity", "rf", "egnn", "gmn", "score_dynamics", "diffmd"]


def _write(root, molecule, model, armse, seed=1, source="xtb", dataset="md17", stride=1):
    path = root / dataset / molecule / model / f"seed{seed}" / "armse.json"
    write_json(
        path,
        {
            "dataset": dataset,
            "molecule": molecule,
            "model": model,
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
    paths += [_write(tmp_path, "uracil", m, 1.0 if m != "gmn" else 0.2) for m in values]
    return paths


def _md_row(md, label):
    return next(line for line in md.splitlines() if line.startswith(f"| {label}"))


def test_bold_second_na_and_improvement(runs):
    table = tables.make_table(load_records(runs), MODELS, ["ethanol", "uracil"])
    md = tables.render_markdown(table)
    assert "| diffmd | **0.300** |" in md  # best learned model, not static (0.05)
    assert "| egnn | <u>0.400</u> |" in md
    assert "| static (reference) | 0.050 |" in md
    assert _md_row(md, "rf").split("|")[2].strip() == "NA"
    assert "score_dynamics (every 5th frame) | 0.450 |" in md
    # uracil: gmn best (0.2), ties at 1.0 all second, diffmd is not better than the best baseline
    assert "**0.200**" in _md_row(md, "gmn")
    assert "<u>1.000</u>" in _md_row(md, "diffmd")
    improvement = _md_row(md, "Relative improvement").split("|")[2:4]
    assert improvement[0].strip() == "25.0%"  # (0.40 - 0.30) / 0.40
    assert improvement[1].strip() == "-400.0%"  # (0.2 - 1.0) / 0.2
    assert md.startswith("Data source: GFN2-xTB simulation")
    csv_text = tables.render_csv(table)
    assert csv_text.splitlines()[0] == "model,ethanol,uracil,role,stride,data_source"
    assert "rf,NA,1.000,baseline,1," in csv_text
    assert "score_dynamics,0.450,1.000,baseline,5," in csv_text
    assert csv_text.splitlines()[-1].startswith("relative_improvement,25.0%,-400.0%,summary")


def test_no_improvement_row_without_diffmd(runs):
    records = [r for r in load_records(runs) if r.model != "diffmd"]
    md = tables.render_markdown(tables.make_table(records, MODELS))
    assert "Relative improvement" not in md
    assert "**0.400**" in _md_row(md, "egnn") and "<u>0.450</u>" in _md_row(md, "score_dynamics")


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
    assert "**0.300**" in out_md.read_text() and out_csv.read_text().startswith("model,ethanol")


def test_html_twin_keeps_marks_and_escapes(runs, tmp_path):
    from diffmd.reports.html import markdown_to_html

    page = markdown_to_html(tables.render_markdown(tables.make_table(load_records(runs), MODELS)), "t")
    assert "<td><b>0.300</b></td>" in page and "<td><u>0.400</u></td>" in page
    assert "<th>Model</th><th>ethanol</th><th>uracil</th>" in page and "---" not in page
    assert "&lt;script&gt;" in markdown_to_html("| a |\n|---|\n| <script> |", "t")
