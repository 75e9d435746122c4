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
=================  =====================  ===============================================
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.io import save_npz

FORMAT_VERSION = 1
REQUIRED_KEYS = ("positions", "atomic_numbers", "dt_fs", "temperature_K", "name", "dataset", "source")
SOURCES = ("download", "local", "xtb")


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
    )


def load_trajectory(path: str | os.PathLike, mmap: bool = False) -> Trajectory:
    """Read and validate a canonical trajectory; every failure names the file and key."""
    path = Path(path)
    if not path.exists():
        raise TrajectoryFormatError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise TrajectoryFormatError(f"{path}: missing key(s) {', '.join(missing)}")
            data = {k: npz[k] for k in npz.files}
    except TrajectoryFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise TrajectoryFormatError(f"{path}: corrupt or truncated npz ({type(exc).__name__}: {exc})") from None
    version = int(data.get("format_version", FORMAT_VERSION))
    if version != FORMAT_VERSION:
        raise TrajectoryFormatError(f"{path}: format_version {version}, this code reads {FORMAT_VERSION}")
    energies = data.get("energies")
    forces = data.get("forces")
    traj = Trajectory(
        positions=data["positions"].astype(np.float64, copy=False),
        atomic_numbers=data["atomic_numbers"].astype(np.int64, copy=False),
        dt_fs=float(data["dt_fs"]),
        temperature_K=float(data["temperature_K"]),
        name=str(data["name"]),
        dataset=str(data["dataset"]),
        source=str(data["source"]),
        energies=None if energies is None or np.isnan(energies).all() else energies,
        forces=None if forces is None or np.isnan(forces).all() else forces,
        provenance=json.loads(str(data["provenance"])) if "provenance" in data else {},
    )
    traj.validate(str(path))
    return traj
