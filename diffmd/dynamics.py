"""Molecular dynamics with ASE, shared by the GFN2-xTB data source and every row that simulates.

One place decides how a molecule is integrated, so the data (:mod:`diffmd.data.xtb_md`) and the rows that
re-simulate it (the GFN2-xTB oracles, ``sgdml``, ``ase_calculator``: :mod:`diffmd.models.physics`) run the
same integrators with the same settings. Units are ASE's (eV, Å, u, ASE time) unless a name says fs or K.

Dynamics (:data:`DYNAMICS`):

* ``nve``: ``ase.md.verlet.VelocityVerlet``;
* ``nose_hoover``: ASE's Nosé-Hoover chain NVT (``ase.md.nose_hoover_chain.NoseHooverChainNVT``; chain of
  :data:`NOSE_HOOVER_CHAIN`, ``tdamp`` = :data:`NOSE_HOOVER_TDAMP_STEPS` steps), thermostatting the 3N - 6
  internal degrees of freedom (:class:`NoseHooverChain`);
* ``langevin``: ``ase.md.langevin.Langevin`` (``fixcm=False``; the centre of mass is held by ``FixCom``).

Continuing stored data exactly. Velocity Verlet and the Nosé-Hoover chain (a Trotter splitting: thermostat
half step, velocity Verlet, thermostat half step) move the positions with the half-step momentum, so
``x(t) - x(t-1) = h·p(t-½)/m`` holds to rounding. From two stored frames and the force at x(t):

* ``nve``: p(t) = m·(x(t) - x(t-1))/h + F(t)·h/2;
* ``nose_hoover``: p(t) = NHC_{h/2}(m·(x(t) - x(t-1))/h + F(t)·h/2) with the chain in the state it had at the
  half step t-½ (:attr:`NoseHooverChain.half_step_state`, what the data stores per frame), which the
  thermostat half step brings to its state at t. These are the integrator's own operations, so the
  continuation repeats the data's next steps to rounding (:func:`continue_dynamics`).

Langevin dynamics draws new noise: it continues the same *ensemble*, never the same trajectory.

Equilibration (:func:`equipartition_start`): a deterministic production run keeps, for picoseconds, the energy
each vibration had when it started (measured on GFN2-xTB ethanol at 500 K: after a massive Langevin bath,
the O-H stretch of a Nosé-Hoover run stayed at 66 K on average over 10 ps). The data source therefore
starts its deterministic runs from the bath's basin minimum with every vibrational normal mode at its
equipartition energy k_B·T (random phases).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Thermostat time scale of the Nosé-Hoover chain in MD steps (ASE's suggestion: 100 x the time step).
NOSE_HOOVER_TDAMP_STEPS = 100.0
#: Thermostats in the Nosé-Hoover chain.
NOSE_HOOVER_CHAIN = 3
#: Time constant (fs) of the massive Nosé-Hoover chains (one chain per degree of freedom; see
#: :class:`MassiveNoseHooverChainThermostat`).
MASSIVE_TDAMP_FS = 20.0
#: How the Nosé-Hoover thermostat couples: ``global`` (one chain on the total kinetic energy) or ``massive``
#: (one chain per degree of freedom).
NOSE_HOOVER_COUPLINGS = ("global", "massive")
#: Integrators a simulating row can run (``dynamics``); ``data`` in a model resolves to one of them.
DYNAMICS = ("nve", "nose_hoover", "langevin")
#: Normal modes whose harmonic amplitude at k_B·T moves an atom farther than this (Å: torsions, floppy bends)
#: start with all their energy kinetic at Q = 0: displaced along the linear mode, a rotation would stretch the
#: bonds (by d²/2r: 0.06 Å for the O-H torsion of ethanol, more than the stretch's own amplitude, 0.04 Å).
LARGE_AMPLITUDE_A = 0.1
#: Finite-difference step (Å) of the Hessian of :func:`normal_modes`.
HESSIAN_STEP_A = 0.005


def internal_dof(n_atoms: int) -> int:
    """Degrees of freedom that carry kinetic energy with the centre of mass fixed and no rotation: 3N - 6
    (3N - 5 for one or two atoms, which cannot rotate about their axis)."""
    return 3 * n_atoms - 6 if n_atoms > 2 else max(3 * n_atoms - 5, 1)


def chain_size(n_atoms: int | None = None, coupling: str = "global") -> int:
    """Numbers per frame of the Nosé-Hoover chain state: η then p_η. ``global``: η_1..η_M, p_η,1..p_η,M (2M);
    ``massive``: the (N - 1, 3, M) arrays of η, then of p_η, flattened in C order (2·3(N - 1)·M; one chain per
    degree of freedom with the centre of mass at rest, :class:`MassiveNoseHooverChainThermostat`)."""
    if coupling == "global":
        return 2 * NOSE_HOOVER_CHAIN
    if coupling == "massive" and n_atoms is not None:
        return 2 * 3 * (int(n_atoms) - 1) * NOSE_HOOVER_CHAIN
    raise ValueError(f"Nosé-Hoover coupling must be one of {', '.join(NOSE_HOOVER_COUPLINGS)} (massive needs the "
                     f"number of atoms), got {coupling!r}")


def coupling_of(state_size: int, n_atoms: int) -> str:
    """Which Nosé-Hoover chain a stored state of ``state_size`` numbers belongs to (its size says it)."""
    for coupling in NOSE_HOOVER_COUPLINGS:
        if state_size == chain_size(n_atoms, coupling):
            return coupling
    raise ValueError(f"a Nosé-Hoover chain state of {state_size} numbers fits neither coupling for {n_atoms} atoms "
                     f"(global {chain_size()}, massive {chain_size(n_atoms, 'massive')})")


def _nhc_classes():
    try:
        from ase.md.nose_hoover_chain import NoseHooverChainNVT, NoseHooverChainThermostat
    except ImportError as exc:  # ASE < 3.25
        raise RuntimeError(f"Nosé-Hoover dynamics needs ase.md.nose_hoover_chain (ASE >= 3.25): {exc}") from None
    return NoseHooverChainNVT, NoseHooverChainThermostat


def _nose_hoover_class():
    NoseHooverChainNVT, _ = _nhc_classes()

    class NoseHooverChain(NoseHooverChainNVT):
        """ASE's ``NoseHooverChainNVT`` whose step also keeps the chain state at the half step.

        ``step`` is ASE's operator sequence unchanged (thermostat h/2, momenta h/2, positions h, momenta h/2,
        thermostat h/2; tests/test_dynamics.py checks it equals ASE's bit for bit); after the first
        thermostat half step it copies the chain (η, p_η) into :attr:`half_step_state`: the state the
        position update saw, which the data stores per frame.
        """

        half_step_state: np.ndarray | None = None

        def step(self) -> None:
            dt2 = self.dt / 2
            self._p = self._thermostat.integrate_nhc(self._p, dt2)
            self.half_step_state = get_chain_state(self)
            self._integrate_p(dt2)
            self._integrate_q(self.dt)
            self._integrate_p(dt2)
            self._p = self._thermostat.integrate_nhc(self._p, dt2)
            self._update_atoms()

    return NoseHooverChain


class MassiveNoseHooverChainThermostat:
    """Massive Nosé-Hoover chains (Martyna, Klein & Tuckerman, J. Chem. Phys. 97, 2635 (1992); Tuckerman et al.,
    J. Chem. Phys. 99, 2796 (1993)): one chain of M thermostats on every momentum degree of freedom, integrated
    by ASE's scheme for a chain (:class:`ase.md.nose_hoover_chain.NoseHooverChainThermostat`: Suzuki-Yoshida
    fourth order, the same operator sequence) applied elementwise. Drop-in for ASE's thermostat in
    ``NoseHooverChainNVT`` (``integrate_nhc(p, delta)``, ``_eta``, ``_p_eta``, ``get_thermostat_energy``).

    A global chain rescales all velocities at once: it holds the total kinetic energy at the bath's but leaves
    its share among the vibrations to the molecule, and a 9-atom molecule does not share it on picoseconds
    (docs/data_equilibrium.md). Here every degree of freedom exchanges energy with its own bath, so every
    vibration relaxes to k_B·T in a few ``tdamp``; the dynamics stays deterministic (an exact oracle continues
    it from the stored chains).

    The degrees of freedom: the centre of mass stays at rest (``FixCom``, as the data), so the thermostats act
    on the 3(N - 1) mass-weighted momenta orthogonal to it, q = Bᵀ(p/√m) per Cartesian axis, with B the N - 1
    columns of the Householder reflection that maps the centre-of-mass direction u = √m/√M onto the lightest
    atom's axis (an orthonormal basis fixed by the masses alone; a hydrogen's column is that atom's own momentum
    to within a few percent). Each q has kinetic energy q²/2 and target k_B·T, so this is the textbook massive
    chain in those coordinates: its conserved energy (:meth:`get_thermostat_energy` + kinetic + potential) is
    conserved to the integrator's order and the centre of mass is never moved. Rotation is thermostatted like
    the vibrations (a free molecule at T rotates with 3/2 k_B·T; no bond stretch sees it).
    """

    def __init__(self, masses: np.ndarray, temperature_K: float, tdamp: float, tchain: int = NOSE_HOOVER_CHAIN):
        from ase import units
        from ase.md.nose_hoover_chain import FOURTH_ORDER_COEFFS

        self._coeffs = tuple(FOURTH_ORDER_COEFFS)
        m = np.asarray(masses, dtype=np.float64).reshape(-1)
        if m.size < 2:
            raise ValueError("massive Nosé-Hoover chains need at least two atoms (one has no internal motion)")
        self._sqrt_m = np.sqrt(m)[:, None]  # (N, 1)
        self._u = self._sqrt_m / np.sqrt(m.sum())  # (N, 1): the centre-of-mass direction, mass-weighted
        pivot = int(np.argmin(m))
        w = self._u[:, 0].copy()
        w[pivot] -= 1.0
        reflection = np.eye(m.size) - 2.0 * np.outer(w, w) / (w @ w)
        self._basis = np.delete(reflection, pivot, axis=1)  # (N, N - 1), orthonormal, orthogonal to u
        self._tchain = int(tchain)
        self._kT = units.kB * float(temperature_K)
        self._Q = self._kT * float(tdamp) ** 2  # every chain element thermostats one degree of freedom
        shape = (m.size - 1, 3, self._tchain)
        self._eta = np.zeros(shape)
        self._p_eta = np.zeros(shape)

    def get_thermostat_energy(self) -> float:
        return float(self._kT * self._eta.sum() + (0.5 * self._p_eta**2 / self._Q).sum())

    def integrate_nhc(self, p: np.ndarray, delta: float) -> np.ndarray:
        pi = np.asarray(p, dtype=np.float64) / self._sqrt_m  # (N, 3) mass-weighted
        com = self._u.T @ pi  # (1, 3): zero with the centre of mass at rest; kept as it is
        q = self._basis.T @ pi  # (N - 1, 3)
        for coeff in self._coeffs:
            q = self._loop(q, coeff * delta)
        return self._sqrt_m * (self._basis @ q + self._u @ com)

    def _p_eta_j(self, q: np.ndarray, j: int, delta2: float, delta4: float) -> None:
        pe, big_q = self._p_eta, self._Q
        if j < self._tchain - 1:
            pe[..., j] *= np.exp(-delta4 * pe[..., j + 1] / big_q)
        g = q**2 - self._kT if j == 0 else pe[..., j - 1] ** 2 / big_q - self._kT
        pe[..., j] += delta2 * g
        if j < self._tchain - 1:
            pe[..., j] *= np.exp(-delta4 * pe[..., j + 1] / big_q)

    def _loop(self, q: np.ndarray, delta: float) -> np.ndarray:
        delta2, delta4 = delta / 2, delta / 4
        for j in reversed(range(self._tchain)):
            self._p_eta_j(q, j, delta2, delta4)
        self._eta += delta * self._p_eta / self._Q
        q = q * np.exp(-delta * self._p_eta[..., 0] / self._Q)
        for j in range(self._tchain):
            self._p_eta_j(q, j, delta2, delta4)
        return q


def nose_hoover(atoms, dt_fs: float, temperature_K: float, coupling: str = "global"):
    """ASE's Nosé-Hoover chain NVT on ``atoms`` (``FixCom`` set).

    ``global``: one chain on the total kinetic energy of 3N - 6 degrees of freedom. ASE's chain counts 3N
    (``3 * num_atoms_global``); with the centre of mass fixed and the angular momentum zero (and conserved by
    the deterministic dynamics in vacuum) 3N - 6 carry kinetic energy, so the thermostat is rebuilt with that
    count (its only use of ``num_atoms_global``); ``tdamp`` :data:`NOSE_HOOVER_TDAMP_STEPS` steps.
    ``massive``: one chain per degree of freedom (:class:`MassiveNoseHooverChainThermostat`),
    ``tdamp`` :data:`MASSIVE_TDAMP_FS`; the same integrator otherwise.
    """
    from ase import units

    if coupling not in NOSE_HOOVER_COUPLINGS:
        raise ValueError(f"Nosé-Hoover coupling must be one of {', '.join(NOSE_HOOVER_COUPLINGS)}, got {coupling!r}")
    _, NoseHooverChainThermostat = _nhc_classes()
    dt = float(dt_fs) * units.fs
    tdamp = NOSE_HOOVER_TDAMP_STEPS * dt
    dyn = _nose_hoover_class()(atoms, timestep=dt, temperature_K=temperature_K, tdamp=tdamp,
                               tchain=NOSE_HOOVER_CHAIN)  # fmt: skip
    if coupling == "massive":
        dyn._thermostat = MassiveNoseHooverChainThermostat(dyn.masses, temperature_K, MASSIVE_TDAMP_FS * units.fs)
        return dyn
    dyn._thermostat = NoseHooverChainThermostat(num_atoms_global=internal_dof(len(atoms)) / 3.0,
                                                masses=dyn.masses, temperature_K=temperature_K, tdamp=tdamp,
                                                tchain=NOSE_HOOVER_CHAIN)  # fmt: skip
    return dyn


def get_chain_state(dyn) -> np.ndarray:
    """Copy of a Nosé-Hoover chain's state (:func:`chain_size` numbers): η (dimensionless), then p_η (eV·ASE
    time); global (2M,), massive (2·3(N - 1)·M,) the (N - 1, 3, M) arrays flattened."""
    th = dyn._thermostat
    return np.concatenate([np.ravel(th._eta), np.ravel(th._p_eta)]).astype(np.float64)


def set_chain_state(dyn, state: np.ndarray) -> None:
    """Set a Nosé-Hoover chain's (η, p_η) from ``state``, as :func:`get_chain_state` returns it."""
    state = np.asarray(state, dtype=np.float64).reshape(-1)
    th = dyn._thermostat
    shape = np.shape(th._eta)
    m = int(np.prod(shape))
    if state.shape != (2 * m,) or not np.isfinite(state).all():
        raise ValueError(f"Nosé-Hoover chain state must be {2 * m} finite numbers, got shape {state.shape}")
    th._eta = state[:m].reshape(shape).copy()
    th._p_eta = state[m:].reshape(shape).copy()


def velocity_verlet(atoms, dt_fs: float):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    return VelocityVerlet(atoms, timestep=float(dt_fs) * units.fs)


def langevin(atoms, dt_fs: float, temperature_K: float, friction_per_fs: float, rng: np.random.Generator):
    """ASE's Langevin, every atom its own bath (a per-atom friction and noise), centre of mass held by FixCom."""
    from ase import units
    from ase.md.langevin import Langevin

    return Langevin(atoms, timestep=float(dt_fs) * units.fs, temperature_K=temperature_K,
                    friction=float(friction_per_fs) / units.fs, fixcm=False, rng=rng)  # fmt: skip


def make_dynamics(kind: str, atoms, dt_fs: float, *, temperature_K: float = 0.0, friction_per_fs: float = 0.0,
                  rng: np.random.Generator | None = None, coupling: str = "global"):  # fmt: skip
    """The integrator ``kind`` (:data:`DYNAMICS`) on ``atoms`` (``coupling``: of a Nosé-Hoover thermostat)."""
    if kind == "nve":
        return velocity_verlet(atoms, dt_fs)
    if kind == "nose_hoover":
        if temperature_K <= 0:
            raise ValueError("Nosé-Hoover dynamics needs a temperature > 0")
        return nose_hoover(atoms, dt_fs, temperature_K, coupling)
    if kind == "langevin":
        if temperature_K <= 0 or friction_per_fs <= 0 or rng is None:
            raise ValueError("Langevin dynamics needs a temperature > 0, a friction > 0 and a random generator")
        return langevin(atoms, dt_fs, temperature_K, friction_per_fs, rng)
    raise ValueError(f"dynamics must be one of {', '.join(DYNAMICS)}, got {kind!r}")


def continue_dynamics(kind: str, atoms, step_A: np.ndarray, dt_fs: float, *, data_dt_fs: float | None = None,
                      temperature_K: float = 0.0, friction_per_fs: float = 0.0, rng: np.random.Generator | None = None,
                      chain_state: np.ndarray | None = None):  # fmt: skip
    """Start ``kind`` dynamics with step ``dt_fs`` on ``atoms`` (positions x(t), calculator and ``FixCom`` set)
    so that its next steps continue data whose last step (``data_dt_fs``, default ``dt_fs``) moved the atoms by
    ``step_A`` = x(t) - x(t-1) (Å).

    Momenta: p(t) = m·step/h + F(t)·h/2 with h the data's step (the half-step momentum plus half a kick, F(t)
    the force with the ``FixCom`` constraint applied, as the integrators use it), then for ``nose_hoover`` the
    thermostat's half step h/2 from ``chain_state`` (the chain at t-½: global (2M,) or massive (2·3(N - 1)·M,), its
    size says which, :func:`coupling_of`), which also leaves the chain at its state at t. Exact for data made
    by the same integrator with step ``dt_fs`` (module docstring), second
    order otherwise. Returns the integrator.
    """
    from ase import units

    if kind == "nose_hoover" and chain_state is None:
        raise ValueError("continuing Nosé-Hoover dynamics needs the chain state at the start (the data stores none)")
    h = float(dt_fs if data_dt_fs is None else data_dt_fs) * units.fs
    masses = atoms.get_masses()[:, None]
    forces = atoms.get_forces(md=True)  # eV/Å, FixCom applied; cached for the integrator's first step
    momenta = masses * np.asarray(step_A, dtype=np.float64) / h + forces * h / 2.0
    if kind != "nose_hoover":
        atoms.set_momenta(momenta)
        return make_dynamics(kind, atoms, dt_fs, temperature_K=temperature_K, friction_per_fs=friction_per_fs,
                             rng=rng)  # fmt: skip
    coupling = coupling_of(int(np.size(chain_state)), len(atoms))
    dyn = make_dynamics(kind, atoms, dt_fs, temperature_K=temperature_K, coupling=coupling)
    set_chain_state(dyn, chain_state)
    dyn._q = atoms.get_positions()
    dyn._p = dyn._thermostat.integrate_nhc(momenta, h / 2.0)
    dyn._update_atoms()
    return dyn


# --- equilibration ------------------------------------------------------------------------------------


def hessian(atoms, step_A: float = HESSIAN_STEP_A) -> np.ndarray:
    """(3N, 3N) Hessian (eV/Å²) of ``atoms``' calculator by central differences of its forces (6N calls)."""
    x0 = atoms.get_positions()
    n = len(atoms)
    out = np.empty((3 * n, 3 * n))
    try:
        for a in range(n):
            for c in range(3):
                forces = []
                for sign in (1.0, -1.0):
                    x = x0.copy()
                    x[a, c] += sign * step_A
                    atoms.set_positions(x, apply_constraint=False)
                    forces.append(atoms.get_forces(apply_constraint=False).reshape(-1))
                out[3 * a + c] = -(forces[0] - forces[1]) / (2.0 * step_A)
    finally:
        atoms.set_positions(x0, apply_constraint=False)
    return 0.5 * (out + out.T)


def _external_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations, (3N, k) with k = 6 (5 for a linear molecule)."""
    sq = np.sqrt(masses)[:, None]
    r = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vecs = []
    for c in range(3):
        e = np.zeros(3)
        e[c] = 1.0
        vecs.append((sq * np.broadcast_to(e, positions.shape)).reshape(-1))
        vecs.append((sq * np.cross(e, r)).reshape(-1))
    u, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()]


def normal_modes(atoms, step_A: float = HESSIAN_STEP_A) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational normal modes of ``atoms`` at a minimum: angular frequencies (K,) in ASE units (rad per ASE
    time) and mass-weighted orthonormal modes (3N, K), K = 3N - 6 (translations and rotations projected out)."""
    masses = atoms.get_masses()
    inv = np.repeat(masses**-0.5, 3)
    h_mw = hessian(atoms, step_A) * inv[:, None] * inv[None, :]
    ext = _external_basis(atoms.get_positions(), masses)
    proj = np.eye(len(inv)) - ext @ ext.T
    w2, modes = np.linalg.eigh(proj @ h_mw @ proj)
    keep = np.sort(np.argsort(np.abs(w2))[ext.shape[1] :])  # drop the external (zero) eigenvalues
    w2, modes = w2[keep], modes[:, keep]
    if (w2 <= 0).any():
        worst = float(w2.min())
        raise ValueError(f"not a minimum: a vibrational mode has curvature {worst:.3g} eV/Å²/u (relax it first)")
    return np.sqrt(w2), modes


def wavenumbers_cm(omega: np.ndarray) -> np.ndarray:
    """Angular frequencies in ASE units -> wavenumbers (cm⁻¹)."""
    from ase import units

    return np.asarray(omega) * units.second / (2.0 * np.pi * units._c * 100.0)


def equipartition_start(atoms, temperature_K: float, rng: np.random.Generator,
                        large_amplitude_A: float = LARGE_AMPLITUDE_A) -> dict[str, Any]:  # fmt: skip
    """Set ``atoms`` (at a minimum of its calculator) to a state with every vibrational normal mode at its
    equipartition energy k_B·T: classical normal-mode sampling with fixed mode energies and random phases
    φ (Q = √(2kT)/ω·cos φ, Q̇ = -√(2kT)·sin φ in mass-weighted coordinates); a mode whose amplitude would move
    an atom farther than ``large_amplitude_A`` starts at Q = 0 with all its energy kinetic (|Q̇| = √(2kT),
    random sign). No translation, no rotation (the angular momentum the displaced positions leave, second order in
    the displacements, is removed). Returns ``{"n_modes", "n_kinetic", "lowest_cm", "highest_cm"}``.
    """
    from ase import units

    omega, modes = normal_modes(atoms)
    cm = wavenumbers_cm(omega)
    amp = np.sqrt(2.0 * units.kB * float(temperature_K))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=omega.shape)
    inv = np.repeat(atoms.get_masses() ** -0.5, 3)
    n = len(atoms)
    reach = (amp / omega) * np.linalg.norm((inv[:, None] * modes).reshape(n, 3, -1), axis=1).max(axis=0)
    soft = reach > large_amplitude_A
    q = np.where(soft, 0.0, amp / omega * np.cos(phase))
    qdot = np.where(soft, amp * np.where(np.cos(phase) >= 0, 1.0, -1.0), -amp * np.sin(phase))
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    atoms.set_positions(atoms.get_positions() + (inv * (modes @ q)).reshape(n, 3), apply_constraint=False)
    atoms.set_momenta(atoms.get_masses()[:, None] * (inv * (modes @ qdot)).reshape(n, 3), apply_constraint=False)
    # the modes carry no rotation at the minimum; at the displaced positions a small angular momentum is left
    # (second order in the displacements): removed, so the deterministic run keeps L = 0 (3N - 6 degrees of freedom)
    Stationary(atoms)
    ZeroRotation(atoms)
    return {"n_modes": int(len(omega)), "n_kinetic": int(soft.sum()), "lowest_cm": float(cm.min()),
            "highest_cm": float(cm.max())}  # fmt: skip
