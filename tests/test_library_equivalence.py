"""The kept libraries give today's numbers where they replaced hand-written code (issue 26 row 8).

ASE's element tables and units (diffmd.elements, diffmd.units), scipy's Wasserstein-1 (diffmd.distributions)
and ASE's XYZ reader (diffmd.data.xyz) against the values and formulas the project computed by hand before:
the old tables and constants are written out here as literals, the old formulas as a few lines each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffmd import distributions as D
from diffmd import elements, units
from diffmd.data import c7o2h10
from diffmd.data.xyz import read_xyz
from diffmd.testing import ETHANOL_X, ETHANOL_Z

REPO = Path(__file__).resolve().parents[1]

#: The hand-written element table this project had (Cordero 2008 radii, IUPAC masses, Jmol colours).
OLD_ELEMENTS = {  # z: (symbol, covalent radius Å, mass u, colour)
    1: ("H", 0.31, 1.008, "#FFFFFF"), 5: ("B", 0.84, 10.81, "#FFB5B5"), 6: ("C", 0.76, 12.011, "#909090"),
    7: ("N", 0.71, 14.007, "#3050F8"), 8: ("O", 0.66, 15.999, "#FF0D0D"), 9: ("F", 0.57, 18.998, "#90E050"),
    15: ("P", 1.07, 30.974, "#FF8000"), 16: ("S", 1.05, 32.06, "#FFFF30"), 17: ("Cl", 1.02, 35.45, "#1FF01F"),
}  # fmt: skip


@pytest.mark.parametrize("z", sorted(OLD_ELEMENTS))
def test_ase_element_tables_equal_the_old_ones(z):
    sym, radius, mass, colour = OLD_ELEMENTS[z]
    assert elements.symbol(z) == sym and elements.atomic_number(sym) == z
    assert elements.atomic_number(f" {sym.lower()} ") == z
    assert elements.covalent_radius(z) == radius
    assert elements.colour(z) == colour
    # identical for every element of MD17 and C7O2H10 (H, C, N, O); ASE's F and P carry more digits
    assert elements.masses([z])[0] == (mass if z in (1, 6, 7, 8) else pytest.approx(mass, abs=1e-3))


def test_elements_refuse_what_is_not_an_element():
    for bad in (0, 119, -1):
        with pytest.raises(KeyError, match=f"atomic number {bad}"):
            elements.symbol(bad)
    with pytest.raises(KeyError, match="no mass for atomic number 0"):
        elements.masses([1, 0])
    with pytest.raises(KeyError, match="'Xx'"):
        elements.atomic_number("Xx")
    with pytest.raises(KeyError):
        elements.atomic_number("X")  # ASE's dummy atom is not an element


def test_ase_unit_constants_equal_the_old_literals():
    assert units.KCAL_MOL_A_PER_U_IN_A_PER_FS2 == pytest.approx(4.184e-4, rel=1e-9)
    assert units.KB_EV_PER_K == pytest.approx(8.617333262e-5, rel=1e-9)  # CODATA 2018
    assert units.EV_PER_U_IN_A2_PER_FS2 == pytest.approx(9.64853321e-3, rel=1e-9)
    # the kinetic temperature's u·Å²/fs² per k_B (1.66053906660e-17 J / 1.380649e-23 J/K) in K
    assert units.U_A2_PER_FS2_IN_EV / units.KB_EV_PER_K == pytest.approx(1.66053906660e-17 / 1.380649e-23, rel=1e-12)
    assert c7o2h10._KCAL_PER["hartree"] == pytest.approx(627.509474, rel=1e-9)
    assert c7o2h10._KCAL_PER["eV"] == pytest.approx(23.060548, rel=1e-8)


def test_force_step_equals_the_old_formula():
    forces = np.random.default_rng(0).normal(0.0, 30.0, size=(4, len(ETHANOL_Z), 3))  # kcal/mol/Å
    old_masses = np.array([OLD_ELEMENTS[int(z)][2] for z in ETHANOL_Z])
    old = forces / old_masses[:, None] * 4.184e-4 * (0.5 * 2) ** 2
    np.testing.assert_allclose(units.force_step(forces, ETHANOL_Z, 0.5, 2), old, rtol=1e-9)


def test_kinetic_temperature_equals_the_old_constants():
    x = ETHANOL_X[None] + 0.02 * np.random.default_rng(1).normal(size=(12, len(ETHANOL_Z), 3))
    new = D.kinetic_temperature(x, ETHANOL_Z, dt_fs=0.5, remove_rotation=False)
    m = np.array([OLD_ELEMENTS[int(z)][2] for z in ETHANOL_Z])
    v = (x[2:] - x[:-2]) / 1.0
    v = v - np.einsum("a,fai->fi", m, v)[:, None, :] / m.sum()
    old = np.einsum("a,fai,fai->f", m, v, v) * 1.66053906660e-17 / ((3 * len(m) - 3) * 1.380649e-23)
    np.testing.assert_allclose(new, old, rtol=1e-12)


def _old_wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """The hand-written W1 this project had: |F_a - F_b| integrated exactly on the merged sorted sample."""
    a, b = np.sort(a), np.sort(b)
    merged = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, merged[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, merged[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(merged)))


def test_scipy_wasserstein_equals_the_old_hand_written_one():
    rng = np.random.default_rng(2)
    for n, m in ((5, 7), (200, 150), (1, 40)):
        a, b = rng.normal(1.5, 0.1, n), rng.gamma(2.0, 0.3, m)
        assert D.wasserstein1(a, b) == pytest.approx(_old_wasserstein1(a, b), rel=1e-12, abs=1e-15)
    x = ETHANOL_X[None] + 0.03 * rng.normal(size=(20, len(ETHANOL_Z), 3))
    y = ETHANOL_X[None] + 0.05 * rng.normal(size=(20, len(ETHANOL_Z), 3))
    pairs = D.bond_types(ETHANOL_Z, D._reference_bonds(y, ETHANOL_Z))["C-H"]
    assert D.bond_length_w1(x, y, ETHANOL_Z)["C-H"] == pytest.approx(
        _old_wasserstein1(D.bond_lengths(x, pairs).ravel(), D.bond_lengths(y, pairs).ravel()), rel=1e-12)


def _split_xyz(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The whitespace split the old reader did: symbols, (frames, atoms, k) numbers, comments."""
    lines = path.read_text().splitlines()
    n = int(lines[0])
    blocks = [lines[i : i + n + 2] for i in range(0, len(lines), n + 2) if lines[i].strip()]
    rows = [[line.split() for line in b[2:]] for b in blocks]
    return [r[0] for r in rows[0]], np.array([[[float(v) for v in r[1:]] for r in f] for f in rows]), \
        [b[1] for b in blocks]  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "diffmd/data/structures").glob("*.xyz"))
                         + [REPO / "tests/data/md17_ethanol_first3.xyz"], ids=lambda p: p.name)  # fmt: skip
def test_ase_xyz_reader_gives_the_old_numbers_bit_for_bit(path):
    symbols, numbers, comments = _split_xyz(path)
    frames = read_xyz(path)
    assert [elements.symbol(z) for z in frames.atomic_numbers] == symbols
    np.testing.assert_array_equal(frames.positions, numbers[:, :, :3])
    if numbers.shape[2] > 3:
        np.testing.assert_array_equal(frames.extra, numbers[:, :, 3:])
    else:
        assert frames.extra is None
    assert frames.comments == [c.strip() for c in comments]
