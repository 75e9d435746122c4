"""MD17 (Chmiela et al. 2017): upstream ``.npz`` -> canonical trajectory.

Upstream keys: ``R`` (frames, atoms, 3) Å, ``z`` (atoms,), ``E`` (frames, 1) kcal/mol,
``F`` (frames, atoms, 3) kcal/mol/Å, plus ``name``, ``theory``, ``md5``, ``type``. Every MD17
trajectory is a 500 K NVT run with a 0.5 fs time step (PBE+vdW-TS), in time order.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.data.download import (
    MD17_FILES,
    MD17_FRAMES,
    MD17_LEGACY_FILES,
    ChecksumLock,
    Fetched,
    fetch,
    find_local,
    use_local,
)
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError

MD17_TEMPERATURE_K = 500.0
MD17_DT_FS = 0.5
MD17_REFERENCE = "Chmiela et al., Sci. Adv. 3, e1603015 (2017); quantum-machine.org/gdml"


def check_molecule(molecule: str) -> None:
    if molecule not in MD17_FILES:
        raise KeyError(f"unknown MD17 molecule {molecule!r} (known: {', '.join(MD17_FILES)})")


def read_md17_npz(path: str | os.PathLike, molecule: str, check_frames: bool = True) -> dict[str, np.ndarray]:
    """Arrays ``R, z, E, F`` of an upstream MD17 file; one-line errors name the file and key."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("R", "z") if k not in npz.files]
            if missing:
                raise TrajectoryFormatError(f"{path}: not an MD17 file, missing key(s) {', '.join(missing)}")
            data = {k: np.asarray(npz[k]) for k in ("R", "z", "E", "F") if k in npz.files}
    except TrajectoryFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({type(exc).__name__}: {exc})") from None
    pos, z = data["R"], data["z"]
    if pos.ndim != 3 or pos.shape[2] != 3 or z.shape != (pos.shape[1],):
        raise TrajectoryFormatError(f"{path}: key 'R' has shape {pos.shape} and 'z' {z.shape}; inconsistent")
    expected = MD17_FRAMES.get(molecule)
    if check_frames and expected is not None and pos.shape[0] != expected:
        raise TrajectoryFormatError(f"{path}: {pos.shape[0]} frames in 'R', MD17 {molecule} has {expected}")
    return data


def md17_to_trajectory(path: str | os.PathLike, molecule: str, source: str, provenance: dict[str, Any],
                       check_frames: bool = True) -> Trajectory:
    """Canonical trajectory (Å, kcal/mol, 500 K, 0.5 fs) from an upstream MD17 npz."""
    data = read_md17_npz(path, molecule, check_frames)
    n = data["R"].shape[0]
    energies = data.get("E")
    return Trajectory(
        positions=data["R"].astype(np.float64),
        atomic_numbers=data["z"].astype(np.int64),
        dt_fs=MD17_DT_FS,
        temperature_K=MD17_TEMPERATURE_K,
        name=molecule,
        dataset="md17",
        source=source,
        energies=None if energies is None else energies.reshape(n).astype(np.float64),
        forces=data.get("F"),
        provenance={"reference": MD17_REFERENCE, "units": "positions Å, energies kcal/mol, forces kcal/mol/Å",
                    **provenance},
    )


def obtain_md17(molecule: str, source: str, cfg: dict[str, Any], cache_dir: str | os.PathLike,
                lock_path: str | os.PathLike) -> Fetched:
    """The verified upstream file for ``molecule`` (``source`` ``download`` or ``local``).

    ``cfg`` is the config section ``data.md17``. ``download`` uses ``download.local_dir`` first
    when the file is there, then the cache, then ``download.url_base``; ``local`` never touches
    the network and needs ``download.local_dir``.
    """
    check_molecule(molecule)
    dl = cfg.get("download") or {}
    lock = ChecksumLock(lock_path)
    name = MD17_FILES[molecule]
    local_dir = dl.get("local_dir")
    if source == "local":
        if not local_dir:
            raise KeyError("data.md17.download.local_dir: required with data.md17.source: local")
        return use_local(find_local(local_dir, (name, *MD17_LEGACY_FILES[molecule], f"{molecule}.npz"),
                                    "data.md17"), lock)
    if local_dir and (Path(local_dir) / name).is_file():
        return use_local(Path(local_dir) / name, lock)
    url_base = str(dl.get("url_base", "http://quantum-machine.org/gdml/data/npz")).rstrip("/")
    return fetch(f"{url_base}/{name}", Path(cache_dir) / name, lock=lock, retries=int(dl.get("retries", 5)),
                 timeout_s=float(dl.get("timeout_s", 60)), config_key="data.md17")
