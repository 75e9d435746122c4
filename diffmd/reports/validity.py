"""Physical validity of rollouts: do the generated conformations keep the molecule's bonds?

The paper notes that several baselines produce "illegal" conformations (appendix, Fig. 4). Per
rollout we measure, on the predicted frames ``x~(1..n)``, with **one rule** for both numbers:

* bonds: pairs ``(i, j)`` with ``|x_i - x_j| < bond_factor * (r_i + r_j)`` on the start frame
  (``r`` = covalent radii); their reference length ``l_ij`` is the mean over the ground-truth
  frames of the same rollout (so thermal motion of the truth is the yardstick);
* valid frame: finite, every bond within ``bond_tolerance`` of its reference length
  (``|d_ij - l_ij| <= bond_tolerance * l_ij``) and no two atoms closer than ``clash_A``;
* valid fraction: the share of frames 1..n that are valid;
* stability horizon: the model steps before the first frame that is not valid (all ``n`` when none),
  also in fs (steps x stride x dt_fs). So a rollout is stable over its whole length exactly when all
  its frames are valid: the two columns cannot contradict each other.

A one-step-only model (no rolled-out frames: the force floor) has neither number ("—"). The same
numbers for the ground truth itself are reported as a calibration row (how strict the rule is).
(The distributions table's ``stable_fraction`` is another, looser rule, named there: every bond shorter
than :data:`diffmd.catalogue.BOND_BREAK_FACTOR` x its start length.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from diffmd.catalogue import BOND_BREAK_FACTOR
from diffmd.graph import BOND_SCALE
from diffmd.graph import find_bonds as graph_find_bonds
from diffmd.reports.results import Rollout, run_identity, source_label
from diffmd.reports.yardstick import Report, Section, _registered_role, ordered, row_label

DEFAULTS = {"bond_factor": BOND_SCALE, "bond_tolerance": 0.10, "clash_A": 0.7}
GROUND_TRUTH = "ground_truth"


def find_bonds(positions: np.ndarray, atomic_numbers: np.ndarray, bond_factor: float = BOND_SCALE) -> np.ndarray:
    """Covalent bonds of one frame, shape (n_bonds, 2) with i < j (via :func:`diffmd.graph.find_bonds`).

    positions: (atoms, 3) Å. A bond is a pair closer than ``bond_factor`` x the sum of the two
    covalent radii (:mod:`diffmd.elements`).
    """
    both = graph_find_bonds(positions, atomic_numbers, bond_factor)
    keep = both[0] < both[1]
    return np.stack([both[0, keep], both[1, keep]], axis=1).reshape(-1, 2)


def bond_lengths(frames: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(frames, atoms, 3) Å -> (frames, n_bonds) Å."""
    return np.linalg.norm(frames[:, bonds[:, 0]] - frames[:, bonds[:, 1]], axis=-1)


def min_pair_distance(frames: np.ndarray) -> np.ndarray:
    """Smallest interatomic distance per frame, (frames,) Å."""
    n = frames.shape[1]
    iu = np.triu_indices(n, k=1)
    d = np.linalg.norm(frames[:, iu[0]] - frames[:, iu[1]], axis=-1)
    return d.min(axis=1) if d.shape[1] else np.full(frames.shape[0], np.inf)


@dataclass
class Validity:
    """Validity of one trajectory's frames 1..n (the start frame is given, not generated)."""

    n_steps: int
    n_bonds: int
    valid_fraction: float  # fraction of frames 1..n that are valid (NaN without frames)
    horizon_steps: int  # model steps before the first frame that is not valid (n_steps when none)
    stable: bool  # every frame valid
    first_bad_bond: str  # "i-j" of the bond furthest outside the tolerance at the horizon, "" if none/clash/NaN


def frame_validity(
    frames: np.ndarray,
    bonds: np.ndarray,
    ref_lengths: np.ndarray,
    bond_tolerance: float = DEFAULTS["bond_tolerance"],
    clash_A: float = DEFAULTS["clash_A"],
) -> Validity:
    """Validity of ``frames`` (n+1, atoms, 3) Å against reference bond lengths (n_bonds,) Å."""
    gen = frames[1:]
    n = gen.shape[0]
    finite = np.isfinite(gen).all(axis=(1, 2))
    safe = np.where(np.isfinite(gen), gen, 0.0)
    lengths = bond_lengths(safe, bonds)
    clash = min_pair_distance(safe) < clash_A
    excess = np.abs(lengths - ref_lengths) / ref_lengths - bond_tolerance  # > 0: outside the tolerance
    valid = finite & (excess <= 0).all(axis=1) & ~clash
    first = int(np.argmin(valid)) if not valid.all() else n
    bond_txt = ""
    if first < n and finite[first] and not clash[first] and excess.shape[1]:
        k = int(np.argmax(excess[first]))
        bond_txt = f"{bonds[k, 0]}-{bonds[k, 1]}"
    return Validity(
        n_steps=n,
        n_bonds=int(bonds.shape[0]),
        valid_fraction=float(valid.mean()) if n else float("nan"),
        horizon_steps=first,
        stable=first == n,
        first_bad_bond=bond_txt,
    )


def rollout_validity(rollout: Rollout, params: dict | None = None) -> tuple[Validity, Validity]:
    """(prediction, ground truth) validity of one rollout; ``params`` overrides :data:`DEFAULTS`."""
    p = {**DEFAULTS, **(params or {})}
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"validity parameters: unknown key(s) {', '.join(sorted(unknown))}")
    bonds = find_bonds(rollout.reference[0], rollout.atomic_numbers, p["bond_factor"])
    ref_len = bond_lengths(rollout.reference, bonds).mean(axis=0)
    kw = {k: p[k] for k in ("bond_tolerance", "clash_A")}
    pred = frame_validity(rollout.positions, bonds, ref_len, **kw)
    return pred, frame_validity(rollout.reference, bonds, ref_len, **kw)


@dataclass
class ValidityRow:
    molecule: str
    model: str
    seed: str
    step_fs: float  # fs per model step (stride x dt_fs)
    validity: Validity
    stride: int = 1  # source frames per model step


def validity_rows(rollouts: list[Rollout], params: dict | None = None) -> list[ValidityRow]:
    """One row per rollout plus one ground-truth row per molecule (from its finest-stride rollout)."""
    rows: list[ValidityRow] = []
    truth: dict[str, tuple[int, ValidityRow]] = {}
    for ro in rollouts:
        ident = run_identity(ro.path)
        pred, gt = rollout_validity(ro, params)
        step_fs = ro.stride * ro.dt_fs
        rows.append(ValidityRow(ident["molecule"], ident["model"], ident["seed"], step_fs, pred, ro.stride))
        mol = ident["molecule"]
        if mol not in truth or ro.stride < truth[mol][0]:
            truth[mol] = (ro.stride, ValidityRow(mol, GROUND_TRUTH, "-", step_fs, gt, ro.stride))
    return rows + [row for _, row in truth.values()]


def _frame(rows: list[ValidityRow], data_label: str, params: dict) -> pd.DataFrame:
    """One row per rollout (the CSV); one-step-only rows (no rolled-out frames) have empty numbers."""
    p = {**DEFAULTS, **params}
    out = []
    for r in rows:
        v, rolled = r.validity, r.validity.n_steps > 0
        out.append({"molecule": r.molecule, "model": r.model, "seed": r.seed, "step_fs": r.step_fs,
                    "n_steps": v.n_steps, "n_bonds": v.n_bonds,
                    "valid_fraction": v.valid_fraction if rolled else None,
                    "horizon_steps": v.horizon_steps if rolled else None,
                    "horizon_fs": v.horizon_steps * r.step_fs if rolled else None,
                    "stable": v.stable if rolled else None, "first_bad_bond": v.first_bad_bond,
                    "bond_tolerance": p["bond_tolerance"], "clash_A": p["clash_A"], "bond_factor": p["bond_factor"],
                    "data_source": data_label})  # fmt: skip
    frame = pd.DataFrame(out)
    for col in ("horizon_steps",):
        frame[col] = frame[col].astype("Int64")
    frame["stable"] = frame["stable"].astype("boolean")
    return frame


def render_validity_csv(rows: list[ValidityRow], data_label: str, params: dict | None = None) -> str:
    """The per-rollout table as CSV (``DataFrame.to_csv``; empty cells for one-step-only rows)."""
    return _frame(rows, data_label, params or {}).to_csv(index=False, na_rep="", lineterminator="\n")


def _cell(rows: list[ValidityRow], kind: str) -> str:
    if not rows:
        return "not run"
    if all(r.validity.n_steps == 0 for r in rows):
        return "—"  # a one-step-only model: no rolled-out frames
    rolled = [r for r in rows if r.validity.n_steps > 0]
    if kind == "fraction":
        return f"{100 * np.mean([r.validity.valid_fraction for r in rolled]):.1f}%"
    fs = np.mean([r.validity.horizon_steps * r.step_fs for r in rolled])
    whole = all(r.validity.stable for r in rolled)
    return f"{fs:g} fs" + (" (whole rollout)" if whole else "")


def validity_report(rows: list[ValidityRow], dataset: str, source: str, models: list[str] | None,
                    params: dict) -> Report:  # fmt: skip
    """The validity tables (valid frames, stability horizon; models x molecules) as a
    :class:`~diffmd.reports.yardstick.Report`: the CSV, Markdown and HTML from one frame."""
    p = {**DEFAULTS, **params}
    molecules = list(dict.fromkeys(r.molecule for r in rows))
    model_order = [GROUND_TRUTH] + [m for m in ordered(models, [r.model for r in rows]) if m != GROUND_TRUTH]
    rule = (f"every bond within ±{100 * p['bond_tolerance']:g}% of its reference length and no two atoms closer "
            f"than {p['clash_A']:g} Å")  # fmt: skip
    sections = []
    for kind, title in (("fraction", f"Valid frames (% of the rolled-out frames with {rule})"),
                        ("horizon", "Stability horizon (time before the first frame that is not valid, "
                                    "the same rule)")):  # fmt: skip
        body = []
        for model in model_order:
            mine = [r for r in rows if r.model == model]
            if model == GROUND_TRUTH:
                label = "ground truth (reference frames)"
            else:
                stride = max((r.stride for r in mine), default=1)
                step = max((r.step_fs for r in mine), default=None)
                label = row_label(model, _registered_role(model), stride, step)
            body.append((label, [_cell([r for r in mine if r.molecule == m], kind) for m in molecules]))
        sections.append(Section(title, ["Model", *molecules], body))
    notes = [
        f"Bonds: pairs closer than {p['bond_factor']} x the sum of covalent radii on the start frame; reference "
        "length = mean over the ground-truth frames of the same rollout.",
        f"Valid frame: finite, {rule}. Stability horizon: model steps x stride x frame time before the first frame "
        "that is not valid, so 'whole rollout' and 100% valid frames go together. Several seeds are averaged.",
        "—: a one-step-only model (floor) has no rolled-out frames.",
        "ground truth: the reference trajectory scored the same way (how strict the rule is).",
        f"The distributions table's stable fraction is a looser rule (every bond shorter than {BOND_BREAK_FACTOR:g}x "
        "its start length); both are named where they are printed.",
    ]
    title = "Physical validity of the rollouts"
    return Report(dataset, source, title, _frame(rows, source_label(dataset, source), params), sections, notes)
