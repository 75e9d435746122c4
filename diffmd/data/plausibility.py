"""Physical plausibility of a trajectory: what a file can hold that parses but is not molecular dynamics.

A trajectory passes the format checks of :mod:`diffmd.data.trajectory` (shapes, finite numbers) and
still may not be MD: frozen frames, duplicated frames (every other velocity zero), one frame moved by
metres, two hydrogens swapped halfway (the atom order changes), a negative temperature. Models train
on such data without complaint and the tables report nonsense, so every trajectory is checked, one
line per finding naming the file and the config key that sets the bound (``data.<dataset>.checks``,
schema ``definitions.trajectory_checks``; ``null`` switches a check off):

* ``temperature_K``: [low, high] K for the recorded ``temperature_K`` and for the median kinetic
  temperature of the frames (central-difference velocities, centre-of-mass motion removed, 3N-3
  degrees of freedom, the elements' masses);
* ``max_repeated_frames``: frames identical to the one before;
* ``atom_order``: an atom that jumps, in one frame, further than an ordinary step (ten times the median
  step, at least 0.1 Å) and lands within an ordinary step of the previous place of another atom of its
  element: the atoms were relabelled, not moved (a frame moved far away and back is the speed check's);
* ``max_speed_A_per_fs``: the largest step of any atom between consecutive frames over ``dt_fs``.

Everything is vectorised over chunks of frames, so a 555,000-frame MD17 file is checked in about a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffmd.data.trajectory import TrajectoryFormatError

#: frames per chunk (bounds the temporary arrays to a few tens of MB for MD17's largest molecule)
_CHUNK = 20_000
#: an "atom-order jump" candidate moves further than this many median steps, and at least ``_JUMP_MIN_A``
_JUMP_MEDIANS = 10.0
_JUMP_MIN_A = 0.1


def resolve_checks(checks: dict[str, Any] | None) -> dict[str, Any]:
    """``checks`` over the schema's defaults (``definitions.trajectory_checks``)."""
    from diffmd.config import definition_defaults

    return {**definition_defaults("trajectory_checks"), **(checks or {})}


def _u_A2_per_fs2_in_K() -> float:
    """1 u·Å²/fs² divided by Boltzmann's constant, in K (the project's units: :mod:`diffmd.units`, CODATA 2018)."""
    from diffmd.units import KB_EV_PER_K, U_A2_PER_FS2_IN_EV

    return U_A2_PER_FS2_IN_EV / KB_EV_PER_K


def _symbol(z: int) -> str:
    from diffmd.elements import symbol

    try:
        return symbol(int(z))
    except KeyError:
        return f"Z={int(z)}"


def kinetic_temperatures(positions: np.ndarray, z: np.ndarray, dt_fs: float) -> np.ndarray | None:
    """Kinetic temperature (K) of frames 1..F-2 from central differences, centre-of-mass motion removed (masses:
    :func:`diffmd.elements.masses`); None with fewer than 3 frames."""
    from diffmd.elements import masses

    n_frames, n_atoms = positions.shape[:2]
    try:
        m = masses(z)
    except KeyError:  # not an element: the format checks say so
        return None
    if n_frames < 3:
        return None
    dof = 3 * n_atoms - 3 if n_atoms > 1 else 3
    scale = _u_A2_per_fs2_in_K() / dof
    out = []
    for a in range(1, n_frames - 1, _CHUNK):
        b = min(a + _CHUNK, n_frames - 1)
        v = (positions[a + 1 : b + 1] - positions[a - 1 : b - 1]) / (2.0 * dt_fs)  # Å/fs
        v = v - (m[None, :, None] * v).sum(1, keepdims=True) / m.sum()
        out.append((m[None, :, None] * v**2).sum((1, 2)) * scale)
    return np.concatenate(out)


def frame_steps(positions: np.ndarray) -> np.ndarray:
    """(F-1, N) Å: how far each atom moves from one frame to the next (chunk by chunk)."""
    n_frames = positions.shape[0]
    parts = []
    for a in range(0, n_frames - 1, _CHUNK):
        b = min(a + _CHUNK, n_frames - 1)
        parts.append(np.linalg.norm(positions[a + 1 : b + 1] - positions[a:b], axis=-1))
    return np.concatenate(parts) if parts else np.zeros((0, positions.shape[1]))


def check_plausible(positions: np.ndarray, atomic_numbers: np.ndarray, dt_fs: float, temperature_K: float,
                    checks: dict[str, Any] | None, origin: str, key: str = "data.checks") -> None:
    """Raise :class:`TrajectoryFormatError` (one line: ``origin``, the finding, ``key.<check>``) at the first
    check a trajectory fails; ``checks`` as in the config (missing keys take the schema's defaults)."""
    cfg = resolve_checks(checks)
    pos = np.asarray(positions)
    z = np.asarray(atomic_numbers)
    n_frames = pos.shape[0]
    bounds = cfg.get("temperature_K")
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        if not lo <= float(temperature_K) <= hi:
            raise TrajectoryFormatError(f"{origin}: temperature_K {float(temperature_K):g} K is outside"
                                        f" [{lo:g}, {hi:g}] K ({key}.temperature_K)")
    if n_frames < 2:
        return
    steps = frame_steps(pos)
    repeated = np.flatnonzero(steps.max(axis=1) == 0.0)
    limit = cfg.get("max_repeated_frames")
    if limit is not None and len(repeated) > int(limit):
        t = int(repeated[0])
        what = "frozen: every frame is the same" if len(repeated) == n_frames - 1 else "frozen or duplicated frames"
        raise TrajectoryFormatError(
            f"{origin}: {len(repeated)} of {n_frames} frames repeat the frame before (first: frames {t} and {t + 1};"
            f" {what}); {key}.max_repeated_frames is {int(limit)}")
    if cfg.get("atom_order", True):
        _check_atom_order(pos, z, steps, origin, key)
    max_speed = cfg.get("max_speed_A_per_fs")
    if max_speed is not None:
        t, i = np.unravel_index(int(np.argmax(steps)), steps.shape)
        speed = float(steps[t, i]) / float(dt_fs)
        if speed > float(max_speed):
            raise TrajectoryFormatError(
                f"{origin}: atom {int(i)} ({_symbol(z[i])}) moves {float(steps[t, i]):.4g} Å between frames {int(t)}"
                f" and {int(t) + 1} ({speed:.4g} Å/fs at dt_fs {float(dt_fs):g}), more than"
                f" {key}.max_speed_A_per_fs = {float(max_speed):g}")
    if bounds is not None:
        temps = kinetic_temperatures(pos, z, float(dt_fs))
        if temps is not None and len(temps):
            median = float(np.median(temps))
            if not lo <= median <= hi:
                raise TrajectoryFormatError(
                    f"{origin}: kinetic temperature of the frames {median:.4g} K (median; dt_fs {float(dt_fs):g}) is"
                    f" outside [{lo:g}, {hi:g}] K ({key}.temperature_K): wrong dt_fs or units?")


def _check_atom_order(pos: np.ndarray, z: np.ndarray, steps: np.ndarray, origin: str, key: str) -> None:
    """An atom that lands on another same-element atom's previous place instead of moving (module docstring)."""
    sample = steps[:: max(1, steps.shape[0] // 50_000)]
    typical = float(np.median(sample))
    threshold = max(_JUMP_MEDIANS * typical, _JUMP_MIN_A)
    for t, i in zip(*np.nonzero(steps > threshold)):
        same = np.flatnonzero((z == z[i]) & (np.arange(len(z)) != i))
        if not len(same):
            continue
        dist = np.linalg.norm(pos[t, same] - pos[t + 1, i], axis=-1)
        j = int(same[np.argmin(dist)])
        if float(dist.min()) < threshold:  # within an ordinary step of the other atom's place: a relabelling
            raise TrajectoryFormatError(
                f"{origin}: atom order changes between frames {int(t)} and {int(t) + 1}: atom {int(i)}"
                f" ({_symbol(z[i])}) jumps {float(steps[t, i]):.3g} Å onto the place of atom {j}"
                f" ({float(dist.min()):.3g} Å away) instead of moving; reordered atoms? ({key}.atom_order)")
