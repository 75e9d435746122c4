"""Strict multi-frame XYZ reader for trajectory files (MD17 xyz archives, C7O2H10 ``<ID>.xyz``).

Each frame is an atom count, a comment line, then one line per atom: ``Symbol x y z`` (Å),
optionally followed by more columns (MD17's xyz archives append forces ``fx fy fz``). Some
upstream files write numbers in Mathematica notation (``1.2*^-5``); those are read as ``1.2e-5``.
A truncated or inconsistent file raises :class:`TrajectoryFormatError` naming the file and frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffmd.data.trajectory import TrajectoryFormatError
from diffmd.elements import atomic_number


@dataclass
class XYZFrames:
    atomic_numbers: np.ndarray  # (atoms,) int64
    positions: np.ndarray  # (frames, atoms, 3) Å
    comments: list[str]  # (frames,)
    extra: np.ndarray | None  # (frames, atoms, k) further numeric columns, None if there are none


def _element(token: str, origin: str, line_no: int) -> int:
    if token.isdigit():
        return int(token)
    try:
        return atomic_number(token)
    except KeyError:
        raise TrajectoryFormatError(f"{origin}: line {line_no}: unknown element {token!r}") from None


def parse_xyz(text: str, origin: str = "xyz") -> XYZFrames:
    """Parse all frames of an XYZ text; every frame must have the same atoms in the same order."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TrajectoryFormatError(f"{origin}: empty xyz file")
    try:
        n_atoms = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise TrajectoryFormatError(f"{origin}: line 1: expected the atom count, got {lines[0][:40]!r}") from None
    if n_atoms < 1:
        raise TrajectoryFormatError(f"{origin}: line 1: atom count {n_atoms}, a frame needs at least one atom")
    block = n_atoms + 2
    n_frames, rest = divmod(len(lines), block)
    if rest or n_frames == 0:
        raise TrajectoryFormatError(
            f"{origin}: truncated or inconsistent: {len(lines)} lines is not a whole number of "
            f"{n_atoms}-atom frames ({block} lines each); frame {n_frames} is incomplete"
        )
    for f in range(n_frames):
        head = lines[f * block].split()
        if not head or head[0] != str(n_atoms):
            raise TrajectoryFormatError(
                f"{origin}: line {f * block + 1}: frame {f} header {lines[f * block][:40]!r}, expected {n_atoms}"
            )
    atom_lines = [lines[f * block + 2 + i] for f in range(n_frames) for i in range(n_atoms)]
    rows = [line.replace("*^", "e").split() for line in atom_lines]
    width = len(rows[0])
    for k, row in enumerate(rows):
        if len(row) != width or width < 4:
            f, i = divmod(k, n_atoms)
            raise TrajectoryFormatError(
                f"{origin}: line {f * block + 3 + i}: frame {f} atom {i} has {len(row)} columns,"
                f" expected {max(width, 4)}"
            )
    table = np.asarray(rows, dtype=object).reshape(n_frames, n_atoms, width)
    symbols = table[0, :, 0]
    if (table[:, :, 0] != symbols[None, :]).any():
        f = int(np.argwhere((table[:, :, 0] != symbols[None, :]).any(axis=1))[0, 0])
        raise TrajectoryFormatError(f"{origin}: frame {f} lists different elements than frame 0")
    try:
        numbers = table[:, :, 1:].astype(np.float64)
    except ValueError as exc:
        raise TrajectoryFormatError(f"{origin}: non-numeric coordinate ({exc})") from None
    z = np.array([_element(s, origin, 3 + i) for i, s in enumerate(symbols)], dtype=np.int64)
    comments = [lines[f * block + 1] for f in range(n_frames)]
    extra = numbers[:, :, 3:] if width > 4 else None
    return XYZFrames(atomic_numbers=z, positions=numbers[:, :, :3].copy(), comments=comments, extra=extra)


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

