"""Synthetic run directories for testing the report layer (tests only; production code never imports
:mod:`diffmd.testing`). Written through :mod:`diffmd.rundir`, the run files' one writer.

A "ground truth" is the first MD17 ethanol frame (Chmiela et al. 2017, copied from the fixture
``md17_ethanol_first3.xyz``) vibrating with small sinusoidal displacements; a fake rollout of a
model is that truth plus a perturbation whose per-frame RMSD is known in closed form, so the
ARMSE written into ``armse.json`` is known exactly. Files follow docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diffmd.rundir import role_of, write_record, write_rollout
from diffmd.testing import ETHANOL_X, ETHANOL_Z

# the first MD17 ethanol frame, shared with the model tests
ETHANOL_XYZ = ETHANOL_X


def vibrating_truth(n_frames: int, seed: int = 0, amplitude: float = 0.03, period: float = 40.0) -> np.ndarray:
    """(n_frames, 9, 3) Å: ethanol with each atom oscillating along a random direction."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=ETHANOL_XYZ.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, size=(ETHANOL_XYZ.shape[0], 1))
    t = np.arange(n_frames)[:, None, None]
    return ETHANOL_XYZ[None] + amplitude * np.sin(2 * np.pi * t / period + phase[None]) * direction[None]


def write_run(
    root: str | Path,
    dataset: str,
    molecule: str,
    model: str,
    seed: int,
    source: str,
    truth: np.ndarray,
    offset: float,
    stride: int = 1,
    diverged: bool = False,
    dt_fs: float = 0.5,
    score_evals: int = 0,
) -> float | None:
    """Write rollout.npz + armse.json for a fake model whose every atom is shifted by ``offset`` Å
    along x on every generated frame (frame 0 is the start frame). Returns the ARMSE written (Å):
    exactly ``offset``, or None when ``diverged``."""
    run = Path(root) / dataset / molecule / model / f"seed{seed}"
    ref = truth[::stride]
    pred = ref.copy()
    pred[1:, :, 0] += offset
    n = ref.shape[0] - 1
    if diverged:
        pred[n // 2 :] = np.nan
    rmsd = np.sqrt(((pred[1:] - ref[1:]) ** 2).sum(-1).mean(-1))
    curve = np.sqrt(np.cumsum(rmsd**2) / np.arange(1, n + 1))
    armse = None if diverged else float(math.sqrt(float(np.mean(rmsd**2))))
    write_rollout(
        run,
        positions=pred,
        reference=ref,
        frame_indices=np.arange(n + 1) * stride,
        atomic_numbers=ETHANOL_Z,
        diverged_at=n // 2 if diverged else -1,
        stride=stride,
        dt_fs=dt_fs,
        seconds=0.01 * n,
        score_evals=np.full(n, score_evals, dtype=np.int64),
        source=source,
        molecule=molecule,
        model=model,
        extxyz=False,
    )
    write_record(
        run / "armse.json",
        {
            "dataset": dataset,
            "molecule": molecule,
            "model": model,
            "role": role_of(model),
            "seed": seed,
            "source": source,
            "stride": stride,
            "n_frames": n,
            "armse": armse,
            "armse_unaligned": armse,
            "diverged": diverged,
            "diverged_at": n // 2 if diverged else -1,
            "rmsd_per_frame": [None if not np.isfinite(v) else float(v) for v in rmsd],
            "armse_curve": [None if not np.isfinite(v) else float(v) for v in curve],
            "score_evals_per_frame": float(score_evals),
            "rollout_seconds": 0.01 * n,
            "frames_per_second": 100.0,
        },
    )
    return armse


def write_benchmark(path: str | Path, seconds: float, max_rss: float) -> None:
    """A Snakemake-style benchmark TSV with one repeat."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    path.write_text(cols + f"{seconds}\t0:00:01\t{max_rss}\t{2 * max_rss}\t1\t1\t0\t0\t50\t{seconds}\n")
