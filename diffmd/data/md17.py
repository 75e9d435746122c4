"""MD17 (Chmiela et al. 2017): upstream ``.npz`` -> canonical trajectory.

Upstream keys: ``R`` (frames, atoms, 3) Å, ``z`` (atoms,), ``E`` (frames, 1) kcal/mol,
``F`` (frames, atoms, 3) kcal/mol/Å, plus ``name``, ``theory``, ``md5``, ``type``. Every MD17
trajectory is a 500 K NVT run with a 0.5 fs time step (PBE+vdW-TS), in time order.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.data.download import (
    DEFAULT_MAX_EXTRACT_BYTES,
    MD17_FILES,
    MD17_FRAMES,
    MD17_LEGACY_FILES,
    ChecksumLock,
    Fetched,
    download_settings,
    fetch,
    find_local,
    use_local,
)
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, npz_headers, read_npz_members

MD17_TEMPERATURE_K = 500.0
MD17_DT_FS = 0.5
MD17_REFERENCE = "Chmiela et al., Sci. Adv. 3, e1603015 (2017); quantum-machine.org/gdml"
#: Composition {atomic number: count} of each MD17 molecule: a file of another molecule (say
#: malonaldehyde copied over ethanol, both nine atoms) is refused instead of labelled wrongly.
MD17_COMPOSITION: dict[str, dict[int, int]] = {
    "aspirin": {6: 9, 1: 8, 8: 4},  # C9H8O4
    "benzene": {6: 6, 1: 6},  # C6H6
    "ethanol": {6: 2, 1: 6, 8: 1},  # C2H6O
    "malonaldehyde": {6: 3, 1: 4, 8: 2},  # C3H4O2
    "naphthalene": {6: 10, 1: 8},  # C10H8
    "salicylic": {6: 7, 1: 6, 8: 3},  # C7H6O3
    "toluene": {6: 7, 1: 8},  # C7H8
    "uracil": {6: 4, 1: 4, 7: 2, 8: 2},  # C4H4N2O2
}


def check_molecule(molecule: str) -> None:
    if molecule not in MD17_FILES:
        raise KeyError(f"unknown MD17 molecule {molecule!r} (known: {', '.join(MD17_FILES)})")


def _formula(counts: dict[int, int]) -> str:
    from diffmd.elements import symbol

    order = sorted(counts, key=lambda z: (z != 6, z != 1, z))  # Hill order: C, H, then by atomic number
    return "".join(f"{symbol(z)}{counts[z] if counts[z] > 1 else ''}" for z in order)


def check_md17_headers(path: str | os.PathLike, molecule: str, check_frames: bool = True) -> int:
    """Keys, shapes and frame count of an upstream MD17 npz from its headers (nothing loaded); returns frames."""
    path = Path(path)
    heads = npz_headers(path)
    missing = [k for k in ("R", "z") if k not in heads]
    if missing:
        raise TrajectoryFormatError(f"{path}: not an MD17 file, missing key(s) {', '.join(missing)}")
    pos, z = heads["R"][0], heads["z"][0]
    if len(pos) != 3 or pos[2] != 3 or z != (pos[1],):
        raise TrajectoryFormatError(f"{path}: key 'R' has shape {pos} and 'z' {z}; inconsistent")
    if heads["R"][1].kind not in "fiu" or heads["z"][1].kind not in "iu":
        raise TrajectoryFormatError(
            f"{path}: keys 'R'/'z' have dtypes {heads['R'][1]}/{heads['z'][1]}, expected numbers")
    if "E" in heads and heads["E"][0] not in ((pos[0],), (pos[0], 1)):
        raise TrajectoryFormatError(f"{path}: key 'E' has shape {heads['E'][0]}, expected ({pos[0]}, 1)")
    if "F" in heads and heads["F"][0] != pos:
        raise TrajectoryFormatError(f"{path}: key 'F' has shape {heads['F'][0]}, expected {pos}")
    expected = MD17_FRAMES.get(molecule)
    if check_frames and expected is not None and pos[0] != expected:
        raise TrajectoryFormatError(f"{path}: {pos[0]} frames in 'R', MD17 {molecule} has {expected}")
    return pos[0]


def check_composition(path: str | os.PathLike, molecule: str, z: np.ndarray) -> None:
    """The atoms in ``z`` must be the requested molecule's (one line naming the file otherwise)."""
    want = MD17_COMPOSITION.get(molecule)
    if want is None:
        return
    values, counts = np.unique(np.asarray(z, dtype=np.int64), return_counts=True)
    got = {int(v): int(c) for v, c in zip(values, counts)}
    if got != want:
        other = next((m for m, c in MD17_COMPOSITION.items() if c == got), None)
        which = f" (that is MD17 {other})" if other else ""
        raise TrajectoryFormatError(
            f"{path}: atoms are {_formula(got)}{which}, but MD17 {molecule} is {_formula(want)}: wrong molecule's file"
        )


def read_md17_npz(path: str | os.PathLike, molecule: str, check_frames: bool = True) -> dict[str, np.ndarray]:
    """Arrays ``R, z, E, F`` of an upstream MD17 file; one-line errors name the file and key."""
    path = Path(path)
    check_md17_headers(path, molecule, check_frames)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: np.asarray(npz[k]) for k in ("R", "z", "E", "F") if k in npz.files}
    except MemoryError:
        raise TrajectoryFormatError(f"{path}: too large to load into memory") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({type(exc).__name__})") from None
    check_composition(path, molecule, data["z"])
    return data


def md17_content_check(molecule: str, check_frames: bool, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES):
    """The check :func:`~diffmd.data.download.fetch` runs before a checksum is recorded: keys, shapes and frames
    from the headers, then every member read to its end (zip's CRC-32 of each: a flipped bit anywhere is
    caught; ``max_bytes`` caps what the members may unpack to), then the atoms must be the molecule's."""

    def check(path: Path) -> None:
        check_md17_headers(path, molecule, check_frames)
        read_npz_members(path, max_bytes)
        try:
            with np.load(path, allow_pickle=False) as npz:
                z = np.asarray(npz["z"])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
            raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({type(exc).__name__})") from None
        check_composition(path, molecule, z)

    return check


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
    pinned = dl.get("sha256")
    cap = int(dl.get("max_extract_bytes", DEFAULT_MAX_EXTRACT_BYTES))
    if source == "local":
        if not local_dir:
            raise KeyError("data.md17.download.local_dir: required with data.md17.source: local")
        path = find_local(local_dir, (name, *MD17_LEGACY_FILES[molecule], f"{molecule}.npz"), "data.md17")
        return use_local(path, lock, sha256=pinned, check=md17_content_check(molecule, path.name == name, cap))
    if local_dir and (Path(local_dir) / name).is_file():
        return use_local(Path(local_dir) / name, lock, sha256=pinned, check=md17_content_check(molecule, True, cap))
    url_base = str(dl.get("url_base", "http://quantum-machine.org/gdml/data/npz")).rstrip("/")
    return fetch(f"{url_base}/{name}", Path(cache_dir) / name, lock=lock, config_key="data.md17", sha256=pinned,
                 check=md17_content_check(molecule, True, cap), **download_settings(dl))
