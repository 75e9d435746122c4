"""GFN2-xTB source: format, reproducibility, isomer list, and realism against DFT MD17 structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffmd.data.xtb_md import set_threads

set_threads(1)  # before tblite is imported by the simulations below

from diffmd.data.isomers import C7H10O2_SMILES, check_formula, md17_start_structure, xtb_isomer_names  # noqa: E402
from diffmd.data.trajectory import load_trajectory, save_trajectory  # noqa: E402
from diffmd.data.xtb_md import bonds, simulate_isomer, simulate_md17  # noqa: E402

DATA = Path(__file__).parent / "data"
SHORT = {"temperature_K": 500.0, "dt_fs": 0.5, "n_frames": 30, "equilibration_steps": 10,
         "friction_per_fs": 0.01, "seed": 7, "massive_langevin_steps": 20}


@pytest.fixture(scope="module")
def ethanol_short():
    return simulate_md17("ethanol", SHORT)


def test_short_run_format(ethanol_short, tmp_path):
    traj = ethanol_short
    assert traj.positions.shape == (30, 9, 3) and traj.forces.shape == (30, 9, 3) and traj.energies.shape == (30,)
    assert traj.source == "xtb" and traj.dataset == "md17" and traj.dt_fs == 0.5 and traj.temperature_K == 500.0
    z, _ = md17_start_structure("ethanol")
    np.testing.assert_array_equal(traj.atomic_numbers, z)  # MD17 atom order
    # GFN2-xTB total energy of ethanol is about -11.4 hartree: about -7,150 kcal/mol
    assert -7400 < traj.energies.mean() < -6900
    assert 0.001 < np.linalg.norm(np.diff(traj.positions, axis=0), axis=-1).mean() < 0.05  # Å per 0.5 fs
    prov = traj.provenance
    assert prov["settings"]["seed"] == 7 and prov["topology_preserved"] and prov["versions"]["tblite"]
    save_trajectory(tmp_path / "e.npz", traj)
    assert load_trajectory(tmp_path / "e.npz").provenance["method"] == "GFN2-xTB"


def test_same_seed_same_trajectory(ethanol_short):
    again = simulate_md17("ethanol", SHORT)
    np.testing.assert_array_equal(again.positions, ethanol_short.positions)
    other = simulate_md17("ethanol", {**SHORT, "seed": 8})
    assert np.abs(other.positions - ethanol_short.positions).max() > 1e-3


def test_isomer_list_is_distinct_c7h10o2():
    from rdkit import Chem

    canonical = set()
    for smiles in C7H10O2_SMILES:
        check_formula(smiles)
        canonical.add(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    assert len(canonical) == len(C7H10O2_SMILES) >= 20
    assert xtb_isomer_names(3) == ["xtb01", "xtb02", "xtb03"]
    with pytest.raises(ValueError, match="n_isomers"):
        xtb_isomer_names(len(C7H10O2_SMILES) + 1)
    with pytest.raises(ValueError, match="not C7H10O2"):
        check_formula("CCO")


def test_isomer_short_run():
    traj = simulate_isomer("xtb03", {**SHORT, "temperature_K": 100.0, "dt_fs": 1.0, "n_frames": 12})
    assert traj.positions.shape == (12, 19, 3) and traj.name == "xtb03" and traj.dataset == "c7o2h10"
    assert sorted(np.bincount(traj.atomic_numbers, minlength=9)[[1, 6, 8]].tolist()) == [2, 7, 10]
    assert traj.provenance["start"]["smiles"] == C7H10O2_SMILES[2]


@pytest.mark.slow
def test_bond_lengths_match_dft_md17_at_500K():
    """A 500 K GFN2-xTB ethanol run against 200 rMD17 (PBE, 500 K) structures: bond-length means
    within 0.04 Å per bond (GFN2 vs PBE differ by about 0.01-0.03 Å) and similar spreads."""
    ref = np.load(DATA / "rmd17_ethanol_sample200.npz")
    traj = simulate_md17("ethanol", {**SHORT, "n_frames": 600, "equilibration_steps": 200, "seed": 1})
    np.testing.assert_array_equal(traj.atomic_numbers, ref["nuclear_charges"])
    pairs = sorted(bonds(traj.atomic_numbers, ref["coords"][0]))
    assert len(pairs) == 8  # C-C, C-O, 5 C-H, O-H
    diffs = []
    for i, j in pairs:
        sim = np.linalg.norm(traj.positions[:, i] - traj.positions[:, j], axis=-1)
        dft = np.linalg.norm(ref["coords"][:, i] - ref["coords"][:, j], axis=-1)
        diffs.append(sim.mean() - dft.mean())
        assert abs(diffs[-1]) < 0.04, (i, j, sim.mean(), dft.mean())
        assert 0.5 < sim.std() / dft.std() < 2.0, (i, j, sim.std(), dft.std())
    assert np.abs(diffs).mean() < 0.02
