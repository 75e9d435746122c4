"""Physics rows of the tables: the one-step force floor and the reference-potential oracles.

* ``force_verlet`` (role ``floor``): x(t+1) = x(t) + v(t) + F(t)·(k·dt)²/m, the next frame from the
  data's own force (``batch[FORCE_STEP]``, see :func:`force_step`). On AIMD-like data produced by
  velocity Verlet this is exact (position Verlet == velocity Verlet); on Langevin data what is left
  is the thermostat's noise and friction: the floor of any one-step predictor. It needs the data's
  forces at every step, which a rollout cannot supply, so it is one-step only (``can_rollout`` False).
* ``xtb_nve`` / ``xtb_langevin`` (role ``oracle``): re-simulate from the start frames with the
  reference potential itself (GFN2-xTB through tblite's ASE calculator, the settings of
  :mod:`diffmd.data.xtb_md`): velocity Verlet (NVE) or ASE's Langevin with the data's temperature
  and friction, centre of mass fixed as in the data. Every molecule of a batch is its own ASE
  simulation; the rollout engine drives them one model step per ``predict`` call like any model.

Masses: ``ase.data.atomic_masses`` (u) everywhere in this module, the masses ASE's ``Atoms`` (and so
the GFN2-xTB data simulation) uses; :data:`diffmd.elements.MASSES` agrees with them to 1e-3 u.

Threads: torch's wheel bundles its own ``libgomp.so.1`` and tblite links ``libgomp.so.1``, so once torch
is imported tblite runs on torch's OpenMP runtime: ``OMP_NUM_THREADS`` set after ``import torch`` has no
effect and tblite uses ``torch.get_num_threads()`` threads. With 2 threads on the 2 shared cores a
GFN2-xTB ethanol step took ~1 s instead of ~3 ms, and results lost bitwise reproducibility (~1e-13 Å).
Every GFN2-xTB call here therefore runs inside :func:`one_openmp_thread` (torch's count is restored).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.xtb_md import torch_openmp_pinned
from diffmd.registry import TrajectoryModel, register_model

#: A batch whose positions differ from the oracle's current state by more than this (Å) starts a
#: new rollout (the engine feeds the oracle its own outputs, cast to the rollout dtype, back).
RESUME_TOLERANCE_A = 1e-4


#: Run a block with one OpenMP thread while torch is loaded (tblite shares torch's runtime); torch's count
#: is restored afterwards. The data layer's context manager, so both simulate under the same rule.
one_openmp_thread = torch_openmp_pinned


def _ase_masses(numbers: np.ndarray) -> np.ndarray:
    """Masses (u) of atomic numbers ``numbers`` (n,), as ASE assigns them."""
    from ase.data import atomic_masses

    return np.asarray(atomic_masses, dtype=np.float64)[np.asarray(numbers, dtype=np.int64)]


def force_step(forces_kcal_mol_A: np.ndarray, numbers: np.ndarray, dt_fs: float, stride: int = 1) -> np.ndarray:
    """The data's forces as displacements per model step², F·(k·dt)²/m, in Å.

    ``forces_kcal_mol_A`` (..., n_atoms, 3) kcal/mol/Å, ``numbers`` (n_atoms,) atomic numbers, ``dt_fs``
    the time between frames (fs), ``stride`` k frames per model step. Returns (..., n_atoms, 3) Å
    (float64). Units through ASE (eV, Å, u, ASE time); masses from ``ase.data.atomic_masses``.
    """
    from ase import units

    forces = np.asarray(forces_kcal_mol_A, dtype=np.float64) * (units.kcal / units.mol)  # eV/Å
    masses = _ase_masses(numbers)
    if forces.shape[-2:] != (masses.shape[0], 3):
        raise ValueError(f"forces have shape {forces.shape}, expected (..., {masses.shape[0]}, 3)")
    h = int(stride) * float(dt_fs) * units.fs
    return forces / masses[:, None] * h**2


@register_model("force_verlet")
class ForceVerlet(TrajectoryModel):
    """x(t+1) = x(t) + v(t) + batch[FORCE_STEP]: the data's own force, one step. Output (n_atoms, 3), Å."""

    trainable = False
    role = "floor"
    can_rollout = False
    requires = ("forces",)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        if B.FORCE_STEP not in batch:
            raise KeyError("force_verlet needs batch[FORCE_STEP]: this data source has no forces")
        return batch[B.POSITIONS] + batch[B.VELOCITIES] + batch[B.FORCE_STEP].to(batch[B.POSITIONS].dtype)


def _molecule_layout(batch: B.Batch) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(atoms per molecule, atomic numbers): what identifies a batch's systems."""
    return (tuple(int(n) for n in batch[B.NUM_ATOMS].tolist()), tuple(int(z) for z in batch[B.ATOMIC_NUMBERS].tolist()))


class _XTBOracle(TrajectoryModel):
    """Base of the GFN2-xTB oracles: one ASE simulation per molecule of the batch.

    Parameters (all keyword, with defaults matching ``data.md17.xtb`` of config.yaml):

    * ``dt_fs``: MD time step, fs; ``steps_per_call`` MD steps make one model step, so
      ``steps_per_call·dt_fs`` must equal the model's step (stride × the data's frame spacing);
    * ``temperature_K``, ``friction_per_fs``: the Langevin bath (unused by NVE);
    * ``accuracy``: tblite's numerical accuracy (as ``xtb.accuracy`` of the data);
    * ``seed``: Langevin noise; molecule ``i`` of a batch draws from ``np.random.default_rng([seed, i])``.

    State: :meth:`begin_rollout` builds the simulations; :meth:`predict` advances them. A batch whose
    molecules or positions do not continue the current state (a new start) restarts them itself.
    Teacher-forced (one step from the true x(t), v(t)), ``xtb_nve`` is position Verlet with the
    reference force, x(t) + v(t) + F(t)·h²/m: ``force_verlet`` with GFN2-xTB's own force.
    """

    trainable = False
    role = "oracle"
    requires = ("reference_potential",)
    #: filled by the plan from ``data.<dataset>.xtb`` (the data's own conditions)
    source_params = ("dt_fs", "temperature_K", "friction_per_fs")

    def __init__(
        self,
        dt_fs: float = 0.5,
        temperature_K: float = 500.0,
        friction_per_fs: float = 0.01,
        accuracy: float = 1.0,
        seed: int = 0,
        steps_per_call: int = 1,
    ):
        super().__init__()
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        if dt_fs <= 0:
            raise ValueError(f"dt_fs must be > 0, got {dt_fs}")
        self.dt_fs = float(dt_fs)
        self.temperature_K = float(temperature_K)
        self.friction_per_fs = float(friction_per_fs)
        self.accuracy = float(accuracy)
        self.seed = int(seed)
        self.steps_per_call = int(steps_per_call)
        self._atoms: list[Any] = []  # ase.Atoms per molecule, with calculator and FixCom
        self._dyn: list[Any] = []  # ASE integrator per molecule
        self._layout: tuple | None = None
        self._force_evals = 0

    # --- the simulations -----------------------------------------------------------------------

    def _make_dynamics(self, atoms, index: int):
        raise NotImplementedError

    def _calculator(self):
        """The ASE calculator of the potential: tblite's GFN2-xTB (:func:`diffmd.data.xtb_md._calculator`);
        a force field overrides only this."""
        from diffmd.data.xtb_md import _calculator

        return _calculator(self.accuracy)

    def _counted_calculator(self):
        """:meth:`_calculator`, counting its evaluations (``rollout_stats()["force_evals"]``)."""
        calc = self._calculator()
        inner = calc.calculate

        def calculate(*args, **kwargs):
            self._force_evals += 1
            return inner(*args, **kwargs)

        calc.calculate = calculate
        return calc

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the parameters, not the running simulations (tblite handles)."""
        state = self.__dict__.copy()
        state.update(_atoms=[], _dyn=[], _layout=None, _force_evals=0)
        return state

    @property
    def systems(self) -> list[Any]:
        """The current ``ase.Atoms`` per molecule (positions, momenta, calculator); read, do not modify."""
        return list(self._atoms)

    def begin_rollout(self, batch: B.Batch) -> None:
        """Start one simulation per molecule of ``batch`` at x(t0) with velocity Verlet's v(t0).

        With h = ``steps_per_call·dt_fs`` and a = F/m, one velocity Verlet step from t0 - h gives
        x(t0) = x(t0-h) + h v(t0-h) + h²a(t0-h)/2 and v(t0) = v(t0-h) + h (a(t0-h) + a(t0))/2, so

            (x(t0) - x(t0-h))/h = v(t0-h) + h a(t0-h)/2 = v(t0) - h a(t0)/2,
            v(t0) = (x(t0) - x(t0-h))/h + F(t0)·h/(2m),

        exact for data made by velocity Verlet with step h (second order otherwise), where
        x(t0) - x(t0-h) = ``batch[VELOCITIES]`` (Å/step). F(t0) is GFN2-xTB's force at x(t0) with the
        FixCom constraint (the force the integrator uses); the momenta are set through the same
        constraint (centre-of-mass velocity removed), as in the data.
        """
        with one_openmp_thread():
            self._begin(batch)

    def _begin(self, batch: B.Batch) -> None:
        from ase import Atoms, units
        from ase.constraints import FixCom

        x = batch[B.POSITIONS].detach().to("cpu", torch.float64).numpy()
        vel = batch[B.VELOCITIES].detach().to("cpu", torch.float64).numpy()
        z = batch[B.ATOMIC_NUMBERS].detach().cpu().numpy()
        sizes = [int(n) for n in batch[B.NUM_ATOMS].tolist()]
        h = self.steps_per_call * self.dt_fs * units.fs
        self._atoms, self._dyn = [], []
        start = 0
        for i, n in enumerate(sizes):
            sl = slice(start, start + n)
            start += n
            atoms = Atoms(numbers=z[sl], positions=x[sl])
            atoms.calc = self._counted_calculator()
            atoms.set_constraint(FixCom())
            masses = atoms.get_masses()[:, None]
            forces = atoms.get_forces()  # eV/Å, FixCom applied; cached for the integrator's first step
            atoms.set_momenta(masses * (vel[sl] / h + forces * h / (2.0 * masses)))
            self._atoms.append(atoms)
            self._dyn.append(self._make_dynamics(atoms, i))
        if start != x.shape[0]:
            raise ValueError(f"batch[{B.NUM_ATOMS!r}] sums to {start}, expected {x.shape[0]} atoms")
        self._layout = _molecule_layout(batch)

    def _continues(self, batch: B.Batch) -> bool:
        """True when ``batch`` continues the simulations: the same molecules, and at least one of them at
        the oracle's current positions. (A multi-start rollout freezes a diverged start at its last
        frame; that molecule's prediction is discarded, so it only must not restart the others.)"""
        if not self._atoms or self._layout != _molecule_layout(batch):
            return False
        x = batch[B.POSITIONS].detach().to("cpu", torch.float64).numpy()
        start = 0
        for atoms in self._atoms:
            n = len(atoms)
            if np.abs(x[start : start + n] - atoms.get_positions()).max() <= RESUME_TOLERANCE_A:
                return True
            start += n
        return False

    @torch.no_grad()
    def predict(self, batch: B.Batch) -> torch.Tensor:
        """Advance every molecule ``steps_per_call`` MD steps; positions (n_atoms, 3) Å, batch dtype/device."""
        with one_openmp_thread():
            if not self._continues(batch):
                self._begin(batch)
            for dyn in self._dyn:
                dyn.run(self.steps_per_call)
        x = np.concatenate([a.get_positions() for a in self._atoms])
        ref = batch[B.POSITIONS]
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        return self.predict(batch)

    def loss(self, batch: B.Batch) -> torch.Tensor:
        raise TypeError(f"{self.name or type(self).__name__} is a simulator with nothing to train")

    def rollout_stats(self) -> dict[str, float]:
        """GFN2-xTB evaluations since the last call (and reset): ``{"force_evals": n}``."""
        out, self._force_evals = {"force_evals": float(self._force_evals)}, 0
        return out


@register_model("xtb_nve")
class XTBNVE(_XTBOracle):
    """GFN2-xTB velocity Verlet (ASE ``VelocityVerlet``, FixCom) from the start's positions and velocities."""

    def _make_dynamics(self, atoms, index: int):
        from ase import units
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=self.dt_fs * units.fs)


@register_model("xtb_langevin")
class XTBLangevin(_XTBOracle):
    """GFN2-xTB Langevin dynamics as the data's (ASE ``Langevin``, FixCom, ``fixcm=False``), own noise seed."""

    def _make_dynamics(self, atoms, index: int):
        from ase import units
        from ase.md.langevin import Langevin

        rng = np.random.default_rng([self.seed, index])
        return Langevin(atoms, timestep=self.dt_fs * units.fs, temperature_K=self.temperature_K,
                        friction=self.friction_per_fs / units.fs, fixcm=False, rng=rng)  # fmt: skip


def reference_energies(positions: np.ndarray, numbers: np.ndarray, accuracy: float = 1.0) -> np.ndarray:
    """GFN2-xTB potential energies (frames,) kcal/mol of ``positions`` (frames, n_atoms, 3) Å.

    ``numbers`` (n_atoms,). Frames holding NaN/inf, or where tblite fails (e.g. atoms on top of each
    other in a diverged rollout), give NaN. One calculator serves all frames.
    """
    from ase import Atoms, units
    from ase.calculators.calculator import CalculationFailed, InputError

    from diffmd.data.xtb_md import _calculator

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(numbers), 3):
        raise ValueError(f"positions have shape {positions.shape}, expected (frames, {len(numbers)}, 3)")
    out = np.full(positions.shape[0], np.nan)
    calc = _calculator(accuracy)
    ev_to_kcal = units.mol / units.kcal
    with one_openmp_thread():
        for i, x in enumerate(positions):
            if not np.isfinite(x).all():
                continue
            atoms = Atoms(numbers=numbers, positions=x)
            atoms.calc = calc
            try:
                out[i] = atoms.get_potential_energy() * ev_to_kcal
            except (CalculationFailed, InputError, RuntimeError):
                calc = _calculator(accuracy)  # a failed SCF may leave the calculator in a bad state
    return out
