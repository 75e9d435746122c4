"""Trajectories that parse but are not physics are refused, one line each (issue 27, row 8).

Frozen frames, duplicated frames (every other velocity 0), one frame moved by 1e6 Å, two hydrogens swapped
halfway, a negative temperature, a wrong dt_fs: each is refused by the split command with one line naming
the file and the config key (``data.<dataset>.checks``), and each check can be relaxed or switched off.
A real simulated trajectory (the quick profile's GFN2-xTB ethanol, copied into tests/data) passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from diffmd.data.__main__ import main
from diffmd.data.plausibility import check_plausible, kinetic_temperatures
from diffmd.data.splits import md17_split
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, load_trajectory, save_trajectory
from diffmd.testing import ETHANOL_X, ETHANOL_Z

DATA = Path(__file__).parent / "data"


def _thermal(n_frames: int = 200, seed: int = 0) -> np.ndarray:
    """Ethanol's first MD17 frame, every atom oscillating with 0.02-0.06 Å amplitudes (a few hundred K)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None, None]
    amp = rng.uniform(0.02, 0.06, size=(1, 9, 3))
    period = rng.uniform(12, 40, size=(1, 9, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 9, 3))
    return ETHANOL_X[None] + amp * np.sin(2 * np.pi * t / period + phase)


def _save(path: Path, positions: np.ndarray, temperature_K: float = 500.0, dt_fs: float = 0.5) -> Path:
    save_trajectory(path, Trajectory(positions, ETHANOL_Z, dt_fs, temperature_K, "ethanol", "md17", "xtb"))
    return path


def _split(tmp_path: Path, traj: Path, checks: dict | None = None) -> tuple[int, str]:
    cfg = {"n_train": 100, "n_val": 40, "n_test": 40}
    if checks is not None:
        cfg["checks"] = checks
    out = tmp_path / "split.json"
    code = main(["split-md17", "--trajectory", str(traj), "--config-json", json.dumps(cfg), "--out", str(out)])
    return code, str(out)


def _frozen(x):
    return np.repeat(x[:1], len(x), axis=0)


def _duplicated(x):
    return np.repeat(x[::2], 2, axis=0)[: len(x)]  # every frame twice: every other velocity 0


def _far_frame(x):
    x = x.copy()
    x[101, 3, 0] += 1e6
    return x


def _swapped(x):
    x = x.copy()
    x[100:, [3, 4]] = x[100:, [4, 3]]  # two hydrogens exchanged halfway
    return x


CASES = [
    ("frozen", _frozen, {}, r"199 of 200 frames repeat the frame before .*frozen: every frame is the same.*"
                            r"data\.md17\.checks\.max_repeated_frames is 0", "max_repeated_frames"),
    ("duplicated", _duplicated, {}, r"100 of 200 frames repeat the frame before \(first: frames 0 and 1;"
                                    r" frozen or duplicated frames\)", "max_repeated_frames"),
    ("far frame", _far_frame, {}, r"atom 3 \(H\) moves 1e\+06 Å between frames 10[01] and 10[12] \(2e\+06 Å/fs"
                                  r" at dt_fs 0\.5\), more than data\.md17\.checks\.max_speed_A_per_fs = 1",
     "max_speed_A_per_fs"),
    ("swapped", _swapped, {}, r"atom order changes between frames 99 and 100: atom 3 \(H\) jumps .* onto the place of"
                              r" atom 4 .*data\.md17\.checks\.atom_order", "atom_order"),
    ("negative temperature", lambda x: x, {"temperature_K": -5.0},
     r"temperature_K -5 K is outside \[1, 5000\] K \(data\.md17\.checks\.temperature_K\)", "temperature_K"),
    ("dt_fs in attoseconds", lambda x: x, {"dt_fs": 500.0},
     r"kinetic temperature of the frames .* K \(median; dt_fs 500\) is outside \[1, 5000\] K", "temperature_K"),
]


@pytest.mark.parametrize("name, poison, meta, message, key", CASES, ids=[c[0] for c in CASES])
def test_implausible_trajectory_is_refused_in_one_line_and_the_check_can_be_switched_off(
        tmp_path, capsys, name, poison, meta, message, key):
    traj = _save(tmp_path / "ethanol.npz", poison(_thermal()), **meta)
    load_trajectory(traj)  # it parses: only the physics is wrong
    code, out = _split(tmp_path, traj)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"error: {traj}: "), err
    assert re.search(message, err), err
    assert not Path(out).exists()
    off = {key: None} if key != "atom_order" else {key: False}
    if name == "swapped":  # the swap is also a 1.6 Å step in half a femtosecond: relax that bound too
        off["max_speed_A_per_fs"] = None
    if name == "frozen":  # frozen frames are also at 0 K
        off["temperature_K"] = None
    code, _ = _split(tmp_path, traj, off)
    assert code == 0, capsys.readouterr().err
    assert Path(out).exists()


def test_a_thermal_trajectory_and_a_real_simulated_one_pass():
    check_plausible(_thermal(), ETHANOL_Z, 0.5, 500.0, {}, "synthetic")
    real = load_trajectory(DATA / "xtb_ethanol_500K_100frames.npz")  # GFN2-xTB, 500 K, 0.5 fs (quick profile)
    check_plausible(real.positions, real.atomic_numbers, real.dt_fs, real.temperature_K, {}, "xtb")
    temps = kinetic_temperatures(real.positions, real.atomic_numbers, real.dt_fs)
    assert 200 < np.median(temps) < 800  # the thermostat's 500 K, seen through 100 frames of 9 atoms
    md17_split(DATA / "xtb_ethanol_500K_100frames.npz", 40, 20, 20, molecule="ethanol", checks={})


def test_a_bound_from_the_config_is_used():
    x = _thermal()
    x[50, 0, 0] += 0.4  # a 0.4 Å step in 0.5 fs: 0.8 Å/fs, under the default bound of 1
    check_plausible(x, ETHANOL_Z, 0.5, 500.0, {"temperature_K": None}, "f")
    with pytest.raises(TrajectoryFormatError, match=r"f: atom 0 \(C\) moves 0\.4\d* Å .*max_speed_A_per_fs = 0\.5"):
        check_plausible(x, ETHANOL_Z, 0.5, 500.0, {"max_speed_A_per_fs": 0.5, "temperature_K": None}, "f",
                        "data.md17.checks")
