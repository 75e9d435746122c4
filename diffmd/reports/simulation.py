"""The simulation table and survival figure (``simulation.json`` of every run, :mod:`diffmd.engine.simulate`).

Long format first (columns :data:`diffmd.reports.yardstick.LONG_COLUMNS`, one row per run and metric: the CSV),
then one section per metric, models x molecules, rendered through pandas/tabulate as the yardstick's tables.
Reference rows read from the data (the test segment's own internal temperature and rigid-body share; the
physics ensemble's own energy score and energy-distance null) are printed above the models. Ranking marks (bold
best, underlined second) are among the ranked roles only, as everywhere. A ranked model that behaves as a
reference row (Table 1's rule, :func:`diffmd.reports.tables.reference_copies`, on :data:`COPY_METRICS`: a
rollout that stands still scores as ``static``) is labelled "≈ static" and not ranked: a collapsed ``diffmd``
survives every run and keeps its energy because it does not move.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from diffmd import catalogue
from diffmd.engine.simulate import SCORE_METRICS, SIMULATION_METRICS
from diffmd.reports import tables as T
from diffmd.reports import yardstick as Y

TITLE = "Simulations from starts spread over the test segment, and proper scores of the samples"
#: Section titles, ranking directions ("low", "high", "abs" (closer to 0), "ref" (closer to the data's value)) and cell
#: formats: the metrics catalogue's (diffmd/catalogue.py), decided there once
METRIC_TITLES = catalogue.titles(SIMULATION_METRICS + SCORE_METRICS, simulation=True)
DIRECTION = catalogue.directions([m for m in SIMULATION_METRICS + SCORE_METRICS if m in METRIC_TITLES])
FORMATS = catalogue.formats(SIMULATION_METRICS + SCORE_METRICS)
#: rows of the data or of the ensemble printed above the models: metric -> (label, record key or score metric)
REFERENCE_ROWS = {
    "t_internal_K": ("data (test segment, every frame)", "t_internal_K"),
    "rigid_share": ("data (test segment, every frame)", "rigid_share"),
    "energy_score": ("ideal sampler (half of the ensemble against the other half)", "energy_score_ideal"),
    "energy_distance": ("null (two halves of the ensemble)", "energy_distance_null"),
}
#: The metrics a copy of a reference row reproduces, all of them (Table 1's rule, :func:`T.reference_copies`): the
#: proper scores of the end frames at the scoring horizon (a rollout that stands still scores as ``static`` to
#: 1e-4 relative; one that moves 0.01 Å does not). Without scores (no reference ensemble) no row is a copy.
COPY_METRICS = ("energy_score", "crps", "energy_distance")
#: ``role`` of the rows read from the data itself (the test segment's internal temperature, rigid-body share)
DATA_ROLE = "data"
SHOWN = tuple(m for m in SIMULATION_METRICS + SCORE_METRICS if m not in ("energy_score_ideal", "energy_distance_null"))


def load_simulations(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read ``simulation.json`` files through their one reader (:func:`diffmd.rundir.load_simulation`)."""
    from diffmd.rundir import load_simulation

    return [load_simulation(p) for p in paths]


def long_frame(
    recs: Sequence[dict[str, Any]], models: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per (run, metric), the yardstick's long columns; the data's own rows as model ``data@k`` (k the
    frame spacing in frames; role :data:`DATA_ROLE`); models named in ``models`` without records get NA rows with
    the plan's reason."""
    rows: list[dict[str, Any]] = []
    seen_ref: set[tuple[str, str]] = set()
    for rec in recs:
        role = rec["role"]  # the simulation wrote it (diffmd.rundir.load_simulation checks it is there)
        base = {
            "dataset": rec["dataset"],
            "molecule": rec["molecule"],
            "model": rec["model"],
            "role": role,
            "seed": rec["seed"],
            "source": rec.get("source", ""),
        }
        if not rec.get("applicable", True):
            for metric in SHOWN:
                rows.append(
                    {
                        **base,
                        "metric": metric,
                        "value": None,
                        "n_starts": 0,
                        "n_diverged": 0,
                        "unit": "",
                        "note": Y.NOT_APPLICABLE,
                    }
                )
            continue
        for m in rec["metrics"]:
            note = ""
            if m["metric"] == "median_ttf_fs" and m.get("censored"):
                note = "censored"
            if m["metric"] in SCORE_METRICS and float(rec.get("sample_spread_A") or 0.0) == 0.0:
                note = note or "point mass"
            rows.append({**base, **{k: m.get(k) for k in Y._ROW_KEYS}, "note": note})
        if rec["metrics"] and not any(m["metric"] in SCORE_METRICS for m in rec["metrics"]):
            for metric in ("energy_score", "crps", "energy_distance"):
                rows.append(
                    {
                        **base,
                        "metric": metric,
                        "value": None,
                        "n_starts": 0,
                        "n_diverged": 0,
                        "unit": "Å",
                        "note": rec.get("scores_note") or "not scored",
                    }
                )
        ref = rec.get("reference") or {}
        key = (rec["molecule"], str(rec.get("stride", 1)))
        for metric in ("t_internal_K", "rigid_share"):
            if key + (metric,) not in seen_ref and ref.get(metric) is not None:
                seen_ref.add(key + (metric,))
                rows.append(
                    {
                        **base,
                        "model": f"data@{rec.get('stride', 1)}",
                        "role": DATA_ROLE,
                        "seed": None,
                        "metric": metric,
                        "value": ref[metric],
                        "n_starts": ref.get("frames", 0),
                        "n_diverged": 0,
                        "unit": "",
                        "note": "reference",
                    }
                )
    present = {r["model"] for r in rows}
    mols = Y.ordered(columns, [r["dataset"] and r["molecule"] for r in rows])
    dataset = recs[0]["dataset"] if recs else ""
    source = recs[0].get("source", "") if recs else ""
    for model, reason in Y.PLANNED_NA.items():
        if models and model in models and model not in present:
            for mol in mols:
                for metric in SHOWN:
                    rows.append(
                        {
                            "dataset": dataset,
                            "molecule": mol,
                            "model": model,
                            "role": Y._registered_role(model),
                            "seed": None,
                            "metric": metric,
                            "value": None,
                            "n_starts": 0,
                            "n_diverged": 0,
                            "unit": "",
                            "source": source,
                            "note": reason,
                        }
                    )
    frame = pd.DataFrame(rows, columns=list(Y.LONG_COLUMNS))
    for col in ("horizon_fs", "value", "ci_low", "ci_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("seed", "ci_n", "n_starts", "n_diverged"):
        frame[col] = frame[col].astype("Int64")
    for col in ("ci_method", "note", "unit"):
        frame[col] = frame[col].fillna("")
    return frame


def _fmt(metric: str, value: float) -> str:
    return format(value, FORMATS.get(metric, ".3g"))


def _cell(group: pd.DataFrame, metric: str) -> tuple[str, float | None]:
    """Cell text and value of one (model, molecule, metric)."""
    if group.empty:
        return "not run", None
    notes = [n for n in group["note"] if n]
    vals = group["value"].dropna()
    if vals.empty:
        if notes and all(n == Y.NOT_APPLICABLE for n in notes):
            return "—", None
        nd, ns = int(group["n_diverged"].fillna(0).sum()), int(group["n_starts"].fillna(0).sum())
        return (f"NA ({nd}/{ns} div.)" if nd else "NA"), None
    mean = float(vals.mean())
    if metric == "median_ttf_fs" and "censored" in notes:
        return f"≥ {_fmt(metric, mean)} (censored)", mean
    text = _fmt(metric, mean)
    lo, hi = group["ci_low"].dropna(), group["ci_high"].dropna()
    if not lo.empty and not hi.empty:
        text += f" [{_fmt(metric, float(lo.min()))}, {_fmt(metric, float(hi.max()))}]"
    nd, ns = int(group["n_diverged"].fillna(0).sum()), int(group["n_starts"].fillna(0).sum())
    if nd:
        text += f" ({nd}/{ns} div.)"
    if metric in SCORE_METRICS and "point mass" in notes:
        text += " (point mass)"
    if len(vals) > 1:
        text += f" ({len(vals)} seeds)"
    return text, mean


def _score(metric: str, value: float | None, ref: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    d = DIRECTION.get(metric, "low")
    if d == "high":
        return -value
    if d == "abs":
        return abs(value)
    if d == "ref":
        return None if ref is None else abs(value - ref)
    return value


def section(
    frame: pd.DataFrame,
    metric: str,
    models: list[str],
    columns: list[str],
    strides: dict[str, int] | None = None,
    copies: dict[tuple[str, str], str] | None = None,
) -> Y.Section:
    """One metric, models x molecules; the data's own rows (one per frame spacing k of the models: finite
    differences at k frames damp vibrations) or the ensemble's above them, each model read against its own.
    ``copies``: ``{(model, column): reference}`` of the models that behave as a reference row (labelled, not
    ranked: :func:`copies_of`)."""
    roles = Y.roles_of(frame)
    copies = copies or {}
    strides = strides or {}
    sub = frame[frame["metric"] == metric]
    rows: list[tuple[str, list[str]]] = []
    refs: dict[tuple[str, int], float | None] = {}
    if metric in REFERENCE_ROWS:
        label, key = REFERENCE_ROWS[metric]
        if key != metric:  # the ensemble's own score: one row
            groups = [(label, 1, frame[(frame["metric"] == key) & frame["model"].isin(models)])]
        else:  # the data at each frame spacing k the models use: one row per k
            data = sub[sub["role"] == DATA_ROLE]
            ks = sorted({int(m.split("@", 1)[1]) for m in data["model"]})
            groups = [(label if k == 1 else f"data (test segment, every {Y.ordinal(k)} frame)", k,
                       data[data["model"] == f"data@{k}"]) for k in ks]  # fmt: skip
        for text, k, src in groups:
            cells = []
            for col in columns:
                vals = src.loc[src["molecule"] == col, "value"].dropna()
                refs[(col, k)] = float(vals.mean()) if not vals.empty else None
                cells.append("NA" if refs[(col, k)] is None else _fmt(metric, refs[(col, k)]))
            rows.append((text, cells))

    def ref_of(col: str, model: str) -> float | None:
        if metric in REFERENCE_ROWS and REFERENCE_ROWS[metric][1] != metric:
            return refs.get((col, 1))
        return refs.get((col, int(strides.get(model, 1))))

    scores: dict[str, dict[str, float | None]] = {c: {} for c in columns}
    for model in models:
        cells = []
        for col in columns:
            text, value = _cell(sub[(sub["model"] == model) & (sub["molecule"] == col)], metric)
            cells.append(text)
            scores[col][model] = _score(metric, value, ref_of(col, model))
        everywhere = {copies.get((model, c)) for c in columns}
        copy_of = next(iter(everywhere)) if len(everywhere) == 1 else None
        rows.append((Y.row_label(model, roles.get(model, "baseline")) + T.copy_label(copy_of or ""), cells))
    offset = len(rows) - len(models)
    marks = {}
    for j, col in enumerate(columns):
        unranked = [m for m in models if (m, col) in copies]
        for model, mark in Y.rank_marks(scores[col], roles, unranked, tied_last_second=False).items():
            marks[(offset + models.index(model), j)] = mark
    horizons = sorted(set(sub["horizon_fs"].dropna()))
    when = f" at {', '.join(f'{h:g} fs' for h in horizons)}" if metric in SCORE_METRICS and horizons else ""
    if metric not in SCORE_METRICS and horizons:
        when = f", runs of {', '.join(f'{h:g} fs' for h in horizons)}"
    return Y.Section(METRIC_TITLES.get(metric, metric) + when, ["Model", *columns], rows, marks)


def simulation_report(
    recs: Sequence[dict[str, Any]], models: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> Y.Report:
    frame = long_frame(recs, models, columns)
    data = frame[frame["role"] != DATA_ROLE] if not frame.empty else frame
    mods = Y.ordered(models, list(data["model"]))
    mods = [m for m in mods if m in set(data["model"])]
    cols = Y.ordered(columns, list(frame["molecule"]))
    dataset = recs[0]["dataset"] if recs else ""
    source = recs[0].get("source", "") if recs else ""
    strides = {r["model"]: int(r.get("stride", 1) or 1) for r in recs}
    copies = copies_of(frame, mods, cols)
    sections = [section(frame, m, mods, cols, strides, copies) for m in SHOWN]
    return Y.Report(dataset, source, TITLE, frame, sections, notes(recs, frame, copies))


def copies_of(frame: pd.DataFrame, models: Sequence[str], columns: Sequence[str]) -> dict[tuple[str, str], str]:
    """``{(model, column): reference}``: ranked models whose every :data:`COPY_METRICS` number (at least three)
    is a reference row's within 1% (Table 1's rule, :func:`diffmd.reports.tables.reference_copies`)."""
    if frame.empty:
        return {}
    return T.reference_copies(frame, models, columns, Y.roles_of(frame), COPY_METRICS)


def notes(
    recs: Sequence[dict[str, Any]], frame: pd.DataFrame, copies: dict[tuple[str, str], str] | None = None
) -> list[str]:
    out = [Y.interval_note(frame[frame["role"] != DATA_ROLE])]
    for (model, col), ref in sorted((copies or {}).items()):
        out.append(
            f"{model} on {col}: ≈ {ref} (its {', '.join(COPY_METRICS)} are {ref}'s within "
            f"{T.SAME_REL:.0%}: the rollout stands still; it survives and keeps its energy because it does not "
            "move): not ranked."
        )
    if recs:
        r = next((x for x in recs if x.get("applicable", True) and x.get("metrics")), recs[0])
        spacing = r.get("start_spacing_fs")
        out.append(
            f"Protocol: {r.get('n_starts')} starts spread over the test segment"
            + (f" ({spacing:g} fs apart at least)" if spacing else "")
            + f", {r.get('length_fs', 0):g} fs each (a model of k frames per step: length / (k dt) steps), all starts "
            "one batch (the engine's multi-start rollout). Starts closer than the run length share stretches of "
            "the same data: the intervals treat them as independent."
            * bool(spacing and spacing < r.get("length_fs", 0))
        )
        out.append(
            f"Failure (Fu et al. 2023): a bond deviating from its mean length over the test segment by more than "
            f"Δ = {r.get('bond_deviation_A', 0.5):g} Å, or a diverged rollout; frames after a start's failure "
            "are left out of every other metric. Median time to failure: the first time the survival curve "
            "is ≤ 1/2; '≥ L (censored)': more than half of the starts survived the length L."
        )
        out.append(
            "Kinetic energy from central-difference velocities of the frames (masses from ASE): translation of "
            "the centre of mass, rigid rotation (ω = I⁻¹L) and the rest (internal, 3N-6 degrees of freedom). "
            "Frames k·dt apart damp fast vibrations: read a row against the data's row at the same spacing "
            "(data@k)."
        )
        if any(x.get("source") == "xtb" for x in recs):
            ef = next((x.get("energy_frames") for x in recs if x.get("energy_frames")), None)
            out.append(
                f"Reference potential (GFN2-xTB) energies on {ef or 'a few'} evenly spaced frames of each start's "
                "stable part (a subsample: every frame would cost more than the simulation), per atom; drift = "
                "least-squares slope over the stable frames."
            )
        scored = [x for x in recs if x.get("scores_ensemble")]
        if scored:
            x = scored[0]
            out.append(
                f"Proper scores: K = {x.get('score_samples')} samples per start, each start's end frame at the "
                f"scoring horizon in the lab frame (no alignment), against M = {x.get('score_ensemble_size')} "
                "GFN2-xTB re-simulations in the data's Langevin bath sharing what the model conditions on: "
                "x(t) and v(t) from the data (models conditioned on the history), or x(t) with Maxwell-Boltzmann "
                "velocities at the bath temperature (models conditioned on x(t) only: "
                f"{', '.join(sorted({y['model'] for y in scored if y.get('scores_ensemble') == 'mb'})) or 'none'}). "
                "A deterministic model's samples coincide: '(point mass)'. The energy distance is ~0 for a "
                "sampler of the ensemble's distribution (the null row: two halves of the ensemble)."
            )
        unscored = sorted({f"{x['model']}: {x['scores_note']}" for x in recs if x.get("scores_note")})
        out += [f"Not scored: {u}." for u in unscored]
    reasons = frame[
        (frame["note"] != "")
        & frame["value"].isna()
        & ~frame["note"].isin([Y.NOT_APPLICABLE, "not scored", "censored", "point mass"])
    ]
    for (model, note), _ in reasons.groupby(["model", "note"], sort=False):
        if not note.startswith(("no reference ensemble", "the model's step")):
            out.append(f"{model}: NA, {note}.")
    out.append(
        "—: a one-step-only model (floor) has no rollout. NA: not defined for the run (every start failed, no "
        "reference potential, not scored)."
    )
    return [n for n in out if n]


def survival_figure(recs: Sequence[dict[str, Any]], models: Sequence[str] | None = None, title: str = ""):
    """Survival curves (fraction of starts not failed against time), one panel per molecule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mols = Y.ordered(None, [r["molecule"] for r in recs])
    n = max(1, len(mols))
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    # within a page (7 x 9 in, as every figure of the report): two panels a row
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(7.0, min(9.0, 1.2 + 2.6 * nrows)), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    order = Y.ordered(models, [r["model"] for r in recs])
    cmap = plt.get_cmap("tab20")
    for ax, mol in zip(axes.flat, mols):
        for i, model in enumerate(order):
            for r in recs:
                if r["model"] != model or r["molecule"] != mol or not r.get("curves"):
                    continue
                t, s = np.asarray(r["curves"]["t_fs"]), np.asarray(r["curves"]["survival"], dtype=float)
                ax.step(
                    t,
                    s,
                    where="post",
                    label=model,
                    color=cmap(i % 20),
                    lw=1.4,
                    ls="--" if r.get("role") in ("oracle", "ensemble", "reference", "force_field") else "-",
                )
        ax.set_title(mol)
        ax.set_xlabel("time (fs)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of starts surviving")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=6.5, ncols=4)
    if title:
        fig.suptitle(title)
    return fig
