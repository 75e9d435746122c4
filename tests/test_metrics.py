"""ARMSE and RMSD on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.metrics import armse, armse_curve, kabsch_rotation, rmsd_per_frame
from diffmd.testing import ETHANOL_X


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


# A non-planar molecule (ethanol's hydrogens leave the plane), so a mirror image is not a rotation.
X = ETHANOL_X - ETHANOL_X.mean(axis=0)


def test_rotated_translated_copy_is_zero_aligned_and_known_unaligned():
    shift = np.array([3.0, 0.0, 4.0])  # |shift| = 5 Å
    ref = np.stack([X, X, X])
    pred = ref.copy()
    pred[1] = X + shift  # pure translation: unaligned RMSD exactly 5 Å
    pred[2] = X @ rotation(np.array([1.0, 2.0, 3.0]), 0.7).T
    assert armse(pred, ref) == pytest.approx(0.0, abs=1e-12)
    unaligned = rmsd_per_frame(pred, ref, align=False)
    assert unaligned[1] == pytest.approx(5.0)
    rot_err = np.sqrt((((pred[2] - X) ** 2).sum(-1)).mean())
    assert unaligned[2] == pytest.approx(rot_err)
    assert armse(pred, ref, align=False) == pytest.approx(np.sqrt((25.0 + rot_err**2) / 2))


def test_constant_offset_on_one_atom():
    n = len(X)
    ref = np.stack([X, X])
    pred = ref.copy()
    pred[1, 0] += np.array([0.0, 0.0, 0.3])
    # unaligned: one atom off by 0.3 Å -> RMSD = sqrt(0.09 / n)
    assert armse(pred, ref, align=False) == pytest.approx(np.sqrt(0.09 / n))
    # aligned can only lower it (translation alone removes (n-1)/n of the offset's mean)
    aligned = armse(pred, ref)
    centred_only = np.sqrt(0.09 / n * (1 - 1 / n))
    assert 0 < aligned <= centred_only + 1e-12


def test_reflected_copy_is_not_zero():
    mirror = X * np.array([1.0, 1.0, -1.0]) @ rotation(np.array([0.3, -1.0, 0.2]), 1.1).T
    value = armse(np.stack([X, mirror]), np.stack([X, X]))
    assert value > 0.1  # rotations only: a mirror image keeps a large error
    rot = kabsch_rotation(mirror[None] - mirror.mean(0), X[None])
    assert np.linalg.det(rot[0]) == pytest.approx(1.0)


def test_two_frames_against_the_formula():
    rng = np.random.default_rng(0)
    ref = X[None] + 0.1 * rng.standard_normal((3, len(X), 3))
    pred = ref + 0.05 * rng.standard_normal(ref.shape)
    pred[2] = pred[2] @ rotation(np.array([0.0, 0.0, 1.0]), 0.4).T + 1.0
    terms = []
    for i in (1, 2):
        p, q = pred[i] - pred[i].mean(0), ref[i] - ref[i].mean(0)
        r = _svd_rotation(p, q)
        terms.append(np.mean(((p @ r.T - q) ** 2).sum(-1)))
    expected = np.sqrt(np.mean(terms))
    assert armse(pred, ref) == pytest.approx(expected, rel=1e-12)
    r = rmsd_per_frame(pred, ref)
    np.testing.assert_allclose(armse_curve(r[1:]), [r[1], np.sqrt((r[1] ** 2 + r[2] ** 2) / 2)])
    # no rotation does better than Kabsch's
    p, q = pred[2] - pred[2].mean(0), ref[2] - ref[2].mean(0)
    for angle in np.linspace(-0.5, 0.5, 11):
        r_try = rotation(np.array([0.0, 0.0, 1.0]), -0.4 + angle)
        assert np.mean(((p @ r_try.T - q) ** 2).sum(-1)) >= terms[1] - 1e-12


def _svd_rotation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Textbook Kabsch for one frame (independent of the vectorised code)."""
    h = p.T @ q
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shape"):
        rmsd_per_frame(np.zeros((2, 3, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="at least one"):
        armse(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))
