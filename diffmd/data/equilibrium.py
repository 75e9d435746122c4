"""Is a trajectory in equilibrium? Per-bond-type kinetic temperatures and bond-length spreads, against DFT.

The data report written beside every MD17 trajectory (``data/md17/{molecule}.report.{csv,md}``)::

    python -m diffmd.data.equilibrium --trajectory data/md17/ethanol.npz \\
        --out-csv data/md17/ethanol.report.csv --out-md data/md17/ethanol.report.md

One row per bond type (element pair, e.g. ``C-H``; bonds from the molecule's first frame, or the packaged
MD17 start structure for an MD17 molecule):

* ``T_kin_K``: the kinetic temperature of the bond stretch, μ·⟨(Δv·r̂)²⟩/k_B averaged over the frames and the
  type's bonds (Δv the two atoms' relative velocity, r̂ the bond direction, μ the reduced mass). In
  equilibrium (Maxwell-Boltzmann velocities) it is the bath temperature for every bond, whatever the
  potential; velocities are central differences (x(t+1) - x(t-1))/2dt, which for velocity-Verlet-type
  data (NVE, Nosé-Hoover) is the integrator's own velocity;
* ``T_lo_K``, ``T_hi_K``: the 95% interval of that time average by block averaging (:func:`block_interval`;
  ``block_fs``, ``n_blocks``: the block length taken and how many blocks);
* ``T_ratio`` = T_kin_K / the trajectory's temperature, and ``within_tolerance`` (|T_ratio - 1| ≤ 15%), the
  check; ``interval_within_tolerance``: the whole interval within it (the pass is then not luck);
* ``length_mean_A``, ``length_std_A``: the bond length's mean and spread (std over frames, averaged over
  the type's bonds), and the same from the real MD17 DFT frames at 500 K (rMD17, Christensen & von
  Lilienfeld 2020: 1000 random frames of each molecule, :data:`REFERENCE_FILE`), with ``std_ratio``.

A whole-molecule row (``all``) gives the internal kinetic temperature (3N - 6 degrees of freedom, centre-of-
mass and rigid rotation removed).

What it can and cannot say: a deterministic run of a small molecule under a global thermostat keeps each
vibration's energy for picoseconds, so its per-bond temperatures sit anywhere from 30 K to 1,300 K
(docs/data_equilibrium.md); under massive Nosé-Hoover chains every bond type's ensemble temperature is the
bath's, and what is left is the time average's statistical spread, about √(2τ/W) for a single bond over a
window W with a correlation time τ (~16 fs measured): the interval says how much of the ±15% that is. A bond
type far off (the O-H stretch at 45 K of a 500 K run) is data out of equilibrium, and a spread below half the
DFT one is flagged (``spread_below_half_dft``). Block averaging cannot see correlations longer than the
trajectory: a global chain's stuck vibration gets a narrow interval around the wrong temperature.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

#: Tolerance of a bond type's kinetic temperature around the bath's (fraction).
TEMPERATURE_TOLERANCE = 0.15
#: A bond-length spread below this fraction of the DFT one is flagged.
MIN_STD_RATIO = 0.5
#: Per-bond length statistics of the rMD17 DFT frames (packaged; :func:`reference_from_rmd17` makes it).
REFERENCE_FILE = "rmd17_bonds.json"
#: Block averaging: the fewest blocks a block length may leave (the interval's t quantile has n - 1 dof).
MIN_BLOCKS = 8
COLUMNS = ("bond_type", "n_bonds", "T_kin_K", "T_lo_K", "T_hi_K", "block_fs", "n_blocks", "T_ratio",
           "within_tolerance", "interval_within_tolerance", "length_mean_A", "length_std_A", "dft_length_mean_A",
           "dft_length_std_A", "std_ratio", "spread_below_half_dft")  # fmt: skip


def _symbols(numbers: np.ndarray) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def bond_pairs(positions: np.ndarray, numbers: np.ndarray) -> list[tuple[int, int]]:
    """Covalent bonds (i < j) of one frame (:func:`diffmd.graph.find_bonds`)."""
    from diffmd.graph import find_bonds

    i, j = find_bonds(positions, numbers)
    return sorted({(int(a), int(b)) for a, b in zip(i, j) if a < b})


def bond_type(numbers: np.ndarray, i: int, j: int) -> str:
    """Element pair of bond (i, j), carbon first, then alphabetical (``C-H``, ``C-O``, ``H-O``, ``H-N``)."""
    a, b = sorted(_symbols(np.asarray(numbers)[[i, j]]), key=lambda s: (s != "C", s))
    return f"{a}-{b}"


def central_velocities(positions: np.ndarray, dt_fs: float) -> np.ndarray:
    """(F - 2, N, 3) Å/fs: (x(t+1) - x(t-1)) / 2dt at frames 1..F-2."""
    x = np.asarray(positions, dtype=np.float64)
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 consecutive frames for velocities, got {x.shape[0]}")
    return (x[2:] - x[:-2]) / (2.0 * float(dt_fs))


def _kelvin_per_u_a2_fs2() -> float:
    """k_B-scaled kinetic energy: 1 u·Å²/fs² in K."""
    from ase import units

    return units._amu * 1e10 / units._k


def bond_temperature_series(positions: np.ndarray, numbers: np.ndarray, dt_fs: float,
                            pairs: list[tuple[int, int]]) -> np.ndarray:  # fmt: skip
    """(F - 2, n_bonds) K: μ(Δv·r̂)²/k_B of each bond stretch at frames 1..F-2 (central-difference velocities)."""
    from ase.data import atomic_masses

    v = central_velocities(positions, dt_fs)
    x = np.asarray(positions, dtype=np.float64)[1:-1]
    m = np.asarray(atomic_masses)[np.asarray(numbers, dtype=np.int64)]
    out = np.empty((x.shape[0], len(pairs)))
    for k, (i, j) in enumerate(pairs):
        d = x[:, i] - x[:, j]
        u = d / np.linalg.norm(d, axis=-1, keepdims=True)
        vr = ((v[:, i] - v[:, j]) * u).sum(-1)
        out[:, k] = m[i] * m[j] / (m[i] + m[j]) * vr**2 * _kelvin_per_u_a2_fs2()
    return out


def bond_temperatures(positions: np.ndarray, numbers: np.ndarray, dt_fs: float,
                      pairs: list[tuple[int, int]]) -> np.ndarray:  # fmt: skip
    """(n_bonds,) K: μ⟨(Δv·r̂)²⟩/k_B of each bond stretch over frames 1..F-2 (central-difference velocities)."""
    return bond_temperature_series(positions, numbers, dt_fs, pairs).mean(axis=0)


def block_interval(series: np.ndarray, dt_fs: float, level: float = 0.95,
                   min_blocks: int = MIN_BLOCKS) -> dict[str, Any]:  # fmt: skip
    """Interval of the time average of a correlated ``series`` (frames,) by block averaging (Flyvbjerg &
    Petersen, J. Chem. Phys. 91, 461 (1989)): for block lengths 1, 2, 4, ... frames leaving at least
    ``min_blocks`` blocks, the standard error of the mean of the block means; the largest one is taken (the
    plateau where blocks outlast the correlation time, or the most conservative estimate where the series is
    too short to reach it), with Student's t quantile for its number of blocks minus one. Returns ``mean``,
    ``lo``, ``hi``, ``se``, ``block_fs``, ``n_blocks`` (``lo``/``hi`` None when fewer than ``2·min_blocks``
    frames)."""
    from scipy import stats

    y = np.asarray(series, dtype=np.float64)
    mean = float(y.mean())
    best: tuple[float, int, int] | None = None
    length = 1
    while y.size // length >= min_blocks and y.size >= 2 * min_blocks:
        n = y.size // length
        blocks = y[: n * length].reshape(n, length).mean(axis=1)
        se = float(blocks.std(ddof=1) / np.sqrt(n))
        if best is None or se >= best[0]:
            best = (se, length, n)
        length *= 2
    if best is None:
        return {"mean": mean, "lo": None, "hi": None, "se": None, "block_fs": None, "n_blocks": None}
    se, length, n = best
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "se": se, "block_fs": length * float(dt_fs),
            "n_blocks": n}  # fmt: skip


def internal_temperature(positions: np.ndarray, numbers: np.ndarray, dt_fs: float) -> float:
    """Mean internal kinetic temperature (K) over frames 1..F-2: the kinetic energy left after removing the
    centre-of-mass velocity and the rigid rotation (ω = I⁻¹L per frame), over 3N - 6 degrees of freedom."""
    from ase.data import atomic_masses

    from diffmd.dynamics import internal_dof

    v = central_velocities(positions, dt_fs)
    x = np.asarray(positions, dtype=np.float64)[1:-1]
    m = np.asarray(atomic_masses)[np.asarray(numbers, dtype=np.int64)]
    mt = m.sum()
    r = x - (m[None, :, None] * x).sum(1, keepdims=True) / mt
    v = v - (m[None, :, None] * v).sum(1, keepdims=True) / mt
    ang = (m[None, :, None] * np.cross(r, v)).sum(1)  # (F, 3)
    rr = (r**2).sum(-1)
    inertia = (m[None, :, None, None] * (rr[..., None, None] * np.eye(3) - r[..., :, None] * r[..., None, :])).sum(1)
    omega = np.linalg.solve(inertia + 1e-12 * np.eye(3), ang[..., None])[..., 0]
    ke = 0.5 * (m[None, :, None] * v**2).sum((1, 2)) - 0.5 * (omega * ang).sum(-1)
    return float(np.mean(2.0 * ke / internal_dof(len(m))) * _kelvin_per_u_a2_fs2())


@cache
def references() -> dict[str, Any]:
    """The packaged rMD17 bond statistics ``{molecule: {"bonds": [[i, j, mean, std], ...], ...}}``."""
    text = resources.files("diffmd.data").joinpath(REFERENCE_FILE).read_text()
    return json.loads(text)


def reference_from_rmd17(path: str | Path) -> dict[str, Any]:
    """Per-bond length mean and std (Å) of an rMD17 sample file (``nuclear_charges``, ``coords``); bonds
    from its first frame. How :data:`REFERENCE_FILE` was made (``--make-reference``)."""
    with np.load(path, allow_pickle=False) as npz:
        z, x = npz["nuclear_charges"].astype(np.int64), npz["coords"].astype(np.float64)
    rows = []
    for i, j in bond_pairs(x[0], z):
        length = np.linalg.norm(x[:, i] - x[:, j], axis=-1)
        rows.append([i, j, round(float(length.mean()), 6), round(float(length.std()), 6)])
    return {"n_frames": int(x.shape[0]), "atomic_numbers": z.tolist(), "bonds": rows}


def bond_report(positions: np.ndarray, numbers: np.ndarray, dt_fs: float, temperature_K: float,
                reference: dict[str, Any] | None = None,
                pairs: list[tuple[int, int]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The report's rows (:data:`COLUMNS`), one per bond type, then the whole-molecule row ``all``.

    ``reference``: an entry of :func:`references` (bonds matched by atom indices: the same atom order) or None.
    """
    x = np.asarray(positions, dtype=np.float64)
    z = np.asarray(numbers, dtype=np.int64)
    pairs = bond_pairs(x[0], z) if pairs is None else pairs
    series = bond_temperature_series(x, z, dt_fs, pairs)
    lengths = {p: np.linalg.norm(x[:, p[0]] - x[:, p[1]], axis=-1) for p in pairs}
    ref = {(int(i), int(j)): (m, s) for i, j, m, s in (reference or {}).get("bonds", [])}
    rows = []
    types = sorted({bond_type(z, i, j) for i, j in pairs})
    for t in types:
        members = [k for k, p in enumerate(pairs) if bond_type(z, *p) == t]
        ci = block_interval(series[:, members].mean(axis=1), dt_fs)
        t_kin = ci["mean"]
        std = float(np.mean([lengths[pairs[k]].std() for k in members]))
        dft = [ref[pairs[k]] for k in members if pairs[k] in ref]
        dft_mean = float(np.mean([d[0] for d in dft])) if dft else None
        dft_std = float(np.mean([d[1] for d in dft])) if dft else None
        ratio = t_kin / temperature_K if temperature_K > 0 else None
        std_ratio = std / dft_std if dft_std else None
        rows.append({
            "bond_type": t, "n_bonds": len(members), "T_kin_K": t_kin, "T_lo_K": ci["lo"], "T_hi_K": ci["hi"],
            "block_fs": ci["block_fs"], "n_blocks": ci["n_blocks"], "T_ratio": ratio,
            "within_tolerance": None if ratio is None else bool(abs(ratio - 1.0) <= TEMPERATURE_TOLERANCE),
            "interval_within_tolerance": _interval_within(ci, temperature_K),
            "length_mean_A": float(np.mean([lengths[pairs[k]].mean() for k in members])), "length_std_A": std,
            "dft_length_mean_A": dft_mean, "dft_length_std_A": dft_std, "std_ratio": std_ratio,
            "spread_below_half_dft": None if std_ratio is None else bool(std_ratio < MIN_STD_RATIO),
        })  # fmt: skip
    t_int = internal_temperature(x, z, dt_fs)
    ratio = t_int / temperature_K if temperature_K > 0 else None
    within = None if ratio is None else bool(abs(ratio - 1) <= TEMPERATURE_TOLERANCE)
    rows.append({**{c: None for c in COLUMNS}, "bond_type": "all", "n_bonds": len(pairs), "T_kin_K": t_int,
                 "T_ratio": ratio, "within_tolerance": within})  # fmt: skip
    return rows


def _interval_within(ci: dict[str, Any], temperature_K: float) -> bool | None:
    """True when the whole interval lies within the tolerance around the bath (the ±15% is then not luck)."""
    if ci["lo"] is None or temperature_K <= 0:
        return None
    return bool(abs(ci["lo"] / temperature_K - 1) <= TEMPERATURE_TOLERANCE
                and abs(ci["hi"] / temperature_K - 1) <= TEMPERATURE_TOLERANCE)  # fmt: skip


def failures(rows: list[dict[str, Any]]) -> list[str]:
    """One line per problem: a bond type (or the whole molecule) outside the temperature tolerance, a spread
    below half the DFT one. Empty: the equilibration check passes."""
    out = []
    for r in rows:
        if r["within_tolerance"] is False:
            off = 100 * (r["T_ratio"] - 1)
            line = (f"{r['bond_type']}: kinetic temperature {r['T_kin_K']:.0f} K is {off:+.0f}% from the bath "
                    f"(tolerance ±{100 * TEMPERATURE_TOLERANCE:.0f}%)")  # fmt: skip
            lo, hi = r.get("T_lo_K"), r.get("T_hi_K")
            if lo is not None and hi is not None and r["T_ratio"]:
                bath = r["T_kin_K"] / r["T_ratio"]
                held = "holds" if lo <= bath <= hi else "does not hold"
                line += f", its 95% interval [{lo:.0f}, {hi:.0f}] K {held} the bath's {bath:.0f} K"
            out.append(line)
        if r["spread_below_half_dft"]:
            out.append(f"{r['bond_type']}: bond-length spread {r['length_std_A']:.4f} Å is below half the DFT "
                       f"{r['dft_length_std_A']:.4f} Å")  # fmt: skip
    return out


def report_for(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of one canonical trajectory file and what they were computed from."""
    from diffmd.data.trajectory import load_trajectory

    traj = load_trajectory(path)
    reference = references().get(traj.name) if traj.dataset == "md17" else None
    pairs = None
    if reference is not None:
        if list(reference["atomic_numbers"]) != traj.atomic_numbers.tolist():
            reference = None  # another atom order: no per-bond comparison
        else:
            pairs = [(int(i), int(j)) for i, j, _, _ in reference["bonds"]]
    rows = bond_report(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, reference, pairs)
    meta = {"trajectory": str(path), "name": traj.name, "dataset": traj.dataset, "source": traj.source,
            "frames": traj.n_frames, "dt_fs": traj.dt_fs, "temperature_K": traj.temperature_K,
            "reference": None if reference is None else f"rMD17 ({reference['n_frames']} DFT frames at 500 K)",
            "thermostat": traj.provenance.get("settings", {}).get("thermostat")}  # fmt: skip
    return rows, meta


def to_frame(rows: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(COLUMNS))


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    frame = to_frame(rows)
    shown = frame.copy()
    for col, fmt in (("T_kin_K", "{:.0f}"), ("T_lo_K", "{:.0f}"), ("T_hi_K", "{:.0f}"), ("block_fs", "{:g}"),
                     ("n_blocks", "{:.0f}"), ("T_ratio", "{:.2f}"), ("length_mean_A", "{:.4f}"),
                     ("length_std_A", "{:.4f}"), ("dft_length_mean_A", "{:.4f}"), ("dft_length_std_A", "{:.4f}"),
                     ("std_ratio", "{:.2f}")):  # fmt: skip
        shown[col] = [("—" if v is None or v != v else fmt.format(v)) for v in frame[col]]
    for col in ("within_tolerance", "interval_within_tolerance", "spread_below_half_dft"):
        shown[col] = ["—" if v is None else ("yes" if v else "no") for v in frame[col]]
    problems = failures(rows)
    lines = [
        f"# Equilibrium of {meta['name']} ({meta['dataset']}, source {meta['source']})", "",
        f"{meta['frames']} frames of {meta['dt_fs']:g} fs at {meta['temperature_K']:g} K"
        + (f", thermostat {meta['thermostat']}" if meta.get("thermostat") else "")
        + f"; reference: {meta['reference'] or 'none (no DFT frames for this molecule)'}.", "",
        shown.to_markdown(index=False), "",
        "- T_kin_K: kinetic temperature of the bond stretch, μ⟨(Δv·r̂)²⟩/k_B (central-difference velocities), "
        "mean over the type's bonds; `all`: internal temperature (3N - 6, rotation removed).",
        "- T_lo_K, T_hi_K: 95% interval of the type's time average by block averaging (Flyvbjerg-Petersen: the "
        f"largest standard error over block lengths 1, 2, 4, ... frames leaving ≥ {MIN_BLOCKS} blocks, Student's t); "
        "block_fs, n_blocks: the block length taken and the number of blocks.",
        f"- within_tolerance: |T_kin/T - 1| ≤ {TEMPERATURE_TOLERANCE:.0%}; spread_below_half_dft: length std < "
        f"{MIN_STD_RATIO:g} x the DFT one; interval_within_tolerance: the whole interval within "
        f"±{TEMPERATURE_TOLERANCE:.0%} (informative: the check reads T_kin_K). A single bond's time average "
        "scatters by about √(2τ/W) over a window W for a coupling time τ (docs/data_equilibrium.md).",
        "", "Check: " + ("passes." if not problems else "; ".join(problems) + "."),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from diffmd.io import write_text

    p = argparse.ArgumentParser(description="Per-bond-type temperature and bond-length spread of a trajectory.")
    p.add_argument("--trajectory", help="canonical trajectory (.npz)")
    p.add_argument("--out-csv")
    p.add_argument("--out-md")
    p.add_argument("--make-reference", nargs="+", metavar="MOLECULE=RMD17_NPZ",
                   help=f"write {REFERENCE_FILE} (to --out-json) from rMD17 sample files")  # fmt: skip
    p.add_argument("--out-json")
    a = p.parse_args(argv)
    if a.make_reference:
        table = {}
        for item in a.make_reference:
            name, _, path = item.partition("=")
            table[name] = {"source": f"rMD17 {Path(path).name}", **reference_from_rmd17(path)}
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(table.items()))
        write_text(a.out_json, "{\n" + body + "\n}\n")
        return
    if not (a.trajectory and a.out_csv and a.out_md):
        p.error("--trajectory, --out-csv and --out-md are required")
    rows, meta = report_for(a.trajectory)
    write_text(a.out_csv, to_frame(rows).to_csv(index=False))
    write_text(a.out_md, markdown(rows, meta))
    problems = failures(rows)
    print(json.dumps({"trajectory": a.trajectory, "check": "passes" if not problems else problems}))


if __name__ == "__main__":
    from diffmd.engine.cli import run_cli

    sys.exit(run_cli(main))
