"""benchmarks/batched_validation.py: every eps x start in one batch against one at a time, on a tiny DiffMD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.batched_validation import FIELDS, build, main, run_paths, size_params

TINY = {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "n_time_freq": 2}
EPS = [0.4, 0.8, 0.99]


def test_cli_tiny(tmp_path: Path) -> None:
    out_csv, out_md = tmp_path / "bv.csv", tmp_path / "bv.md"
    params = {**TINY, "sampler_options": {"ode": {"rtol": 1e-7, "atol": 1e-7}}}
    rows = main(["--sizes", "quick", "--params", json.dumps(params), "--eps", *map(str, EPS), "--starts", "3",
                 "--steps", "2", "--reference-tol", "1e-8", "--out-csv", str(out_csv),
                 "--out-md", str(out_md)])  # fmt: skip
    assert len(rows) == 1
    r = rows[0]
    assert (r["n_eps"], r["starts"], r["steps"], r["frames"]) == (3, 3, 2, 18)
    assert r["n_layers"] == 1 and r["d_model"] == 8 and r["rtol"] == 1e-7
    assert r["batched_s_per_frame"] == pytest.approx(r["batched_s"] / 18)
    assert r["ratio"] == pytest.approx(r["sequential_s"] / r["batched_s"])
    # the batch calls the network once per stage of its longest copy, one-at-a-time once per stage of every copy
    assert 0 < r["batched_score_evals"] < r["sequential_score_evals"]
    # the same ODE on two step sequences (other clocks, other first steps): at rtol = atol = 1e-7 they agree to
    # 1e-4 Å (measured 1.2e-5; 8.6e-5 at 1e-6: the global error of this untrained score is far above the local
    # tolerance), and both are that close to the 1e-8 reference
    assert r["max_dev_A"] < 1e-4 and r["batched_err_A"] < 1e-4 and r["sequential_err_A"] < 1e-4
    lines = out_csv.read_text().splitlines()
    assert lines[0] == ",".join(FIELDS) and len(lines) == 2
    md = out_md.read_text()
    assert "| quick (1 x 8, FFN 16, rtol 1e-07)" in md and "3 eps x 3 starts x 2" in md


def test_paths_pair_copies_eps_major() -> None:
    """Copy e * starts + j of the batch is eps e from start j: it matches the one-at-a-time rollout of (e, j),
    and different eps give different frames (the copies are not all one eps)."""
    model = build({**TINY, "sampler_options": {"ode": {"rtol": 1e-7, "atol": 1e-7}}}, torch.device("cpu"))
    res = run_paths(model, EPS, 2, 1, torch.device("cpu"), timed=False)
    b, s = res["batched_positions"], res["sequential_positions"]
    assert b.shape == s.shape == (len(EPS) * 2, 2, 9, 3)
    # per-molecule step control: every copy takes the steps it takes alone, so the two paths differ by float
    # round-off only (measured 4.1e-6 Å; one step size for the batch, step_control: batch, gave 1.6e-5)
    np.testing.assert_allclose(b, s, atol=8e-6)
    assert np.abs(b[0, 1] - b[2 * (len(EPS) - 1), 1]).max() > 1e-4  # eps 0.4 vs 0.99 from the same start
    assert model.eps == 0.2  # restored


def test_sizes() -> None:
    quick = size_params("quick")
    assert quick["n_layers"] == 2 and quick["d_model"] == 32 and "train" not in quick
    assert size_params("paper") == {}
    with pytest.raises(SystemExit, match="--sizes"):
        size_params("huge")
