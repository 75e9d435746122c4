"""diffmd.dynamics: the integrators the data and the simulating rows share, continuing stored data exactly, and
the equipartitioned start. A Lennard-Jones cluster (ASE's calculator, analytic forces) keeps them fast."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.lj import LennardJones
from ase.constraints import FixCom
from ase.md import velocitydistribution as vd
from ase.optimize import BFGS

from diffmd import dynamics as D

pytest.importorskip("ase.md.nose_hoover_chain")

#: argon-like units: sigma 3.4 Å, epsilon 0.0104 eV; 40 K with a 5 fs step (a vibration period ~ 1 ps)
LJ = {"sigma": 3.4, "epsilon": 0.0104, "rc": 10.0, "smooth": True}
DT_FS, T_K = 5.0, 40.0


def _cluster(n: int = 6, seed: int = 0) -> Atoms:
    """A relaxed LJ cluster of ``n`` argon atoms (an octahedron for 6), calculator and FixCom set."""
    rng = np.random.default_rng(seed)
    pos = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)[:n] * 2.6
    atoms = Atoms(f"Ar{n}", positions=pos + 0.01 * rng.standard_normal((n, 3)))
    atoms.calc = LennardJones(**LJ)
    BFGS(atoms, logfile=None).run(fmax=1e-6)
    atoms.set_constraint(FixCom())
    return atoms


def _thermal(atoms: Atoms, seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    vd.thermalize_momenta(atoms, T_K, rng=rng) if hasattr(vd, "thermalize_momenta") else \
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=T_K, rng=rng)
    vd.Stationary(atoms)
    vd.ZeroRotation(atoms)
    return atoms


def _run(kind: str, n_steps: int, seed: int = 1, coupling: str = "global") -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (n+1, N, 3) of a ``kind`` run and, for Nosé-Hoover, the chain at each frame's half step."""
    atoms = _thermal(_cluster(), seed)
    dyn = D.make_dynamics(kind, atoms, DT_FS, temperature_K=T_K, coupling=coupling)
    xs, chain = [atoms.get_positions()], [np.zeros(D.chain_size(len(atoms), coupling))]
    for _ in range(n_steps):
        dyn.step()
        xs.append(atoms.get_positions())
        chain.append(getattr(dyn, "half_step_state", None))
    return np.array(xs), (np.array(chain) if kind == "nose_hoover" else None)


def _continue(kind: str, xs: np.ndarray, chain: np.ndarray | None, t: int, n_steps: int) -> np.ndarray:
    atoms = Atoms(f"Ar{xs.shape[1]}", positions=xs[t])
    atoms.calc = LennardJones(**LJ)
    atoms.set_constraint(FixCom())
    dyn = D.continue_dynamics(kind, atoms, xs[t] - xs[t - 1], DT_FS, temperature_K=T_K,
                              chain_state=None if chain is None else chain[t])  # fmt: skip
    out = [atoms.get_positions()]
    for _ in range(n_steps):
        dyn.step()
        out.append(atoms.get_positions())
    return np.array(out)


def test_nose_hoover_step_is_ases():
    """The subclass that records the half-step chain state integrates exactly as ASE's NoseHooverChainNVT."""
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    ours = _thermal(_cluster(), 3)
    theirs = ours.copy()
    theirs.calc = LennardJones(**LJ)
    theirs.set_constraint(FixCom())
    a = D.nose_hoover(ours, DT_FS, T_K)
    b = NoseHooverChainNVT(theirs, timestep=DT_FS * units.fs, temperature_K=T_K,
                           tdamp=D.NOSE_HOOVER_TDAMP_STEPS * DT_FS * units.fs, tchain=D.NOSE_HOOVER_CHAIN)  # fmt: skip
    b._thermostat = type(b._thermostat)(num_atoms_global=D.internal_dof(6) / 3.0, masses=b.masses,
                                        temperature_K=T_K, tdamp=D.NOSE_HOOVER_TDAMP_STEPS * DT_FS * units.fs,
                                        tchain=D.NOSE_HOOVER_CHAIN)  # fmt: skip
    for _ in range(50):
        a.step()
        b.step()
    np.testing.assert_array_equal(ours.get_positions(), theirs.get_positions())
    np.testing.assert_array_equal(ours.get_momenta(), theirs.get_momenta())
    assert a.half_step_state.shape == (D.chain_size(),) and np.abs(a.half_step_state).max() > 0


@pytest.mark.parametrize("kind", ["nose_hoover", "nve"])
def test_continuing_stored_frames_repeats_the_run(kind):
    """From two stored frames (and the half-step chain state) the next 100 steps are the stored ones to rounding;
    without the chain state Nosé-Hoover data is not followed (the thermostat matters)."""
    xs, chain = _run(kind, 140)
    again = _continue(kind, xs, chain, 30, 100)
    assert np.abs(again - xs[30:131]).max() < 1e-10
    if kind == "nose_hoover":
        nve = _continue("nve", xs, None, 30, 100)
        assert np.abs(nve - xs[30:131]).max() > 1e-4
        with pytest.raises(ValueError, match="chain state"):
            _continue("nose_hoover", xs, None, 30, 1)


def test_massive_chains_continue_exactly_and_hold_every_degree_of_freedom_at_the_bath(monkeypatch):
    """Massive Nosé-Hoover chains (one per Cartesian degree of freedom): the stored state (its size says the
    coupling) continues the run to rounding; the centre of mass stays put; every atom's kinetic temperature
    averages the bath's (with the centre of mass fixed each degree of freedom's canonical share is
    k_B·T·(1 - 1/N) for equal masses). The time constant is the data's in steps (20 fs at 0.5 fs: 40 steps)."""
    monkeypatch.setattr(D, "MASSIVE_TDAMP_FS", 40 * DT_FS)
    xs, chain = _run("nose_hoover", 140, coupling="massive")
    assert chain.shape == (141, D.chain_size(6, "massive")) == (141, 2 * 15 * D.NOSE_HOOVER_CHAIN)
    assert D.coupling_of(chain.shape[1], 6) == "massive" and D.coupling_of(D.chain_size(), 6) == "global"
    again = _continue("nose_hoover", xs, chain, 30, 100)
    assert np.abs(again - xs[30:131]).max() < 1e-10
    glob = _continue("nose_hoover", xs, chain[:, : D.chain_size()] * 0 + chain[30, : D.chain_size()], 30, 100)
    assert np.abs(glob - xs[30:131]).max() > 1e-4  # the global chain is another dynamics
    assert np.abs(xs.mean(axis=1) - xs[0].mean(axis=0)).max() < 1e-10  # equal masses: the centre of mass
    with pytest.raises(ValueError, match="fits neither coupling"):
        D.coupling_of(7, 6)
    # a long run at a strong coupling: every atom's time-averaged kinetic temperature at the bath's
    atoms = _thermal(_cluster(), 4)
    dyn = D.make_dynamics("nose_hoover", atoms, DT_FS, temperature_K=T_K, coupling="massive")
    ke, conserved = [], [dyn.get_conserved_energy()]
    for _ in range(4000):
        dyn.step()
        ke.append((atoms.get_momenta() ** 2).sum(1) / atoms.get_masses())  # 2 x kinetic energy per atom, eV
        conserved.append(dyn.get_conserved_energy())
    # the extended system's energy is conserved (to the integrator's order: 1.8e-5 eV over 20 ps, 0.005 k_B·T; an
    # earlier version that projected the centre of mass out after each scaling drifted by 6 k_B·T)
    assert np.ptp(conserved) < 0.02 * units.kB * T_K, np.ptp(conserved)
    per_atom = np.mean(ke[500:], axis=0) / (3 * units.kB * (1 - 1 / 6))
    assert np.abs(per_atom / T_K - 1).max() < 0.15, per_atom
    assert abs(dyn._thermostat.get_thermostat_energy()) > 0


def test_chain_state_round_trip_and_validation():
    atoms = _thermal(_cluster(), 2)
    dyn = D.nose_hoover(atoms, DT_FS, T_K)
    dyn.run(5)
    state = D.get_chain_state(dyn)
    other = D.nose_hoover(atoms.copy(), DT_FS, T_K)
    D.set_chain_state(other, state)
    np.testing.assert_array_equal(D.get_chain_state(other), state)
    with pytest.raises(ValueError, match="chain state"):
        D.set_chain_state(other, state[:3])
    with pytest.raises(ValueError, match="dynamics must be one of"):
        D.make_dynamics("berendsen", atoms, DT_FS)


def test_equipartition_start_puts_k_t_in_every_mode():
    """Every vibrational mode at k_B·T (harmonic energy of the state projected on the modes), no net momentum,
    no angular momentum; the 6-atom cluster has 3N - 6 = 12 modes."""
    atoms = _cluster()
    x0 = atoms.get_positions()
    omega, modes = D.normal_modes(atoms)
    assert omega.shape == (12,) and modes.shape == (18, 12) and (omega > 0).all()
    info = D.equipartition_start(atoms, T_K, np.random.default_rng(4), large_amplitude_A=10.0)
    assert info["n_modes"] == 12 and info["n_kinetic"] == 0
    s = np.repeat(np.sqrt(atoms.get_masses()), 3)
    q = modes.T @ (s * (atoms.get_positions() - x0).reshape(-1))
    qdot = modes.T @ (s * atoms.get_velocities().reshape(-1))
    energy = 0.5 * qdot**2 + 0.5 * (omega * q) ** 2
    np.testing.assert_allclose(energy, units.kB * T_K, rtol=0.05)  # exact before the rotation is removed
    assert abs(energy.mean() / (units.kB * T_K) - 1) < 0.02
    assert np.abs(atoms.get_momenta().sum(0)).max() < 1e-12
    assert np.abs(atoms.get_angular_momentum()).max() < 1e-10
    # large-amplitude modes start at the minimum with all their energy kinetic
    atoms = _cluster()
    info = D.equipartition_start(atoms, T_K, np.random.default_rng(4), large_amplitude_A=0.0)
    assert info["n_kinetic"] == 12
    np.testing.assert_allclose(atoms.get_positions(), x0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_kinetic_energy(), 12 * units.kB * T_K, rtol=1e-9)


def test_normal_modes_refuse_a_saddle():
    atoms = _cluster()
    atoms.set_positions(atoms.get_positions() * 1.3, apply_constraint=False)  # stretched past the inflection point
    with pytest.raises(ValueError, match="not a minimum"):
        D.normal_modes(atoms)


def test_internal_dof_and_wavenumbers():
    assert D.internal_dof(9) == 21 and D.internal_dof(2) == 1 and D.internal_dof(3) == 3
    # 1 rad per ASE time unit (10.18 fs) is 521.5 cm^-1
    assert D.wavenumbers_cm(np.array([1.0]))[0] == pytest.approx(521.47, rel=1e-4)
