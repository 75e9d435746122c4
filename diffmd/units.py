"""Unit conversions shared by the data pipeline and the physics models (one home for the constants).

Forces are stored in kcal/mol/Å (MD17's unit), masses in u (g/mol), time in fs, positions in Å.
One *model step* is ``stride`` frames of ``dt_fs`` each (see :mod:`diffmd.batch`).
"""

from __future__ import annotations

import numpy as np

from diffmd.elements import MASSES

#: (kcal/mol/Å) / (g/mol) in Å/fs²: 4184 J/mol/Å / (1e-3 kg/mol) = 4.184e6 m²/s² per Å = 4.184e-4 Å/fs².
KCAL_MOL_A_PER_U_IN_A_PER_FS2 = 4.184e-4


def masses(numbers: np.ndarray) -> np.ndarray:
    """Atomic masses (u) of atomic numbers ``numbers`` (atoms,) -> (atoms,), IUPAC standard weights."""
    try:
        return np.array([MASSES[int(z)] for z in np.asarray(numbers).reshape(-1)], dtype=np.float64)
    except KeyError as exc:
        raise KeyError(f"no mass for atomic number {exc.args[0]}") from None


def force_step(forces: np.ndarray, numbers: np.ndarray, dt_fs: float, stride: int = 1) -> np.ndarray:
    """The displacement F·(k·dt)²/m in Å of forces ``forces`` (..., atoms, 3) in kcal/mol/Å.

    This is the acceleration term of one position-Verlet step of ``stride`` frames of ``dt_fs`` fs:
    x(t+1) = x(t) + v(t) + F(t)·(k·dt)²/m with v(t) = x(t) - x(t-1) (Å per step).
    """
    m = masses(numbers)
    step_fs = float(dt_fs) * int(stride)
    return np.asarray(forces, dtype=np.float64) / m[:, None] * KCAL_MOL_A_PER_U_IN_A_PER_FS2 * step_fs**2
