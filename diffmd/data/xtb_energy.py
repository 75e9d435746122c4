"""The reference potential of the ``xtb`` source (GFN2-xTB through tblite's ASE calculator) and its threads, with
no torch and no ``ase.io``: light jobs (``diffmd.engine.evaluate``: energies at a few frames of a rollout) start in
a fraction of a second instead of paying torch's import (issue 25's per-job start-up). :mod:`diffmd.data.xtb_md`
(the data simulation) and :mod:`diffmd.models.physics` (the GFN2-xTB rows) use the same calculator and threads.

Threads: tblite's OpenMP threads come from ``OMP_NUM_THREADS`` read when tblite is first imported
(:func:`set_threads`). Torch's wheel bundles its own ``libgomp.so.1`` and tblite links ``libgomp.so.1``, so once
torch is imported tblite runs on torch's OpenMP runtime, which ignores ``OMP_NUM_THREADS`` set after torch's
import: every calculator call then runs inside :func:`torch_openmp_pinned` (one thread, torch's count restored).
One thread either way gives the same energies bit for bit (checked on a quick run's rollouts).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

#: The tight-binding method of the ``xtb`` source (tblite's name).
METHOD = "GFN2-xTB"


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


def calculator(accuracy: float):
    """tblite's ASE calculator of :data:`METHOD` at ``accuracy``, quiet."""
    from tblite.ase import TBLite

    return TBLite(method=METHOD, accuracy=accuracy, verbosity=0)


def reference_energies(positions: np.ndarray, numbers: np.ndarray, accuracy: float = 1.0) -> np.ndarray:
    """GFN2-xTB potential energies (frames,) kcal/mol of ``positions`` (frames, n_atoms, 3) Å.

    ``numbers`` (n_atoms,). Frames holding NaN/inf, or where tblite fails (e.g. atoms on top of each
    other in a diverged rollout), give NaN. One calculator serves all frames.
    """
    from ase import Atoms, units
    from ase.calculators.calculator import CalculationFailed, InputError

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(numbers), 3):
        raise ValueError(f"positions have shape {positions.shape}, expected (frames, {len(numbers)}, 3)")
    out = np.full(positions.shape[0], np.nan)
    calc = calculator(accuracy)
    ev_to_kcal = units.mol / units.kcal
    with torch_openmp_pinned():
        for i, x in enumerate(positions):
            if not np.isfinite(x).all():
                continue
            atoms = Atoms(numbers=numbers, positions=x)
            atoms.calc = calc
            try:
                out[i] = atoms.get_potential_energy() * ev_to_kcal
            except (CalculationFailed, InputError, RuntimeError):
                calc = calculator(accuracy)  # a failed SCF may leave the calculator in a bad state
    return out
