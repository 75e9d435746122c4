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


def _benchmarks(results, rule):
    return sorted(str(p) for p in (results / "benchmarks" / rule).rglob("*.tsv"))


def test_costs_from_benchmarks(results):
    records = load_records(sorted(results.glob("md17/ethanol/*/seed1/armse.json")))
    train, rollout = _benchmarks(results, "train"), _benchmarks(results, "rollout")
    assert len(train) == len(rollout) == len(MODELS)
    rows = {r["model"]: r for r in costs.cost_rows(records, train, rollout)}
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
    train = [p for p in _benchmarks(results, "train") if "/diffmd/" not in p]
    for point, seconds in (("p0", 10.0), ("p1", 30.0)):
        path = results / f"benchmarks/diffmd_train_point/md17/ethanol/diffmd/seed1/{point}.tsv"
        write_benchmark(path, seconds, 900.0)
        train.append(str(path))
    assert costs.benchmark_identity(train[-1]) == {
        "rule": "diffmd_train_point",
        "dataset": "md17",
        "molecule": "ethanol",
        "model": "diffmd",
        "seed": "1",
    }
    rows = {r["model"]: r for r in costs.cost_rows(records, train, _benchmarks(results, "rollout"))}
    assert rows["diffmd"]["train_seconds"] == 40.0 and rows["diffmd"]["peak_memory_MB"] == 900.0
    assert rows["egnn"]["train_seconds"] == 12.5


# --- paper-ready figures (issue 26 row 6): checked on the written PNG and PDF files --------------------------

QUICK = ["static", "constant_velocity", "force_verlet", "xtb_nve", "xtb_langevin", "tfn", "rf", "se3_transformer",
         "egnn", "gmn", "scfnn", "score_dynamics", "diffmd", "diffmd_corrected", "sgdml"]  # the quick profile's 15


@pytest.fixture
def quick_like(tmp_path):
    """15 models on two molecules as the quick profile has them: a one-step floor, Score Dynamics every 5th frame,
    tfn diverged, diffmd on static's very curve (it is static, as published), a tuned DiffMD's grid-point log."""
    root = tmp_path / "results"
    truth = vibrating_truth(41, amplitude=0.1)
    untrained = ("static", "constant_velocity", "force_verlet", "sgdml", "xtb_nve", "xtb_langevin")
    for mol in ("ethanol", "aspirin"):
        for i, model in enumerate(QUICK):
            offset = 0.3 if model in ("static", "diffmd") else 0.02 + 0.02 * i
            write_run(root, "md17", mol, model, 1, "xtb", truth, offset, stride=5 if model == "score_dynamics" else 1,
                      diverged=model == "tfn")  # fmt: skip
            run = root / "md17" / mol / model / "seed1"
            if model in untrained:
                rows = [(0, 1.0, 0.01 + 0.001 * i)]
            else:
                rows = [(e, 2.0 / e, 0.02 / e + 0.001 * i) for e in range(1, 11)]
            log = run / "train_log.csv"
            if model in ("diffmd", "diffmd_corrected"):  # tuned: the selected grid point's log
                log = run / "grid" / "p1" / "train_log.csv"
                ckpt = f"results/md17/{mol}/{model}/seed1/grid/p1/model.pt"
                (run / "selection.json").write_text(f'{{"best": {{"point": "p1", "checkpoint": "{ckpt}"}}}}')
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("epoch,loss,val_one_step,val_armse,lr,seconds\n"
                           + "".join(f"{e},{lo},{v},,0.001,1.0\n" for e, lo, v in rows))  # fmt: skip
    return root


def _written(monkeypatch, tmp_path, argv):
    """Run the CLI; return (figure object as saved, PNG size in px, PDF page size in points)."""
    import re

    from PIL import Image

    saved = []
    original = figures.save_figure

    def spy(fig, png, pdf=None, **kw):
        saved.append(fig)
        original(fig, png, pdf, **kw)

    monkeypatch.setattr(figures, "save_figure", spy)
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    assert main([*argv, "--png", str(png), "--pdf", str(pdf)]) == 0
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", pdf.read_bytes())
    return saved[0], Image.open(png).size, (float(box.group(1)), float(box.group(2)))


def _check_page_ready(fig, png_px, pdf_pt):
    """At most a page's width and height (both files), no text under 6 pt, the title clear of every panel."""
    assert png_px[0] <= figures.PAGE_WIDTH_IN * figures.DPI + 1 and png_px[1] <= figures.MAX_HEIGHT_IN * figures.DPI + 1
    assert pdf_pt[0] <= figures.PAGE_WIDTH_IN * 72 + 0.5 and pdf_pt[1] <= figures.MAX_HEIGHT_IN * 72 + 0.5
    from matplotlib.text import Text

    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert min(t.get_fontsize() for t in texts) >= figures.MIN_FONT_PT
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # the saved figure's layout again (saving closed it)
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_visible():
            assert not title.overlaps(ax.get_window_extent(renderer)), "the title overlaps a panel"
            if ax.title.get_text():
                assert not title.overlaps(ax.title.get_window_extent(renderer)), "the title overlaps a panel title"
    for legend in fig.legends:
        assert not title.overlaps(legend.get_window_extent(renderer)), "the title overlaps the legend"
    labels = [ax.yaxis.label.get_window_extent(renderer) for ax in fig.axes
              if ax.get_visible() and ax.yaxis.label.get_text()]  # fmt: skip
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:]), "axis labels overlap"


def _inputs(root, name):
    return sorted(str(p) for p in root.glob(f"md17/*/*/seed1/{name}"))


def test_curves_are_page_sized_with_a_distinct_style_per_model(quick_like, tmp_path, monkeypatch):
    fig, png, pdf = _written(monkeypatch, tmp_path, ["curves", "--inputs", *_inputs(quick_like, "armse.json"),
                                                     "--models", *QUICK, "--title", "ARMSE (md17)\nsource words"])
    _check_page_ready(fig, png, pdf)
    legend = {t.get_text().split(" ")[0]: h for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    assert "force_verlet" not in legend and len(legend) == len(QUICK) - 1  # one-step floor: no curve
    styles = [(h.get_color(), h.get_linestyle(), h.get_marker()) for h in legend.values()]
    assert len(set(styles)) == len(styles), "two models share a line style"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "diffmd (≈ static)" in labels  # the very same curve, said in the legend
    top = fig.axes[0]
    lines = {ln.get_label().split(" ")[0]: ln for ln in top.get_lines() if not ln.get_label().startswith("_")}
    # static underneath, wide; diffmd on top, thin: both visible where they coincide
    assert lines["static"].get_linewidth() >= 3 * lines["diffmd"].get_linewidth()
    assert lines["static"].get_zorder() < lines["diffmd"].get_zorder() and lines["diffmd"].get_marker() != ""


def test_hr_figure_is_page_sized_not_a_column_of_fifteen_panels(quick_like, tmp_path, monkeypatch):
    ethanol = [p for p in _inputs(quick_like, "armse.json") if "/ethanol/" in p]  # the quick profile's one molecule
    fig, png, pdf = _written(monkeypatch, tmp_path, ["hr", "--inputs", *ethanol,
                                                     "--models", *QUICK, "--title", "h(r) (md17)\nsource words"])
    _check_page_ready(fig, png, pdf)  # before: 845 x 3213 px, the title over the panel titles
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(QUICK) - 1  # every model that rolls out
    assert len({round(ax.get_position().x0, 3) for ax in panels}) == 3  # one molecule: the models wrap into 3 columns


def test_snapshots_fit_a_page_and_label_every_empty_cell(quick_like, tmp_path, monkeypatch):
    rollouts = sorted(str(p) for p in quick_like.glob("md17/ethanol/*/seed1/rollout.npz"))
    fig, png, pdf = _written(monkeypatch, tmp_path, ["snapshots", "--rollouts", *rollouts, "--every", "2",
                                                     "--models", *QUICK, "--title", "md17 / ethanol\nsource words"])
    _check_page_ready(fig, png, pdf)  # before: 1630 x 4001 px
    offsets = figures.snapshot_columns(40, 2)  # 21 multiples of 2 thinned to 6: 0, 8, 16, 24, 32, 40
    cols = len(offsets)
    assert cols == figures.MAX_SNAPSHOT_COLUMNS and len(fig.axes) == len(QUICK) * cols  # truth + 14, no floor row
    words = " ".join(t.get_text() for t in fig.texts)
    assert "Not drawn (one-step models, no rollout): force_verlet" in words
    labels = {ax.get_ylabel(): [t.get_text() for t in ax.texts] for ax in fig.axes if ax.get_ylabel()}
    assert "force_verlet" not in labels
    row = {ax.get_ylabel(): i for i, ax in enumerate(fig.axes) if ax.get_ylabel()}
    cells = lambda model: [" ".join(t.get_text() for t in fig.axes[row[model] + c].texts) for c in range(cols)]  # noqa: E731
    assert any("diverged" in c for c in cells("tfn"))  # the diverged rollout's cells say so
    # Score Dynamics steps 5 frames: the cells between its frames say so instead of staying blank
    assert [("no frame" in c) for c in cells("score_dynamics")] == [off % 5 != 0 for off in offsets]


def test_learning_curves_show_every_trained_model_diffmd_included(quick_like, tmp_path, monkeypatch):
    logs = _inputs(quick_like, "train_log.csv") + _inputs(quick_like, "selection.json")
    fig, png, pdf = _written(monkeypatch, tmp_path, ["learning-curves", "--inputs", *logs, "--models", *QUICK,
                                                     "--title", "Learning curves (md17)"])
    _check_page_ready(fig, png, pdf)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "diffmd (grid point p1)" in labels and "diffmd_corrected (grid point p1)" in labels  # before: left out
    assert {lab.split(" ")[0] for lab in labels} == set(QUICK)
    styles = [(h.get_color(), h.get_linestyle(), h.get_marker()) for h in fig.legends[0].legend_handles]
    assert len(set(styles)) == len(styles)
