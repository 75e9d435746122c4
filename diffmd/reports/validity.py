"""Physical validity of rollouts: do the generated conformations keep the molecule's bonds?

The paper notes that several baselines produce "illegal" conformations (appendix, Fig. 4). Per
rollout we measure, on the predicted frames ``x~(1..n)``:

* bonds: pairs ``(i, j)`` with ``|x_i - x_j| < bond_factor * (r_i + r_j)`` on the start frame
  (``r`` = covalent radii); their reference length ``l_ij`` is the mean over the ground-truth
  frames of the same rollout (so thermal motion of the truth is the yardstick);
* valid frame: every bond satisfies ``|d_ij - l_ij| <= bond_tolerance * l_ij`` and no two atoms
  are closer than ``clash_A``;
* broken frame: some bond is longer than ``break_factor * l_ij``, or two atoms clash, or the
  frame is not finite;
* stability horizon: the number of model steps before the first broken frame (all ``n`` when
  none), also in fs (steps x stride x dt_fs).

The same numbers for the ground truth itself are reported as a calibration row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

import numpy as np

from diffmd.graph import BOND_SCALE
from diffmd.graph import find_bonds as graph_find_bonds
from diffmd.reports.results import Rollout, run_identity
from diffmd.reports.tables import ordered
from diffmd.rundir import role_of

DEFAULTS = {"bond_factor": BOND_SCALE, "bond_tolerance": 0.10, "break_factor": 1.5, "clash_A": 0.7}
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
    valid_fraction: float  # fraction of frames 1..n that are valid
    horizon_steps: int  # model steps before the first broken frame (n_steps when none)
    stable: bool  # no broken frame at all
    first_broken_bond: str  # "i-j" of the first bond out of bounds at the horizon, "" if none/clash


def frame_validity(
    frames: np.ndarray,
    bonds: np.ndarray,
    ref_lengths: np.ndarray,
    bond_tolerance: float = DEFAULTS["bond_tolerance"],
    break_factor: float = DEFAULTS["break_factor"],
    clash_A: float = DEFAULTS["clash_A"],
) -> Validity:
    """Validity of ``frames`` (n+1, atoms, 3) Å against reference bond lengths (n_bonds,) Å."""
    gen = frames[1:]
    n = gen.shape[0]
    finite = np.isfinite(gen).all(axis=(1, 2))
    safe = np.where(np.isfinite(gen), gen, 0.0)
    lengths = bond_lengths(safe, bonds)
    clash = min_pair_distance(safe) < clash_A
    within = (np.abs(lengths - ref_lengths) <= bond_tolerance * ref_lengths).all(axis=1)
    valid = finite & within & ~clash
    broken_bond = lengths > break_factor * ref_lengths
    broken = ~finite | clash | broken_bond.any(axis=1)
    first = int(np.argmax(broken)) if broken.any() else n
    bond_txt = ""
    if first < n and finite[first] and broken_bond[first].any():
        k = int(np.argmax(broken_bond[first]))
        bond_txt = f"{bonds[k, 0]}-{bonds[k, 1]}"
    return Validity(
        n_steps=n,
        n_bonds=int(bonds.shape[0]),
        valid_fraction=float(valid.mean()) if n else float("nan"),
        horizon_steps=first,
        stable=first == n,
        first_broken_bond=bond_txt,
    )


def rollout_validity(rollout: Rollout, params: dict | None = None) -> tuple[Validity, Validity]:
    """(prediction, ground truth) validity of one rollout; ``params`` overrides :data:`DEFAULTS`."""
    p = {**DEFAULTS, **(params or {})}
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"validity parameters: unknown key(s) {', '.join(sorted(unknown))}")
    bonds = find_bonds(rollout.reference[0], rollout.atomic_numbers, p["bond_factor"])
    ref_len = bond_lengths(rollout.reference, bonds).mean(axis=0)
    kw = {k: p[k] for k in ("bond_tolerance", "break_factor", "clash_A")}
    pred = frame_validity(rollout.positions, bonds, ref_len, **kw)
    return pred, frame_validity(rollout.reference, bonds, ref_len, **kw)


@dataclass
class ValidityRow:
    molecule: str
    model: str
    seed: str
    step_fs: float  # fs per model step (stride x dt_fs)
    validity: Validity


def validity_rows(rollouts: list[Rollout], params: dict | None = None) -> list[ValidityRow]:
    """One row per rollout plus one ground-truth row per molecule (from its finest-stride rollout)."""
    rows: list[ValidityRow] = []
    truth: dict[str, tuple[int, ValidityRow]] = {}
    for ro in rollouts:
        ident = run_identity(ro.path)
        pred, gt = rollout_validity(ro, params)
        step_fs = ro.stride * ro.dt_fs
        rows.append(ValidityRow(ident["molecule"], ident["model"], ident["seed"], step_fs, pred))
        mol = ident["molecule"]
        if mol not in truth or ro.stride < truth[mol][0]:
            truth[mol] = (ro.stride, ValidityRow(mol, GROUND_TRUTH, "-", step_fs, gt))
    return rows + [row for _, row in truth.values()]


def render_validity_csv(rows: list[ValidityRow], data_label: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = list(asdict(rows[0].validity)) if rows else []
    w.writerow(["molecule", "model", "seed", *fields, "horizon_fs", "data_source"])
    for r in rows:
        v = asdict(r.validity)
        v["valid_fraction"] = f"{r.validity.valid_fraction:.4f}"
        w.writerow([r.molecule, r.model, r.seed, *v.values(), f"{r.validity.horizon_steps * r.step_fs:g}", data_label])
    return buf.getvalue()


def _mean_cell(rows: list[ValidityRow], kind: str) -> str:
    if not rows:
        return "-"
    if kind == "fraction":
        return f"{100 * np.mean([r.validity.valid_fraction for r in rows]):.1f}%"
    fs = np.mean([r.validity.horizon_steps * r.step_fs for r in rows])
    stable = all(r.validity.stable for r in rows)
    return f"{fs:g} fs" + (" (whole rollout)" if stable else "")


def render_validity_md(rows: list[ValidityRow], data_label: str, models: list[str] | None, params: dict) -> str:
    """Two markdown tables (valid-frame fraction, stability horizon), models x molecules."""
    molecules = list(dict.fromkeys(r.molecule for r in rows))
    model_order = [GROUND_TRUTH] + [m for m in ordered(models, [r.model for r in rows]) if m != GROUND_TRUTH]
    p = {**DEFAULTS, **params}
    out = [f"Data source: {data_label}.", ""]
    for kind, title in (
        ("fraction", "Valid frames (% of the rolled-out frames)"),
        ("horizon", "Stability horizon (time before the first broken bond or clash)"),
    ):
        out += [f"{title}.", "", "| Model | " + " | ".join(molecules) + " |", "|---|" + "---:|" * len(molecules)]
        for model in model_order:
            label = model + (" (reference)" if model != GROUND_TRUTH and role_of(model) == "reference" else "")
            cells = [_mean_cell([r for r in rows if r.model == model and r.molecule == m], kind) for m in molecules]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    out += [
        f"- Bonds: pairs closer than {p['bond_factor']} x the sum of covalent radii on the start frame; "
        "reference length = mean over the ground-truth frames of the same rollout.",
        f"- Valid frame: every bond within {100 * p['bond_tolerance']:g}% of its reference length and no two "
        f"atoms closer than {p['clash_A']} Å.",
        f"- Broken: a bond longer than {p['break_factor']} x its reference length, a clash, or NaN/inf. "
        "Horizon in fs = model steps x stride x frame time; several seeds are averaged.",
        "- ground_truth: the reference trajectory scored the same way (how strict the tolerance is).",
    ]
    return "\n".join(out) + "\n"
