"""Element data, from ASE's tables (:mod:`ase.data`): symbols, covalent radii, masses and colours.

* Symbols and atomic numbers: ``ase.data.chemical_symbols`` / ``atomic_numbers`` (1..118).
* Covalent radii (Å): ``ase.data.covalent_radii``, Cordero et al., Dalton Trans. 2008 (sp3 carbon).
* Masses (u): ``ase.data.atomic_masses`` (IUPAC 2016 standard atomic weights), the masses ASE's ``Atoms``
  assign, so the GFN2-xTB data simulation and everything here use the same ones.
* Colours: ``ase.data.colors.jmol_colors`` (CPK/Jmol), used by the snapshot figures.

Only what ASE does not say is decided here: which atomic numbers the project accepts (1..:data:`MAX_Z`,
the trajectory format's range) and the one-line errors for anything else.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses, chemical_symbols, covalent_radii
from ase.data import atomic_numbers as _ase_numbers
from ase.data.colors import jmol_colors

#: Largest atomic number anything accepts (the trajectory format's 1..118); every embedding has MAX_Z + 1 rows.
MAX_Z = 118


def _check(z: int) -> int:
    z = int(z)
    if not 1 <= z <= MAX_Z:
        raise KeyError(f"atomic number {z} is not an element (expected 1..{MAX_Z})")
    return z


def symbol(z: int) -> str:
    """``6`` -> ``"C"``."""
    return chemical_symbols[_check(z)]


def atomic_number(sym: str) -> int:
    """``"C"`` (any case, surrounding blanks ignored) -> ``6``."""
    z = _ase_numbers.get(sym.strip().capitalize(), 0)
    if z < 1:
        raise KeyError(f"element symbol {sym!r} is not an element") from None
    return int(z)


def covalent_radius(z: int) -> float:
    """Covalent radius (Å) of atomic number ``z``."""
    return float(covalent_radii[_check(z)])


def masses(numbers: np.ndarray) -> np.ndarray:
    """Atomic masses (u) of atomic numbers ``numbers`` (any shape) -> float64 array of that shape."""
    z = np.asarray(numbers, dtype=np.int64)
    bad = z[(z < 1) | (z > MAX_Z)]
    if bad.size:
        raise KeyError(f"no mass for atomic number {int(bad.reshape(-1)[0])} (expected 1..{MAX_Z})")
    return np.asarray(atomic_masses, dtype=np.float64)[z]


def colour(z: int) -> str:
    """The Jmol colour of atomic number ``z`` as ``"#RRGGBB"``."""
    r, g, b = (int(round(255 * c)) for c in jmol_colors[_check(z)])
    return f"#{r:02X}{g:02X}{b:02X}"
