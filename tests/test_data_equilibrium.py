"""The data's equilibrium report: per-bond-type kinetic temperature and bond-length spread against rMD17 DFT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffmd.data import equilibrium as E

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def _diatomics(energies_K: list[float], n_frames: int = 4000, dt_fs: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Independent harmonic O-H 'molecules' side by side (far apart), each vibrating along x with total energy
    k_B·E: positions (F, 2·n, 3) Å. A harmonic stretch's time-averaged μv² is its energy: T_kin = E."""
    from ase import units
    from ase.data import atomic_masses

    mu = atomic_masses[8] * atomic_masses[1] / (atomic_masses[8] + atomic_masses[1])  # u
    omega = 2 * np.pi / 9.0  # rad/fs: a 9 fs O-H period
    t = np.arange(n_frames) * dt_fs
    x = np.zeros((n_frames, 2 * len(energies_K), 3))
    for k, e in enumerate(energies_K):
        amp = np.sqrt(2 * e * units._k / (units._amu * 1e10) / mu) / omega  # Å (energy in u·Å²/fs²)
        r = 0.97 + amp * np.cos(omega * t + k)
        x[:, 2 * k] = [10.0 * k, 0, 0]
        x[:, 2 * k + 1, 0] = 10.0 * k + r * atomic_masses[8] / (atomic_masses[8] + atomic_masses[1])
        x[:, 2 * k, 0] -= r * atomic_masses[1] / (atomic_masses[8] + atomic_masses[1])
    return x, np.array([8, 1] * len(energies_K))


#: central differences of an exact cosine sampled every 0.5 fs (a 9 fs period) see sin(ωdt)/ωdt of its
#: velocity: 4% less kinetic energy (data made by velocity Verlet has the integrator's velocity exactly)
SINC2 = (np.sin(2 * np.pi / 9 * 0.5) / (2 * np.pi / 9 * 0.5)) ** 2


def test_bond_temperature_is_the_stretch_energy():
    x, z = _diatomics([500.0, 45.0])
    temps = E.bond_temperatures(x, z, 0.5, [(0, 1), (2, 3)])
    np.testing.assert_allclose(temps, [500.0 * SINC2, 45.0 * SINC2], rtol=2e-3)


def test_equilibration_check_flags_a_cold_bond_and_a_narrow_spread():
    """The check passes equipartitioned bonds and fails a cold one, naming it; a spread below half the
    reference's is flagged (the issue's quick ethanol: O-H at 45 K, std 0.0097 against DFT's 0.0356 Å)."""
    x, z = _diatomics([500.0, 480.0])
    rows = E.bond_report(x, z, 0.5, 500.0, pairs=[(0, 1), (2, 3)])
    assert [r["bond_type"] for r in rows] == ["H-O", "all"] and rows[0]["n_bonds"] == 2
    assert rows[0]["within_tolerance"] and E.failures(rows[:1]) == []
    x, z = _diatomics([500.0, 45.0])
    ref = {"bonds": [[0, 1, 0.97, 0.0356], [2, 3, 0.97, 0.0356]]}
    rows = E.bond_report(x, z, 0.5, 500.0, ref, pairs=[(0, 1), (2, 3)])
    oh = rows[0]
    assert not oh["within_tolerance"] and oh["T_kin_K"] == pytest.approx(272.5 * SINC2, rel=2e-3)
    x1, z1 = _diatomics([45.0])
    one = E.bond_report(x1, z1, 0.5, 500.0, {"bonds": [[0, 1, 0.97, 0.0356]]}, pairs=[(0, 1)])
    assert one[0]["spread_below_half_dft"] and one[0]["std_ratio"] < 0.5
    problems = E.failures(one)
    assert any("H-O: kinetic temperature" in p and "interval" in p and "does not hold the bath's 500 K" in p
               for p in problems)  # fmt: skip
    assert any("below half the DFT" in p for p in problems)


def test_block_interval_sees_the_correlation_time():
    """Block averaging on an AR(1) series (φ = 0.95: integrated correlation time (1 + φ)/(1 - φ) = 39 frames): the
    standard error is the correlated one, √39 ≈ 6x the naive σ/√n, within 30%; on white noise it is σ/√n; too
    short a series has no interval."""
    rng = np.random.default_rng(0)
    n, phi = 2**14, 0.95
    e = rng.standard_normal(n)
    y = np.empty(n)
    y[0] = e[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        y[t] = phi * y[t - 1] + e[t]
    ci = E.block_interval(500.0 + y, 0.5)
    sigma = 1 / np.sqrt(1 - phi**2)
    expected = sigma * np.sqrt((1 + phi) / (1 - phi) / n)
    assert ci["se"] == pytest.approx(expected, rel=0.3) and ci["se"] > 4 * sigma / np.sqrt(n)
    assert ci["lo"] < ci["mean"] < ci["hi"] and ci["n_blocks"] >= E.MIN_BLOCKS and ci["block_fs"] >= 32 * 0.5
    white = E.block_interval(rng.standard_normal(n), 0.5)
    assert white["se"] == pytest.approx(1 / np.sqrt(n), rel=0.3)
    assert E.block_interval(np.ones(10), 0.5)["lo"] is None


def test_internal_temperature_removes_rigid_rotation():
    """A rigidly rotating molecule has no internal kinetic energy."""
    from diffmd.data.isomers import md17_start_structure

    z, x0 = md17_start_structure("ethanol")
    x0 = x0 - x0.mean(0)
    angles = np.linspace(0, 0.3, 50)
    frames = np.array([x0 @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).T
                       for a in angles])  # fmt: skip
    assert E.internal_temperature(frames, z, 0.5) < 1e-6


def test_packaged_reference_matches_the_rmd17_sample():
    """The packaged ethanol statistics (1000 rMD17 frames) against the 200-frame sample in tests/data (its
    first 200): the same bonds, means within 0.01 Å, spreads within 20%."""
    ref = E.references()
    assert set(ref) == {"aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene", "salicylic", "toluene",
                        "uracil"}  # fmt: skip
    sample = E.reference_from_rmd17(DATA / "rmd17_ethanol_sample200.npz")
    full = ref["ethanol"]
    assert full["n_frames"] == 1000 and sample["atomic_numbers"] == full["atomic_numbers"]
    assert [b[:2] for b in sample["bonds"]] == [b[:2] for b in full["bonds"]]
    for (_, _, m, s), (_, _, fm, fs) in zip(sample["bonds"], full["bonds"]):
        assert abs(m - fm) < 0.01 and abs(s / fs - 1) < 0.2
    oh = [b for b in full["bonds"] if {full["atomic_numbers"][b[0]], full["atomic_numbers"][b[1]]} == {1, 8}]
    assert len(oh) == 1 and oh[0][3] == pytest.approx(0.0356, abs=5e-4)  # the DFT O-H spread


def test_report_cli_on_a_trajectory_file(tmp_path):
    """The data-stage command: CSV + Markdown beside the trajectory, one line of JSON with the check."""
    import subprocess
    import sys

    from diffmd.data.trajectory import Trajectory, save_trajectory

    x, z = _diatomics([500.0], n_frames=200)
    save_trajectory(tmp_path / "oh.npz", Trajectory(positions=x, atomic_numbers=z, dt_fs=0.5, temperature_K=500.0,
                                                    name="oh", dataset="md17", source="local"))  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "diffmd.data.equilibrium", "--trajectory", str(tmp_path / "oh.npz"),
                          "--out-csv", str(tmp_path / "r.csv"), "--out-md", str(tmp_path / "r.md")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1])["check"] == "passes"
    assert (tmp_path / "r.csv").read_text().splitlines()[0].split(",") == list(E.COLUMNS)
    assert "none (no DFT frames for this molecule)" in (tmp_path / "r.md").read_text()


@pytest.mark.slow
def test_quick_profile_ethanol_oh_spread_is_at_least_half_the_dft_one():
    """The quick profile's GFN2-xTB ethanol (its own settings: massive bath, equipartitioned start, massive
    Nosé-Hoover chains, 4 ps): the O-H bond-length spread is at least half the DFT one (the issue's data: 0.27 of
    it, O-H at 45 K), the whole molecule at the bath's temperature, and every bond type within ±35% of it with an
    interval narrower than ±40% (measured at seed 1: 441-592 K, intervals ±11% (C-H) to ±34% (O-H); the global
    chain's quick data: 412-900 K). Not ±15%: one 4 ps trajectory's single-bond temperatures scatter by ~10% (1σ)
    around the bath's, so ±15% fails for about one seed in four (docs/data_equilibrium.md); the report prints it."""
    from diffmd.config import deep_update
    from diffmd.data.xtb_md import set_threads, simulate_md17

    set_threads(1)
    cfg = deep_update(yaml.safe_load((REPO / "config.yaml").read_text()),
                      yaml.safe_load((REPO / "config" / "quick.yaml").read_text()))  # fmt: skip
    traj = simulate_md17("ethanol", cfg["data"]["md17"]["xtb"])
    ref = E.references()["ethanol"]
    rows = E.bond_report(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, ref,
                         [(i, j) for i, j, _, _ in ref["bonds"]])  # fmt: skip
    oh = next(r for r in rows if r["bond_type"] == "H-O")
    assert oh["std_ratio"] >= 0.5, oh
    assert not oh["spread_below_half_dft"]
    assert abs(rows[-1]["T_ratio"] - 1) < 0.15  # the whole molecule at the bath's temperature
    for r in rows[:-1]:
        assert abs(r["T_ratio"] - 1) <= 0.35 and r["T_hi_K"] - r["T_lo_K"] <= 0.8 * traj.temperature_K, r
