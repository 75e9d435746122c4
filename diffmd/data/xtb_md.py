"""Offline molecular dynamics with GFN2-xTB (tblite's ASE calculator): the ``xtb`` data source.

Protocol (one trajectory per molecule or isomer, fully determined by the settings and the seed):

1. start geometry: an MD17 frame in MD17's atom order, or an RDKit + MMFF94 embedding of a SMILES;
2. GFN2-xTB geometry optimisation (BFGS to ``OPT_FMAX_EV_A``);
3. Maxwell-Boltzmann velocities at ``temperature_K`` from a seeded generator, centre-of-mass motion and
   rotation removed, centre of mass fixed (``FixCom``) from here on;
4. equilibration in a *massive* Langevin bath: every atom its own bath with a strong friction
   (``massive_friction_per_fs``, default 0.1/fs: every vibration relaxes in ~10 fs) for
   ``massive_langevin_steps`` steps;
5. deterministic productions (``nose_hoover``, ``nve``) with ``equipartition_start`` (default): the bath's
   configuration is relaxed to the minimum of its basin (the conformer the bath chose) and every vibrational
   normal mode gets its equipartition energy k_B·T with a random phase (:func:`diffmd.dynamics.equipartition_start`);
6. the production dynamics (``thermostat``) with step ``dt_fs``: ``equilibration_steps`` steps discarded,
   then ``n_frames`` consecutive frames recorded with potential energies and forces (kcal/mol, kcal/mol/Å).

Why step 5: a deterministic run keeps, for picoseconds, the energy each vibration had when it began. Measured
on GFN2-xTB ethanol at 500 K (docs/data_equilibrium.md): after step 4 alone, the O-H stretch's kinetic
temperature over the 650 fs quick trajectory ranged 75-1,334 K over six seeds (and stayed at 66 K over 10 ps
of Nosé-Hoover for one), whatever the bath's length; from an equipartitioned start it ranged 379-652 K.

``xtb.thermostat`` chooses the production dynamics (:data:`THERMOSTATS`, integrators of :mod:`diffmd.dynamics`):

* ``langevin`` (default): ASE's Langevin with ``friction_per_fs``; with ``massive_langevin_steps: 0`` this is
  exactly the original protocol (existing ``langevin`` data stays bit-identical);
* ``nose_hoover``: ASE's Nosé-Hoover chain NVT integrator: deterministic, the next frame a function of the state,
  as in AIMD with a Nosé-Hoover thermostat (MD17's protocol). ``nose_hoover_coupling`` says how it couples:
  ``global`` (default: one chain of 3 on the total kinetic energy of 3N - 6 degrees of freedom, ``tdamp`` = 100
  steps; ``get_temperature`` (3N - 3 degrees of freedom) reads T·(3N - 6)/(3N - 3)) or ``massive`` (one chain
  of 3 per degree of freedom, the 3N - 3 with the centre of mass at rest, ``tdamp``
  :data:`diffmd.dynamics.MASSIVE_TDAMP_FS`: every vibration exchanges energy with its own bath, so every bond
  type reaches the bath's temperature, which a global chain on a 9-atom molecule does not do in 20 ps:
  docs/data_equilibrium.md; the molecule rotates as a free molecule at T does). The chains' state at every
  frame's half step is stored (``nhc_eta``, ``nhc_p_eta`` of the trajectory file), so the ``xtb_nh`` oracle
  continues the data exactly;
* ``nve``: velocity Verlet: microcanonical, energy-conserving, deterministic.

tblite runs one OpenMP thread per job (``OMP_NUM_THREADS``, set before tblite is imported) so
Snakemake can run many simulations side by side under ``--cores``.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from diffmd import dynamics as _D
from diffmd.data.isomers import C7H10O2_SMILES, embed_smiles, isomer_index, md17_start_structure
from diffmd.data.trajectory import Trajectory
from diffmd.data.xtb_energy import METHOD, set_threads, torch_openmp_pinned  # noqa: F401  (defined there, light)
from diffmd.data.xtb_energy import calculator as _calculator
from diffmd.elements import covalent_radius
from diffmd.provenance import package_versions

OPT_FMAX_EV_A = 0.01  # eV/Å, convergence of the pre-MD geometry optimisation
OPT_MAX_STEPS = 1000
BOND_TOLERANCE = 1.25  # a bond: distance < 1.25 x sum of covalent radii (topology check only)
THERMOSTATS = ("langevin", "nose_hoover", "nve")
#: Productions that are deterministic (a function of the state): they start equipartitioned (step 5).
DETERMINISTIC = ("nose_hoover", "nve")


@dataclass(frozen=True)
class XTBSettings:
    """Simulation settings (config ``data.<dataset>.xtb``)."""

    temperature_K: float
    dt_fs: float
    n_frames: int
    equilibration_steps: int
    friction_per_fs: float
    seed: int
    accuracy: float = 1.0
    #: production dynamics, one of THERMOSTATS (``friction_per_fs`` is used by ``langevin`` only)
    thermostat: str = "langevin"
    #: steps of the massive Langevin bath before the production (step 4); 0: none (the original protocol)
    massive_langevin_steps: int = 1000
    #: friction of the massive bath (1/fs)
    massive_friction_per_fs: float = 0.1
    #: deterministic productions start from the bath's basin minimum with every normal mode at k_B·T (step 5)
    equipartition_start: bool = True
    #: ``nose_hoover`` only: ``global`` (one chain on the total kinetic energy) or ``massive`` (one chain per
    #: degree of freedom, :class:`diffmd.dynamics.MassiveNoseHooverChainThermostat`)
    nose_hoover_coupling: str = "global"

    def __post_init__(self) -> None:
        if self.thermostat not in THERMOSTATS:
            raise ValueError(f"xtb.thermostat must be one of {', '.join(THERMOSTATS)}, got {self.thermostat!r}")
        if self.nose_hoover_coupling not in _D.NOSE_HOOVER_COUPLINGS:
            raise ValueError(f"xtb.nose_hoover_coupling must be one of {', '.join(_D.NOSE_HOOVER_COUPLINGS)}, "
                             f"got {self.nose_hoover_coupling!r}")  # fmt: skip
        if self.massive_langevin_steps < 0 or not self.massive_friction_per_fs > 0:
            raise ValueError("xtb.massive_langevin_steps must be >= 0 and xtb.massive_friction_per_fs > 0")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], key: str) -> XTBSettings:
        fields = ("temperature_K", "dt_fs", "n_frames", "equilibration_steps", "friction_per_fs", "seed")
        missing = [f for f in fields if f not in cfg]
        if missing:
            raise KeyError(f"{key}: missing {', '.join(missing)}")
        optional = {"accuracy": float, "thermostat": str, "massive_langevin_steps": int,
                    "massive_friction_per_fs": float, "equipartition_start": bool,
                    "nose_hoover_coupling": str}  # fmt: skip
        return cls(**{f: cfg[f] for f in fields}, **{k: kind(cfg[k]) for k, kind in optional.items() if k in cfg})


def bonds(z: np.ndarray, pos: np.ndarray) -> set[tuple[int, int]]:
    """Covalent bonds (i < j) of one frame: distance below BOND_TOLERANCE x sum of radii."""
    radii = np.array([covalent_radius(int(a)) for a in z])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    i, j = np.nonzero(np.triu(dist < BOND_TOLERANCE * (radii[:, None] + radii[None]), k=1))
    return set(zip(i.tolist(), j.tolist()))


def optimise(z: np.ndarray, pos: np.ndarray, accuracy: float):
    """GFN2-xTB geometry optimisation; returns the relaxed ``ase.Atoms`` with its calculator."""
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=z, positions=pos)
    atoms.calc = _calculator(accuracy)
    opt = BFGS(atoms, logfile=None)
    if not opt.run(fmax=OPT_FMAX_EV_A, steps=OPT_MAX_STEPS):
        fmax = float(np.abs(atoms.get_forces()).max())
        raise RuntimeError(
            f"GFN2-xTB optimisation did not converge in {OPT_MAX_STEPS} steps (max force {fmax:.3g} eV/Å)"
        )
    return atoms


def run_md(atoms, settings: XTBSettings, seed_words: list[int], desc: str) -> dict[str, Any]:
    """Steps 3-6 of the protocol on ``atoms`` (at the optimised geometry, calculator set). Returns positions
    (F, N, 3) Å, energies (F,) eV, forces (F, N, 3) eV/Å, temperature (F,) K (3N - 3 degrees of freedom),
    kinetic_energy (F,) eV, ``chain_state`` (F, 2M) for ``nose_hoover`` (else None) and ``equilibration``
    (what steps 4-5 did, for the provenance)."""
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as vd

    from diffmd import dynamics as D

    rng = np.random.default_rng(seed_words)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, settings.temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=rng)
    vd.Stationary(atoms)
    vd.ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # centre of mass fixed; the temperature counts 3N - 3 degrees of freedom
    n_atoms, n_frames = len(atoms), settings.n_frames
    nose_hoover = settings.thermostat == "nose_hoover"
    out: dict[str, Any] = {"positions": np.empty((n_frames, n_atoms, 3)), "energies": np.empty(n_frames),
                           "forces": np.empty((n_frames, n_atoms, 3)), "temperature": np.empty(n_frames),
                           "kinetic_energy": np.empty(n_frames),
                           "chain_state": np.zeros((n_frames, D.chain_size(n_atoms, settings.nose_hoover_coupling)))
                           if nose_hoover else None}  # fmt: skip
    massive = settings.massive_langevin_steps
    production = settings.equilibration_steps + n_frames - 1
    total = massive + production
    # a bar on a terminal; in a log file (Snakemake's) plain lines every 10% instead of carriage returns
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=5.0, disable=None)
    state = {"step": 0, "t0": time.perf_counter()}
    every = max(1, total // 10)
    equilibration: dict[str, Any] = {
        "massive_langevin": {"steps": massive, "friction_per_fs": settings.massive_friction_per_fs},
        "equipartition_start": None, "production_steps_discarded": settings.equilibration_steps,
    }  # fmt: skip

    def tick() -> None:
        state["step"] += 1
        bar.update(1)
        if bar.disable and (state["step"] % every == 0 or state["step"] == total):
            sec = time.perf_counter() - state["t0"]
            print(f"{desc}: step {state['step']}/{total}  {state['step'] / max(sec, 1e-9):.0f} steps/s  "
                  f"eta {(total - state['step']) * sec / state['step']:.0f}s", flush=True)

    def record(dyn, k: int) -> None:
        if k < 0:
            return
        out["positions"][k] = atoms.get_positions()
        out["energies"][k] = atoms.get_potential_energy()
        out["forces"][k] = atoms.get_forces(apply_constraint=False)  # physical forces, net force kept
        out["temperature"][k] = atoms.get_temperature()
        out["kinetic_energy"][k] = atoms.get_kinetic_energy()
        if nose_hoover and getattr(dyn, "half_step_state", None) is not None:
            out["chain_state"][k] = dyn.half_step_state

    if massive:  # step 4: every atom in a strong bath
        bath = D.langevin(atoms, settings.dt_fs, settings.temperature_K, settings.massive_friction_per_fs, rng)
        for _ in range(massive):
            bath.step()
            tick()
    if settings.thermostat in DETERMINISTIC and settings.equipartition_start:  # step 5
        from ase.optimize import BFGS

        if not BFGS(atoms, logfile=None).run(fmax=OPT_FMAX_EV_A, steps=OPT_MAX_STEPS):
            raise RuntimeError(f"{desc}: relaxing the bath's configuration did not converge in {OPT_MAX_STEPS} steps")
        equilibration["equipartition_start"] = D.equipartition_start(atoms, settings.temperature_K, rng)
    elif settings.thermostat in DETERMINISTIC and massive:
        # the bath spun the molecule up; the deterministic run keeps its angular momentum, and the chain counts
        # 3N - 6 degrees of freedom: rotation removed, as at the start
        vd.Stationary(atoms)
        vd.ZeroRotation(atoms)
    if settings.thermostat == "langevin":  # the original protocol's production, unchanged
        dyn = D.langevin(atoms, settings.dt_fs, settings.temperature_K, settings.friction_per_fs, rng)
        calls = {"n": 0}

        def observe() -> None:  # ASE calls it once before the first step, then after every step
            n = calls["n"]
            calls["n"] += 1
            record(dyn, n - settings.equilibration_steps)
            if n > 0:
                tick()

        dyn.attach(observe, interval=1)
        dyn.run(production)
    else:
        dyn = D.make_dynamics(settings.thermostat, atoms, settings.dt_fs, temperature_K=settings.temperature_K,
                              coupling=settings.nose_hoover_coupling)  # fmt: skip
        record(dyn, -settings.equilibration_steps)
        for i in range(production):
            dyn.step()
            tick()
            record(dyn, i + 1 - settings.equilibration_steps)
    bar.close()
    out["equilibration"] = equilibration
    return out


INTEGRATORS = {
    "langevin": "ase.md.langevin.Langevin + FixCom",
    "nose_hoover": "diffmd.dynamics.nose_hoover: ase.md.nose_hoover_chain.NoseHooverChainNVT (chain "
                   f"{_D.NOSE_HOOVER_CHAIN}, tdamp {_D.NOSE_HOOVER_TDAMP_STEPS:g} steps, 3N - 6 degrees of freedom)"
                   " + FixCom",
    "nose_hoover/massive": "diffmd.dynamics.nose_hoover: ase.md.nose_hoover_chain.NoseHooverChainNVT with massive "
                           f"chains (diffmd.dynamics.MassiveNoseHooverChainThermostat: chain {_D.NOSE_HOOVER_CHAIN} "
                           f"per degree of freedom, tdamp {_D.MASSIVE_TDAMP_FS:g} fs) + FixCom",
    "nve": "ase.md.verlet.VelocityVerlet + FixCom",
}  # fmt: skip


def integrator_key(settings: XTBSettings) -> str:
    """The :data:`INTEGRATORS` entry of ``settings``' production dynamics."""
    massive = settings.thermostat == "nose_hoover" and settings.nose_hoover_coupling == "massive"
    return "nose_hoover/massive" if massive else settings.thermostat


def simulate(z: np.ndarray, pos: np.ndarray, settings: XTBSettings, *, name: str, dataset: str,
             seed_words: list[int], start: dict[str, Any]) -> Trajectory:
    """Optimise, thermalise and run one trajectory; returns it in the canonical format."""
    from ase import units

    with torch_openmp_pinned():
        t0 = time.perf_counter()
        atoms = optimise(z, pos, settings.accuracy)
        t1 = time.perf_counter()
        raw = run_md(atoms, settings, seed_words, desc=f"xtb {name}")
        seconds = time.perf_counter() - t1
    steps = settings.massive_langevin_steps + settings.equilibration_steps + settings.n_frames - 1
    ev_to_kcal = units.mol / units.kcal
    topology_kept = bonds(z, raw["positions"][0]) == bonds(z, raw["positions"][-1])
    provenance = {
        "method": METHOD, "calculator": "tblite.ase.TBLite", "integrator": INTEGRATORS[integrator_key(settings)],
        "settings": asdict(settings), "seed_sequence": seed_words, "start": start,
        "optimisation": {"optimizer": "BFGS", "fmax_eV_per_A": OPT_FMAX_EV_A, "seconds": round(t1 - t0, 3)},
        "md_seconds": round(seconds, 3), "ms_per_step": round(1e3 * seconds / max(steps, 1), 4),
        "mean_kinetic_temperature_K": float(raw["temperature"].mean()), "topology_preserved": topology_kept,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": package_versions(),
        "equilibration": raw["equilibration"],
    }
    chain = raw["chain_state"]
    if chain is not None and settings.nose_hoover_coupling == "massive":
        provenance["thermostat_state"] = {
            "keys": ["nhc_eta", "nhc_p_eta"], "coupling": "massive", "chain": _D.NOSE_HOOVER_CHAIN,
            "tdamp_fs": _D.MASSIVE_TDAMP_FS, "dof": 3 * len(z) - 3,
            "layout": "(atoms - 1, 3, chain) flattened in C order per frame: the momenta orthogonal to the "
                      "centre of mass (diffmd.dynamics.MassiveNoseHooverChainThermostat)",
            "at": "the half step t-1/2 of frame t (diffmd.dynamics)",
        }  # fmt: skip
    elif chain is not None:
        provenance["thermostat_state"] = {
            "keys": ["nhc_eta", "nhc_p_eta"], "coupling": "global", "chain": _D.NOSE_HOOVER_CHAIN,
            "tdamp_steps": _D.NOSE_HOOVER_TDAMP_STEPS, "dof": _D.internal_dof(len(z)),
            "at": "the half step t-1/2 of frame t (diffmd.dynamics)",
        }  # fmt: skip
    m = None if chain is None else chain.shape[1] // 2
    return Trajectory(
        positions=raw["positions"], atomic_numbers=np.asarray(z, dtype=np.int64), dt_fs=settings.dt_fs,
        temperature_K=settings.temperature_K, name=name, dataset=dataset, source="xtb",
        energies=raw["energies"] * ev_to_kcal, forces=raw["forces"] * ev_to_kcal, provenance=provenance,
        nhc_eta=None if chain is None else chain[:, :m], nhc_p_eta=None if chain is None else chain[:, m:],
    )


def simulate_md17(molecule: str, cfg: dict[str, Any]) -> Trajectory:
    """GFN2-xTB trajectory of an MD17 molecule (``cfg`` = ``data.md17.xtb``), from its MD17 start frame."""
    settings = XTBSettings.from_config(cfg, "data.md17.xtb")
    z, pos = md17_start_structure(molecule)
    seed_words = [int(settings.seed), zlib.crc32(molecule.encode())]
    start = {"structure": f"diffmd/data/structures/{molecule}.xyz", "origin": "rMD17 sample frame 0"}
    return simulate(z, pos, settings, name=molecule, dataset="md17", seed_words=seed_words, start=start)


def simulate_isomer(name: str, cfg: dict[str, Any]) -> Trajectory:
    """GFN2-xTB trajectory of simulated isomer ``name`` (``xtb01``...; ``cfg`` = ``data.c7o2h10.xtb``).

    ``cfg["isomers"]``, when given, replaces the packaged SMILES list.
    """
    settings = XTBSettings.from_config(cfg, "data.c7o2h10.xtb")
    smiles_list = tuple(cfg.get("isomers") or C7H10O2_SMILES)
    index = isomer_index(name)
    if index >= len(smiles_list):
        raise KeyError(f"{name}: only {len(smiles_list)} isomer SMILES available")
    smiles = smiles_list[index]
    z, pos = embed_smiles(smiles, seed=settings.seed + index)
    start = {"smiles": smiles, "embedding": "RDKit ETKDGv3 + MMFF94", "embed_seed": settings.seed + index}
    return simulate(z, pos, settings, name=name, dataset="c7o2h10", seed_words=[int(settings.seed), index],
                    start=start)
