"""Trainer: bitwise resume after an interruption, a finished training rerun afresh, reference models, O2O training,
config errors, one-line CLI errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from test_engine_pairs import toy_c7o2h10, toy_md17, toy_positions

from diffmd.data.trajectory import Trajectory, save_trajectory
from diffmd.engine import train as T
from diffmd.engine.common import load_torch
from diffmd.provenance import sha256_file
from diffmd.testing import ETHANOL_Z

PARAMS = {"hidden": 8, "layers": 2}
CFG = {"epochs": 5, "val_every": 2, "val_horizon": 20, "batch_size": 32, "device": "cpu",
       "max_train_pairs": 96, "scheduler": {"patience": 0, "factor": 0.5, "min_lr": 1e-7}}  # fmt: skip


REAL_TRAIN_EPOCH = T.train_epoch


class Killed(Exception):
    pass


def log_rows(path):
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.mark.parametrize("select_by", ["one_step", "rollout_armse"])
def test_resume_is_bitwise_identical(tmp_path, monkeypatch, select_by):
    torch.set_num_threads(1)
    split = toy_md17(tmp_path)
    cfg = {**CFG, "select_by": select_by, "val_frames": 20}
    T.train(str(split), "egnn", PARAMS, cfg, seed=7, out=tmp_path / "full")

    real_epoch = T.train_epoch

    def dying_epoch(model, opt, data, cfg, seed, epoch, device):
        if epoch == 4:
            raise Killed
        return real_epoch(model, opt, data, cfg, seed, epoch, device)

    monkeypatch.setattr(T, "train_epoch", dying_epoch)
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, cfg, seed=7, out=tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert load_torch(tmp_path / "resumed" / "last.pt")["epoch"] == 3
    monkeypatch.setattr(T, "train_epoch", real_epoch)
    T.train(str(split), "egnn", PARAMS, cfg, seed=7, out=tmp_path / "resumed")

    for name in ("model.pt", "last.done.pt"):
        a, b = load_torch(tmp_path / "full" / name), load_torch(tmp_path / "resumed" / name)
        sa, sb = a.get("state_dict", a.get("model_state")), b.get("state_dict", b.get("model_state"))
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}: {key} differs after resume"
    assert log_rows(tmp_path / "full" / "train_log.csv") == log_rows(tmp_path / "resumed" / "train_log.csv")
    ckpt = load_torch(tmp_path / "full" / "model.pt")
    assert ckpt["model"] == "egnn" and ckpt["select_by"] == select_by
    assert ckpt["params"]["stride"] == 1 and ckpt["val_armse"] > 0 and ckpt["val_metric"] > 0
    rows = log_rows(tmp_path / "full" / "train_log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert ckpt["epoch"] in ((1, 2, 3, 4, 5) if select_by == "one_step" else (2, 4, 5))


def _die_at(monkeypatch, epoch_to_die: int | None) -> None:
    """Make training raise :class:`Killed` at the start of ``epoch_to_die`` (None: train normally)."""

    def epoch_fn(model, opt, data, cfg, seed, epoch, device):
        if epoch == epoch_to_die:
            raise Killed
        return REAL_TRAIN_EPOCH(model, opt, data, cfg, seed, epoch, device)

    monkeypatch.setattr(T, "train_epoch", epoch_fn)


def test_another_configuration_or_data_starts_afresh(tmp_path, capsys, monkeypatch):
    split = toy_md17(tmp_path)
    cfg = {**CFG, "epochs": 2, "val_every": 1}
    _die_at(monkeypatch, 2)  # every run below is killed after epoch 1, leaving last.pt
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, cfg, seed=1, out=tmp_path / "run")
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, {**cfg, "lr": 1e-3}, seed=1, out=tmp_path / "run")
    assert capsys.readouterr().out.count("starting afresh") == 1
    assert len(log_rows(tmp_path / "run" / "train_log.csv")) == 1
    _die_at(monkeypatch, None)
    T.train(str(split), "egnn", PARAMS, {**cfg, "lr": 1e-3}, seed=1, out=tmp_path / "run")
    assert "resuming from" in capsys.readouterr().out
    _die_at(monkeypatch, 2)
    (tmp_path / "run" / "model.pt").unlink()
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, {**cfg, "lr": 1e-3}, seed=1, out=tmp_path / "run")
    traj = json.loads(split.read_text())["trajectory"]
    save_trajectory(traj, Trajectory(toy_positions(300, seed=5), ETHANOL_Z, 0.5, 300.0, "ethanol", "md17", "xtb"))
    split.write_text(json.dumps({**json.loads(split.read_text()), "trajectory_sha256": sha256_file(traj)}))  # remade
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, {**cfg, "lr": 1e-3}, seed=1, out=tmp_path / "run")
    assert "starting afresh" in capsys.readouterr().out


def test_finished_training_is_not_resumed_by_a_forced_rerun(tmp_path, capsys, monkeypatch):
    """Issue 15 row 11: a finished run keeps last.done.pt, never last.pt; ``--forcerun train`` (Snakemake deletes
    model.pt, then reruns) trains every epoch again, to the same model; a killed run still resumes."""
    split = toy_md17(tmp_path)
    cfg = {**CFG, "epochs": 3, "val_every": 1}
    out = tmp_path / "run"
    T.train(str(split), "egnn", PARAMS, cfg, seed=2, out=out)
    assert (out / "last.done.pt").exists() and not (out / "last.pt").exists()
    first = load_torch(out / "model.pt")
    capsys.readouterr()

    epochs = []
    real_epoch = T.train_epoch

    def counting_epoch(model, opt, data, cfg, seed, epoch, device):
        epochs.append(epoch)
        return real_epoch(model, opt, data, cfg, seed, epoch, device)

    monkeypatch.setattr(T, "train_epoch", counting_epoch)
    (out / "model.pt").unlink()
    T.train(str(split), "egnn", PARAMS, cfg, seed=2, out=out)
    assert epochs == [1, 2, 3] and "resuming" not in capsys.readouterr().out
    again = load_torch(out / "model.pt")
    for key in first["state_dict"]:
        assert torch.equal(first["state_dict"][key], again["state_dict"][key]), key
    assert len(log_rows(out / "train_log.csv")) == 3

    # a run killed after epoch 1 (no model.pt) resumes at epoch 2
    def dying_epoch(model, opt, data, cfg, seed, epoch, device):
        if epoch == 2:
            raise Killed
        return counting_epoch(model, opt, data, cfg, seed, epoch, device)

    (out / "model.pt").unlink()
    epochs.clear()
    monkeypatch.setattr(T, "train_epoch", dying_epoch)
    with pytest.raises(Killed):
        T.train(str(split), "egnn", PARAMS, cfg, seed=2, out=out)
    assert (out / "last.pt").exists() and not (out / "last.done.pt").exists()
    monkeypatch.setattr(T, "train_epoch", counting_epoch)
    T.train(str(split), "egnn", PARAMS, cfg, seed=2, out=out)
    assert epochs == [1, 2, 3] and "resuming from" in capsys.readouterr().out
    resumed = load_torch(out / "model.pt")
    for key in first["state_dict"]:
        assert torch.equal(first["state_dict"][key], resumed["state_dict"][key]), key


def test_leftover_temporary_files_are_removed(tmp_path, capsys):
    split = toy_md17(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    left = [out / ".train_log.csv.abc123.csv", out / ".last.pt.x9.pt", out / ".best.pt.q.pt"]
    for path in left:
        path.write_text("half")
    keep = out / "notes.txt"
    keep.write_text("mine")
    T.train(str(split), "egnn", PARAMS, {**CFG, "epochs": 1}, seed=1, out=out)
    assert not any(path.exists() for path in left) and keep.exists()
    assert not list(out.glob(".*")) and "removed" in capsys.readouterr().out


def test_reference_model_writes_checkpoint_without_training(tmp_path):
    split = toy_md17(tmp_path)
    info = T.train(str(split), "static", {}, CFG, seed=1, out=tmp_path / "static")
    ckpt = load_torch(tmp_path / "static" / "model.pt")
    assert ckpt["model"] == "static" and ckpt["epoch"] == 0 and ckpt["val_armse"] == info["best_val_armse"] > 0
    assert ckpt["select_by"] == "one_step" and ckpt["val_metric"] == info["best_val_metric"] > 0
    assert not (tmp_path / "static" / "last.pt").exists()
    prov = json.loads((tmp_path / "static" / "provenance.json").read_text())
    assert prov["device"] == "cpu"


def test_o2o_trains_on_train_isomers(tmp_path, capsys):
    split = toy_c7o2h10(tmp_path)
    T.train(str(split), "egnn", PARAMS, {**CFG, "epochs": 1, "max_train_pairs": None}, seed=1, out=tmp_path / "o2o")
    assert "117 training pairs, 1 validation segment(s)" in capsys.readouterr().out
    assert (tmp_path / "o2o" / "model.pt").exists()


def test_train_overrides_and_unknown_keys(tmp_path):
    split = toy_md17(tmp_path)
    params = {**PARAMS, "train": {"epochs": 1, "val_every": 1}}
    info = T.train(str(split), "egnn", params, CFG, seed=1, out=tmp_path / "o")
    assert info["epochs"] == 1
    with pytest.raises(ValueError, match="unknown key"):
        T.train(str(split), "egnn", PARAMS, {"epochz": 3}, seed=1, out=tmp_path / "x")


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path):
    """A real SIGKILL of the CLI mid-training; the rerun resumes from last.pt to the same model.pt."""
    import os
    import signal
    import subprocess
    import sys
    import time

    split = toy_md17(tmp_path)
    cfg = {**CFG, "epochs": 8, "max_train_pairs": None}

    def cmd(out):
        return [sys.executable, "-m", "diffmd.engine.train", "--split", str(split), "--model", "egnn", "--params",
                json.dumps(PARAMS), "--train-config", json.dumps(cfg), "--seed", "3", "--threads", "1",
                "--out", str(out)]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True, env=env)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_torch(last)["epoch"] >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (tmp_path / "killed" / "model.pt").exists()
    done = subprocess.run(cmd(tmp_path / "killed"), check=True, capture_output=True, text=True, env=env)
    assert "resuming from" in done.stdout
    a, b = load_torch(tmp_path / "full" / "model.pt"), load_torch(tmp_path / "killed" / "model.pt")
    assert a["epoch"] == b["epoch"] and a["val_armse"] == b["val_armse"] and a["val_metric"] == b["val_metric"]
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """``T.main(args)``: its exit status (argument errors raise SystemExit) and its stderr."""
    try:
        rc = T.main(args)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def test_cli_errors_are_one_line_naming_the_argument_file_or_key(tmp_path, capsys):
    """Issue 15 row 12: bad arguments or input give ``error: <file or key>: <what>`` and status 1."""
    split = str(toy_md17(tmp_path))
    base = ["--split", split, "--model", "static", "--out", str(tmp_path / "o")]
    cases = [
        (["--params", "{hidden: 8}"], "error: --params: not valid JSON"),
        (["--train-config", "[1, 2]"], "error: --train-config: expected a JSON object"),
        (["--train-config", '{"epochz": 1}'], "error: --train-config: unknown key 'epochz'"),
        (["--train-config", '{"select_by": "best"}'], "error: --train-config: select_by: 'best' is not one of"),
        (["--seed", "x"], "error: argument --seed: invalid int value"),
    ]
    for extra, expected in cases:
        rc, err = _cli(base + extra, capsys)
        assert rc == 1 and err.startswith(expected) and err.count("\n") == 1, (extra, err)
    rc, err = _cli(["--split", str(tmp_path / "nope.json"), "--model", "static", "--out", str(tmp_path / "o")], capsys)
    assert rc == 1 and err.startswith(f"error: {tmp_path / 'nope.json'}") and err.count("\n") == 1, err
    rc, err = _cli(["--split", split, "--model", "no_such_model", "--out", str(tmp_path / "o")], capsys)
    assert rc == 1 and err.startswith("error: ") and "no_such_model" in err and err.count("\n") == 1, err
    assert T.main(base) == 0


def test_cli_error_through_python_has_no_traceback(tmp_path):
    split = str(toy_md17(tmp_path))
    cmd = [sys.executable, "-m", "diffmd.engine.train", "--split", split, "--model", "static", "--out",
           str(tmp_path / "o"), "--params", "{bad"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: --params:")
