"""The multi-start cost benchmark (benchmarks/multistart.py) runs and writes its tables; its speed
figures are measured by running it, not asserted here."""

import csv

from benchmarks import multistart


def test_benchmark_writes_both_tables(tmp_path):
    out_csv, out_md = tmp_path / "m.csv", tmp_path / "m.md"
    multistart.main(["--models", "egnn", "constant_velocity", "--starts", "4", "--steps", "3",
                     "--params", '{"egnn": {"hidden": 8, "layers": 1}}', "--out-csv", str(out_csv),
                     "--out-md", str(out_md)])  # fmt: skip
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["model"] for r in rows] == ["egnn", "constant_velocity"]
    assert all(int(r["starts"]) == 4 and float(r["batched_s"]) > 0 and float(r["sequential_s"]) > 0 for r in rows)
    assert "ratio" in out_md.read_text() and "| egnn" in out_md.read_text()
