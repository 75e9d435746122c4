"""Machine-learned force-field row: sGDML (Chmiela et al., the MD17 authors' own model), run with ASE.

What a user would pick instead of DiffMD: a force field trained on the training frames' *forces and
energies* (labels no other learned model of the tables sees), integrated from the same start frames
with ASE and the data's own dynamics and time step, so its row differs from the oracle's by its force error
alone (one step: F_err·dt²/m, the ``force_step_rmse`` of the one-step table).

* Training (``trainer = "own"``): the ``sgdml`` package's own trainer (``sgdml.train.GDMLTrain``,
  closed-form analytic solver) on ``n_train`` frames taken evenly from the first training segment's
  frames [start, stop); the kernel length scale ``sigma`` is chosen from a grid by the force MAE on the
  validation segments' frames, as sGDML's own CLI does (its default grid is 10, 20, ..., 90).
* Dynamics: the simulating rows' (:class:`diffmd.models.physics.ASESimulator`: one ASE ``Atoms`` per
  molecule of the batch, FixCom, :mod:`diffmd.dynamics`'s integrators started from x(t0), x(t0) - x(t0-1)):
  ``dynamics: data`` (default) continues the data's Nosé-Hoover chain from the state the ``xtb`` source
  stores (as ``xtb_nh``) and runs velocity Verlet where the data stores none (as ``xtb_nve``); never a
  Langevin bath on deterministic data unless asked (``dynamics: langevin``). The only difference from the
  oracle is the calculator, sGDML's ``sgdml.intf.ase_calc.SGDMLCalculator`` on the trained model.
* Checkpoint: the trained sGDML model (descriptors, coefficients, permutations, integration constant)
  is the module's extra state, a dict of float64/int64 tensors, numbers and strings, so ``state_dict()``
  loads with ``torch.load(weights_only=True)`` and a fresh model given it predicts identically.

sGDML is a single-molecule model: it does not transfer across molecules (O2O needs a transferable
force field), and it needs force labels (the C7O2H10 archive has none): both raise a one-line
``ValueError`` that the pipeline reports as NA.

Units: positions Å, forces kcal/mol/Å, energies kcal/mol (the data's, and sGDML's); ASE sees eV and Å.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.pairs import Segment
from diffmd.models.physics import DYNAMICS, ASESimulator
from diffmd.registry import register_model

#: sGDML's CLI default length-scale grid (``sgdml all`` without ``--sig``: 10:10:100).
SIGMA_GRID: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: model-dict entries kept in the checkpoint: arrays (tensors) and scalars GDMLPredict needs or reports
_ARRAY_KEYS = ("z", "R_desc", "R_d_desc_alpha", "perms", "tril_perms_lin", "alphas_F", "alphas_E", "idxs_train")
_SCALAR_KEYS = {"sig": float, "lam": float, "std": float, "c": float, "use_E": bool, "solver_name": str,
                "code_version": str}  # fmt: skip
STATE_FORMAT = "diffmd-sgdml-1"


@functools.cache
def _trainer():
    """The process's one ``GDMLTrain`` (sGDML allows a single instance per process), one CPU process."""
    from sgdml.train import GDMLTrain

    return GDMLTrain(max_processes=1)


def _dataset(seg: Segment, frames: np.ndarray, use_E: bool) -> dict[str, Any]:
    """sGDML's ``dataset`` dict of frames ``frames`` (m,) of ``seg``: R (m, n, 3) Å, F kcal/mol/Å, E kcal/mol."""
    out = {"R": seg.positions[frames].astype(np.float64), "F": seg.forces[frames].astype(np.float64),
           "z": np.asarray(seg.atomic_numbers, dtype=np.int64), "name": np.array(seg.name),
           "theory": np.array(seg.source or "unknown")}  # fmt: skip
    if use_E:
        out["E"] = np.asarray(seg.energies[frames], dtype=np.float64)
    return out


def _even(frames: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` entries of ``frames`` spread evenly (first and last kept)."""
    if n >= len(frames):
        return frames
    return frames[np.unique(np.linspace(0, len(frames) - 1, n).round().astype(np.int64))]


def _predictor(model: dict[str, Any]):
    """``sgdml.predict.GDMLPredict`` of a model dict, NumPy path in this process (no worker pool)."""
    from sgdml.predict import GDMLPredict

    return GDMLPredict(model, max_processes=1, num_workers=0, log_level=logging.WARNING)


def _calculator(predictor):
    """sGDML's ASE calculator (``SGDMLCalculator``, kcal/mol and Å -> eV and Å) on an in-memory predictor.

    ``SGDMLCalculator.__init__`` only loads a model file (pickled ``.npz``) into a ``GDMLPredict``; this
    builds the same object from the predictor directly and keeps the package's ``calculate``.
    """
    from ase import units
    from ase.calculators.calculator import Calculator
    from sgdml.intf.ase_calc import SGDMLCalculator

    calc = SGDMLCalculator.__new__(SGDMLCalculator)
    Calculator.__init__(calc)
    calc.log = logging.getLogger("sgdml.intf.ase_calc")
    calc.gdml_predict = predictor
    calc.E_to_eV = units.kcal / units.mol
    calc.F_to_eV_Ang = units.kcal / units.mol
    calc.Ang_to_R = calc.F_to_eV_Ang / calc.E_to_eV
    return calc


@register_model("sgdml")
class SGDMLForceField(ASESimulator):
    """sGDML force field (trained with sGDML's own solver) integrated with ASE like the GFN2-xTB oracle.

    Parameters:

    * ``n_train``: training frames, evenly spaced over the first training segment's frames;
    * ``sigma``: kernel length scale, a number or a grid (chosen by validation force MAE);
    * ``lam``: ridge regularisation; ``use_sym``: permutational symmetries (sGDML vs GDML);
    * ``use_E``: also fit the energies (when the data has them); ``use_E_cstr``: energies as kernel
      constraints; ``n_valid``: validation frames (evenly spaced over the validation segments);
    * ``dynamics``: ``data`` (default: the data's Nosé-Hoover chain continued where the data stores it, else
      velocity Verlet), ``nve``, ``nose_hoover`` or ``langevin`` (a bath with new noise: another dynamics);
    * ``dt_fs``, ``temperature_K``: MD step (fs) and bath temperature (K); ``None`` takes them from the
      training segment (its frame spacing × stride / ``steps_per_call``; its temperature), a value is
      checked against it; ``friction_per_fs``: Langevin friction (1/fs); ``seed``: Langevin noise
      (molecule ``i`` of a batch draws from ``np.random.default_rng([seed, i])``);
    * ``steps_per_call``: MD steps per model step.
    """

    # its card (diffmd/models/cards.yaml): force_field, fit own; needs force labels to train on and one molecule
    # per model (S2L only: no transfer to O2O isomers); the time step and temperature come from the training
    # segment itself, the friction from the config (source_params)
    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same
    param_schema = {
        "dynamics": {"enum": list(DYNAMICS)},
        "sigma": {"description": "a length scale > 0 or a non-empty grid of them",
                  "anyOf": [{"type": "number", "exclusiveMinimum": 0},
                            {"type": "array", "minItems": 1, "items": {"type": "number", "exclusiveMinimum": 0}}]},
        "n_train": {"type": "integer", "minimum": 2},
        "n_valid": {"type": "integer", "minimum": 1},
    }

    def __init__(
        self,
        n_train: int = 200,
        sigma: float | Sequence[float] = SIGMA_GRID,
        lam: float = 1e-10,
        use_sym: bool = True,
        use_E: bool = True,
        use_E_cstr: bool = False,
        n_valid: int = 200,
        dynamics: str = "data",
        dt_fs: float | None = None,
        temperature_K: float | None = None,
        friction_per_fs: float = 0.01,
        seed: int = 0,
        steps_per_call: int = 1,
    ):
        if dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {', '.join(DYNAMICS)}, got {dynamics!r}")
        super().__init__(dynamics=dynamics, dt_fs=1.0 if dt_fs is None else dt_fs,
                         temperature_K=temperature_K or 0.0, friction_per_fs=friction_per_fs, seed=seed,
                         steps_per_call=steps_per_call)  # fmt: skip
        sigmas = tuple(float(s) for s in (sigma if isinstance(sigma, Sequence) else (sigma,)))
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigma must be > 0 (a number or a non-empty grid), got {sigma!r}")
        if n_train < 2 or n_valid < 1:
            raise ValueError(f"n_train must be >= 2 and n_valid >= 1, got {n_train}, {n_valid}")
        self.n_train, self.n_valid = int(n_train), int(n_valid)
        self.sigmas, self.lam, self.use_sym = sigmas, float(lam), bool(use_sym)
        self.use_E, self.use_E_cstr = bool(use_E), bool(use_E_cstr)
        self._dt_given = None if dt_fs is None else float(dt_fs)
        self._temperature_given = None if temperature_K is None else float(temperature_K)
        self._model: dict[str, Any] | None = None  # sGDML's model dict (NumPy arrays), None until trained
        self._gdml = None  # its GDMLPredict, built once and shared by every molecule's calculator

    # --- training ------------------------------------------------------------------------------

    def _resolve_dynamics(self, seg: Segment) -> None:
        """The MD step and bath temperature: given ones checked against ``seg``, missing ones taken from it."""
        step_fs = float(seg.dt_fs) * int(seg.stride) / self.steps_per_call
        if self._dt_given is not None and abs(self._dt_given - step_fs) > 1e-9 * step_fs:
            raise ValueError(f"sgdml: dt_fs {self._dt_given} x steps_per_call {self.steps_per_call} is not the "
                             f"data's model step {seg.dt_fs} fs x stride {seg.stride}")  # fmt: skip
        self.dt_fs = step_fs
        temp = self._temperature_given if self._temperature_given is not None else float(seg.temperature_K)
        if self.dynamics in ("langevin", "nose_hoover") and temp <= 0:
            raise ValueError(f"sgdml: {self.dynamics} needs a temperature; {seg.name} records none "
                             "(give temperature_K)")  # fmt: skip
        self.temperature_K = temp

    def fit_own(self, train: list[Segment], val: list[Segment], seed: int, out_dir: str) -> dict[str, Any]:
        """Train sGDML on ``n_train`` frames of ``train[0]``, choosing ``sigma`` by validation force MAE.

        ``val``: segments of the same molecule (frames [start, stop) each). ``out_dir`` is not used (the
        model lives in the state dict). Raises a one-line ``ValueError`` when the data has no forces or
        the segments hold more than one molecule. Returns the log summary (seconds, MAEs per sigma, ...).
        """
        if not train:
            raise ValueError("sgdml: no training segment")
        seg = train[0]
        if seg.forces is None:
            raise ValueError(f"sgdml needs force labels: the {seg.source or 'source'} data of {seg.name} has no forces")
        for other in list(train[1:]) + list(val):
            if other.name != seg.name or not np.array_equal(other.atomic_numbers, seg.atomic_numbers):
                raise ValueError(f"sgdml is a single-molecule force field: {other.name} is not {seg.name} "
                                 "(no transfer across molecules)")  # fmt: skip
            if other.forces is None:
                raise ValueError(f"sgdml needs force labels: segment {other.name} has no forces")
        self._resolve_dynamics(seg)
        use_E = self.use_E and seg.energies is not None and all(v.energies is not None for v in val)
        tr_frames = _even(seg.frames(), self.n_train)
        if not val and len(self.sigmas) > 1:
            raise ValueError("sgdml: a sigma grid needs validation segments to choose from")
        val_parts = [(v, v.frames()) for v in val]
        n_val_total = sum(len(f) for _, f in val_parts)
        gdml = _trainer()
        np_state = np.random.get_state()  # sGDML samples with NumPy's global generator
        np.random.seed(int(seed) % 2**32)
        try:
            t0 = time.perf_counter()
            train_ds = _dataset(seg, tr_frames, use_E)
            task = gdml.create_task(train_ds, len(tr_frames), train_ds, 0, sig=self.sigmas[0], lam=self.lam,
                                    use_sym=self.use_sym, use_E=use_E, use_E_cstr=self.use_E_cstr)  # fmt: skip
            per_sigma: dict[str, float] = {}
            best: tuple[float, dict[str, Any]] | None = None
            for sig in self.sigmas:
                model = gdml.train(dict(task, sig=sig))
                if val_parts:
                    mae = self._val_errors(model, val_parts, n_val_total)["force_mae"]
                else:
                    mae = float("nan")
                per_sigma[f"{sig:g}"] = mae
                if best is None or mae < best[0]:
                    best = (mae, model)
            seconds = time.perf_counter() - t0
        finally:
            np.random.set_state(np_state)
        assert best is not None
        self._set_model(best[1])
        summary = {
            "package": "sgdml", "version": _sgdml_version(), "n_train": int(len(tr_frames)),
            "n_perms": int(best[1]["perms"].shape[0]), "sigma": float(best[1]["sig"]), "use_E": bool(use_E),
            "val_force_mae_by_sigma": per_sigma, "train_seconds": seconds, "dt_fs": self.dt_fs,
            "temperature_K": self.temperature_K, "dynamics": self.dynamics,
        }  # fmt: skip
        if val_parts:
            summary.update({f"val_{k}": v for k, v in self._val_errors(best[1], val_parts, n_val_total).items()})
        return summary

    def _val_errors(self, model: dict[str, Any], parts: list[tuple[Segment, np.ndarray]], total: int) -> dict:
        """Force MAE/RMSE (kcal/mol/Å) and energy MAE (kcal/mol, if fitted) on evenly spread validation frames."""
        pred = _predictor(model)
        f_err, e_err = [], []
        for v, frames in parts:
            frames = _even(frames, max(1, round(self.n_valid * len(frames) / total)))
            e, f = pred.predict(v.positions[frames].reshape(len(frames), -1).astype(np.float64))
            f_err.append(f.reshape(-1) - v.forces[frames].reshape(-1))
            if model["use_E"] and v.energies is not None:
                e_err.append(e - v.energies[frames])
        f_all = np.concatenate(f_err)
        out = {"force_mae": float(np.abs(f_all).mean()), "force_rmse": float(np.sqrt((f_all**2).mean()))}
        if e_err:
            out["energy_mae"] = float(np.abs(np.concatenate(e_err)).mean())
        return out

    # --- the trained model ---------------------------------------------------------------------

    def _set_model(self, model: dict[str, Any] | None) -> None:
        self._model, self._gdml = model, None

    @property
    def trained(self) -> bool:
        return self._model is not None

    def energies_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sGDML energies (m,) kcal/mol and forces (m, n_atoms, 3) kcal/mol/Å of ``positions`` (m, n_atoms, 3) Å."""
        gdml = self._predictor()
        x = np.asarray(positions, dtype=np.float64)
        e, f = gdml.predict(x.reshape(x.shape[0], -1))
        return e, f.reshape(x.shape)

    def _trained_model(self) -> dict[str, Any]:
        if self._model is None:
            raise RuntimeError("sgdml: the model is not trained (call fit_own or load a state dict)")
        return self._model

    def _predictor(self):
        """The trained model's ``GDMLPredict``, built on first use."""
        if self._gdml is None:
            self._gdml = _predictor(self._trained_model())
        return self._gdml

    def get_extra_state(self) -> dict[str, Any]:
        """The trained model as tensors/numbers/strings (``torch.load(weights_only=True)``-safe)."""
        state: dict[str, Any] = {"format": STATE_FORMAT, "dt_fs": float(self.dt_fs),
                                 "temperature_K": float(self.temperature_K)}  # fmt: skip
        if self._model is None:
            return state
        for key in _ARRAY_KEYS:
            if key in self._model:
                state[key] = torch.from_numpy(np.ascontiguousarray(self._model[key]))
        for key, kind in _SCALAR_KEYS.items():
            state[key] = kind(self._model[key])
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"sgdml: extra state format {got!r}, expected {STATE_FORMAT!r}")
        check_state(state)
        self.dt_fs, self.temperature_K = float(state["dt_fs"]), float(state["temperature_K"])
        if "R_desc" not in state:
            self._set_model(None)
            return
        model: dict[str, Any] = {"type": "m"}
        for key in _ARRAY_KEYS:
            if key in state:
                model[key] = state[key].detach().cpu().numpy().copy()
        for key, kind in _SCALAR_KEYS.items():
            model[key] = kind(state[key])
        self._set_model(model)

    # --- dynamics: the oracle's, with sGDML's calculator ----------------------------------------

    def _calculator(self):
        """sGDML's ASE calculator on the trained model (one shared predictor); the base class counts it."""
        return _calculator(self._predictor())

    def begin_rollout(self, batch: B.Batch) -> None:
        """Check every molecule of ``batch`` is the trained one, then start the ASE simulations (see base)."""
        z_model = self._trained_model()["z"]
        z = batch[B.ATOMIC_NUMBERS].detach().cpu().numpy()
        start = 0
        for n in batch[B.NUM_ATOMS].tolist():
            if not np.array_equal(z[start : start + int(n)], z_model):
                raise ValueError("sgdml: a molecule of the batch is not the one the force field was trained on")
            start += int(n)
        super().begin_rollout(batch)

    def loss(self, batch: B.Batch) -> torch.Tensor:
        raise TypeError("sgdml trains with its own solver (fit_own), not on the engine's loss")


def check_state(state: dict[str, Any]) -> None:
    """A checkpoint's sGDML state consistent before sGDML indexes with it (a corrupt or forged file is one line,
    not an IndexError or a segfault in the predictor): the MD step and temperature, the arrays' shapes against
    the number of atoms, permutations and indices in range, finite numbers."""

    def number(key: str, low: float, strict: bool) -> float:
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                or value < low or (strict and value == low):
            bound = f"{'>' if strict else '>='} {low:g}"
            raise ValueError(f"sgdml: extra state {key!r} must be a number {bound}, got {value!r}")
        return float(value)

    number("dt_fs", 0.0, True)
    number("temperature_K", 0.0, False)
    if "R_desc" not in state:
        return
    arrays = {}
    for key in ("z", "R_desc", "R_d_desc_alpha", "perms", "tril_perms_lin", "alphas_F"):
        value = state.get(key)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"sgdml: extra state {key!r} missing or not an array")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"sgdml: extra state {key!r} holds NaN or inf")
        arrays[key] = value
    z, perms, tril = arrays["z"], arrays["perms"], arrays["tril_perms_lin"]
    n = int(z.numel())
    if z.ndim != 1 or n < 2 or z.is_floating_point() or int(z.min()) < 1 or int(z.max()) > 118:
        raise ValueError(f"sgdml: extra state 'z' must list the atomic numbers (1..118) of >= 2 atoms, got shape"
                         f" {tuple(z.shape)}")
    d = n * (n - 1) // 2
    n_train = int(arrays["R_desc"].shape[-1]) if arrays["R_desc"].ndim == 2 else -1
    expected = {"R_desc": (d, n_train), "R_d_desc_alpha": (n_train, d), "alphas_F": (n_train * 3 * n,)}
    for key, shape in expected.items():
        if n_train < 1 or tuple(arrays[key].shape) != shape:
            raise ValueError(f"sgdml: extra state {key!r} has shape {tuple(arrays[key].shape)}, {n} atoms and"
                             f" {n_train} training frames need {shape}")
    if perms.ndim != 2 or perms.shape[1] != n or perms.is_floating_point() or perms.shape[0] < 1:
        raise ValueError(f"sgdml: extra state 'perms' has shape {tuple(perms.shape)}, expected (n_perms, {n})")
    if not bool((torch.sort(perms, dim=1).values == torch.arange(n)).all()):
        raise ValueError(f"sgdml: extra state 'perms' holds a row that is not a permutation of the {n} atoms")
    size = int(perms.shape[0]) * d
    if tuple(tril.shape) != (size,) or tril.is_floating_point():
        raise ValueError(f"sgdml: extra state 'tril_perms_lin' has shape {tuple(tril.shape)} ({tril.dtype}), expected"
                         f" {size} integer indices")
    if int(tril.min()) < 0 or int(tril.max()) >= size:
        raise ValueError(f"sgdml: extra state 'tril_perms_lin' holds indices in [{int(tril.min())}, {int(tril.max())}],"
                         f" outside [0, {size})")
    number("sig", 0.0, True)
    for key in ("std", "c"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"sgdml: extra state {key!r} must be a finite number, got {value!r}")


def _sgdml_version() -> str:
    import sgdml

    return str(sgdml.__version__)
