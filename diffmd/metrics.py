"""Trajectory error metrics: Kabsch superposition, RMSD per frame and the paper's ARMSE.

ARMSE (accumulative root-mean-square error; DiffMD, Wu & Li 2023, "Evaluation metric") over the
``n`` rolled-out frames ``x̃_1 .. x̃_n`` against the reference frames ``x_1 .. x_n`` of a molecule
with ``N`` atoms::

    ARMSE = sqrt( (1/n) * sum_{i=1..n} (1/N) * || R_i (x̃_i - c(x̃_i)) - (x_i - c(x_i)) ||^2 )

where ``c(.)`` is the centroid (translation removed by centring) and ``R_i`` is the proper rotation
(det +1, reflections excluded) that minimises the squared distance of frame ``i`` (Kabsch 1976).
``||.||^2`` sums the squared distances over the ``N`` atoms, so each term is the mean squared
per-atom displacement, in Å². The aligned ARMSE is invariant to any rotation and translation of a
predicted frame; a mirror image is *not* superposable and keeps a non-zero error. The unaligned
ARMSE is the same sum with ``R_i = I`` and no centring. Frame 0 (the shared start frame) is
excluded. ``rmsd_i`` is the square root of the ``i``-th term and the running ARMSE curve is
``sqrt(mean(rmsd_1^2 .. rmsd_m^2))`` for ``m = 1 .. n``. All values are in Å.
"""

from __future__ import annotations

import numpy as np


def kabsch_rotation(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Proper rotations (det +1) superposing centred ``mobile`` onto centred ``target``.

    ``mobile``, ``target``: (frames, atoms, 3), already centred. Returns ``R`` (frames, 3, 3) with
    ``mobile @ R^T`` the best superposition in the least-squares sense.
    """
    h = np.einsum("fai,faj->fij", mobile, target)  # covariance H = P^T Q, (frames, 3, 3)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("fji,fkj->fik", vt, u)))  # det(V U^T)
    d = np.where(d == 0, 1.0, d)
    diag = np.ones(h.shape[:1] + (3,))
    diag[:, 2] = d
    # R = V diag(1, 1, d) U^T
    return np.einsum("fji,fj,fkj->fik", vt, diag, u)


def _as_frames(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (frames, atoms, 3), got {x.shape}")
    return x


def rmsd_per_frame(pred: np.ndarray, ref: np.ndarray, align: bool = True) -> np.ndarray:
    """RMSD of each frame, Å. ``pred``, ``ref``: (frames, atoms, 3) -> (frames,).

    ``align=True``: after centring and the optimal proper rotation (Kabsch); ``False``: raw.
    """
    pred, ref = _as_frames(pred, "pred"), _as_frames(ref, "reference")
    if pred.shape != ref.shape:
        raise ValueError(f"pred has shape {pred.shape} but reference has {ref.shape}")
    if align:
        pred = pred - pred.mean(axis=1, keepdims=True)
        ref = ref - ref.mean(axis=1, keepdims=True)
        rot = kabsch_rotation(pred, ref)
        pred = np.einsum("faj,fij->fai", pred, rot)
    return np.sqrt(((pred - ref) ** 2).sum(axis=-1).mean(axis=-1))


def armse(pred: np.ndarray, ref: np.ndarray, align: bool = True, skip_first: bool = True) -> float:
    """ARMSE (see module docstring), Å. ``pred``, ``ref``: (n+1, atoms, 3) with frame 0 the start.

    ``skip_first=False`` treats every given frame as a rolled-out frame.
    """
    r = rmsd_per_frame(pred, ref, align)
    if skip_first:
        r = r[1:]
    if r.size == 0:
        raise ValueError("ARMSE needs at least one rolled-out frame")
    return float(np.sqrt(np.mean(r**2)))


def armse_curve(rmsd: np.ndarray) -> np.ndarray:
    """Running ARMSE after each of the rolled-out frames: ``sqrt(cumsum(rmsd^2) / m)``, (n,)."""
    rmsd = np.asarray(rmsd, dtype=np.float64)
    return np.sqrt(np.cumsum(rmsd**2) / np.arange(1, rmsd.size + 1))
