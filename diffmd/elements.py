"""Element data for the organic molecules in MD17 and C7O2H10 (H, C, N, O, plus a few spares).

Covalent radii (Å): Cordero et al., Dalton Trans. 2008 (sp3 carbon). Masses: IUPAC standard
atomic weights (u). Colours: CPK/Jmol, used by the snapshot figures.
"""

from __future__ import annotations

SYMBOLS = {1: "H", 5: "B", 6: "C", 7: "N", 8: "O", 9: "F", 15: "P", 16: "S", 17: "Cl"}
NUMBERS = {s: z for z, s in SYMBOLS.items()}
COVALENT_RADII = {1: 0.31, 5: 0.84, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57, 15: 1.07, 16: 1.05, 17: 1.02}
MASSES = {1: 1.008, 5: 10.81, 6: 12.011, 7: 14.007, 8: 15.999, 9: 18.998, 15: 30.974, 16: 32.06, 17: 35.45}
COLOURS = {
    1: "#FFFFFF",
    5: "#FFB5B5",
    6: "#909090",
    7: "#3050F8",
    8: "#FF0D0D",
    9: "#90E050",
    15: "#FF8000",
    16: "#FFFF30",
    17: "#1FF01F",
}
#: Largest atomic number anything accepts (the trajectory format's 1..118); every embedding has MAX_Z + 1 rows.
MAX_Z = 118


def symbol(z: int) -> str:
    try:
        return SYMBOLS[int(z)]
    except KeyError:
        raise KeyError(f"atomic number {z} is not supported (known: {sorted(SYMBOLS)})") from None


def atomic_number(sym: str) -> int:
    try:
        return NUMBERS[sym.strip().capitalize()]
    except KeyError:
        raise KeyError(f"element symbol {sym!r} is not supported (known: {sorted(NUMBERS)})") from None


def covalent_radius(z: int) -> float:
    try:
        return COVALENT_RADII[int(z)]
    except KeyError:
        raise KeyError(f"no covalent radius for atomic number {z}") from None
