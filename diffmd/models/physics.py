"""Rows that simulate: the one-step force floor, the GFN2-xTB physics rows, and any ASE calculator.

* ``force_verlet`` (role ``floor``): x(t+1) = x(t) + v(t) + F(t)·(k·dt)²/m, the next frame from the
  data's own force (``batch[FORCE_STEP]``, :func:`diffmd.units.force_step`). On data produced by velocity
  Verlet this is exact (position Verlet == velocity Verlet); what is left on thermostatted data is the
  thermostat's action: the floor of any one-step predictor that sees only x and v. It needs the data's
  forces at every step, which a rollout cannot supply, so it is one-step only (``can_rollout`` False).
* ``ase_calculator`` (role ``force_field``): any ASE calculator, given by import path and keyword arguments,
  run from the same starts with the data's dynamics (:class:`ASECalculator`; docs/ase_calculator.md).
* ``xtb_nh`` (role ``oracle``): GFN2-xTB (tblite) continuing the data's Nosé-Hoover chains from the state the
  ``xtb`` source stores per frame: the data's own next frames, to rounding (``requires`` the stored state).
  One global chain or massive chains (one per degree of freedom, ``xtb.nose_hoover_coupling``): the
  stored state's size says which (:func:`diffmd.dynamics.coupling_of`); measured on ethanol at tblite accuracy
  0.01, 100 steps from a stored frame repeat the data to 2e-8 Å (global) and 3.5e-8 Å (massive).
* ``xtb_nve`` (role ``oracle``): GFN2-xTB velocity Verlet from the start; exact on NVE data, on Nosé-Hoover
  data it leaves the thermostat out (a slow drift from the reference: 0.02 Å by 100 fs on ethanol).
* ``xtb_langevin`` (role ``ensemble``): GFN2-xTB with a Langevin bath at the data's temperature and friction
  and its own noise: *another dynamics*, an ensemble reference (what a physically right stochastic model's
  single sample scores), never the oracle of deterministic data. On Langevin data it is the data's dynamics
  with other noise.

All of them are :class:`ASESimulator`: one ASE simulation per molecule of the batch, integrated by
:mod:`diffmd.dynamics` (the integrators the data source uses), started with
:func:`diffmd.dynamics.continue_dynamics` from x(t), x(t) - x(t-1) and, for Nosé-Hoover, the chain state.
The rollout engine drives them one model step per ``predict`` call like any model.

Masses: ASE's (``ase.data.atomic_masses``, u), the ones the data simulation uses.

Threads: torch's wheel bundles its own ``libgomp.so.1`` and tblite links ``libgomp.so.1``, so once torch
is imported tblite runs on torch's OpenMP runtime: ``OMP_NUM_THREADS`` set after ``import torch`` has no
effect and tblite uses ``torch.get_num_threads()`` threads. With 2 threads on the 2 shared cores a
GFN2-xTB ethanol step took ~1 s instead of ~3 ms, and results lost bitwise reproducibility (~1e-13 Å).
Every calculator call here therefore runs inside :func:`one_openmp_thread` (torch's count is restored).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd import dynamics as D
from diffmd.data.xtb_energy import METHOD, reference_energies, torch_openmp_pinned  # noqa: F401 (re-exported)
from diffmd.registry import TrajectoryModel, register_model

#: A batch whose positions differ from the simulation's current state by more than this (Å) starts a
#: new rollout (the engine feeds the simulator its own outputs, cast to the rollout dtype, back).
RESUME_TOLERANCE_A = 1e-4
#: ``dynamics`` of a simulating row: the integrators of :mod:`diffmd.dynamics`, or ``data``.
DYNAMICS = ("data",) + D.DYNAMICS
#: The GFN2-xTB calculator of the ``xtb`` source, as an ``ase_calculator`` import path.
TBLITE = "tblite.ase:TBLite"

#: Run a block with one OpenMP thread while torch is loaded (tblite shares torch's runtime); torch's count
#: is restored afterwards. The data layer's context manager, so both simulate under the same rule.
one_openmp_thread = torch_openmp_pinned


@register_model("force_verlet")
class ForceVerlet(TrajectoryModel):
    """x(t+1) = x(t) + v(t) + batch[FORCE_STEP]: the data's own force, one step. Output (n_atoms, 3), Å."""

    # floor, nothing to learn, one step only, needs the data's forces: its card (diffmd/models/cards.yaml)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        if B.FORCE_STEP not in batch:
            raise KeyError("force_verlet needs batch[FORCE_STEP]: this data source has no forces")
        return batch[B.POSITIONS] + batch[B.VELOCITIES] + batch[B.FORCE_STEP].to(batch[B.POSITIONS].dtype)


def _molecule_layout(batch: B.Batch) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(atoms per molecule, atomic numbers): what identifies a batch's systems."""
    return (tuple(int(n) for n in batch[B.NUM_ATOMS].tolist()), tuple(int(z) for z in batch[B.ATOMIC_NUMBERS].tolist()))


def import_calculator(path: str):
    """The calculator class (or factory) ``path``: ``package.module:Name`` or ``package.module.Name``."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ValueError(f"calculator {path!r}: expected an import path such as 'tblite.ase:TBLite'")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"calculator {path!r}: cannot import {module!r} ({exc})") from None
    try:
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"calculator {path!r}: {module!r} has no {name!r}") from None
    if not callable(obj):
        raise ValueError(f"calculator {path!r} is not callable")
    return obj


class ASESimulator(TrajectoryModel):
    """Base of the rows that simulate with an ASE calculator: one ASE simulation per molecule of the batch.

    Parameters (all keyword):

    * ``dynamics``: ``data`` (the data's: its Nosé-Hoover chains, global or massive, continued from the stored
      state where the batch carries one, else velocity Verlet), ``nve``, ``nose_hoover`` or ``langevin``;
    * ``dt_fs``: MD time step, fs; ``steps_per_call`` MD steps make one model step, so
      ``steps_per_call·dt_fs`` must equal the model's step (stride × the data's frame spacing);
    * ``temperature_K``: bath temperature (Nosé-Hoover, Langevin); ``friction_per_fs``: Langevin friction;
    * ``seed``: Langevin noise; molecule ``i`` of a batch draws from ``np.random.default_rng([seed, i])``.

    State: :meth:`begin_rollout` builds the simulations; :meth:`predict` advances them. A batch whose molecules
    or positions do not continue the current state (a new start) restarts them itself. Teacher-forced (one
    step from the true x(t), v(t)), NVE is position Verlet with the calculator's force, x(t) + v(t) + F(t)·h²/m
    (``force_verlet`` with the calculator's force); Nosé-Hoover adds the data's own thermostat action.
    """

    # nothing the engine trains (the cards of its rows say so: fit none or own)
    #: the calculator's import path and keyword arguments, and the dynamics (subclasses fix them)
    calculator_path: str = TBLITE
    dynamics_default: str = "data"

    def __init__(
        self,
        dynamics: str | None = None,
        dt_fs: float = 0.5,
        temperature_K: float = 500.0,
        friction_per_fs: float = 0.01,
        seed: int = 0,
        steps_per_call: int = 1,
    ):
        super().__init__()
        dynamics = self.dynamics_default if dynamics is None else dynamics
        if dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {', '.join(DYNAMICS)}, got {dynamics!r}")
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        if dt_fs <= 0:
            raise ValueError(f"dt_fs must be > 0, got {dt_fs}")
        self.dynamics = dynamics
        self.dt_fs = float(dt_fs)
        self.temperature_K = float(temperature_K)
        self.friction_per_fs = float(friction_per_fs)
        self.seed = int(seed)
        self.steps_per_call = int(steps_per_call)
        self._atoms: list[Any] = []  # ase.Atoms per molecule, with calculator and FixCom
        self._dyn: list[Any] = []  # ASE integrator per molecule
        self._kind: str | None = None  # the dynamics the current simulations run
        self._layout: tuple | None = None
        self._force_evals = 0

    # --- the calculator --------------------------------------------------------------------------

    def calculator_kwargs(self) -> dict[str, Any]:
        return {}

    def _calculator(self):
        """A fresh ASE calculator of the row's potential."""
        return import_calculator(self.calculator_path)(**self.calculator_kwargs())

    def _counted_calculator(self):
        """:meth:`_calculator`, counting its evaluations (``rollout_stats()["force_evals"]``)."""
        calc = self._calculator()
        inner = calc.calculate

        def calculate(*args, **kwargs):
            self._force_evals += 1
            return inner(*args, **kwargs)

        calc.calculate = calculate
        return calc

    def predict_forces(self, positions: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """The calculator's forces (m, n_atoms, 3) kcal/mol/Å at ``positions`` (m, n_atoms, 3) Å: what the
        rollout compares with the data's forces on the held-out one-step frames (force MAE/RMSE)."""
        from ase import Atoms, units

        x = np.asarray(positions, dtype=np.float64)
        out = np.empty_like(x)
        calc = self._calculator()
        with one_openmp_thread():
            for k, frame in enumerate(x):
                atoms = Atoms(numbers=np.asarray(numbers), positions=frame)
                atoms.calc = calc
                out[k] = atoms.get_forces()
        return out * (units.mol / units.kcal)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the parameters, not the running simulations (calculator handles)."""
        state = self.__dict__.copy()
        state.update(_atoms=[], _dyn=[], _layout=None, _kind=None, _force_evals=0)
        return state

    @property
    def systems(self) -> list[Any]:
        """The current ``ase.Atoms`` per molecule (positions, momenta, calculator); read, do not modify."""
        return list(self._atoms)

    # --- the simulations -------------------------------------------------------------------------

    def resolve_dynamics(self, batch: B.Batch) -> str:
        """The integrator for ``batch``: ``dynamics``, with ``data`` read as Nosé-Hoover where the batch
        carries the data's chain state and velocity Verlet otherwise."""
        if self.dynamics != "data":
            return self.dynamics
        return "nose_hoover" if B.THERMOSTAT_STATE in batch else "nve"

    def begin_rollout(self, batch: B.Batch) -> None:
        """Start one simulation per molecule of ``batch`` at x(t0) continuing x(t0) - x(t0-h)
        (``batch[VELOCITIES]``, h = ``steps_per_call·dt_fs``) and, for Nosé-Hoover, the chain state
        ``batch[THERMOSTAT_STATE]`` (:func:`diffmd.dynamics.continue_dynamics`: exact for data made by the
        same integrator with step h, second order otherwise). Forces with the ``FixCom`` constraint (as the
        integrators use them); momenta without centre-of-mass motion, as in the data."""
        with one_openmp_thread():
            self._begin(batch)

    def _begin(self, batch: B.Batch) -> None:
        from ase import Atoms
        from ase.constraints import FixCom

        kind = self.resolve_dynamics(batch)
        if kind == "nose_hoover" and B.THERMOSTAT_STATE not in batch:
            raise ValueError(f"{self.name or type(self).__name__}: Nosé-Hoover dynamics continues the data's chain "
                             f"state, and the batch has none (batch[{B.THERMOSTAT_STATE!r}]: the data stores no "
                             "Nosé-Hoover chain)")  # fmt: skip
        x = batch[B.POSITIONS].detach().to("cpu", torch.float64).numpy()
        vel = batch[B.VELOCITIES].detach().to("cpu", torch.float64).numpy()
        z = batch[B.ATOMIC_NUMBERS].detach().cpu().numpy()
        sizes = [int(n) for n in batch[B.NUM_ATOMS].tolist()]
        chains = batch[B.THERMOSTAT_STATE].detach().to("cpu", torch.float64).numpy() if kind == "nose_hoover" else None
        h_fs = self.steps_per_call * self.dt_fs
        self._atoms, self._dyn = [], []
        start = 0
        for i, n in enumerate(sizes):
            sl = slice(start, start + n)
            start += n
            atoms = Atoms(numbers=z[sl], positions=x[sl])
            atoms.calc = self._counted_calculator()
            atoms.set_constraint(FixCom())
            dyn = D.continue_dynamics(kind, atoms, vel[sl], self.dt_fs, data_dt_fs=h_fs,
                                      temperature_K=self.temperature_K, friction_per_fs=self.friction_per_fs,
                                      rng=np.random.default_rng([self.seed, i]),
                                      chain_state=None if chains is None else chains[i])  # fmt: skip
            self._atoms.append(atoms)
            self._dyn.append(dyn)
        if start != x.shape[0]:
            raise ValueError(f"batch[{B.NUM_ATOMS!r}] sums to {start}, expected {x.shape[0]} atoms")
        self._kind = kind
        self._layout = _molecule_layout(batch)

    def _continues(self, batch: B.Batch) -> bool:
        """True when ``batch`` continues the simulations: the same molecules, and at least one of them at
        the simulation's current positions. (A multi-start rollout freezes a diverged start at its last
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
                for _ in range(self.steps_per_call):
                    dyn.step()
        x = np.concatenate([a.get_positions() for a in self._atoms])
        ref = batch[B.POSITIONS]
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)

    def forward(self, batch: B.Batch) -> torch.Tensor:
        return self.predict(batch)

    def loss(self, batch: B.Batch) -> torch.Tensor:
        raise TypeError(f"{self.name or type(self).__name__} is a simulator with nothing to train")

    def rollout_stats(self) -> dict[str, float]:
        """Calculator evaluations since the last call (and reset): ``{"force_evals": n}``."""
        out, self._force_evals = {"force_evals": float(self._force_evals)}, 0
        return out


@register_model("ase_calculator")
class ASECalculator(ASESimulator):
    """Any ASE calculator as a row: ``calculator`` (import path, ``package.module:Class``) built with
    ``calculator_kwargs``, integrated from the same starts as every model with the data's dynamics
    (``dynamics: data``, see :class:`ASESimulator`). The time step and bath temperature come from the training
    segment (its frame spacing × stride / ``steps_per_call``; its temperature); a given ``dt_fs`` is checked
    against it. Nothing is trained: the ``train`` rule only records them in ``model.pt``.

    Example (config ``model_params``)::

        ase_calculator:
          calculator: tblite.ase:TBLite
          calculator_kwargs: {method: GFN2-xTB, accuracy: 1.0, verbosity: 0}

    is the ``xtb_nh`` oracle on Nosé-Hoover data (tests/test_physics.py checks they agree to rounding).
    """

    # force_field, fit own (fit_own records the segment's dt and temperature): its card
    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same (and imports)
    param_schema = {
        "dynamics": {"enum": list(DYNAMICS)},
        "calculator": {"description": "an import path, package.module:Name or package.module.Name",
                       "type": "string", "pattern": r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*([:.][A-Za-z_][\w.]*)?$"},
        "calculator_kwargs": {"type": ["object", "null"]},
    }

    def __init__(
        self,
        calculator: str = TBLITE,
        calculator_kwargs: dict[str, Any] | None = None,
        dynamics: str = "data",
        dt_fs: float | None = None,
        temperature_K: float | None = None,
        friction_per_fs: float = 0.01,
        seed: int = 0,
        steps_per_call: int = 1,
    ):
        super().__init__(dynamics=dynamics, dt_fs=0.5 if dt_fs is None else dt_fs,
                         temperature_K=500.0 if temperature_K is None else temperature_K,
                         friction_per_fs=friction_per_fs, seed=seed, steps_per_call=steps_per_call)  # fmt: skip
        if not isinstance(calculator, str) or not calculator:
            raise ValueError(f"ase_calculator: calculator must be an import path string, got {calculator!r}")
        if calculator_kwargs is not None and not isinstance(calculator_kwargs, dict):
            raise ValueError(f"ase_calculator: calculator_kwargs must be a mapping, got {calculator_kwargs!r}")
        self.calculator_path = calculator
        self._kwargs = dict(calculator_kwargs or {})
        self._dt_given = None if dt_fs is None else float(dt_fs)
        self._temperature_given = None if temperature_K is None else float(temperature_K)
        import_calculator(calculator)  # a wrong path fails when the model is built (the plan checks it early)

    def calculator_kwargs(self) -> dict[str, Any]:
        return dict(self._kwargs)

    def resolve_from_segment(self, seg) -> None:
        """The MD step and bath temperature from segment ``seg`` (given ones are checked against it)."""
        step_fs = float(seg.dt_fs) * int(seg.stride) / self.steps_per_call
        if self._dt_given is not None and abs(self._dt_given - step_fs) > 1e-9 * step_fs:
            raise ValueError(f"{self.name}: dt_fs {self._dt_given} x steps_per_call {self.steps_per_call} is not "
                             f"the data's model step {seg.dt_fs} fs x stride {seg.stride}")  # fmt: skip
        self.dt_fs = step_fs
        temp = self._temperature_given if self._temperature_given is not None else float(seg.temperature_K)
        if temp <= 0 and self.dynamics in ("nose_hoover", "langevin"):
            raise ValueError(f"{self.name}: {self.dynamics} needs a temperature; {seg.name} records none "
                             "(give temperature_K)")  # fmt: skip
        self.temperature_K = temp if temp > 0 else self.temperature_K

    def fit_own(self, train: list, val: list, seed: int, out_dir: str) -> dict[str, Any]:
        """Nothing to learn: take the time step and temperature from the first training segment."""
        if not train:
            raise ValueError(f"{self.name}: no training segment")
        self.resolve_from_segment(train[0])
        return {"calculator": self.calculator_path, "calculator_kwargs": self.calculator_kwargs(),
                "dynamics": self.dynamics, "dt_fs": self.dt_fs, "temperature_K": self.temperature_K}  # fmt: skip

    def get_extra_state(self) -> dict[str, Any]:
        return {"dt_fs": float(self.dt_fs), "temperature_K": float(self.temperature_K)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.dt_fs, self.temperature_K = float(state["dt_fs"]), float(state["temperature_K"])


class _XTB(ASESimulator):
    """GFN2-xTB through tblite's ASE calculator at the data's accuracy (``accuracy``), one fixed dynamics."""

    # needs the reference potential; dt_fs, temperature_K, friction_per_fs from data.<dataset>.xtb: the cards
    #: the one dynamics of the row
    fixed_dynamics = "nve"

    def __init__(
        self,
        dt_fs: float = 0.5,
        temperature_K: float = 500.0,
        friction_per_fs: float = 0.01,
        accuracy: float = 1.0,
        seed: int = 0,
        steps_per_call: int = 1,
    ):
        super().__init__(dynamics=self.fixed_dynamics, dt_fs=dt_fs, temperature_K=temperature_K,
                         friction_per_fs=friction_per_fs, seed=seed, steps_per_call=steps_per_call)  # fmt: skip
        self.accuracy = float(accuracy)

    def calculator_kwargs(self) -> dict[str, Any]:
        """As the data source builds it (:func:`diffmd.data.xtb_md._calculator`)."""
        return {"method": METHOD, "accuracy": self.accuracy, "verbosity": 0}


@register_model("xtb_nh")
class XTBNoseHoover(_XTB):
    """The oracle of Nosé-Hoover data: GFN2-xTB continuing the data's chain from its stored state."""

    # oracle, also needs the data's stored Nosé-Hoover chain state: its card
    fixed_dynamics = "nose_hoover"


@register_model("xtb_nve")
class XTBNVE(_XTB):
    """GFN2-xTB velocity Verlet from the start's positions and velocities: the oracle of NVE data."""

    # oracle: its card
    fixed_dynamics = "nve"


@register_model("xtb_langevin")
class XTBLangevin(_XTB):
    """GFN2-xTB Langevin dynamics at the data's temperature and friction with its own noise: an ensemble
    reference (another dynamics than the data's unless the data is Langevin), not an oracle."""

    # ensemble: its card
    fixed_dynamics = "langevin"
