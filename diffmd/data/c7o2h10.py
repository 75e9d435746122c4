"""C7O2H10 MD set (Brockherde et al., Nat. Commun. 8, 872 (2017)): archive -> one trajectory per isomer.

``c7o2h10_md.tar.gz`` (quantum-machine.org) unpacks to ``c7o2h10_md/<ID>.xyz`` (19 atoms, about
5000 consecutive frames, a comment line per frame, ``Symbol x y z`` in Å) and
``c7o2h10_md/<ID>.energy.dat`` (a header line, then one energy per frame). Each isomer becomes
``data/c7o2h10/iso<ID>.npz``; ``index.json`` lists them.

Isomer names: the DiffMD paper's ``ISO_1004`` is taken to be ``1004.xyz`` (``iso1004``). That is the
most likely reading (the archive names its files by these four-digit IDs and the paper prints
them with an ``ISO_`` prefix), but it cannot be checked offline; the provenance of every isomer
records the file it came from so the mapping can be audited once the archive is at hand.

Temperature: the DiffMD paper states 100 K, the quantum-machine.org description of the archive
states 500 K; the trajectory stores the paper's 100 K and the provenance records both.

Energies: ``energy.dat`` does not state its unit. Total PBE energies of C7H10O2 are about -460
hartree (-12,500 eV, -289,000 kcal/mol), so the unit is inferred from the magnitude and the
values converted to kcal/mol; if the magnitude matches no unit (e.g. atomization energies) the
energies are stored as unknown (NaN) and the raw range is kept in the provenance.

ISO17 (``iso17.tar.gz``, Schütt et al. 2017, 129 isomers in ASE databases) is a different data set
and is not supported: its databases are organised for energy/force learning (reference and test
subsets drawn from the trajectories) and nothing documents that the row order within an isomer is
the time order, which O2O rollouts need; frame pairs built from it could not be trusted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from diffmd.data.download import (
    C7O2H10_ARCHIVE,
    DEFAULT_MAX_EXTRACT_BYTES,
    DEFAULT_MAX_MEMBERS,
    ChecksumLock,
    ContentError,
    DiskFullError,
    DownloadError,
    Fetched,
    TarEntry,
    check_tar_end,
    disk_full,
    download_settings,
    fetch,
    link_size,
    open_tar_stream,
    scan_gzip_tar,
    use_local,
)
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, save_trajectory
from diffmd.data.xyz import read_xyz
from diffmd.io import write_json
from diffmd.units import EV_IN_KCAL_MOL, HARTREE_IN_KCAL_MOL

C7O2H10_DT_FS = 1.0
C7O2H10_TEMPERATURE_K = 100.0  # DiffMD paper; the archive's description says 500 K (see docstring)
C7O2H10_REFERENCE = "Brockherde et al., Nat. Commun. 8, 872 (2017); quantum-machine.org/datasets"
C7O2H10_URL = "http://quantum-machine.org/data/c7o2h10_md.tar.gz"
_ID = re.compile(r"^(\d+)\.xyz$")
_KCAL_PER = {"hartree": HARTREE_IN_KCAL_MOL, "eV": EV_IN_KCAL_MOL, "kcal/mol": 1.0}  # ase.units (diffmd.units)
# |total energy| windows for C7H10O2 (about 460 Eh); units outside every window are left unknown.
_ENERGY_WINDOWS = {"hartree": (300.0, 700.0), "eV": (8e3, 2e4), "kcal/mol": (2e5, 4.5e5)}


def isomer_name(file_id: str) -> str:
    """``1004`` -> ``iso1004`` (the paper's ISO_1004)."""
    return f"iso{file_id}"


def read_energy_dat(path: Path, n_frames: int) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Energies in kcal/mol (or None when the unit cannot be inferred) and a provenance note."""
    if not path.exists():
        return None, {"energies": f"{path.name} missing"}
    values = []
    for line_no, line in enumerate(path.read_text().splitlines()[1:], start=2):
        if line.strip():
            try:
                values.append(float(line.split()[0].replace("*^", "e")))
            except ValueError:
                raise TrajectoryFormatError(f"{path}: line {line_no}: not a number: {line[:40]!r}") from None
    energies = np.asarray(values, dtype=np.float64)
    if energies.shape[0] != n_frames:
        raise TrajectoryFormatError(f"{path}: {energies.shape[0]} energies for {n_frames} xyz frames")
    scale = float(np.median(np.abs(energies)))
    for unit, (lo, hi) in _ENERGY_WINDOWS.items():
        if lo <= scale <= hi:
            return energies * _KCAL_PER[unit], {"energy_unit_inferred": unit}
    return None, {"energies": f"unit not recognised (median |E| = {scale:.4g}); stored as unknown"}


def convert_isomer(xyz_path: Path, out_path: Path, source: str, archive: dict[str, Any]) -> str:
    """Write one canonical trajectory from ``<ID>.xyz`` (+ ``<ID>.energy.dat``); returns the SHA-256 of its
    positions (two isomers with equal positions are one trajectory twice)."""
    file_id = _ID.match(xyz_path.name).group(1)  # type: ignore[union-attr]
    frames = read_xyz(xyz_path)
    if frames.positions.shape[1] != 19:
        raise TrajectoryFormatError(f"{xyz_path}: {frames.positions.shape[1]} atoms, C7O2H10 has 19")
    counts = np.bincount(frames.atomic_numbers, minlength=9)
    if (counts[6], counts[8], counts[1]) != (7, 2, 10):
        raise TrajectoryFormatError(f"{xyz_path}: composition is not C7O2H10")
    energies, note = read_energy_dat(xyz_path.with_name(f"{file_id}.energy.dat"), frames.positions.shape[0])
    name = isomer_name(file_id)
    save_trajectory(out_path, Trajectory(
        positions=frames.positions, atomic_numbers=frames.atomic_numbers, dt_fs=C7O2H10_DT_FS,
        temperature_K=C7O2H10_TEMPERATURE_K, name=name, dataset="c7o2h10", source=source, energies=energies,
        provenance={"reference": C7O2H10_REFERENCE, "archive": archive, "member": f"c7o2h10_md/{xyz_path.name}",
                    "paper_name": f"ISO_{file_id}", "name_mapping": "ISO_<ID> -> <ID>.xyz (assumed)",
                    "temperature_note": "paper: 100 K; archive description: 500 K", **note},
    ))
    return hashlib.sha256(np.ascontiguousarray(frames.positions, dtype=np.float64).tobytes()).hexdigest()


def safe_extract(archive: Path, dest_dir: Path, tag: str = "", max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Unpack the archive (tarfile's 'data' filter: no absolute paths, no links out) -> folder of xyz.

    Members are unpacked one by one as the stream is read; before each one its header is checked
    against the caps (``max_members`` entries, ``max_bytes`` in total; config
    ``data.c7o2h10.download.max_members`` / ``max_extract_bytes``; a hard or symbolic link counts at its
    target's size, so 300 links to one big file are 300 big files), so a small archive that would
    unpack to gigabytes stops at the first member too many. The gzip stream is read to its end (CRC
    checked) before the folder is put in place. ``.extracting/`` is removed on every failure, and a full
    disk is reported as such, naming the folder.

    An earlier extraction is reused only if its marker holds the same ``tag`` (the archive's SHA-256).
    """
    target = dest_dir / "c7o2h10_md"
    marker = dest_dir / ".complete"
    stamp = f"{archive.name} {tag}\n"
    if target.is_dir() and marker.exists() and marker.read_text() == stamp:
        return target
    tmp = dest_dir / ".extracting"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    key = "data.c7o2h10.download"
    try:
        count, total = 0, 0
        sizes: dict[str, TarEntry] = {}
        with open_tar_stream(archive) as (tar, reader):
            for member in tar:
                count += 1
                if member.islnk() or member.issym():
                    size = link_size(member, sizes, archive).size
                else:
                    size = max(int(member.size), 0)
                    if member.isfile():
                        sizes[os.path.normpath(member.name)] = TarEntry(os.path.normpath(member.name), "file", size,
                                                                        None)
                total += size
                if count > max_members:
                    raise TrajectoryFormatError(f"{archive}: more than {max_members} entries ({key}.max_members)")
                if total > max_bytes:
                    raise TrajectoryFormatError(
                        f"{archive}: unpacks to more than {max_bytes} bytes (member {member.name!r};"
                        f" {key}.max_extract_bytes)"
                    )
                tar.extract(member, tmp, filter="data")
            check_tar_end(archive, tar, reader)
        found = sorted(tmp.rglob("*.xyz"))
        if not found:
            raise TrajectoryFormatError(f"{archive}: no .xyz files inside")
        folder = found[0].parent
        marker.unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        marker.write_text(stamp)
    except TrajectoryFormatError:
        raise
    except ContentError as exc:
        raise TrajectoryFormatError(str(exc)) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, TypeError, ValueError) as exc:  # TypeError: cut header
        if disk_full(exc):
            raise DiskFullError(f"{tmp}: disk full (no space left on device) while unpacking {archive}") from None
        raise TrajectoryFormatError(f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def archive_check(max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES, max_members: int = DEFAULT_MAX_MEMBERS):
    """Content check of a downloaded archive before its checksum is recorded: gzip read to its end (CRC),
    every member's data read (a link at its target's size) within the caps, at least one ``<ID>.xyz``
    member, and no two ``<ID>.xyz`` members with the same bytes (a duplicated isomer would sit on both
    sides of the O2O split)."""

    def check(path: Path) -> None:
        entries = scan_gzip_tar(path, max_members, max_bytes, "data.c7o2h10.download")
        isomers = [e for e in entries if _ID.match(Path(e.name).name) and e.kind in ("file", "link")]
        if not isomers:
            raise TrajectoryFormatError(f"{path}: no <ID>.xyz member in the archive ({len(entries)} entries)")
        first: dict[str | None, str] = {}
        for entry in isomers:
            if entry.sha256 in first:
                raise TrajectoryFormatError(
                    f"{path}: members {first[entry.sha256]!r} and {entry.name!r} hold the same trajectory"
                    f"{' (a link)' if entry.kind == 'link' else ''}: duplicate isomers would leak across the O2O"
                    " split")
            first[entry.sha256] = entry.name

    return check


def obtain_c7o2h10(source: str, cfg: dict[str, Any], raw_dir: Path, lock_path: Path) -> tuple[Path, dict[str, Any]]:
    """Folder of ``<ID>.xyz`` files and the archive's provenance (``download`` or ``local`` source).

    ``cfg`` is ``data.c7o2h10``; ``download.local_dir`` may hold the archive or its unpacked
    ``c7o2h10_md/`` folder; ``download.url`` (or a mirror ``download.url_base``) says where to fetch
    it; ``download.sha256`` pins the archive's checksum when known (checked before the file is
    cached or recorded); ``download.max_extract_bytes`` / ``max_members`` cap what it may unpack to.
    """
    dl = cfg.get("download") or {}
    lock = ChecksumLock(lock_path)
    local_dir = dl.get("local_dir")
    caps = {"max_bytes": int(dl.get("max_extract_bytes", DEFAULT_MAX_EXTRACT_BYTES)),
            "max_members": int(dl.get("max_members", DEFAULT_MAX_MEMBERS))}
    check = archive_check(**caps)
    pinned = dl.get("sha256")
    fetched: Fetched | None = None
    if local_dir:
        folder = Path(local_dir)
        for cand in (folder / "c7o2h10_md", folder):
            if cand.is_dir() and any(cand.glob("*.xyz")):
                return cand, {"local_dir": str(cand)}
        if (folder / C7O2H10_ARCHIVE).is_file():
            fetched = use_local(folder / C7O2H10_ARCHIVE, lock, sha256=pinned, check=check,
                                config_key="data.c7o2h10")
    if fetched is None:
        if source == "local":
            raise DownloadError(
                f"data.c7o2h10.download.local_dir={local_dir}: neither {C7O2H10_ARCHIVE} nor c7o2h10_md/*.xyz there"
            )
        mirror = f"{str(dl['url_base']).rstrip('/')}/{C7O2H10_ARCHIVE}" if dl.get("url_base") else None
        url = mirror or dl.get("url") or C7O2H10_URL  # a mirror given by url_base wins over the default url
        fetched = fetch(url, raw_dir / C7O2H10_ARCHIVE, lock=lock, config_key="data.c7o2h10", sha256=pinned,
                        check=check, **download_settings(dl))
    return safe_extract(fetched.path, raw_dir, fetched.sha256, **caps), fetched.provenance()


def convert_folder(folder: Path, out_dir: Path, source: str, archive: dict[str, Any]) -> dict[str, str]:
    """Convert every ``<ID>.xyz`` in ``folder``; returns {isomer name: npz path}. Two isomers with the same
    positions (a copied or linked file) are refused: one trajectory on both sides of the O2O split."""
    xyz = sorted((p for p in folder.glob("*.xyz") if _ID.match(p.name)), key=lambda p: int(p.stem))
    if not xyz:
        raise TrajectoryFormatError(f"{folder}: no <ID>.xyz files")
    files: dict[str, str] = {}
    seen: dict[str, Path] = {}
    for path in tqdm(xyz, desc="c7o2h10 isomers", mininterval=2.0):
        name = isomer_name(path.stem)
        out = out_dir / f"{name}.npz"
        digest = convert_isomer(path, out, source, archive)
        if digest in seen:
            out.unlink(missing_ok=True)
            raise TrajectoryFormatError(f"{path}: the same trajectory as {seen[digest]} (a copy or a link):"
                                        " duplicate isomers would leak across the O2O split")
        seen[digest] = path
        files[name] = str(out)
    return files


def write_index(
    path: str | os.PathLike, source: str, files: dict[str, str], extra: dict[str, Any] | None = None
) -> None:
    """``index.json``: ``{"source", "isomers": [...], "files": {name: path}}`` (+ provenance)."""
    write_json(path, {"source": source, "isomers": list(files), "files": files, **(extra or {})})
