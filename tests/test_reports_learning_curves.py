"""Learning-curve figure (issue 13 item 2): reads the trainer's train_log.csv files, one column per run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffmd.reports import figures


def _log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,loss,val_one_step,val_armse,lr,seconds"]
    lines += [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_learning_curves_read_blank_cells_and_draw_one_column_per_run(tmp_path):
    root = tmp_path / "results" / "md17"
    a = _log(root / "ethanol" / "egnn" / "seed1" / "train_log.csv",
             [(1, 2.0, 0.003, None, 5e-4, 1.0), (2, 1.0, 0.002, 0.1, 5e-4, 1.0)])  # fmt: skip
    b = _log(root / "ethanol" / "constant_velocity" / "seed1" / "train_log.csv", [(0, 1.0, 0.0025, 0.2, 0.0, 0.1)])
    c = _log(root / "aspirin" / "egnn" / "seed1" / "train_log.csv", [(1, 3.0, 0.004, None, 5e-4, 1.0)] * 3)
    log = figures.read_train_log(a)
    assert log["val_armse"][0] != log["val_armse"][0]  # blank -> NaN
    fig = figures.learning_curves_figure([a, b, c], "t", ["constant_velocity", "egnn"])
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 rows x 2 runs
    assert {ax.get_title() for ax in axes} >= {"ethanol", "aspirin"}
    out = tmp_path / "lc.png"
    figures.save_figure(fig, out)
    assert out.stat().st_size > 1000


def test_a_log_without_the_needed_columns_is_named(tmp_path):
    bad = tmp_path / "results" / "md17" / "ethanol" / "egnn" / "seed1" / "train_log.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(ValueError, match="train_log.csv: training log lacks column"):
        figures.learning_curves_figure([bad], "t")
    r = subprocess.run([sys.executable, "-m", "diffmd.reports", "learning-curves", "--inputs", str(bad),
                        "--png", str(tmp_path / "x.png"), "--pdf", str(tmp_path / "x.pdf")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "lacks column" in r.stderr


def test_a_one_epoch_training_is_drawn_not_taken_for_a_reference(tmp_path):
    root = tmp_path / "results" / "md17" / "ethanol"
    ref = _log(root / "static" / "seed1" / "train_log.csv", [(0, 1.0, 0.01, None, 0.0, 0.1)])
    one = _log(root / "egnn" / "seed1" / "train_log.csv", [(1, 2.0, 0.003, None, 5e-4, 1.0)])
    fig = figures.learning_curves_figure([ref, one], "t", ["static", "egnn"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["static (no epochs)", "egnn"]
    drawn = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "egnn"][0]
    assert list(drawn.get_xdata()) == [1.0] and drawn.get_marker() not in ("", "None")  # a point, visible
