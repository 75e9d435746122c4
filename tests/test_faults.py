"""Faults at the pipeline level, through the real Snakemake rules and the package's CLIs.

* A training job SIGKILLed mid-run (the whole snakemake process group, as a node failure would)
  and rerun with ``--rerun-incomplete`` resumes from ``last.pt`` and writes the same ``model.pt``
  (bitwise, CPU) as an uninterrupted run with the same seed.
* The same seed and config give bitwise identical ARMSE in two fresh directories (the killed one and an
  uninterrupted one).
* A rollout made to diverge (one atom displaced by 60 Å in the test start frame of the trajectory,
  so the constant-velocity model flies it away) is NA in Table 1 and the table still builds.
* Every result directory has a provenance.json whose input checksums match the data files.

Each workflow copy shares one tiny GFN2-xTB trajectory and split (module fixture), so the
tests run the engine's rules only: tens of seconds each on one CPU core.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from workflow_copy import TINY_CONFIG, job_logs, make_workdir, run_snakemake, snakemake_cmd, workflow_env

from diffmd.data.trajectory import load_trajectory, save_trajectory
from diffmd.provenance import sha256_file

pytestmark = pytest.mark.slow

SPLIT = "data/splits/md17/ethanol.json"
EGNN_DIR = "results/md17/ethanol/egnn/seed1"
EGNN_MODEL = f"{EGNN_DIR}/model.pt"
EGNN_ARMSE = f"{EGNN_DIR}/armse.json"
CONFIG = copy.deepcopy(TINY_CONFIG)
CONFIG["train"].update({"epochs": 6, "val_every": 2})


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """data/ of a workflow copy after the tiny trajectory and its split were made."""
    torch.set_num_threads(1)
    wd = make_workdir(tmp_path_factory.mktemp("data") / "wf", CONFIG)
    run_snakemake(wd, SPLIT)
    return wd / "data"


def fresh(tmp_path: Path, name: str, data: Path, config: dict | None = None) -> Path:
    wd = make_workdir(tmp_path / name, config or CONFIG)
    shutil.copytree(data, wd / "data")
    return wd


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False, map_location="cpu")["state_dict"]


def _assert_same_state(a: Path, b: Path) -> None:
    sa, sb = _state_dict(a), _state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs between {a} and {b}"


def _kill_when_checkpointed(wd: Path, target: str, timeout: float = 240) -> int:
    """Start snakemake for ``target``; SIGKILL its process group once last.pt exists. Returns the epoch."""
    last = wd / EGNN_DIR / "last.pt"
    out = (wd / "killed_run.txt").open("w")
    proc = subprocess.Popen(snakemake_cmd("--", target), cwd=wd, env=workflow_env(), start_new_session=True,
                            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not last.exists():
            if proc.poll() is not None:
                raise AssertionError(f"snakemake ended before the first epoch:\n"
                                     f"{(wd / 'killed_run.txt').read_text()[-3000:]}\n{job_logs(wd)}")
            assert time.monotonic() < deadline, "no last.pt in time"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.close()
    return int(torch.load(last, weights_only=False)["epoch"])


def test_killed_training_resumes_to_the_same_checkpoint_and_armse_is_reproducible(tmp_path, shared_data):
    ref = fresh(tmp_path, "ref", shared_data)
    run_snakemake(ref, EGNN_ARMSE)

    killed = fresh(tmp_path, "killed", shared_data)
    epoch = _kill_when_checkpointed(killed, EGNN_MODEL)
    ref_rows = list(csv.DictReader((ref / EGNN_DIR / "train_log.csv").open()))
    assert 1 <= epoch < len(ref_rows), f"killed after epoch {epoch} of {len(ref_rows)}: not mid-run"
    assert not (killed / EGNN_MODEL).exists()
    run_snakemake(killed, extra_args=("--unlock",))  # the SIGKILLed snakemake left its lock
    run_snakemake(killed, EGNN_ARMSE, extra_args=("--rerun-incomplete",))
    log = (killed / "results/logs/train/md17/ethanol/egnn/seed1.log").read_text()
    assert f"resuming from {EGNN_DIR}/last.pt after epoch" in log, log[-2000:]
    _assert_same_state(ref / EGNN_MODEL, killed / EGNN_MODEL)
    rows = list(csv.DictReader((killed / EGNN_DIR / "train_log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(ref_rows) + 1))
    for r, q in zip(rows, ref_rows):  # the resumed epochs repeat the uninterrupted run's numbers
        assert (r["loss"], r["val_armse"], r["lr"]) == (q["loss"], q["val_armse"], q["lr"]), r["epoch"]

    # same seed and config in two fresh directories (one of them killed and resumed): bitwise identical ARMSE
    results = [json.loads((wd / EGNN_ARMSE).read_text()) for wd in (ref, killed)]
    for key in ("armse", "armse_unaligned", "rmsd_per_frame", "armse_curve", "diverged"):
        assert results[1][key] == results[0][key], key
    assert results[0]["armse"] is not None and np.isfinite(results[0]["armse"])


def _displace_test_start(wd: Path, shift_A: float = 60.0) -> int:
    """Move atom 0 by ``shift_A`` Å along x in the test start frame; returns that frame index."""
    start = json.loads((wd / SPLIT).read_text())["test"]["start"]
    path = wd / "data/md17/ethanol.npz"
    traj = load_trajectory(path)
    traj.positions = traj.positions.copy()
    traj.positions[start, 0, 0] += shift_A
    save_trajectory(path, traj)
    stamp = time.time() + 2  # newer than the split: Snakemake remakes it (new checksum)
    os.utime(path, (stamp, stamp))
    return start


@pytest.fixture(scope="module")
def diverged_table(tmp_path_factory, shared_data) -> Path:
    """One Table 1 run of the reference rows, with the test start frame displaced so constant velocity
    diverges (read by the two tests below: the NA cell, and every result directory's provenance)."""
    cfg = copy.deepcopy(CONFIG)
    cfg["models"] = ["static", "constant_velocity"]
    cfg["data"]["md17"]["checks"] = {"max_speed_A_per_fs": None}  # the 60 Å frame is the point of this test
    wd = fresh(tmp_path_factory.mktemp("table"), "diverge", shared_data, cfg)
    _displace_test_start(wd)
    run_snakemake(wd, "results/tables/table1_md17.csv")
    return wd


def test_diverged_rollout_is_na_and_the_table_still_builds(diverged_table):
    wd = diverged_table
    cv = json.loads((wd / "results/md17/ethanol/constant_velocity/seed1/armse.json").read_text())
    st = json.loads((wd / "results/md17/ethanol/static/seed1/armse.json").read_text())
    assert cv["diverged"] is True and cv["armse"] is None and cv["diverged_at"] >= 0
    assert st["diverged"] is False and st["armse"] is not None
    rows = {r["model"]: r for r in csv.DictReader((wd / "results/tables/table1_md17.csv").open())
            if r["metric"] == "armse_paper" and r["molecule"] == "ethanol"}  # fmt: skip
    assert rows["constant_velocity"]["value"] == ""  # NA: an empty cell in the long-format CSV
    assert float(rows["static"]["value"]) > 0
    assert "NA" in (wd / "results/tables/table1_md17.md").read_text()


def test_every_result_directory_has_provenance(diverged_table):
    wd = diverged_table
    run_dirs = sorted(p.parent for p in (wd / "results").rglob("armse.json"))
    assert len(run_dirs) == 2
    trajectory_sha = sha256_file(wd / "data/md17/ethanol.npz")
    for d in run_dirs:
        rec = json.loads((d / "provenance.json").read_text())
        assert rec["packages"]["torch"] and rec["device"] == "cpu" and len(rec["config_hash"]) == 64
        assert rec["git"] is None or len(rec["git"]["commit"]) == 40
        inputs = {Path(k).as_posix(): v["sha256"] for k, v in rec["inputs"].items()}
        assert inputs[SPLIT] == sha256_file(wd / SPLIT)
        assert trajectory_sha in inputs.values()
        # train and rollout share the directory: both stages' records are kept
        assert {"train", "rollout"} <= set(rec["stages"]), sorted(rec["stages"])
        assert rec["stages"]["train"]["config"]["model"] == d.parts[-2]
    # the table cites every run's provenance file with its config hash
    table = (wd / "results/tables/table1_md17.md").read_text()
    for d in run_dirs:
        rec = json.loads((d / "provenance.json").read_text())
        row = next(line for line in table.splitlines() if f"{d.relative_to(wd)}/provenance.json" in line)
        assert rec["config_hash"][:12] in row
