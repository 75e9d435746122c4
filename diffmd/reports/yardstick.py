"""The yardstick's tables (issue 12): horizon-resolved ARMSE, one-step error and distribution metrics.

Each run's ``armse.json`` (written by :mod:`diffmd.rundir`) holds, beside the paper-protocol single
rollout (``armse``), the keys ``dt_fs``, ``step_fs``, ``rollout_applicable``, ``metrics`` (rows
``{metric, horizon_fs, value, ci_low, ci_high, n_starts, n_diverged, unit}``), ``curve`` and ``hr``.
This module reads them (:func:`load_yardsticks`), lays every table out in **long format** first
(:func:`long_frame`: one row per run and metric, full precision, empty cells for NA; the CSV) and
renders the Markdown and HTML *from that frame* with pandas + tabulate (:func:`render`).

Choices (printed under the tables):

* Cells are ``value [ci_low, ci_high]``: the mean over rollout starts and its 95% interval over starts
  (frames for the one-step error), as written by the engine (:mod:`diffmd.stats`: Student t for the mean
  of fewer than 30 values, BCa bootstrap otherwise); the notes name the method and n. Several seeds: the
  mean of the seeds' values, the envelope of their intervals, and "(k seeds)".
* ``NA``: every start diverged before the horizon (``(d/n div.)`` counts the starts that did, the
  others are averaged), the metric does not exist for this data (energy without a reference
  potential), or the run cannot exist (an oracle on a source without a reference potential: the
  reason is printed). ``—``: a one-step-only model (role ``floor``) has no rollout.
* Bold = best, underlined = second best per column among the ranked roles
  (:data:`diffmd.registry.RANKED_ROLES`) of the table's own step (rows that step over k > 1 frames at a
  time, Score Dynamics, are shown but not ranked against them); lower is better except ``accel_r2`` and
  ``stable_fraction`` (higher), drift and energy excess (closer to 0) and the temperature (closer to
  the reference frames' temperature).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diffmd import catalogue
from diffmd.cards import RANKED_ROLES
from diffmd.data.sources import REFERENCE_POTENTIAL_SOURCES  # what each source offers: decided there, once
from diffmd.reports.results import single_source, source_label
from diffmd.rundir import METRIC_ROW_KEYS, RunRecord, load_record, role_of

#: Columns of every long-format CSV, in this order.
LONG_COLUMNS = (
    "dataset", "molecule", "model", "role", "seed", "metric", "horizon_fs", "value", "ci_low", "ci_high",
    "ci_method", "ci_n", "n_starts", "n_diverged", "unit", "source", "note",
)  # fmt: skip
#: The paper-protocol single rollout (``armse`` key) as a long-format metric.
PAPER_METRIC = "armse_paper"
ARMSE_METRICS = ("armse", "rmsd")
ONE_STEP_METRICS = ("one_step_rmse", "accel_r2")
#: Force errors on the held-out one-step frames, for the rows that compute forces (force fields, oracles).
FORCE_METRICS = ("force_mae", "force_rmse", "force_step_rmse")
DISTRIBUTION_METRICS = (
    "hr_mae", "bond_w1", "angle_w1", "temperature_K", "temperature_ref_K", "temperature_drift_K_per_ps",
    "energy_excess_kcal_mol_atom", "stable_fraction",
)  # fmt: skip
#: Every metric of the yardstick's tables: titles, directions (how a metric is ranked: "low", "high", "abs" (closer
#: to 0), "ref" (closer to the reference temperature), None (not ranked)) and cell formats come from the metrics
#: catalogue (diffmd/catalogue.py), decided there once.
YARDSTICK_METRICS = (PAPER_METRIC, *ARMSE_METRICS, *ONE_STEP_METRICS, *FORCE_METRICS, *DISTRIBUTION_METRICS)
METRIC_TITLES = catalogue.titles(YARDSTICK_METRICS)
DIRECTION = catalogue.directions(YARDSTICK_METRICS)
FORMATS = catalogue.formats(YARDSTICK_METRICS)
DEFAULT_FORMAT = catalogue.DEFAULT_FORMAT
#: ``note`` of a one-step-only model's rollout rows.
NOT_APPLICABLE = "one-step model: no rollout"
#: Row-label suffix of the roles that are shown but not ranked.
ROLE_WORDS = {"reference": "reference", "floor": "floor", "oracle": "physics oracle: the data's dynamics",
              "ensemble": "ensemble reference: reference potential, Langevin bath",
              "force_field": "force field: sees force labels the other models do not"}  # fmt: skip
#: Roles of the rows that re-simulate with the reference potential (NA without one).
REFERENCE_POTENTIAL_ROLES = ("oracle", "ensemble")
MARK_MD = {"best": "**{}**", "second": "<u>{}</u>"}
MARK_HTML = {"best": "<b>{}</b>", "second": "<u>{}</u>"}
#: The long CSV's metric columns: the keys of a yardstick row as :mod:`diffmd.rundir` reads them.
_ROW_KEYS = METRIC_ROW_KEYS


@dataclass
class Yardstick:
    """One run's ``armse.json``: the paper-protocol record and the issue-12 keys (absent keys: empty)."""

    record: RunRecord
    dt_fs: float | None = None  # fs between source frames
    step_fs: float | None = None  # fs per model step (stride x dt_fs)
    rollout_applicable: bool = True
    metrics: list[dict[str, Any]] = field(default_factory=list)
    curve: dict[str, np.ndarray] | None = None  # CURVE_KEYS -> (n,) arrays, NaN for null
    hr: dict[str, np.ndarray] | None = None  # edges (b+1,) Å, pred and ref (b,) Å^-1
    start_spacing_fs: float | None = None  # closest two multi-start start frames (fs)
    start_window_fs: float | None = None  # each start's rollout window (fs)

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def role(self) -> str:
        return self.record.role


def load_yardstick(path: str | os.PathLike) -> Yardstick:
    """One ``armse.json`` as the tables read it, from the file's one parser (:func:`diffmd.rundir.load_record`: every
    key checked, a one-line ``ValueError`` naming the file and the key). Files without the yardstick's keys load
    with empty metrics (tables print NA)."""
    rec = load_record(path)
    return Yardstick(rec, rec.dt_fs, rec.step_fs, rec.rollout_applicable, rec.metrics, rec.curve, rec.hr,
                     rec.start_spacing_fs, rec.start_window_fs)  # fmt: skip


def load_yardsticks(paths: Sequence[str | os.PathLike]) -> list[Yardstick]:
    """Read many ``armse.json`` files; a duplicate (dataset, molecule, model, seed) is an error."""
    out = [load_yardstick(p) for p in paths]
    seen: dict[tuple, str] = {}
    for y in out:
        r = y.record
        key = (r.dataset, r.molecule, r.model, r.seed)
        if key in seen:
            raise ValueError(f"{r.path}: same dataset/molecule/model/seed as {seen[key]}")
        seen[key] = r.path
    return out


def ordered(preferred: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    """``preferred`` order first (those present), then the rest as first seen."""
    preferred = list(preferred or [])
    seen = [p for p in preferred if p in present]
    return seen + [p for p in dict.fromkeys(present) if p not in seen]


def missing_reason(role: str, source: str) -> str:
    """Why a model named in ``--models`` has no run: an oracle needs a reference potential."""
    if role in REFERENCE_POTENTIAL_ROLES and source not in REFERENCE_POTENTIAL_SOURCES:
        return f"no reference potential for source {source!r}"
    return "not run"


def role_in(roles: dict[str, str], model: str) -> str:
    """A table row's role: as its runs' files say (``roles``), else, for a row without runs, its card's."""
    return roles[model] if model in roles else _registered_role(model)


#: ``{row: model}`` of the variants the table names (``--models`` tokens ``row=model``, from
#: :meth:`diffmd.plan.Plan.rows_arg`): a variant's card is its model's.
ROW_MODELS: dict[str, str] = {}


def parse_rows(tokens: Sequence[str] | None) -> list[str] | None:
    """The rows of ``--models`` (config order); a ``row=model`` token names a variant and its model
    (:data:`ROW_MODELS`)."""
    if tokens is None:
        return None
    rows = []
    for token in tokens:
        row, _, model = token.partition("=")
        if model:
            ROW_MODELS[row] = model
        rows.append(row)
    return rows


def _registered_role(model: str) -> str:
    """The role on the card of a row the table names but has no run of (runs carry their own); a variant's is its
    model's (:data:`ROW_MODELS`)."""
    return role_of(ROW_MODELS.get(model, model))


#: ``{model: reason}`` of the models the experiment plan leaves out on the table's dataset (``--na-reasons``
#: of the CLI, from :meth:`diffmd.plan.Plan.na_reasons`): printed as NA rows with the reason.
PLANNED_NA: dict[str, str] = {}


def missing_oracles(ys: Sequence[Yardstick], models: Sequence[str] | None, source: str) -> dict[str, str]:
    """``{model: reason}`` for the models named in ``models`` that have no records because their data is
    missing: the plan's reasons (:data:`PLANNED_NA`), and oracles on a source without a reference potential."""
    present = {y.model for y in ys}
    out = {m: PLANNED_NA[m] for m in models or [] if m in PLANNED_NA and m not in present}
    if source in REFERENCE_POTENTIAL_SOURCES:
        return out
    return {**out, **{m: missing_reason("oracle", source) for m in models or [] if m not in present
                      and m not in out and _registered_role(m) in REFERENCE_POTENTIAL_ROLES}}  # fmt: skip


def long_frame(
    ys: Sequence[Yardstick],
    metrics: Sequence[str],
    paper: bool = False,
    models: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The long-format table: one row per (run, metric, horizon), columns :data:`LONG_COLUMNS`.

    ``metrics``: which ``metrics`` rows to keep; ``paper`` adds the paper-protocol ARMSE (``armse`` key)
    as metric :data:`PAPER_METRIC` (horizon = n_frames x step_fs, one start, no interval). Oracle models
    named in ``models`` without any record get rows with empty values and the reason in ``note``, for
    each column (``columns`` or the molecules present) and each horizon seen for that metric.
    NA cells are NaN (empty in the CSV); counts are nullable integers.
    """
    dataset, source = single_source([y.record for y in ys], "table")
    rows: list[dict[str, Any]] = []
    for y in ys:
        r = y.record
        base = {"dataset": r.dataset, "molecule": r.molecule, "model": r.model, "role": r.role, "seed": r.seed,
                "source": r.source}  # fmt: skip
        if paper:
            horizon = r.n_frames * y.step_fs if (y.step_fs and r.n_frames) else None
            rows.append({**base, "metric": PAPER_METRIC, "horizon_fs": horizon, "value": r.armse, "ci_low": None,
                         "ci_high": None, "ci_method": "", "ci_n": None, "n_starts": 1,
                         "n_diverged": int(r.diverged), "unit": "Å",
                         "note": "" if y.rollout_applicable else NOT_APPLICABLE})  # fmt: skip
        for m in y.metrics:
            if m["metric"] in metrics:
                rows.append({**base, **{k: m[k] for k in _ROW_KEYS}, "note": ""})
        if not y.rollout_applicable:
            have = {m["metric"] for m in y.metrics}
            for metric in metrics:
                if metric not in have and metric in ARMSE_METRICS + DISTRIBUTION_METRICS:
                    rows.append({**base, "metric": metric, "horizon_fs": None, "value": None, "n_starts": 0,
                                 "n_diverged": 0, "unit": "", "note": NOT_APPLICABLE})  # fmt: skip
    cols = ordered(columns, [y.record.molecule for y in ys])
    wanted = ([PAPER_METRIC] if paper else []) + list(metrics)
    for model, reason in missing_oracles(ys, models, source).items():
        for mol in cols:
            for metric in wanted:
                horizons = sorted({row["horizon_fs"] for row in rows if row["metric"] == metric
                                   and row["horizon_fs"] is not None}) or [None]  # fmt: skip
                if metric in ONE_STEP_METRICS + FORCE_METRICS + DISTRIBUTION_METRICS + (PAPER_METRIC,):
                    horizons = [None]
                for h in horizons:
                    rows.append({"dataset": dataset, "molecule": mol, "model": model,
                                 "role": _registered_role(model), "seed": None,
                                 "metric": metric, "horizon_fs": h, "value": None, "n_starts": 0, "n_diverged": 0,
                                 "unit": "", "source": source, "note": reason})  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    for col in ("horizon_fs", "value", "ci_low", "ci_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("seed", "ci_n", "n_starts", "n_diverged"):
        frame[col] = frame[col].astype("Int64")
    frame["ci_method"] = frame["ci_method"].fillna("")
    frame["note"] = frame["note"].fillna("")
    frame["unit"] = frame["unit"].fillna("")
    return frame


def to_csv(frame: pd.DataFrame) -> str:
    """The long frame as CSV: full precision (shortest round-trip repr), empty cells for NA."""
    return frame.to_csv(index=False, na_rep="", lineterminator="\n")


# --- rendering --------------------------------------------------------------------------------------


@dataclass
class Section:
    """One rendered table: a title, string cells (model rows x columns), marks and notes."""

    title: str
    header: list[str]
    rows: list[tuple[str, list[str]]]  # (row label, cells)
    marks: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> "best" | "second"
    notes: list[str] = field(default_factory=list)
    text_columns: int = 1  # leading columns aligned left (labels); the rest right (numbers)

    def frame(self, marks: dict[str, str], escape: bool = False) -> pd.DataFrame:
        """The section as a DataFrame of strings, with ``marks`` templates applied (HTML-escaped first)."""
        esc = html.escape if escape else (lambda s: s)
        body = []
        for i, (label, cells) in enumerate(self.rows):
            out = [esc(label)]
            for j, text in enumerate(cells):
                mark = self.marks.get((i, j))
                out.append(marks[mark].format(esc(text)) if mark else esc(text))
            body.append(out)
        return pd.DataFrame(body, columns=[esc(h) for h in self.header])

    def markdown(self) -> str:
        """The section's table through ``DataFrame.to_markdown`` (tabulate, pipe format)."""
        frame = self.frame(MARK_MD)
        k = min(self.text_columns, frame.shape[1])
        return frame.to_markdown(index=False, disable_numparse=True,
                                 colalign=("left",) * k + ("right",) * (frame.shape[1] - k))  # fmt: skip

    def html(self) -> str:
        """The section's table through ``DataFrame.to_html`` (cells escaped, then marked)."""
        return self.frame(MARK_HTML, escape=True).to_html(index=False, escape=False, border=0)


def rank_marks(scores: dict[str, float | None], roles: dict[str, str],
               unranked: Sequence[str] = (), tied_last_second: bool = True) -> dict[str, str]:  # fmt: skip
    """``{model: "best" | "second"}`` among the ranked roles by ``scores`` (lower is better), leaving out the
    models in ``unranked`` (another step size, a copy of a reference row); ties share. With ``tied_last_second``
    False a tie for last place of several models is not marked second (the simulation table: every model that
    fails every start would otherwise be "second best"); the paper's tables mark it, as the paper does."""
    ranked = {m: s for m, s in scores.items()
              if role_in(roles, m) in RANKED_ROLES and s is not None and m not in unranked}  # fmt: skip
    ranked = {m: s for m, s in ranked.items() if not math.isnan(s)}
    finite = sorted(set(ranked.values()))
    tied_last = not tied_last_second and len(finite) == 2 and sum(v == finite[1] for v in ranked.values()) > 1
    marks = {}
    for model, value in ranked.items():
        if value == finite[0]:
            marks[model] = "best"
        elif len(finite) > 1 and value == finite[1] and not tied_last:
            marks[model] = "second"
    return marks


def score(metric: str, value: float | None, reference: float | None = None) -> float | None:
    """``value`` turned into a lower-is-better score by :data:`DIRECTION`; None when not ranked."""
    direction = DIRECTION.get(metric, "low")
    if value is None or direction is None or math.isnan(value):
        return None
    if direction == "high":
        return -value
    if direction == "abs":
        return abs(value)
    if direction == "ref":
        return None if reference is None or math.isnan(reference) else abs(value - reference)
    return value


def _fmt(metric: str, value: float) -> str:
    return format(value, FORMATS.get(metric, DEFAULT_FORMAT))


@dataclass
class Summary:
    """All seeds' rows of one (model, molecule, metric, horizon)."""

    text: str
    value: float | None = None


def summarise(group: pd.DataFrame, metric: str) -> Summary:
    """Cell text of one (model, molecule, metric, horizon): see the module docstring."""
    if group.empty:
        return Summary("not run")
    notes = [n for n in group["note"] if n]
    values = group["value"].dropna()
    if values.empty:
        if notes and all(n == NOT_APPLICABLE for n in notes):
            return Summary("—")
        if notes and all(n == "not run" for n in notes):
            return Summary("not run")
        nd, ns = int(group["n_diverged"].fillna(0).sum()), int(group["n_starts"].fillna(0).sum())
        return Summary(f"NA ({nd}/{ns} div.)" if nd else "NA")
    mean = float(values.mean())
    lo, hi = group["ci_low"].dropna(), group["ci_high"].dropna()
    text = _fmt(metric, mean)
    if not lo.empty and not hi.empty:
        text += f" [{_fmt(metric, float(lo.min()))}, {_fmt(metric, float(hi.max()))}]"
    nd, ns = int(group["n_diverged"].fillna(0).sum()), int(group["n_starts"].fillna(0).sum())
    if nd:
        text += f" ({nd}/{ns} div.)"
    if len(values) > 1:
        text += f" ({len(values)} seeds)"
    return Summary(text, mean)


def roles_of(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["model"], frame["role"]))


def row_label(model: str, role: str, stride: int = 1, step_fs: float | None = None, off_step: bool = False) -> str:
    """``model`` + its role words when not ranked + its step when it steps over frames (+ "not ranked" when
    that step is not the table's: ``off_step``, see :func:`off_step`)."""
    label = model
    if role in ROLE_WORDS:
        label += f" ({ROLE_WORDS[role]})"
    if stride > 1:
        step = f", {step_fs:g} fs per step" if step_fs else ""
        label += f" (every {ordinal(stride)} frame{step}{'; not ranked' if off_step else ''})"
    elif off_step:
        label += " (not ranked: another step)"
    return label


def base_stride(strides: dict[str, int], roles: dict[str, str], models: Sequence[str]) -> int:
    """The step (frames) the table ranks at: the smallest stride among the ranked rows (1 when there are none).
    Rows of any other stride are shown but not ranked: a longer step's one-step error is over another time,
    its ARMSE over every k-th frame only."""
    ranked = [strides.get(m, 1) for m in models if role_in(roles, m) in RANKED_ROLES]
    return min(ranked, default=1)


def off_step(strides: dict[str, int], roles: dict[str, str], models: Sequence[str]) -> list[str]:
    """The ranked-role models whose stride is not the table's :func:`base_stride`."""
    base = base_stride(strides, roles, models)
    return [m for m in models if role_in(roles, m) in RANKED_ROLES and strides.get(m, 1) != base]


def ordinal(k: int) -> str:
    """2 -> "2nd", 5 -> "5th", 11 -> "11th"."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def horizon_text(h: float) -> str:
    return f"{h:g} fs"


def metric_section(
    frame: pd.DataFrame,
    metric: str,
    models: list[str],
    columns: list[str],
    strides: dict[str, int] | None = None,
    title: str | None = None,
    steps: dict[str, float] | None = None,
) -> Section:
    """A models x molecules table of one metric (one horizon per metric: the multi-start horizon or the
    model's step); the temperature table adds a ground-truth row (``temperature_ref_K``). Rows of another
    step than the table's (:func:`off_step`) are shown but not ranked."""
    roles = roles_of(frame)
    strides, steps = strides or {}, steps or {}
    other_step = off_step(strides, roles, models)
    sub = frame[frame["metric"] == metric]
    ref_temps: dict[str, float | None] = {}
    rows: list[tuple[str, list[str]]] = []
    if metric == "temperature_K":
        refs = frame[frame["metric"] == "temperature_ref_K"]
        cells = []
        for col in columns:
            vals = refs.loc[refs["molecule"] == col, "value"].dropna()
            ref_temps[col] = float(vals.mean()) if not vals.empty else None
            cells.append("NA" if ref_temps[col] is None else _fmt(metric, ref_temps[col]))
        rows.append(("ground truth (reference frames)", cells))
    scores: dict[str, dict[str, float | None]] = {c: {} for c in columns}
    for model in models:
        cells = []
        for col in columns:
            s = summarise(sub[(sub["model"] == model) & (sub["molecule"] == col)], metric)
            cells.append(s.text)
            scores[col][model] = score(metric, s.value, ref_temps.get(col))
        rows.append((row_label(model, role_in(roles, model), strides.get(model, 1), steps.get(model),
                               model in other_step), cells))  # fmt: skip
    offset = 1 if metric == "temperature_K" else 0
    marks = {}
    for j, col in enumerate(columns):
        for model, mark in rank_marks(scores[col], roles, other_step).items():
            marks[(offset + models.index(model), j)] = mark
    horizons = sorted(set(sub["horizon_fs"].dropna()))
    when = ""
    if metric in DISTRIBUTION_METRICS and horizons:
        when = f", over the multi-start frames up to {', '.join(horizon_text(h) for h in horizons)}"
    elif metric in ONE_STEP_METRICS + FORCE_METRICS and horizons:
        when = f", one model step ({', '.join(horizon_text(h) for h in horizons)})"
    return Section((title or METRIC_TITLES.get(metric, metric)) + when, ["Model", *columns], rows, marks)


def interval_note(frame: pd.DataFrame) -> str:
    """One line naming the interval method(s) and the n behind the intervals of ``frame`` (per metric kind)."""
    words = {"t": "Student t", "BCa": "BCa bootstrap (scipy.stats.bootstrap)", "exact": "exact (all values equal)"}
    with_ci = frame[frame["ci_method"].isin(list(words)) & frame["ci_n"].notna()]
    if with_ci.empty:
        return ""
    parts = []
    for kind, sub in (("starts", with_ci[~with_ci["metric"].isin(ONE_STEP_METRICS)]),
                      ("test frames", with_ci[with_ci["metric"].isin(ONE_STEP_METRICS)])):  # fmt: skip
        if sub.empty:
            continue
        ns = sorted(set(int(n) for n in sub["ci_n"]))
        n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
        methods = " or ".join(words[m] for m in ("t", "BCa", "exact") if m in set(sub["ci_method"]))
        parts.append(f"over {n_text} {kind}: {methods}")
    return ("95% intervals " + "; ".join(parts) + " (Student t for the mean of fewer than 30 values, "
            "BCa from 30 on; docs/intervals.md). The CSV gives each cell's method and n (ci_method, ci_n).")


def overlap_note(ys: Sequence[Yardstick]) -> str:
    """One line when the multi-start windows overlap (the test segment is shorter than n_starts windows): the starts
    then share stretches of the reference and the intervals, which treat them as independent, are too narrow."""
    over = [(y.start_spacing_fs, y.start_window_fs) for y in ys
            if y.start_spacing_fs is not None and y.start_window_fs and y.start_spacing_fs < y.start_window_fs - 1e-9]
    if not over:
        if any(y.start_spacing_fs is not None for y in ys):
            return "The multi-start windows do not overlap (starts at least one window apart)."
        return ""
    spacing, window = min(o[0] for o in over), max(o[1] for o in over)
    return (f"The multi-start windows overlap: starts {spacing:g} fs apart, windows of {window:g} fs (the test segment "
            "is shorter than n_starts windows; the starts are spread as far apart as it allows). Overlapping starts "
            "share stretches of the reference, so the intervals over starts are narrower than independent starts "
            "would give.")


def common_notes(frame: pd.DataFrame, source: str, models: Sequence[str] | None = None,
                 strides: dict[str, int] | None = None,
                 steps: dict[str, float] | None = None) -> list[str]:  # fmt: skip
    """The footnotes every yardstick table shares (ranking, intervals, NA, reasons); rows in ``models`` order."""
    roles = roles_of(frame)
    order = ordered(models, list(frame["model"]))
    unranked = [m for m in order if roles.get(m) not in RANKED_ROLES]
    strides, steps = strides or {}, steps or {}
    other = off_step(strides, roles, order)
    notes = [
        "Bold: best; underlined: second best, per column, among learned models (roles "
        f"{', '.join(RANKED_ROLES)})." + (f" Rows {', '.join(unranked)} are shown but not ranked." if unranked else ""),
        "Cells: mean over rollout starts [95% interval]; several seeds: mean of the seeds' "
        "values [envelope of their intervals] (k seeds). (d/n div.): d of n starts diverged before the horizon; "
        "the mean is over the others.",
        interval_note(frame),
        "NA: every start diverged before the horizon, or the metric is not defined for this run; "
        "—: a one-step-only model (floor) has no rollout.",
    ]
    if other:
        base = base_stride(strides, roles, order)
        own = {steps.get(m) for m in order if strides.get(m, 1) == base} - {None}
        own_text = f" ({', '.join(f'{s:g} fs' for s in sorted(own))})" if own else ""
        notes.append(f"Not ranked with the rows of the table's own step{own_text}: {', '.join(other)}, which step "
                     f"over {', '.join(str(strides.get(m, 1)) for m in other)} frames at a time: its one-step error "
                     "is over a longer time and its ARMSE averages every k-th frame only.")
    for model in dict.fromkeys(frame.loc[frame["role"] == "force_field", "model"]):
        notes.append(f"{model} is a machine-learned force field: it is trained on force labels the other models "
                     "do not see.")  # fmt: skip
    reasons = frame[(frame["note"] != "") & (frame["note"] != NOT_APPLICABLE) & frame["value"].isna()]
    for (model, note), _ in reasons.groupby(["model", "note"], sort=False):
        notes.append(f"{model}: NA, {note}.")
    if source not in REFERENCE_POTENTIAL_SOURCES and "energy_excess_kcal_mol_atom" in set(frame["metric"]):
        notes.append(f"Energy excess: NA, no reference potential for source {source!r}.")
    return [n for n in notes if n]


def strides_of(ys: Sequence[Yardstick]) -> dict[str, int]:
    out: dict[str, int] = {}
    for y in ys:
        out[y.model] = max(out.get(y.model, 1), y.record.stride)
    return out


def steps_of(ys: Sequence[Yardstick]) -> dict[str, float]:
    """fs per model step of each model (the largest over its runs)."""
    out: dict[str, float] = {}
    for y in ys:
        if y.step_fs:
            out[y.model] = max(out.get(y.model, 0.0), float(y.step_fs))
    return out


@dataclass
class Report:
    """A rendered-ready table: its frame (the CSV) + sections + notes, one data set, one data source (or a
    ``preamble`` of its own instead of the data-source line: a table over several data sets)."""

    dataset: str
    source: str
    title: str
    frame: pd.DataFrame
    sections: list[Section]
    notes: list[str]
    preamble: str | None = None

    def _first_line(self, key: str) -> str:
        if self.preamble is not None:
            return self.preamble
        return f"Data source: {source_label(self.dataset, self.source)} ({key} = {self.source!r})."

    def _heading(self, sec: Section) -> str:
        return f"{sec.title}." if sec.title == self.title else f"{sec.title}:"

    def _own_title(self) -> bool:
        return not any(sec.title == self.title for sec in self.sections)

    def markdown(self) -> str:
        """Markdown: the data source, then each section's pandas/tabulate table, then the notes."""
        first = self._first_line("armse.json source")
        parts = [first, ""] if first else []
        if self._own_title():
            parts += [f"{self.title}.", ""]
        for sec in self.sections:
            parts += [self._heading(sec), "", sec.markdown(), ""]
            parts += [f"- {n}" for n in sec.notes] + ([""] if sec.notes else [])
        parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts) + "\n"

    def html(self, extra_html: str = "") -> str:
        """One self-contained HTML page: the same sections through ``DataFrame.to_html``."""
        from diffmd.reports.html import html_page

        first = self._first_line("source")
        blocks: list[tuple[str, Any]] = [("p", first)] if first else []
        if self._own_title():
            blocks.append(("p", f"{self.title}."))
        for sec in self.sections:
            blocks += [("h3", self._heading(sec)), ("html", sec.html())]
            if sec.notes:
                blocks.append(("ul", sec.notes))
        blocks.append(("ul", self.notes))
        if extra_html:
            blocks.append(("html", extra_html))
        return html_page(self.title, blocks)

    def csv(self) -> str:
        return to_csv(self.frame)


TITLES = {
    "one_step": "One-step (teacher-forced) error on the test frames, with the floors constant_velocity and "
    "force_verlet as rows",
    "distributions": "Distributional fidelity of the multi-start rollouts against the reference segment "
    "(Fu et al. 2022)",
}


def _models_and_columns(
    frame: pd.DataFrame, models: Sequence[str] | None, columns: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    return ordered(models, list(frame["model"])), ordered(columns, list(frame["molecule"]))


def one_step_report(
    ys: Sequence[Yardstick], models: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> Report:
    """One-step RMSE and acceleration R², every model and the floors as rows."""
    dataset, source = single_source([y.record for y in ys], "one-step table")
    frame = long_frame(ys, ONE_STEP_METRICS, models=models, columns=columns)
    forces = long_frame(ys, FORCE_METRICS, columns=columns)  # the rows that computed forces, no NA rows
    if not forces.empty:
        frame = pd.concat([frame, forces], ignore_index=True)
    mods, cols = _models_and_columns(frame, models, columns)
    strides, steps = strides_of(ys), steps_of(ys)
    sections = [metric_section(frame, m, mods, cols, strides, steps=steps) for m in ONE_STEP_METRICS]
    for metric in FORCE_METRICS:  # only the rows that compute forces
        values = frame.loc[frame["metric"] == metric]
        have = [m for m in mods if values.loc[values["model"] == m, "value"].notna().any()]
        if have:
            sections.append(metric_section(frame, metric, have, cols, strides, steps=steps))
    notes = common_notes(frame, source, mods, strides, steps) + [
        "One-step: each test frame's next frame predicted from the true current state (teacher forcing); "
        "interval over frames. constant_velocity (x + v) and force_verlet (x + v + F dt²/m, the data's own "
        "forces: the thermostat-noise floor) bound what a one-step model can reach."
    ]
    return Report(dataset, source, TITLES["one_step"], frame, sections, notes)


def distributions_report(
    ys: Sequence[Yardstick], models: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> Report:
    """h(r) MAE, bond/angle W1, temperature (+ reference), drift, energy excess, stability."""
    dataset, source = single_source([y.record for y in ys], "distributions table")
    frame = long_frame(ys, DISTRIBUTION_METRICS, models=models, columns=columns)
    mods, cols = _models_and_columns(frame, models, columns)
    strides, steps = strides_of(ys), steps_of(ys)
    sections = [metric_section(frame, m, mods, cols, strides, steps=steps)
                for m in DISTRIBUTION_METRICS if m != "temperature_ref_K"]  # fmt: skip
    notes = common_notes(frame, source, mods, strides, steps) + [overlap_note(ys)] * bool(overlap_note(ys)) + [
        "Temperatures come from finite-difference velocities of the stored frames, which damp fast vibrations "
        "(compare a row with the ground-truth row at the same frame spacing, not with the thermostat)."
    ]
    return Report(dataset, source, TITLES["distributions"], frame, sections, notes)
