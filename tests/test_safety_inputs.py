"""Broken or hostile inputs named in one line (issue 15, rows 6-8 and the zero-atom xyz).

Row 6: an npz whose header claims absurd sizes, ``dt_fs`` of shape (2,), bad JSON in ``provenance``,
pickled arrays (numpy's "allow_pickle" advice never reaches the user).
Row 7: a trajectory of another molecule copied over the requested one is refused.
Row 8: splits validated on load: stride >= 1, disjoint in-range segments, trajectory checksums.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from diffmd.data.__main__ import main
from diffmd.data.md17 import read_md17_npz
from diffmd.data.pairs import load_split
from diffmd.data.splits import SplitError, c7o2h10_split, md17_split
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, load_trajectory, save_trajectory
from diffmd.data.xyz import parse_xyz

ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
MALONALDEHYDE_Z = np.array([6, 6, 6, 8, 8, 1, 1, 1, 1])


def _positions(n_frames: int, n_atoms: int = 9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(n_atoms, 3))
    t = np.arange(n_frames)[:, None, None]
    return base + 0.05 * np.sin(0.1 * t + rng.uniform(0, 6, size=(1, n_atoms, 3)))


def _save(path: Path, name: str = "ethanol", z=ETHANOL_Z, n_frames: int = 60, dataset: str = "md17",
          seed: int = 0) -> Path:
    save_trajectory(path, Trajectory(_positions(n_frames, len(z), seed), np.asarray(z), 0.5, 500.0, name, dataset,
                                     "xtb"))
    return path


def _rewrite(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite members ``<key>.npy`` of an npz with raw bytes (a forged header, say)."""
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    for key, raw in replace.items():
        members[f"{key}.npy"] = raw
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)


def _npy(value) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=True)
    return buf.getvalue()


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert "allow_pickle" not in msg
    return msg


# ------------------------------------------------------------------------------------------- row 6


def test_forged_header_claiming_billions_of_floats_is_refused_before_allocation(tmp_path):
    path = _save(tmp_path / "ethanol.npz")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (200_000_000, 9, 3)})
    _rewrite(path, {"positions": buf.getvalue() + b"\0" * 800})  # claims 5.4e9 floats, holds 100
    with pytest.raises(TrajectoryFormatError) as info:
        load_trajectory(path)
    assert "key 'positions' claims shape (200000000, 9, 3)" in _one_line(info, path)


def test_forged_header_in_an_upstream_md17_file(tmp_path):
    path = tmp_path / "md17_ethanol.npz"
    np.savez(path, R=_positions(3), z=ETHANOL_Z)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 9, 3)})
    _rewrite(path, {"R": buf.getvalue() + b"\0" * 80})
    with pytest.raises(TrajectoryFormatError) as info:
        read_md17_npz(path, "ethanol", check_frames=False)
    assert "key 'R' claims shape" in _one_line(info, path)


def test_dt_fs_of_shape_two_names_file_and_key(tmp_path):
    path = _save(tmp_path / "ethanol.npz")
    _rewrite(path, {"dt_fs": _npy(np.array([0.5, 0.5]))})
    with pytest.raises(TrajectoryFormatError) as info:
        load_trajectory(path)
    assert "key 'dt_fs' has shape (2,), expected a single value" in _one_line(info, path)


def test_bad_json_in_provenance_names_file_and_key(tmp_path):
    path = _save(tmp_path / "ethanol.npz")
    _rewrite(path, {"provenance": _npy(np.str_("{not json"))})
    with pytest.raises(TrajectoryFormatError) as info:
        load_trajectory(path)
    assert "key 'provenance' is not valid JSON" in _one_line(info, path)


def test_pickled_array_is_refused_without_numpys_pickle_hint(tmp_path):
    path = _save(tmp_path / "ethanol.npz")
    _rewrite(path, {"name": _npy(np.array([{"evil": 1}], dtype=object))})
    with pytest.raises(TrajectoryFormatError) as info:
        load_trajectory(path)
    assert "key 'name' holds Python objects" in _one_line(info, path)


def test_zero_atom_xyz_is_one_line():
    with pytest.raises(TrajectoryFormatError) as info:
        parse_xyz("0\nempty frame\n", "empty.xyz")
    assert str(info.value) == "empty.xyz: line 1: atom count 0, a frame needs at least one atom"


# ------------------------------------------------------------------------------------------- row 7


def test_split_refuses_another_molecules_trajectory(tmp_path, capsys):
    traj = _save(tmp_path / "md17" / "ethanol.npz", name="malonaldehyde", z=MALONALDEHYDE_Z)  # copied over ethanol
    cfg = json.dumps({"n_train": 10, "n_val": 5, "n_test": 5})
    code = main(["split-md17", "--trajectory", str(traj), "--config-json", cfg, "--out", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "holds md17 'malonaldehyde', expected MD17 'ethanol'" in err
    assert not (tmp_path / "s.json").exists()
    with pytest.raises(SplitError, match="expected MD17 'ethanol'"):
        md17_split(traj, 10, 5, 5, molecule="ethanol")


def test_md17_command_refuses_a_file_of_another_molecule(tmp_path, capsys):
    local = tmp_path / "local"
    local.mkdir()
    np.savez(local / "ethanol.npz", R=_positions(3), z=MALONALDEHYDE_Z, E=np.zeros((3, 1)))
    cfg = json.dumps({"download": {"local_dir": str(local)}})
    code = main(["md17", "--molecule", "ethanol", "--source", "local", "--config-json", cfg,
                 "--out", str(tmp_path / "ethanol.npz"), "--lock", str(tmp_path / "lock.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "atoms are C3H4O2 (that is MD17 malonaldehyde), but MD17 ethanol is C2H6O" in err
    assert not (tmp_path / "ethanol.npz").exists()


def test_o2o_split_refuses_an_index_entry_holding_another_isomer(tmp_path):
    z = np.array([6] * 7 + [8] * 2 + [1] * 10)
    files = {f"xtb0{k}": str(_save(tmp_path / f"xtb0{k}.npz", f"xtb0{k}", z, 40, "c7o2h10", k)) for k in (1, 2, 3)}
    files["xtb03"] = files["xtb01"]  # xtb03's entry points at xtb01's file
    with pytest.raises(SplitError, match=r"xtb01.npz: holds c7o2h10 'xtb01', but index.json lists it as c7o2h10 'xtb0"):
        c7o2h10_split({"source": "xtb", "isomers": list(files), "files": files}, {"n_targets": 1})


# ------------------------------------------------------------------------------------------- row 8


@pytest.fixture()
def md17_split_file(tmp_path) -> Path:
    traj = _save(tmp_path / "ethanol.npz", n_frames=60)
    split = md17_split(traj, 20, 10, 10, molecule="ethanol")
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    return path


def _edit(path: Path, **changes) -> Path:
    split = json.loads(path.read_text())
    split.update(changes)
    path.write_text(json.dumps(split))
    return path


def test_valid_split_loads(md17_split_file):
    assert load_split(md17_split_file)["stride"] == 1


@pytest.mark.parametrize("changes, message", [
    ({"test": {"start": 2, "stop": 22}}, "overlap (train, val and test must be disjoint)"),
    ({"stride": 0}, "'stride' must be an integer >= 1, got 0"),
    ({"stride": "1"}, "'stride' must be an integer >= 1"),
    ({"test": {"start": 42, "stop": 70}}, "'test' ends at 70; with stride 1 its last target is past the 60 frames"),
    ({"train": {"start": 0, "stop": 22}}, "'train' starts at frame 0, before the history"),
    ({"val": {"start": 32, "stop": 22}}, "'val' is empty or reversed"),
])
def test_hand_edited_split_is_refused(md17_split_file, changes, message):
    _edit(md17_split_file, **changes)
    with pytest.raises(ValueError) as info:
        load_split(md17_split_file)
    msg = str(info.value)
    assert msg.startswith(f"{md17_split_file}: ") and "\n" not in msg
    assert message in msg, msg


def test_split_over_another_trajectory_is_refused(md17_split_file, tmp_path):
    other = _save(tmp_path / "other.npz", n_frames=60, seed=9)
    _edit(md17_split_file, trajectory=str(other))
    with pytest.raises(ValueError, match=r"split.json: trajectory .*other.npz has SHA-256 .* remake the split"):
        load_split(md17_split_file)


def test_o2o_split_leakage_and_checksums_are_checked(tmp_path):
    z = np.array([6] * 7 + [8] * 2 + [1] * 10)
    files = {f"xtb0{k}": str(_save(tmp_path / f"xtb0{k}.npz", f"xtb0{k}", z, 40, "c7o2h10", k)) for k in (1, 2, 3, 4)}
    split = c7o2h10_split({"source": "xtb", "isomers": list(files), "files": files},
                          {"targets": ["xtb01"], "n_val_isomers": 1})
    assert set(split["trajectory_sha256"]) == set(files)
    path = tmp_path / "c7o2h10.json"
    path.write_text(json.dumps(split))
    assert load_split(path)["targets"] == ["xtb01"]
    path.write_text(json.dumps({**split, "train_isomers": split["train_isomers"] + ["xtb01"]}))
    with pytest.raises(ValueError, match=r"c7o2h10.json: isomer 'xtb01' is in both 'train_isomers' and 'targets'"):
        load_split(path)
    _save(tmp_path / "xtb02.npz", "xtb02", z, 40, "c7o2h10", seed=7)  # regenerated after the split was made
    path.write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"c7o2h10.json: trajectory of 'xtb02' .* has SHA-256"):
        load_split(path)
