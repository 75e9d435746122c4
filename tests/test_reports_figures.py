"""Figures and costs from synthetic run directories (diffmd.reports.figures, diffmd.reports.costs)."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.reports import costs, figures
from diffmd.reports.__main__ import main
from diffmd.reports.results import load_records, load_rollout
from diffmd.testing.synthetic import vibrating_truth, write_benchmark, write_run

MODELS = ["static", "egnn", "score_dynamics", "diffmd"]


@pytest.fixture
def results(tmp_path):
    truth = vibrating_truth(41, amplitude=0.1)
    for model, offset in zip(MODELS, (0.3, 0.2, 0.25, 0.1)):
        stride = 5 if model == "score_dynamics" else 1
        armse = write_run(
            tmp_path / "results",
            "md17",
            "ethanol",
            model,
            1,
            "xtb",
            truth,
            offset,
            stride=stride,
            diverged=model == "egnn",
            score_evals=20 if model == "diffmd" else 0,
        )
        assert armse is None if model == "egnn" else armse == pytest.approx(offset)
        write_benchmark(tmp_path / f"results/benchmarks/train/md17/ethanol/{model}/seed1.tsv", 12.5, 800.0)
        write_benchmark(tmp_path / f"results/benchmarks/rollout/md17/ethanol/{model}/seed1.tsv", 1.0, 300.0)
    return tmp_path / "results"


def test_kabsch_recovers_rotated_copy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    assert np.allclose(figures.kabsch_onto(x @ q.T + 3.0, x), x, atol=1e-10)


def test_figures_written_and_non_empty(results, tmp_path):
    rollouts = sorted(str(p) for p in results.glob("md17/ethanol/*/seed1/rollout.npz"))
    png, pdf = tmp_path / "s.png", tmp_path / "s.pdf"
    assert (
        main(
            [
                "snapshots",
                "--rollouts",
                *rollouts,
                "--every",
                "10",
                "--models",
                *MODELS,
                "--png",
                str(png),
                "--pdf",
                str(pdf),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    fig = figures.snapshot_figure([load_rollout(p) for p in rollouts], 10, "t", MODELS)
    assert len(fig.axes) == (1 + len(MODELS)) * 5  # ground truth + 4 models, frames 0, 10, 20, 30, 40
    armse = sorted(str(p) for p in results.glob("md17/ethanol/*/seed1/armse.json"))
    png2, pdf2 = tmp_path / "c.png", tmp_path / "c.pdf"
    assert main(["curves", "--inputs", *armse, "--png", str(png2), "--pdf", str(pdf2)]) == 0
    assert png2.stat().st_size > 20_000 and pdf2.read_bytes()[:5] == b"%PDF-"


def test_costs_from_benchmarks(results):
    records = load_records(sorted(results.glob("md17/ethanol/*/seed1/armse.json")))
    found = costs.find_benchmarks(results / "benchmarks")
    assert len(found) == 2 * len(MODELS)
    rows = {r["model"]: r for r in costs.cost_rows(records, found)}
    assert rows["diffmd"]["train_seconds"] == 12.5 and rows["diffmd"]["peak_memory_MB"] == 800.0
    assert rows["diffmd"]["score_evals_per_frame"] == 20.0 and rows["static"]["score_evals_per_frame"] == 0.0
    md = costs.render_costs_md(list(rows.values()))
    line = next(line for line in md.splitlines() if "| diffmd " in line)  # text columns aligned left
    assert [c.strip() for c in line.strip("|").split("|")][:5] == ["md17", "ethanol", "diffmd", "1", "12.5"]
    assert costs.benchmark_identity("results/benchmarks/train/c7o2h10/trained/egnn/seed3.tsv") == {
        "rule": "train",
        "dataset": "c7o2h10",
        "molecule": "trained",
        "model": "egnn",
        "seed": "3",
    }
    assert costs.benchmark_identity("results/benchmarks/aggregate/table1_md17.tsv") is None


def test_diffmd_training_cost_is_the_sum_over_grid_points(results):
    records = load_records(sorted(results.glob("md17/ethanol/*/seed1/armse.json")))
    found = costs.find_benchmarks(results / "benchmarks")
    found = [p for p in found if "/train/" not in p or "/diffmd/" not in p]
    for point, seconds in (("p0", 10.0), ("p1", 30.0)):
        path = results / f"benchmarks/diffmd_train_point/md17/ethanol/diffmd/seed1/{point}.tsv"
        write_benchmark(path, seconds, 900.0)
        found.append(str(path))
    assert costs.benchmark_identity(found[-1]) == {
        "rule": "diffmd_train_point",
        "dataset": "md17",
        "molecule": "ethanol",
        "model": "diffmd",
        "seed": "1",
    }
    rows = {r["model"]: r for r in costs.cost_rows(records, found)}
    assert rows["diffmd"]["train_seconds"] == 40.0 and rows["diffmd"]["peak_memory_MB"] == 900.0
    assert rows["egnn"]["train_seconds"] == 12.5
