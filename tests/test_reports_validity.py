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
    pred[4] = _stretch_co(truth[4], 0.2)  # C-O 1.43 -> 1.63 Å: +14 %, outside the ±10% rule
    for t in range(7, 11):
        pred[t] = _stretch_co(truth[t], 1.0)  # 1.70 x its length from step 7 on
    pred_v, truth_v = validity.rollout_validity(_rollout(pred, truth))
    assert pred_v.n_steps == 10 and pred_v.n_bonds == 8
    assert pred_v.valid_fraction == pytest.approx(5 / 10)  # frames 1-3, 5, 6
    # one rule for both numbers: the horizon ends at the first frame that is not valid (step 4)
    assert pred_v.horizon_steps == 3 and not pred_v.stable
    assert pred_v.first_bad_bond == f"{C}-{O}"
    assert truth_v.valid_fraction == 1.0 and truth_v.stable and truth_v.horizon_steps == 10


def test_valid_fraction_and_stability_cannot_contradict_each_other():
    """Before, a rollout with 0% valid frames (every bond +14%) was 'stable for the whole rollout' (1.5x rule)."""
    truth = np.repeat(ETHANOL_XYZ[None], 9, axis=0)
    pred = np.stack([truth[0]] + [_stretch_co(f, 0.2) for f in truth[1:]])
    v, _ = validity.rollout_validity(_rollout(pred, truth))
    assert v.valid_fraction == 0.0 and v.horizon_steps == 0 and not v.stable
    rng = np.random.default_rng(0)
    for _ in range(20):  # any pattern of bad frames: stable <=> 100% valid, 0% valid => horizon 0
        pred = truth.copy()
        for t in np.nonzero(rng.random(8) < 0.3)[0]:
            pred[t + 1] = _stretch_co(truth[t + 1], 0.2)
        v, _ = validity.rollout_validity(_rollout(pred, truth))
        assert v.stable == (v.valid_fraction == 1.0)
        assert v.horizon_steps <= round(v.valid_fraction * v.n_steps)


def test_clash_and_nan_end_the_horizon():
    truth = np.repeat(ETHANOL_XYZ[None], 6, axis=0)
    pred = truth.copy()
    pred[3, 4] = pred[3, 3] + np.array([0.3, 0.0, 0.0])  # two hydrogens 0.3 Å apart at step 3
    v, _ = validity.rollout_validity(_rollout(pred, truth))
    assert v.horizon_steps == 2 and v.first_bad_bond == ""
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
    for bad in ("tolerance", "break_factor"):  # break_factor: the second threshold this table no longer has
        with pytest.raises(ValueError, match="unknown key"):
            validity.rollout_validity(_rollout(pred, truth), {bad: 0.2})


def _md_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith("| ") and line[2:].startswith(label))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_table_names_its_rule_one_step_rows_dash_and_horizon_in_fs():
    truth = np.repeat(ETHANOL_XYZ[None], 11, axis=0)
    pred = truth.copy()
    pred[7:] = np.nan
    floor = _rollout(truth[:1], truth[:1])  # a one-step-only model: no rolled-out frames
    floor.path = "/r/md17/ethanol/force_verlet/seed1/rollout.npz"
    rows = validity.validity_rows([_rollout(pred, truth), floor])
    assert [r.model for r in rows] == ["egnn", "force_verlet", validity.GROUND_TRUTH]
    rep = validity.validity_report(rows, "md17", "xtb", ["egnn", "force_verlet"], {"bond_tolerance": 0.1})
    md = rep.markdown()
    assert md.startswith("Data source: GFN2-xTB simulation")
    assert "every bond within ±10% of its reference length and no two atoms closer than 0.7 Å" in md
    assert "the first frame that is not valid" in md
    assert md.count("| egnn ") == 2 and _md_row(md, "egnn")[1] in ("60.0%", "3 fs")
    assert [_md_row(sec.markdown(), "egnn")[1] for sec in rep.sections] == ["60.0%", "3 fs"]  # 6 steps x 0.5 fs
    assert [_md_row(sec.markdown(), "force_verlet")[1] for sec in rep.sections] == ["—", "—"]  # was nan%, 0 fs
    assert [_md_row(sec.markdown(), "ground truth")[1] for sec in rep.sections] == ["100.0%", "5 fs (whole rollout)"]
    assert "force_verlet (floor)" in md and "nan" not in md.lower()
    csv = validity.render_validity_csv(rows, "test data", {"bond_tolerance": 0.1})
    header, egnn, floor_row = csv.splitlines()[:3]
    assert header.startswith("molecule,model,seed,step_fs,n_steps,n_bonds,valid_fraction,horizon_steps,horizon_fs")
    assert egnn.startswith("ethanol,egnn,1,0.5,10,8,0.6,6,3.0,False,")
    assert floor_row.startswith("ethanol,force_verlet,1,0.5,0,8,,,,,")
    html = rep.html()
    assert "<table" in html and "±10%" in html and "`" not in html
