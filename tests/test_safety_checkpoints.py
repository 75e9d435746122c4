"""Checkpoints load with ``weights_only=True``: a crafted pickle is refused and runs nothing (issue 15, row 1)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from diffmd.engine.common import load_checkpoint, load_torch, rng_state, save_torch, set_rng_state


class _Payload:
    """Unpickling this would create the marker file (what a hostile ``last.pt`` would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["last.pt", "model.pt"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    torch.save({"epoch": 3, "rng": _Payload(str(marker))}, path)
    loader = load_torch if name == "last.pt" else load_checkpoint
    with pytest.raises(ValueError) as info:
        loader(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: refused") and "\n" not in msg
    assert "system" in msg
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    random.gauss(0, 1), np.random.normal()  # non-trivial cached-gaussian state
    save_torch(tmp_path / "last.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(load_torch(tmp_path / "last.pt")["rng"])
    assert (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist()) == expected


def test_garbage_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint at all\n" * 10)
    with pytest.raises(ValueError, match="corrupt or unreadable checkpoint") as info:
        load_torch(path)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------- issue 27 row 11: corrupt contents


def _ckpt(path, model: str, params: dict, state: dict) -> str:
    torch.save({"model": model, "params": params, "state_dict": state, "epoch": 1}, path)
    return str(path)


def _egnn_state(**params) -> dict:
    from diffmd.registry import build_model

    torch.manual_seed(0)
    return build_model("egnn", params).state_dict()


def _sgdml_state(n_train: int = 3) -> dict:
    """A consistent sGDML extra state for ethanol (9 atoms, one permutation: the identity)."""
    from diffmd.models.forcefield import STATE_FORMAT

    n, d = 9, 36
    g = torch.Generator().manual_seed(0)
    return {"_extra_state": {
        "format": STATE_FORMAT, "dt_fs": 0.5, "temperature_K": 500.0,
        "z": torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1]),
        "R_desc": torch.rand(d, n_train, generator=g, dtype=torch.float64),
        "R_d_desc_alpha": torch.rand(n_train, d, generator=g, dtype=torch.float64),
        "perms": torch.arange(n)[None], "tril_perms_lin": torch.arange(d),
        "alphas_F": torch.rand(n_train * 3 * n, generator=g, dtype=torch.float64), "idxs_train": torch.arange(n_train),
        "sig": 20.0, "lam": 1e-10, "std": 1.0, "c": 0.0, "use_E": False, "solver_name": "analytic",
        "code_version": "1.0.3"}}


def test_a_sound_checkpoint_still_loads(tmp_path):
    path = _ckpt(tmp_path / "model.pt", "egnn", {"hidden": 16, "layers": 2}, _egnn_state(hidden=16, layers=2))
    model, _ = load_checkpoint(path)
    assert model.name == "egnn"
    model, _ = load_checkpoint(_ckpt(tmp_path / "sgdml.pt", "sgdml", {"sigma": 20}, _sgdml_state()))
    assert model.trained


def _sgdml_bad_indices(state):
    state["_extra_state"]["tril_perms_lin"] = state["_extra_state"]["tril_perms_lin"] + 1000
    return state


def _sgdml_negative_dt(state):
    state["_extra_state"]["dt_fs"] = -0.5
    return state


def _nan_weight(state):
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    return state


CORRUPT = [
    ("sgdml indices out of range", "sgdml", {"sigma": 20}, lambda: _sgdml_bad_indices(_sgdml_state()),
     r"state_dict: sgdml: extra state 'tril_perms_lin' holds indices in \[1000, 1035\], outside \[0, 36\)"),
    ("sgdml negative dt_fs", "sgdml", {"sigma": 20}, lambda: _sgdml_negative_dt(_sgdml_state()),
     r"state_dict: sgdml: extra state 'dt_fs' must be a number > 0, got -0\.5"),
    ("oracle negative dt_fs", "xtb_nve", {"dt_fs": -1.0}, dict, r"params: dt_fs must be > 0, got -1"),
    ("egnn state of another size", "egnn", {"hidden": 64, "layers": 2}, lambda: _egnn_state(hidden=16, layers=2),
     r"state_dict\['.*'\] has shape \(\d+, 16\), the params declare \(\d+, 64\)"),
    ("egnn missing weights", "egnn", {"hidden": 16, "layers": 3}, lambda: _egnn_state(hidden=16, layers=2),
     r"state_dict does not fit the model its params declare \(missing .*\.2\."),
    ("NaN weights", "egnn", {"hidden": 16, "layers": 2}, lambda: _nan_weight(_egnn_state(hidden=16, layers=2)),
     r"state_dict\['.*'\] holds NaN or inf"),
    ("params asking for 160 GB", "egnn", {"hidden": 200_000, "layers": 2}, lambda: _egnn_state(hidden=16, layers=2),
     r"its params would allocate a tensor of shape \(.*200000.*\) \(\d+\.\d [MG]B\), but the checkpoint holds .* KB"
     r" of tensors: corrupt or forged params"),
    ("an unknown model", "no_such_model", {}, dict, r"unknown model 'no_such_model'"),
    ("params not a mapping", "egnn", [1], dict, r"'params' must be a mapping, got list"),
    ("a bad declared value", "gmn", {"sticks": "bogus"}, dict, r"params: parameter gmn\.sticks must be one of"),
]


@pytest.mark.parametrize("case, model, params, state, pattern", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_checkpoint_contents_are_one_line_naming_the_file(tmp_path, case, model, params, state, pattern):
    import re

    path = _ckpt(tmp_path / "model.pt", model, params, state())
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and re.search(pattern, msg), msg


def test_the_rollout_cli_reports_a_corrupt_checkpoint_in_one_line(tmp_path, capsys):
    from diffmd.engine import rollout
    from diffmd.engine.cli import run_cli

    path = _ckpt(tmp_path / "model.pt", "egnn", {"hidden": 64, "layers": 2}, _egnn_state(hidden=16, layers=2))
    code = run_cli(lambda: rollout.main(["--split", str(tmp_path / "split.json"), "--checkpoint", path,
                                         "--out", str(tmp_path / "run")]))
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {path}: state_dict[") and err.count("\n") == 1, err


def test_a_damaged_last_pt_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """A resumable last.pt whose model state has other shapes (the training key matches): refused in one line."""
    import json

    from test_engine_pairs import toy_md17

    from diffmd.engine import train as T

    split = toy_md17(tmp_path)
    cfg = {"batch_size": 50, "epochs": 2, "val_every": 1, "val_horizon": 5, "val_frames": 10, "device": "cpu"}
    params = {"hidden": 8, "layers": 1}
    out = tmp_path / "run"
    T.train(str(split), "egnn", params, cfg, seed=1, out=out)
    (out / "model.pt").unlink()
    os.replace(out / "last.done.pt", out / "last.pt")  # as if killed after its last epoch
    last = torch.load(out / "last.pt", weights_only=True)
    last["model_state"] = {k: torch.zeros(3) for k in last["model_state"]}
    torch.save(last, out / "last.pt")
    code = T.main(["--split", str(split), "--model", "egnn", "--params", json.dumps(params),
                   "--train-config", json.dumps(cfg), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith(f"error: {out / 'last.pt'}: model_state: state_dict["), err
