"""Physical validity on hand-made trajectories with bonds stretched at known steps (diffmd.reports.validity)."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd.reports import validity
from diffmd.reports.results import Rollout
from diffmd.testing.synthetic import ETHANOL_XYZ, ETHANOL_Z

C, O, H_O = 0, 2, 8  # ethanol: first carbon, oxygen, hydroxyl hydrogen


def _rollout(pred: np.ndarray, truth: np.ndarray, stride: int = 1) -> Rollout:
    n = pred.shape[0]
    return Rollout(
        path="/r/md17/ethanol/egnn/seed1/rollout.npz",
        positions=pred,
        reference=truth,
        atomic_numbers=ETHANOL_Z,
        frame_indices=np.arange(n) * stride,
        stride=stride,
        dt_fs=0.5,
        diverged=False,
        diverged_at=-1,
        seconds=None,
        score_evals=np.zeros(n - 1),
    )


def _stretch_co(frame: np.ndarray, by: float) -> np.ndarray:
    """Move O and its H away from C along the C-O axis by ``by`` Å: only the C-O bond changes."""
    out = frame.copy()
    axis = (frame[O] - frame[C]) / np.linalg.norm(frame[O] - frame[C])
    out[[O, H_O]] += by * axis
    return out


def test_bonds_of_ethanol():
    bonds = {tuple(b) for b in validity.find_bonds(ETHANOL_XYZ, ETHANOL_Z)}
    assert len(bonds) == 8  # C-C, C-O, O-H, 5 C-H
    assert (C, O) in bonds and (O, H_O) in bonds and (1, 2) not in bonds


def test_stretched_bond_at_known_steps():
    truth = np.repeat(ETHANOL_XYZ[None], 11, axis=0)  # 10 steps after the start frame
    pred = truth.copy()
    pred[4] = _stretch_co(truth[4], 0.2)  # C-O 1.43 -> 1.63 Å: +14 %, invalid but not broken
    for t in range(7, 11):
        pred[t] = _stretch_co(truth[t], 1.0)  # 1.70 x its length: broken from step 7 on
    pred_v, truth_v = validity.rollout_validity(_rollout(pred, truth))
    assert pred_v.n_steps == 10 and pred_v.n_bonds == 8
    assert pred_v.valid_fraction == pytest.approx(5 / 10)  # frames 1-3, 5, 6
    assert pred_v.horizon_steps == 6 and not pred_v.stable
    assert pred_v.first_broken_bond == f"{C}-{O}"
    assert truth_v.valid_fraction == 1.0 and truth_v.stable and truth_v.horizon_steps == 10


def test_clash_and_nan_end_the_horizon():
    truth = np.repeat(ETHANOL_XYZ[None], 6, axis=0)
    pred = truth.copy()
    pred[3, 4] = pred[3, 3] + np.array([0.3, 0.0, 0.0])  # two hydrogens 0.3 Å apart at step 3
    v, _ = validity.rollout_validity(_rollout(pred, truth))
    assert v.horizon_steps == 2 and v.first_broken_bond == ""
    pred[3] = truth[3]
    pred[5] = np.nan
    v, _ = validity.rollout_validity(_rollout(pred, truth))
    assert v.horizon_steps == 4 and v.valid_fraction == pytest.approx(4 / 5)


def test_tolerance_is_a_parameter_and_unknown_keys_fail():
    truth = np.repeat(ETHANOL_XYZ[None], 3, axis=0)
    pred = truth.copy()
    pred[1] = _stretch_co(truth[1], 0.2)
    assert validity.rollout_validity(_rollout(pred, truth))[0].valid_fraction == 0.5
    assert validity.rollout_validity(_rollout(pred, truth), {"bond_tolerance": 0.2})[0].valid_fraction == 1.0
    with pytest.raises(ValueError, match="unknown key"):
        validity.rollout_validity(_rollout(pred, truth), {"tolerance": 0.2})


def test_table_has_ground_truth_row_and_horizon_in_fs():
    truth = np.repeat(ETHANOL_XYZ[None], 11, axis=0)
    pred = truth.copy()
    pred[7:] = np.nan
    rows = validity.validity_rows([_rollout(pred, truth)])
    assert [r.model for r in rows] == ["egnn", validity.GROUND_TRUTH]
    md = validity.render_validity_md(rows, "test data", ["egnn"], {})
    assert "| egnn | 3 fs |" in md  # 6 steps x 0.5 fs
    assert "| ground_truth | 5 fs (whole rollout) |" in md
    assert "ethanol,egnn,1,10,8,0.6000,6,False,,3,test data" in validity.render_validity_csv(rows, "test data")
