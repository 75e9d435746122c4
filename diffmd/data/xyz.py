"""Multi-frame XYZ reader for trajectory files (MD17 xyz archives, C7O2H10 ``<ID>.xyz``), on ``ase.io``.

Each frame is an atom count, a comment line, then one line per atom: ``Symbol x y z`` (Å), optionally
followed by more columns (MD17's xyz archives append forces ``fx fy fz``). ASE's extended-XYZ reader
(``ase.io.read(..., format="extxyz")``) parses the frames; the comment lines of these files are free text
(MD17: the energy), so the column layout ASE would read from a ``Properties=`` key is given to it
(``species:S:1:pos:R:3`` plus ``extra:R:k`` for k more columns, from the first atom line). What is decided
here, and why it is not ASE's:

* Mathematica exponents (``1.2*^-5``, in some upstream files) are read as ``1.2e-5`` before ASE sees them;
* every frame must list the same elements in the same order (ASE reads each frame as its own ``Atoms``);
* every failure is one :class:`TrajectoryFormatError` naming the file and the frame, not ASE's traceback.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.io import iread
from ase.io.extxyz import XYZError

from diffmd.data.trajectory import TrajectoryFormatError


@dataclass
class XYZFrames:
    atomic_numbers: np.ndarray  # (atoms,) int64
    positions: np.ndarray  # (frames, atoms, 3) Å
    comments: list[str]  # (frames,)
    extra: np.ndarray | None  # (frames, atoms, k) further numeric columns, None if there are none


def _columns(lines: list[str], origin: str) -> int:
    """Columns of the first atom line (symbol, x, y, z, ...): at least 4."""
    try:
        n_atoms = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise TrajectoryFormatError(f"{origin}: line 1: expected the atom count, got {lines[0][:40]!r}") from None
    if n_atoms < 1:
        raise TrajectoryFormatError(f"{origin}: line 1: atom count {n_atoms}, a frame needs at least one atom")
    if len(lines) < 3:
        raise TrajectoryFormatError(f"{origin}: truncated: frame 0 has no atom lines")
    width = len(lines[2].split())
    if width < 4:
        raise TrajectoryFormatError(f"{origin}: line 3: frame 0 atom 0 has {width} columns, expected at least 4")
    return width


def parse_xyz(text: str, origin: str = "xyz") -> XYZFrames:
    """Parse all frames of an XYZ text; every frame must have the same atoms in the same order."""
    text = text.replace("*^", "e")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TrajectoryFormatError(f"{origin}: empty xyz file")
    width = _columns(lines, origin)
    layout = "species:S:1:pos:R:3" + (f":extra:R:{width - 4}" if width > 4 else "")

    def properties(comment: str) -> dict[str, str]:
        return {"Properties": layout, "comment": comment.strip()}

    frames = []
    try:
        for atoms in iread(io.StringIO("\n".join(lines) + "\n"), index=":", format="extxyz",
                           properties_parser=properties):  # fmt: skip
            frames.append(atoms)
    except KeyError as exc:
        raise TrajectoryFormatError(f"{origin}: frame {len(frames)}: unknown element {exc.args[0]!r}") from None
    except (XYZError, ValueError, IndexError, StopIteration) as exc:
        what = "non-numeric coordinate or wrong column count" if "could not" in str(exc) else "truncated or malformed"
        raise TrajectoryFormatError(f"{origin}: frame {len(frames)}: {what} ({exc}); "
                                    f"frame {len(frames)} is incomplete") from None  # fmt: skip
    if not frames:
        raise TrajectoryFormatError(f"{origin}: no frame")
    z = frames[0].numbers.astype(np.int64)
    for f, atoms in enumerate(frames):
        if len(atoms) != z.size:
            raise TrajectoryFormatError(f"{origin}: frame {f} has {len(atoms)} atoms, frame 0 has {z.size}")
        if (atoms.numbers != z).any():
            raise TrajectoryFormatError(f"{origin}: frame {f} lists different elements than frame 0")
    positions = np.stack([a.positions for a in frames]).astype(np.float64)
    extra = np.stack([a.arrays["extra"].reshape(len(a), -1) for a in frames]).astype(np.float64) if width > 4 else None
    comments = [str(a.info.get("comment", "")) for a in frames]
    return XYZFrames(atomic_numbers=z, positions=positions, comments=comments, extra=extra)


def read_xyz(path: str | os.PathLike) -> XYZFrames:
    """Read a multi-frame XYZ file (see :func:`parse_xyz`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TrajectoryFormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise TrajectoryFormatError(f"{path}: not a text xyz file ({exc.reason} at byte {exc.start})") from None
    return parse_xyz(text, str(path))
