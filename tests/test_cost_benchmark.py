"""The cost-of-simulated-time benchmark on a synthetic trajectory and tiny Score Dynamics checkpoints."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffmd.data.splits import md17_split
from diffmd.data.trajectory import Trajectory, save_trajectory
from diffmd.engine.common import save_torch
from diffmd.engine.train import checkpoint
from diffmd.io import write_json
from diffmd.registry import build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import cost  # noqa: E402

torch.set_num_threads(1)
TINY = {"hidden": 8, "layers": 1, "time_features": 2, "sampler": "dpm3", "sampling_steps": 3,
        "displacement_scale": 0.01, "bond_check": False}  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A 60-frame synthetic ethanol trajectory, its split and two tiny checkpoints (strides 1 and 2)."""
    d = tmp_path_factory.mktemp("cost")
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 2 * np.pi, size=(9, 3))
    t = np.arange(60)[:, None, None]
    pos = ETHANOL_X[None] + 0.02 * np.sin(0.3 * t + phase)
    traj = Trajectory(positions=pos, atomic_numbers=ETHANOL_Z, dt_fs=0.5, temperature_K=300.0, name="ethanol",
                      dataset="md17", source="local")  # fmt: skip
    save_trajectory(d / "ethanol.npz", traj)
    write_json(d / "split.json", md17_split(d / "ethanol.npz", 20, 10, 20))
    for k in (1, 2):
        torch.manual_seed(k)
        model = build_model("score_dynamics", {**TINY, "stride": k})
        save_torch(d / f"k{k}.pt", checkpoint(model, {**TINY, "stride": k}, 0, 0.1))
    write_json(d / "armse.json", {"dataset": "md17", "molecule": "ethanol", "model": "score_dynamics", "seed": 1,
                                  "source": "xtb", "role": "baseline", "armse": 0.123, "diverged": False})
    return d


def manifest(d: Path, md_steps: int = 0) -> dict:
    runs = [{"label": "score_dynamics", "checkpoint": str(d / "k1.pt"), "armse_json": str(d / "armse.json")},
            {"label": "score_dynamics (stride 2)", "checkpoint": str(d / "k2.pt")}]  # fmt: skip
    xtb = {"temperature_K": 300.0, "dt_fs": 0.5, "friction_per_fs": 0.01, "seed": 1}
    return {"molecules": {"ethanol": {"split": str(d / "split.json"), "runs": runs}}, "xtb": xtb,
            "md_steps": md_steps, "frames": 8, "threads": 1, "device": "cpu", "seed": 1}  # fmt: skip


def test_seconds_per_ps():
    assert cost.seconds_per_ps(2.0, 1000, 1, 0.5) == pytest.approx(4.0)  # 0.5 ps in 2 s
    assert cost.seconds_per_ps(2.0, 100, 10, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no simulated time"):
        cost.seconds_per_ps(1.0, 0, 1, 0.5)


def test_ratios_against_reference():
    rows = [
        {"molecule": "m", "simulator": cost.REFERENCE, "stride": 1, "dt_fs": 0.5, "steps": 100, "seconds": 1.0},
        {"molecule": "m", "simulator": "a", "stride": 10, "dt_fs": 0.5, "steps": 10, "seconds": 0.1},
        {"molecule": "n", "simulator": "b", "stride": 1, "dt_fs": 0.5, "steps": 10, "seconds": 0.1},
    ]
    out = cost.finish_rows(rows)
    assert out[0]["ratio_to_md"] == pytest.approx(1.0)
    assert out[1]["seconds_per_ps"] == pytest.approx(0.1 / 0.05)
    assert out[1]["ratio_to_md"] == pytest.approx(0.1) and out[1]["speedup_vs_md"] == pytest.approx(10.0)
    assert out[2]["ratio_to_md"] is None  # no reference for molecule n


def test_rollouts_and_tables(workdir):
    rows = cost.run(manifest(workdir))
    assert [r["simulator"] for r in rows] == ["score_dynamics", "score_dynamics (stride 2)"]
    assert [r["stride"] for r in rows] == [1, 2]
    assert rows[0]["steps"] == 8 and rows[1]["steps"] == 4  # the same 8 source frames
    assert rows[0]["armse"] == 0.123 and rows[0]["armse_source"] == "pipeline armse.json"
    assert rows[1]["armse"] is not None and rows[1]["armse"] > 0
    assert all(r["score_evals_per_step"] == 3 for r in rows)
    assert all(r["ratio_to_md"] is None for r in rows)
    md = cost.to_markdown(rows, {"threads": 1, "device": "cpu", "md_steps": 0, "frames": 8})
    line = next(line for line in md.splitlines() if "score_dynamics (stride 2)" in line)  # DataFrame.to_markdown
    assert [c.strip() for c in line.strip("|").split("|")][:4] == ["ethanol", "score_dynamics (stride 2)", "2", "1.0"]
    assert "NA" in md


@pytest.mark.slow
def test_cli_with_reference_md(workdir):
    pytest.importorskip("tblite")
    out = workdir / "tables"
    (workdir / "manifest.json").write_text(json.dumps(manifest(workdir, md_steps=5)))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cost.py"), "--manifest", f"@{workdir / 'manifest.json'}",
                    "--out-csv", str(out / "cost.csv"), "--out-md", str(out / "cost.md")],
                   check=True, cwd=ROOT, capture_output=True)  # fmt: skip
    lines = (out / "cost.csv").read_text().splitlines()
    assert lines[0].split(",") == list(cost.FIELDS)
    ref = lines[1].split(",")
    assert ref[1] == cost.REFERENCE and ref[4] == "5" and float(ref[7]) == pytest.approx(1.0)
    assert all(float(line.split(",")[7]) > 0 for line in lines[2:])
    assert "GFN2-xTB" in (out / "cost.md").read_text()


def test_module_entry_point_is_importable():
    assert importlib.util.find_spec("benchmarks.cost") is not None
