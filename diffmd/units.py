"""Unit conversions shared by the data pipeline, the physics models and the metrics (one home for them).

Forces are stored in kcal/mol/Å (MD17's unit), masses in u (g/mol), time in fs, positions in Å.
One *model step* is ``stride`` frames of ``dt_fs`` each (see :mod:`diffmd.batch`).

The constants come from :mod:`ase.units` (ASE's internal units: eV, Å, u and Å·sqrt(u/eV) for time),
built for CODATA 2018 (``ase.units.create_units("2018")``: the SI-exact k_B and e; ``ase.units`` itself
defaults to CODATA 2014, whose k_B differs by 3.5e-7 relative).
"""

from __future__ import annotations

import numpy as np
from ase.units import create_units

from diffmd.elements import masses  # noqa: F401  (re-exported: masses in u)

#: ASE's units and constants, CODATA 2018.
ASE_UNITS = create_units("2018")
#: 1 fs in ASE time units.
FS = float(ASE_UNITS["fs"])
#: 1 kcal/mol in eV.
KCAL_MOL_IN_EV = float(ASE_UNITS["kcal"] / ASE_UNITS["mol"])
#: Boltzmann constant, eV/K.
KB_EV_PER_K = float(ASE_UNITS["kB"])
#: 1 eV/u in Å²/fs² (a velocity² per unit of energy per mass).
EV_PER_U_IN_A2_PER_FS2 = FS**2
#: 1 u·Å²/fs² in eV.
U_A2_PER_FS2_IN_EV = 1.0 / FS**2
#: (kcal/mol/Å) / u in Å/fs² (4.184e-4: 4184 J/mol/Å / (1e-3 kg/mol) = 4.184e6 m²/s² per Å).
KCAL_MOL_A_PER_U_IN_A_PER_FS2 = KCAL_MOL_IN_EV * FS**2
#: 1 hartree and 1 eV in kcal/mol.
HARTREE_IN_KCAL_MOL = float(ASE_UNITS["Hartree"]) / KCAL_MOL_IN_EV
EV_IN_KCAL_MOL = 1.0 / KCAL_MOL_IN_EV


def force_step(forces: np.ndarray, numbers: np.ndarray, dt_fs: float, stride: int = 1) -> np.ndarray:
    """The displacement F·(k·dt)²/m in Å of forces ``forces`` (..., atoms, 3) in kcal/mol/Å.

    This is the acceleration term of one position-Verlet step of ``stride`` frames of ``dt_fs`` fs:
    x(t+1) = x(t) + v(t) + F(t)·(k·dt)²/m with v(t) = x(t) - x(t-1) (Å per step).
    """
    m = masses(numbers)
    step_fs = float(dt_fs) * int(stride)
    return np.asarray(forces, dtype=np.float64) / m[:, None] * KCAL_MOL_A_PER_U_IN_A_PER_FS2 * step_fs**2
