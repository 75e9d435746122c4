"""The canonical trajectory file: one ``.npz`` per molecule or isomer.

Every data source (MD17 download, C7O2H10 download, local files, GFN2-xTB simulation) writes
this format and everything downstream reads only this format.

Keys (``FORMAT_VERSION`` 1):

=================  =====================  ===============================================
key                shape / dtype           meaning
=================  =====================  ===============================================
positions          (frames, atoms, 3) f8   Cartesian positions, Å, consecutive MD frames
atomic_numbers     (atoms,) i8             nuclear charges
energies           (frames,) f8            potential energy, kcal/mol (NaN where unknown)
forces             (frames, atoms, 3) f8   forces, kcal/mol/Å (NaN where unknown)
dt_fs              () f8                   time between consecutive frames, fs
temperature_K      () f8                   thermostat / nominal temperature, K
name               () str                  molecule or isomer name (e.g. "aspirin", "iso1004")
dataset            () str                  "md17" or "c7o2h10"
source             () str                  "download", "local" or "xtb"
provenance         () str                  JSON: URL + SHA-256, or simulation settings + seed
format_version     () i8                   1
nhc_eta            (frames, K) f8          optional: Nosé-Hoover chain positions η
nhc_p_eta          (frames, K) f8          optional: Nosé-Hoover chain momenta p_η (eV·ASE time)
=================  =====================  ===============================================

``nhc_eta`` / ``nhc_p_eta`` (both or neither; the ``xtb`` source with ``thermostat: nose_hoover``): the state
of the data's Nosé-Hoover chains (M = :data:`diffmd.dynamics.NOSE_HOOVER_CHAIN` thermostats per chain; K = M for
one global chain, K = 3·(atoms - 1)·M for massive chains, one per degree of freedom with the centre of mass at
rest, the (atoms - 1, 3, M) array flattened in C order: ``xtb.nose_hoover_coupling``, the width says which)
at the half step t-½ of every frame t, where the velocity x(t) - x(t-1) lives: with two frames and the force at
x(t) it continues the trajectory exactly (:func:`diffmd.dynamics.continue_dynamics`). Frame 0 holds the chain as
the production run started (exact from frame 1 on; rollouts start at frame 2 or later). Files without them stay valid.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.io import save_npz

FORMAT_VERSION = 1
REQUIRED_KEYS = ("positions", "atomic_numbers", "dt_fs", "temperature_K", "name", "dataset", "source")
SOURCES = ("download", "local", "xtb")
#: Keys holding one value, and the dtype kinds allowed for them.
SCALAR_KEYS = {"dt_fs": "fiu", "temperature_K": "fiu", "format_version": "iu", "name": "U", "dataset": "U",
               "source": "U", "provenance": "U"}
ARRAY_KINDS = {"positions": "fiu", "atomic_numbers": "iu", "energies": "fiu", "forces": "fiu", "nhc_eta": "f",
               "nhc_p_eta": "f"}
#: Optional per-frame thermostat state: the data's Nosé-Hoover chain (see the module docstring).
CHAIN_KEYS = ("nhc_eta", "nhc_p_eta")


class TrajectoryFormatError(ValueError):
    """A trajectory file is missing, truncated, corrupt or inconsistent (message names the file)."""


@dataclass
class Trajectory:
    positions: np.ndarray  # (frames, atoms, 3) Å
    atomic_numbers: np.ndarray  # (atoms,)
    dt_fs: float
    temperature_K: float
    name: str
    dataset: str
    source: str
    energies: np.ndarray | None = None  # (frames,) kcal/mol
    forces: np.ndarray | None = None  # (frames, atoms, 3) kcal/mol/Å
    provenance: dict[str, Any] = field(default_factory=dict)
    nhc_eta: np.ndarray | None = None  # (frames, K) Nosé-Hoover chain positions at the half step t-½
    nhc_p_eta: np.ndarray | None = None  # (frames, K) and momenta (eV·ASE time)

    @property
    def chain_state(self) -> np.ndarray | None:
        """(frames, 2K): η then p_η per frame (:func:`diffmd.dynamics.get_chain_state`), or None when the file
        stores no chain."""
        if self.nhc_eta is None or self.nhc_p_eta is None:
            return None
        return np.concatenate([self.nhc_eta, self.nhc_p_eta], axis=1)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    def validate(self, origin: str = "trajectory") -> None:
        """Raise :class:`TrajectoryFormatError` naming ``origin`` and the offending key."""
        pos = self.positions
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise TrajectoryFormatError(f"{origin}: 'positions' has shape {pos.shape}, expected (frames, atoms, 3)")
        if pos.shape[0] < 1 or pos.shape[1] < 1:
            raise TrajectoryFormatError(f"{origin}: 'positions' is empty (shape {pos.shape})")
        if self.atomic_numbers.shape != (pos.shape[1],):
            raise TrajectoryFormatError(
                f"{origin}: 'atomic_numbers' has shape {self.atomic_numbers.shape}, expected ({pos.shape[1]},)"
            )
        if not np.isfinite(pos).all():
            bad = int(np.argwhere(~np.isfinite(pos))[0, 0])
            raise TrajectoryFormatError(f"{origin}: 'positions' holds NaN/inf (first at frame {bad})")
        if (self.atomic_numbers < 1).any() or (self.atomic_numbers > 118).any():
            raise TrajectoryFormatError(f"{origin}: 'atomic_numbers' outside 1..118")
        if self.energies is not None and self.energies.shape != (pos.shape[0],):
            raise TrajectoryFormatError(f"{origin}: 'energies' has shape {self.energies.shape}")
        if self.forces is not None and self.forces.shape != pos.shape:
            raise TrajectoryFormatError(f"{origin}: 'forces' has shape {self.forces.shape}")
        chain = [k for k in CHAIN_KEYS if getattr(self, k) is not None]
        if len(chain) == 1:
            raise TrajectoryFormatError(f"{origin}: {chain[0]!r} without {(set(CHAIN_KEYS) - set(chain)).pop()!r}")
        for key in chain:
            arr = getattr(self, key)
            if arr.ndim != 2 or arr.shape[0] != pos.shape[0] or arr.shape != self.nhc_eta.shape or arr.shape[1] < 1:
                raise TrajectoryFormatError(f"{origin}: {key!r} has shape {arr.shape}, expected ({pos.shape[0]}, M)")
            if not np.isfinite(arr).all():
                raise TrajectoryFormatError(f"{origin}: {key!r} holds NaN/inf")
        if not (self.dt_fs > 0):
            raise TrajectoryFormatError(f"{origin}: 'dt_fs' must be > 0, got {self.dt_fs}")
        if self.source not in SOURCES:
            raise TrajectoryFormatError(f"{origin}: 'source' is {self.source!r}, expected one of {SOURCES}")


def save_trajectory(path: str | os.PathLike, traj: Trajectory) -> None:
    """Validate and write atomically (temporary file + rename)."""
    traj.validate(str(path))
    n_frames, n_atoms = traj.n_frames, traj.n_atoms
    energies = traj.energies if traj.energies is not None else np.full(n_frames, np.nan)
    forces = traj.forces if traj.forces is not None else np.full((n_frames, n_atoms, 3), np.nan)
    chain = {} if traj.nhc_eta is None else {k: np.asarray(getattr(traj, k), dtype=np.float64) for k in CHAIN_KEYS}
    save_npz(
        path,
        positions=np.asarray(traj.positions, dtype=np.float64),
        atomic_numbers=np.asarray(traj.atomic_numbers, dtype=np.int64),
        energies=np.asarray(energies, dtype=np.float64),
        forces=np.asarray(forces, dtype=np.float64),
        dt_fs=np.float64(traj.dt_fs),
        temperature_K=np.float64(traj.temperature_K),
        name=np.str_(traj.name),
        dataset=np.str_(traj.dataset),
        source=np.str_(traj.source),
        provenance=np.str_(json.dumps(traj.provenance, sort_keys=True)),
        format_version=np.int64(FORMAT_VERSION),
        **chain,
    )


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of every array in an ``.npz``, read from the headers alone.

    Nothing is allocated from what a header claims: a header whose shape needs more bytes than its
    member holds (a forged or corrupt file that would make numpy allocate gigabytes), an array of
    Python objects (pickled data) and a file that is not a zip archive are refused with one line
    naming the file and key (:class:`TrajectoryFormatError`).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise TrajectoryFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise TrajectoryFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if magic[:2] != b"PK":
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz (not a zip archive; starts with {magic!r})")
    heads: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        shape, _, dtype = np.lib.format._read_array_header(fh, version)  # noqa: SLF001 - v3 header
                    offset = fh.tell()
                if dtype.hasobject:
                    raise TrajectoryFormatError(f"{path}: key {key!r} holds Python objects (pickled data); refused")
                need = math.prod(int(n) for n in shape) * dtype.itemsize
                held = info.file_size - offset
                if need > held:
                    raise TrajectoryFormatError(
                        f"{path}: key {key!r} claims shape {tuple(shape)} of {dtype} ({need} bytes) but holds"
                        f" {held} bytes: corrupt or forged header"
                    )
                heads[key] = (tuple(int(n) for n in shape), dtype)
    except TrajectoryFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({_one_line(exc)})") from None
    return heads


def read_npz_members(path: str | os.PathLike, max_bytes: int | None = None) -> int:
    """Read every member of an npz (a zip archive) to its end, so zip checks each member's CRC-32; returns the
    bytes read. Nothing is kept in memory; ``max_bytes`` caps the total (a zip bomb stops there).
    :class:`TrajectoryFormatError` naming the file and member otherwise."""
    path = Path(path)
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - consumed right here
                        total += len(block)
                        if max_bytes is not None and total > max_bytes:
                            raise TrajectoryFormatError(f"{path}: members unpack to more than {max_bytes} bytes")
    except TrajectoryFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({_one_line(exc)})") from None
    return total


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, with numpy's advice to enable pickle loading left out."""
    text = " ".join(str(exc).split())
    if "allow_pickle" in text:
        text = "holds Python objects (pickled data); refused"
    return f"{type(exc).__name__}: {text}"


def check_npz_keys(path: Path, heads: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Single values where one is expected (``dt_fs`` of shape (2,) is refused), arrays of numbers."""
    for key, kinds in SCALAR_KEYS.items():
        if key not in heads:
            continue
        shape, dtype = heads[key]
        if math.prod(shape) != 1 or len(shape) > 1:
            raise TrajectoryFormatError(f"{path}: key {key!r} has shape {shape}, expected a single value")
        if dtype.kind not in kinds:
            what = "text" if kinds == "U" else "a number"
            raise TrajectoryFormatError(f"{path}: key {key!r} has dtype {dtype}, expected {what}")
    for key, kinds in ARRAY_KINDS.items():
        if key in heads and heads[key][1].kind not in kinds:
            raise TrajectoryFormatError(f"{path}: key {key!r} has dtype {heads[key][1]}, expected numbers")


def load_trajectory(path: str | os.PathLike, mmap: bool = False) -> Trajectory:
    """Read and validate a canonical trajectory; every failure names the file and key."""
    path = Path(path)
    if not path.exists():
        raise TrajectoryFormatError(f"{path}: file not found")
    heads = npz_headers(path)
    missing = [k for k in REQUIRED_KEYS if k not in heads]
    if missing:
        raise TrajectoryFormatError(f"{path}: missing key(s) {', '.join(missing)}")
    check_npz_keys(path, heads)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except MemoryError:
        raise TrajectoryFormatError(f"{path}: too large to load into memory") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({_one_line(exc)})") from None
    version = int(data["format_version"].reshape(())) if "format_version" in data else FORMAT_VERSION
    if version != FORMAT_VERSION:
        raise TrajectoryFormatError(f"{path}: format_version {version}, this code reads {FORMAT_VERSION}")
    energies = data.get("energies")
    forces = data.get("forces")
    provenance: dict[str, Any] = {}
    if "provenance" in data:
        try:
            provenance = json.loads(str(data["provenance"].reshape(())))
        except json.JSONDecodeError as exc:
            raise TrajectoryFormatError(f"{path}: key 'provenance' is not valid JSON ({exc.msg} at char {exc.pos})"
                                        ) from None
        if not isinstance(provenance, dict):
            raise TrajectoryFormatError(f"{path}: key 'provenance' must hold a JSON object")

    def scalar(key: str) -> Any:
        return data[key].reshape(()).item()

    traj = Trajectory(
        positions=data["positions"].astype(np.float64, copy=False),
        atomic_numbers=data["atomic_numbers"].astype(np.int64, copy=False),
        dt_fs=float(scalar("dt_fs")),
        temperature_K=float(scalar("temperature_K")),
        name=str(scalar("name")),
        dataset=str(scalar("dataset")),
        source=str(scalar("source")),
        energies=None if energies is None or np.isnan(energies).all() else energies,
        forces=None if forces is None or np.isnan(forces).all() else forces,
        provenance=provenance,
        **{k: data[k].astype(np.float64, copy=False) for k in CHAIN_KEYS if k in data},
    )
    traj.validate(str(path))
    return traj
