"""Split invariants: S2L ranges and O2O selection by the constant prediction's ARMSE."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.data.splits import SplitError, c7o2h10_split, constant_prediction_armse, md17_split
from diffmd.data.trajectory import Trajectory, save_trajectory


def _traj(path, n_frames: int, n_atoms: int = 5, amplitude: float = 0.1, name: str = "ethanol",
          dataset: str = "md17", seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(n_atoms, 3))
    t = np.arange(n_frames)[:, None, None]
    pos = base + amplitude * np.sin(0.05 * t + rng.uniform(0, 6, size=(1, n_atoms, 3)))
    save_trajectory(path, Trajectory(positions=pos, atomic_numbers=np.full(n_atoms, 6), dt_fs=0.5,
                                     temperature_K=500.0, name=name, dataset=dataset, source="xtb"))
    return str(path)


@pytest.mark.parametrize("stride", [1, 3])
def test_md17_split_invariants(tmp_path, stride):
    n_train, n_val, n_test = 50, 20, 20
    n_frames = 2 * stride + n_train + n_val + n_test + stride
    split = md17_split(_traj(tmp_path / "e.npz", n_frames), n_train, n_val, n_test, stride)
    tr, va, te = split["train"], split["val"], split["test"]
    assert tr["start"] == 2 * stride  # history for v(t) = x(t) - x(t-k) and a(t-k) exists
    assert (tr["stop"] - tr["start"], va["stop"] - va["start"], te["stop"] - te["start"]) == (n_train, n_val, n_test)
    assert tr["stop"] == va["start"] and va["stop"] == te["start"]  # time order, no overlap
    assert te["stop"] - 1 + stride == n_frames - 1  # the last target is the last frame, not beyond
    assert split["n_frames"] == n_frames and split["stride"] == stride and len(split["trajectory_sha256"]) == 64


def test_md17_split_too_short_names_file_and_numbers(tmp_path):
    path = _traj(tmp_path / "short.npz", 90)
    with pytest.raises(SplitError, match=r"short.npz: 90 frames, the split needs 93"):
        md17_split(path, 50, 20, 20, 1)


def test_constant_prediction_armse_is_rigid_motion_invariant():
    rng = np.random.default_rng(3)
    pos = rng.normal(size=(40, 6, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = pos @ q.T + 2.0
    a = constant_prediction_armse(pos, 2, 30, 1)
    assert a > 0.5 and a == pytest.approx(constant_prediction_armse(moved, 2, 30, 1), rel=1e-10)
    still = np.repeat(pos[:1], 40, axis=0) @ q.T  # a rigidly rotating copy of one frame: zero error
    assert constant_prediction_armse(still, 2, 30, 1) == pytest.approx(0.0, abs=1e-10)


def _index(tmp_path, amplitudes):
    files = {}
    for k, amp in enumerate(amplitudes, start=1):
        name = f"xtb{k:02d}"
        files[name] = _traj(tmp_path / f"{name}.npz", 60, 19, amp, name, "c7o2h10", seed=k)
    return {"source": "xtb", "isomers": list(files), "files": files}


def test_o2o_targets_are_the_largest_constant_prediction_armse(tmp_path):
    index = _index(tmp_path, [0.05, 0.4, 0.1, 0.3, 0.02, 0.2])
    split = c7o2h10_split(index, {"targets": [], "n_targets": 2, "n_val_isomers": 1, "stride": 1})
    armse = split["constant_prediction_armse"]
    assert split["selection"] == "constant_prediction"
    assert split["targets"] == sorted(armse, key=armse.get, reverse=True)[:2] == ["xtb02", "xtb04"]
    everyone = split["train_isomers"] + split["val_isomers"] + split["targets"]
    assert sorted(everyone) == sorted(index["files"]) and len(set(everyone)) == 6
    assert len(split["val_isomers"]) == 1 and len(split["train_isomers"]) == 3
    assert split["frames"]["xtb01"] == {"start": 2, "stop": 59}


def test_o2o_config_targets_and_errors(tmp_path):
    index = _index(tmp_path, [0.05, 0.4, 0.1, 0.3])
    split = c7o2h10_split(index, {"targets": ["xtb01"], "n_val_isomers": 1, "stride": 2, "max_frames": 40})
    assert split["selection"] == "config" and split["targets"] == ["xtb01"]
    assert split["frames"]["xtb02"] == {"start": 4, "stop": 38}
    # history for the experiment's largest stride (e.g. Score Dynamics k = 5): every model starts at frame 10
    wide = c7o2h10_split(index, {"targets": ["xtb01"], "n_val_isomers": 1, "stride": 1, "history_frames": 10})
    assert all(f["start"] == 10 for f in wide["frames"].values())
    with pytest.raises(SplitError, match="splits.c7o2h10.targets: iso1004 not in"):
        c7o2h10_split(index, {"targets": ["iso1004"]})
    with pytest.raises(SplitError, match="leave no training isomer"):
        c7o2h10_split(index, {"targets": [], "n_targets": 2, "n_val_isomers": 2})


@pytest.mark.parametrize("overlay", [None, "config/quick.yaml"])
def test_config_xtb_frames_fit_the_md17_split(overlay):
    """A simulated MD17 trajectory must be long enough for the configured S2L split."""
    from pathlib import Path

    import yaml

    from diffmd.config import deep_update

    root = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    if overlay:
        cfg = deep_update(cfg, yaml.safe_load((root / overlay).read_text()))
    s, x = cfg["splits"]["md17"], cfg["data"]["md17"]["xtb"]
    k = int(s.get("stride", 1))
    assert x["n_frames"] >= 2 * k + s["n_train"] + s["n_val"] + s["n_test"] + k
