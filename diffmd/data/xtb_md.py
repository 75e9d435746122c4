"""Offline molecular dynamics with GFN2-xTB (tblite's ASE calculator) and a Langevin thermostat (default).

Protocol (one trajectory per molecule or isomer, fully determined by the settings and the seed):

1. start geometry: an MD17 frame in MD17's atom order, or an RDKit + MMFF94 embedding of a SMILES;
2. GFN2-xTB geometry optimisation (BFGS to ``OPT_FMAX_EV_A``);
3. Maxwell-Boltzmann velocities at ``temperature_K`` from a seeded generator, centre-of-mass
   motion and rotation removed;
4. Langevin dynamics (ASE, centre of mass fixed) with step ``dt_fs`` and ``friction_per_fs``;
   the first ``equilibration_steps`` steps are discarded, then ``n_frames`` consecutive frames are
   recorded with potential energies and forces (converted to kcal/mol and kcal/mol/Å).

``xtb.thermostat`` chooses the dynamics of step 4 (:data:`THERMOSTATS`):

* ``langevin`` (default): as above, equilibration and recorded frames alike;
* ``nose_hoover``: ASE's Nosé-Hoover chain NVT (``ase.md.nose_hoover_chain.NoseHooverChainNVT``,
  chain of 3, ``tdamp`` = 100 steps) for equilibration and recording: deterministic, so the next
  frame is a function of the state, as in AIMD with a Nosé-Hoover thermostat (MD17's protocol). The
  chain thermostats 3N - 6 degrees of freedom (the centre of mass is fixed, the zero angular momentum
  of step 3 is conserved), so ``get_temperature`` (3N - 3) reads T·(3N - 6)/(3N - 3);
* ``nve``: the Langevin equilibration, then velocity Verlet (``ase.md.verlet.VelocityVerlet``) for the
  recorded frames: microcanonical, energy-conserving, deterministic.

The default path is exactly the original protocol, so existing ``langevin`` data stays bit-identical.

tblite runs one OpenMP thread per job (``OMP_NUM_THREADS``, set before tblite is imported) so
Snakemake can run many simulations side by side under ``--cores``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from diffmd.data.isomers import C7H10O2_SMILES, embed_smiles, isomer_index, md17_start_structure
from diffmd.data.trajectory import Trajectory
from diffmd.elements import covalent_radius
from diffmd.provenance import package_versions

METHOD = "GFN2-xTB"
OPT_FMAX_EV_A = 0.01  # eV/Å, convergence of the pre-MD geometry optimisation
OPT_MAX_STEPS = 1000
BOND_TOLERANCE = 1.25  # a bond: distance < 1.25 x sum of covalent radii (topology check only)
THERMOSTATS = ("langevin", "nose_hoover", "nve")
NOSE_HOOVER_TDAMP_STEPS = 100.0  # thermostat time scale in MD steps (ASE's suggestion: 100 x timestep)
NOSE_HOOVER_CHAIN = 3


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
    #: dynamics of the run, one of THERMOSTATS (``friction_per_fs`` is used by the Langevin parts only)
    thermostat: str = "langevin"

    def __post_init__(self) -> None:
        if self.thermostat not in THERMOSTATS:
            raise ValueError(f"xtb.thermostat must be one of {', '.join(THERMOSTATS)}, got {self.thermostat!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], key: str) -> XTBSettings:
        fields = ("temperature_K", "dt_fs", "n_frames", "equilibration_steps", "friction_per_fs", "seed")
        missing = [f for f in fields if f not in cfg]
        if missing:
            raise KeyError(f"{key}: missing {', '.join(missing)}")
        return cls(**{f: cfg[f] for f in fields}, accuracy=float(cfg.get("accuracy", 1.0)),
                   thermostat=str(cfg.get("thermostat", "langevin")))  # fmt: skip


def set_threads(threads: int = 1) -> None:
    """Pin tblite's OpenMP threads; must run before tblite is first imported in this process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_STACKSIZE", "256M")


@contextlib.contextmanager
def torch_openmp_pinned() -> Iterator[None]:
    """One OpenMP thread for the block when torch is loaded: tblite then shares torch's OpenMP runtime,
    which ignores OMP_NUM_THREADS set after torch's import (several threads make GFN2-xTB slow and its
    results not bitwise repeatable); torch's thread count is restored afterwards."""
    torch = sys.modules.get("torch")
    n = torch.get_num_threads() if torch is not None else 1
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def _calculator(accuracy: float):
    from tblite.ase import TBLite

    return TBLite(method=METHOD, accuracy=accuracy, verbosity=0)


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


def _nose_hoover(atoms, settings: XTBSettings):
    """ASE's Nosé-Hoover chain NVT on ``atoms`` (FixCom set), thermostatting 3N - 6 degrees of freedom.

    ASE's chain counts 3N (``3 * num_atoms_global``); with the centre of mass fixed and the angular
    momentum zero (and conserved by the deterministic dynamics in vacuum) 3N - 6 carry kinetic energy,
    so the thermostat is rebuilt with that count (its only use of ``num_atoms_global``).
    """
    from ase import units

    try:
        from ase.md.nose_hoover_chain import NoseHooverChainNVT, NoseHooverChainThermostat
    except ImportError as exc:  # ASE < 3.25
        raise RuntimeError(f"xtb.thermostat nose_hoover needs ase.md.nose_hoover_chain (ASE >= 3.25): {exc}") from None
    dt = settings.dt_fs * units.fs
    tdamp = NOSE_HOOVER_TDAMP_STEPS * dt
    dyn = NoseHooverChainNVT(atoms, timestep=dt, temperature_K=settings.temperature_K, tdamp=tdamp,
                             tchain=NOSE_HOOVER_CHAIN)  # fmt: skip
    dof = 3 * len(atoms) - 6 if len(atoms) > 2 else 3 * len(atoms) - 5
    dyn._thermostat = NoseHooverChainThermostat(num_atoms_global=dof / 3.0, masses=dyn.masses,
                                                temperature_K=settings.temperature_K, tdamp=tdamp,
                                                tchain=NOSE_HOOVER_CHAIN)  # fmt: skip
    return dyn


def run_md(atoms, settings: XTBSettings, seed_words: list[int], desc: str) -> dict[str, np.ndarray]:
    """Run the MD of ``settings.thermostat``; returns positions (F, N, 3) Å, energies (F,) eV, forces
    (F, N, 3) eV/Å, temperature (F,) K (3N - 3 degrees of freedom) and kinetic_energy (F,) eV."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(seed_words)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, settings.temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=rng)
    vd.Stationary(atoms)
    vd.ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # centre of mass fixed; the temperature counts 3N - 3 degrees of freedom
    n_atoms, n_frames = len(atoms), settings.n_frames
    out = {"positions": np.empty((n_frames, n_atoms, 3)), "energies": np.empty(n_frames),
           "forces": np.empty((n_frames, n_atoms, 3)), "temperature": np.empty(n_frames),
           "kinetic_energy": np.empty(n_frames)}  # fmt: skip
    total = settings.equilibration_steps + n_frames - 1
    # a bar on a terminal; in a log file (Snakemake's) plain lines every 10% instead of carriage returns
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=5.0, disable=None)
    state = {"step": 0, "t0": time.perf_counter()}
    every = max(1, total // 10)

    def record() -> None:
        k = state["step"] - settings.equilibration_steps
        if k >= 0:
            out["positions"][k] = atoms.get_positions()
            out["energies"][k] = atoms.get_potential_energy()
            out["forces"][k] = atoms.get_forces(apply_constraint=False)  # physical forces, net force kept
            out["temperature"][k] = atoms.get_temperature()
            out["kinetic_energy"][k] = atoms.get_kinetic_energy()
        if state["step"] > 0:
            bar.update(1)
            if bar.disable and (state["step"] % every == 0 or state["step"] == total):
                sec = time.perf_counter() - state["t0"]
                print(f"{desc}: step {state['step']}/{total}  {state['step'] / max(sec, 1e-9):.0f} steps/s  "
                      f"eta {(total - state['step']) * sec / state['step']:.0f}s", flush=True)
        state["step"] += 1

    def bath():
        return Langevin(atoms, timestep=settings.dt_fs * units.fs, temperature_K=settings.temperature_K,
                        friction=settings.friction_per_fs / units.fs, fixcm=False, rng=rng)  # fmt: skip

    if settings.thermostat == "langevin":  # the original protocol, unchanged
        dyn = bath()
        dyn.attach(record, interval=1)
        dyn.run(total)  # the observer also fires once before the first step
    else:
        if settings.thermostat == "nve":
            from ase.md.verlet import VelocityVerlet

            equilibrate = bath()
            production = VelocityVerlet(atoms, timestep=settings.dt_fs * units.fs)
        else:
            equilibrate = production = _nose_hoover(atoms, settings)
        record()
        for i in range(total):
            (equilibrate if i < settings.equilibration_steps else production).step()
            record()
    bar.close()
    return out


def langevin(atoms, settings: XTBSettings, seed_words: list[int], desc: str) -> dict[str, np.ndarray]:
    """The data's MD (the name predates ``xtb.thermostat``): :func:`run_md`."""
    return run_md(atoms, settings, seed_words, desc)


INTEGRATORS = {
    "langevin": "ase.md.langevin.Langevin + FixCom",
    "nose_hoover": f"ase.md.nose_hoover_chain.NoseHooverChainNVT (chain {NOSE_HOOVER_CHAIN}, tdamp "
                   f"{NOSE_HOOVER_TDAMP_STEPS:g} steps, 3N - 6 degrees of freedom) + FixCom",
    "nve": "ase.md.langevin.Langevin + FixCom (equilibration), then ase.md.verlet.VelocityVerlet + FixCom",
}  # fmt: skip


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
    steps = settings.equilibration_steps + settings.n_frames - 1
    ev_to_kcal = units.mol / units.kcal
    topology_kept = bonds(z, raw["positions"][0]) == bonds(z, raw["positions"][-1])
    provenance = {
        "method": METHOD, "calculator": "tblite.ase.TBLite", "integrator": INTEGRATORS[settings.thermostat],
        "settings": asdict(settings), "seed_sequence": seed_words, "start": start,
        "optimisation": {"optimizer": "BFGS", "fmax_eV_per_A": OPT_FMAX_EV_A, "seconds": round(t1 - t0, 3)},
        "md_seconds": round(seconds, 3), "ms_per_step": round(1e3 * seconds / max(steps, 1), 4),
        "mean_kinetic_temperature_K": float(raw["temperature"].mean()), "topology_preserved": topology_kept,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": package_versions(),
    }
    return Trajectory(
        positions=raw["positions"], atomic_numbers=np.asarray(z, dtype=np.int64), dt_fs=settings.dt_fs,
        temperature_K=settings.temperature_K, name=name, dataset=dataset, source="xtb",
        energies=raw["energies"] * ev_to_kcal, forces=raw["forces"] * ev_to_kcal, provenance=provenance,
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
