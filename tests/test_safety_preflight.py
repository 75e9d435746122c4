"""Every data file a job would refuse is refused at parse time, before Snakemake deletes anything (issue 27,
rows 3, 4 and the hand-edited split of row 5).

The plan checks the data of a finished run while the workflow is parsed (diffmd/data/preflight.py): a
trajectory of another molecule, with a NaN frame or a flipped bit, an implausible one, a hand-edited or
re-pointed split, a split without its trajectory's checksum, a C7O2H10 index or isomer that was tampered
with. Each is one line naming the file; verdicts are cached on (size, mtime, ctime, inode), so a changed file
is read again even when its mtime was set back. The end-to-end test runs Snakemake itself on a finished run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffmd.config import deep_update
from diffmd.data.pairs import load_split, split_segments
from diffmd.data.splits import c7o2h10_split, md17_split
from diffmd.data.trajectory import Trajectory, load_trajectory, save_trajectory
from diffmd.io import write_json
from diffmd.plan import Plan
from diffmd.provenance import sha256_file

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
XTB_ETHANOL = DATA / "xtb_ethanol_500K_100frames.npz"  # real GFN2-xTB frames, 500 K, 0.5 fs
MALONALDEHYDE_Z = np.array([6, 6, 6, 8, 8, 1, 1, 1, 1])
C7H10O2_Z = np.array([6] * 7 + [8] * 2 + [1] * 10)
TRAJ, SPLIT = "data/md17/ethanol.npz", "data/splits/md17/ethanol.json"

QUICK = deep_update(yaml.safe_load((REPO / "config.yaml").read_text()),
                    yaml.safe_load((REPO / "config/quick.yaml").read_text()))
CONFIG = deep_update(QUICK, {"datasets": ["md17"], "splits": {"md17": {"n_train": 40, "n_val": 20, "n_test": 20}}})
CONFIG["models"] = ["static", "constant_velocity"]


def finished_md17(root: Path) -> None:
    """data/ of a finished MD17 run: the trajectory and the split the workflow made of it."""
    (root / "data/md17").mkdir(parents=True, exist_ok=True)
    shutil.copy(XTB_ETHANOL, root / TRAJ)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_json(SPLIT, md17_split(TRAJ, 40, 20, 20, molecule="ethanol", checks={}))
    finally:
        os.chdir(cwd)
    old = 1_700_000_000
    os.utime(root / TRAJ, (old, old))  # the trajectory older than its split, as after a run
    os.utime(root / SPLIT, (old + 10, old + 10))


def _plan(root: Path, config: dict | None = None) -> Plan:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return Plan(copy.deepcopy(config or CONFIG))
    finally:
        os.chdir(cwd)


def _refused(root: Path, pattern: str, config: dict | None = None) -> str:
    with pytest.raises(ValueError) as info:
        _plan(root, config)
    msg = str(info.value)
    assert "\n" not in msg and "nothing was deleted" in msg, msg
    assert re.search(pattern, msg), msg
    return msg


def _rewrite_trajectory(path: Path, keep_mtime: bool = True, **changes) -> None:
    """Replace arrays of a trajectory file as a hand edit would (no validation), keeping its mtime."""
    st = path.stat()
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update({k: np.str_(v) if isinstance(v, str) else np.asarray(v) for k, v in changes.items()})
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _flip_bit(path: Path) -> None:
    """One bit flipped in the compressed positions (zip CRC bad; the npz headers still read), mtime kept."""
    st = path.stat()
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("positions.npy")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    raw[at] ^= 0x20
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# ------------------------------------------------------------------------------------------- row 3


def test_a_finished_run_passes_and_its_verdicts_are_cached(tmp_path, monkeypatch):
    finished_md17(tmp_path)
    _plan(tmp_path)
    cache = json.loads((tmp_path / "data/.verified.json").read_text())
    assert cache["files"][TRAJ]["sha256"] == sha256_file(tmp_path / TRAJ)
    import diffmd.data.preflight as pre

    monkeypatch.setattr(pre, "load_trajectory", lambda *a, **k: pytest.fail("re-read an unchanged file"))
    _plan(tmp_path)  # the second parse trusts the cached verdict of the untouched file


POISONS = {
    "another molecule": (lambda p: _rewrite_trajectory(p, name="malonaldehyde", atomic_numbers=MALONALDEHYDE_Z),
                         r"data/md17/ethanol\.npz: holds md17 'malonaldehyde', expected MD17 'ethanol'"),
    "another molecule's atoms": (lambda p: _rewrite_trajectory(p, atomic_numbers=MALONALDEHYDE_Z),
                                 r"atoms are C3H4O2 \(that is MD17 malonaldehyde\), but MD17 ethanol is C2H6O"),
    "a NaN frame": (lambda p: _rewrite_trajectory(p, positions=np.where(np.arange(100)[:, None, None] == 57, np.nan,
                                                                        load_trajectory(p).positions)),
                    r"data/md17/ethanol\.npz: 'positions' holds NaN/inf \(first at frame 57\)"),
    "a flipped bit": (_flip_bit, r"data/md17/ethanol\.npz: corrupt or truncated npz \((BadZipFile|error)"),
    "an implausible frame": (lambda p: _rewrite_trajectory(p, positions=load_trajectory(p).positions
                                                           + np.where(np.arange(100)[:, None, None] == 30, 1e6, 0.0)),
                             r"moves .* Å between frames (29 and 30|30 and 31) .*checks\.max_speed_A_per_fs"),
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_trajectory_is_refused_at_parse_time_even_with_its_mtime_set_back(tmp_path, poison):
    finished_md17(tmp_path)
    _plan(tmp_path)  # verified and cached
    apply, pattern = POISONS[poison]
    apply(tmp_path / TRAJ)  # the mtime is set back: only the cache key's ctime and inode see the change
    _refused(tmp_path, pattern)
    assert (tmp_path / SPLIT).exists()


def test_a_changed_trajectory_older_than_its_split_is_refused_a_newer_one_is_remade(tmp_path):
    finished_md17(tmp_path)
    traj = load_trajectory(tmp_path / TRAJ)
    _rewrite_trajectory(tmp_path / TRAJ, positions=traj.positions[::-1].copy())  # sound, but not the split's
    _refused(tmp_path, r"data/splits/md17/ethanol\.json: made from data/md17/ethanol\.npz with SHA-256 .* the"
                       r" split would not be remade")
    os.utime(tmp_path / TRAJ)  # newer than the split: Snakemake remakes the split from it
    _plan(tmp_path)


# ------------------------------------------------------------------------------------------- row 4


def _other_molecule(root: Path) -> Path:
    other = root / "data/md17/malonaldehyde.npz"
    traj = load_trajectory(XTB_ETHANOL)
    save_trajectory(other, Trajectory(traj.positions, MALONALDEHYDE_Z, 0.5, 500.0, "malonaldehyde", "md17", "xtb"))
    return other


def test_a_split_without_its_checksum_pointing_at_another_molecule_is_refused(tmp_path):
    finished_md17(tmp_path)
    other = _other_molecule(tmp_path)
    split = json.loads((tmp_path / SPLIT).read_text())
    split["trajectory"] = "data/md17/malonaldehyde.npz"
    del split["trajectory_sha256"]
    (tmp_path / SPLIT).write_text(json.dumps(split))
    _refused(tmp_path, r"ethanol\.json: missing key\(s\) trajectory_sha256: a split without its trajectory's checksum")
    with pytest.raises(ValueError, match="missing key\\(s\\) trajectory_sha256"):  # the job refuses it too
        load_split(tmp_path / SPLIT)
    split["trajectory_sha256"] = sha256_file(other)  # the checksum forged to match
    (tmp_path / SPLIT).write_text(json.dumps(split))
    _refused(tmp_path, r"points at data/md17/malonaldehyde\.npz for 'ethanol'; the workflow's file of 'ethanol' is"
                       r" data/md17/ethanol\.npz")
    split["trajectory"] = str(other)
    (tmp_path / SPLIT).write_text(json.dumps(split))
    loaded = load_split(tmp_path / SPLIT)
    with pytest.raises(ValueError, match=r"is a split of MD17 'ethanol', but .*malonaldehyde\.npz: holds md17"
                                         r" 'malonaldehyde', expected MD17 'ethanol'"):
        split_segments(loaded, "train")  # the job: the trajectory's molecule must be the split's


# ------------------------------------------------------------------------------------------- row 5


@pytest.mark.parametrize("changes, pattern", [
    ({"val": {"start": 30, "stop": 50}}, r"'train' .* and 'val' .* overlap"),
    ({"stride": 0}, r"'stride' must be an integer >= 1, got 0"),
    ({"molecule": "aspirin"}, r"is a split of 'aspirin', expected MD17 'ethanol'"),
    ({"trajectory_sha256": "abc"}, r"must be 64 hex digits"),
])
def test_a_hand_edited_split_is_refused_at_parse_time(tmp_path, changes, pattern):
    finished_md17(tmp_path)
    split = json.loads((tmp_path / SPLIT).read_text())
    (tmp_path / SPLIT).write_text(json.dumps({**split, **changes}))
    msg = _refused(tmp_path, pattern)
    assert msg.startswith(f"{SPLIT}: ") and "delete it to remake it" in msg


# ------------------------------------------------------------------------------------------- C7O2H10


def _isomer(root: Path, name: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(19, 3))
    t = np.arange(60)[:, None, None]
    pos = base + 0.03 * np.sin(2 * np.pi * t / rng.uniform(10, 30, size=(1, 19, 3)) + rng.uniform(0, 6, (1, 19, 3)))
    rel = f"data/c7o2h10/{name}.npz"
    save_trajectory(root / rel, Trajectory(pos, C7H10O2_Z, 1.0, 100.0, name, "c7o2h10", "download"))
    return rel


C7_CONFIG = deep_update(CONFIG, {"datasets": ["c7o2h10"], "data": {"c7o2h10": {"source": "download"}},
                                 "splits": {"c7o2h10": {"targets": ["iso1004"], "n_val_isomers": 1}}})


def finished_c7o2h10(root: Path) -> dict[str, str]:
    files = {name: _isomer(root, name, k) for k, name in enumerate(("iso1004", "iso1007", "iso2126", "iso3001"))}
    index = {"source": "download", "isomers": list(files), "files": files}
    write_json(root / "data/c7o2h10/index.json", index)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_json("data/splits/c7o2h10.json", c7o2h10_split(index, {"targets": ["iso1004"], "n_val_isomers": 1},
                                                              "data/c7o2h10/index.json", checks={}))
    finally:
        os.chdir(cwd)
    return files


def test_c7o2h10_isomers_index_and_split_are_checked(tmp_path):
    files = finished_c7o2h10(tmp_path)
    _plan(tmp_path, C7_CONFIG)
    # an isomer of the index overwritten by another's file
    shutil.copy(tmp_path / files["iso1007"], tmp_path / files["iso2126"])
    _refused(tmp_path, r"data/c7o2h10/iso2126\.npz: holds c7o2h10 'iso1007', expected c7o2h10 'iso2126'", C7_CONFIG)
    _isomer(tmp_path, "iso2126", 2)
    # an isomer's file missing (the index lists it; nothing would remake it)
    (tmp_path / files["iso3001"]).rename(tmp_path / "away.npz")
    _refused(tmp_path, r"index\.json: lists isomer 'iso3001' at data/c7o2h10/iso3001\.npz, which is missing",
             C7_CONFIG)
    (tmp_path / "away.npz").rename(tmp_path / files["iso3001"])
    # the index edited to list one file twice
    index = json.loads((tmp_path / "data/c7o2h10/index.json").read_text())
    bad = {**index, "files": {**index["files"], "iso2126": "data/c7o2h10/iso1007.npz"}}
    (tmp_path / "data/c7o2h10/index.json").write_text(json.dumps(bad))
    _refused(tmp_path, r"isomer 'iso2126' at 'data/c7o2h10/iso1007\.npz'; the workflow keeps isomer files as",
             C7_CONFIG)


def test_duplicate_isomers_are_refused_at_parse_time(tmp_path):
    files = finished_c7o2h10(tmp_path)
    traj = load_trajectory(tmp_path / files["iso1004"])
    traj.name = "iso1007"
    save_trajectory(tmp_path / files["iso1007"], traj)  # iso1007 holds iso1004's frames under its own name
    _refused(tmp_path, r"data/c7o2h10/iso1007\.npz: the same frames as data/c7o2h10/iso1004\.npz: duplicate isomers",
             C7_CONFIG)


# ------------------------------------------------------------------------------------------- end to end


def _snakemake(wd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "tiny.yaml", *args],
                          cwd=wd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_snakemake_refuses_a_poisoned_rerun_and_deletes_nothing(tmp_path):
    """A finished run (data, split, trained models, rollouts); then each poison: the dry run and the real run stop
    at parse time with one line naming the file, and every finished file is still there, unchanged."""
    from workflow_copy import make_workdir

    cfg = copy.deepcopy(CONFIG)
    cfg["data"]["md17"]["xtb"] = {"n_frames": 100}
    wd = make_workdir(tmp_path / "wf", cfg)
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    finished_md17(wd)
    finished = [TRAJ, SPLIT]
    for model in cfg["models"]:
        for name in ("model.pt", "train_log.csv", "rollout.npz", "armse.json"):
            path = wd / f"results/md17/ethanol/{model}/seed1/{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"finished {name}\n")
            finished.append(str(path.relative_to(wd)))
    before = {f: (wd / f).read_bytes() for f in finished}  # (a finished run's files pass: the unit tests above)
    for poison in ("another molecule", "a NaN frame", "a flipped bit"):
        shutil.copy(XTB_ETHANOL, wd / TRAJ)
        POISONS[poison][0](wd / TRAJ)
        os.utime(wd / TRAJ)  # newer than everything: Snakemake would rerun the split and everything after it
        before[TRAJ] = (wd / TRAJ).read_bytes()
        for args in (("-n",), ()) if poison == "another molecule" else (("-n",),):  # the real run: once
            proc = _snakemake(wd, *args, "--", "results/md17/ethanol/static/seed1/armse.json")
            assert proc.returncode != 0, proc.stdout[-2000:]
            out = proc.stdout + proc.stderr
            lines = [line for line in out.splitlines() if "nothing was deleted" in line]
            assert len(lines) == 1 and re.search(POISONS[poison][1], lines[0]), out[-3000:]
            assert "WorkflowError" in out and "Traceback" not in out, out[-3000:]
            assert {f: (wd / f).read_bytes() for f in finished} == before, f"{poison}: a finished file changed"
