"""Figures: the paper's Fig. 4 (trajectory snapshots per method), ARMSE / RMSD curves against time in
fs (multi-start means, the physics oracle's 2.5-97.5% band shaded), h(r) of the ground truth against
each model, and every trained model's learning curve.

Paper-ready at a page's width: every figure is at most :data:`PAGE_WIDTH_IN` wide and
:data:`MAX_HEIGHT_IN` tall (panels shrink to fit, never the text), with text of at least
:data:`MIN_FONT_PT` points, a layout engine that keeps titles off the panels (matplotlib's
``constrained`` layout), and one distinct (colour, line style, marker) per model
(:func:`model_styles`): references are wide pale lines drawn underneath, so a model whose curve is
exactly a reference's (``diffmd`` as published is ``static``) stays visible on top of it and its legend
entry says so.

Snapshots: one row per method with the ground truth on top, one column per snapshot time (every
``snapshot_every`` source frames, at most :data:`MAX_SNAPSHOT_COLUMNS` of them), ball-and-stick drawings
coloured by element (Jmol colours from :mod:`diffmd.elements`), bonds recomputed on every drawn frame
from covalent radii (so a broken bond disappears). Every frame is Kabsch-superimposed on the start frame
(rotation + translation) and drawn as an orthographic projection onto the start frame's two principal
axes, atoms painted back to front by depth, so rows and columns are comparable by eye. A cell without a
drawing says why: the rollout diverged before that time, the model steps over that frame, or atoms left
the panel; one-step-only models (no rollout) get no row and the figure says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402

from diffmd.cards import cards  # noqa: E402
from diffmd.elements import colour as element_colour  # noqa: E402
from diffmd.elements import covalent_radius  # noqa: E402
from diffmd.io import atomic_path  # noqa: E402
from diffmd.metrics import kabsch_rotation  # noqa: E402
from diffmd.reports.results import Rollout, run_identity  # noqa: E402
from diffmd.reports.tables import SAME_REL  # noqa: E402
from diffmd.reports.validity import find_bonds  # noqa: E402
from diffmd.reports.yardstick import ROW_MODELS, Yardstick, _registered_role, missing_oracles, ordered  # noqa: E402
from diffmd.rundir import load_selection  # noqa: E402

#: The widest a figure gets (in): a two-column journal page's text width.
PAGE_WIDTH_IN = 7.0
#: The tallest a figure gets (in), title and legend included.
MAX_HEIGHT_IN = 9.0
#: Resolution of the PNG files (the PDF is vector).
DPI = 150
#: The smallest text in any figure (points, at the figure's printed size).
MIN_FONT_PT = 6.0
#: Font sizes (points) of every figure.
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 7.5, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5,
      "legend.fontsize": 6.5, "legend.title_fontsize": 6.5, "figure.titlesize": 8.5}  # fmt: skip
#: The most snapshot times drawn (evenly spaced multiples of ``every``, the first and the last kept).
MAX_SNAPSHOT_COLUMNS = 6
#: Ten qualitative colours (Okabe-Ito's seven, then three of tab10's): no two share a hue.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#BCBD22",
           "#7F7F7F")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
DASHES = ("-", "--", "-.", ":")
#: Reference rows: wide, pale, underneath (greys and a sand colour).
REFERENCE_COLOURS = ("#808080", "#B8860B", "#4D4D4D")


def _role(model: str) -> str:
    return _registered_role(model)  # the card's (a row named without runs; runs carry their own role)


def model_styles(models: list[str], roles: dict[str, str] | None = None) -> dict[str, dict]:
    """One distinct line style per model, for ``Axes.plot(**style)``: ``color``, ``linestyle``, ``marker``,
    ``lw``, ``zorder`` (and ``alpha``). Reference rows are wide pale solid lines drawn first (zorder 2), every
    other model a thin line with markers on top (zorder 3+), so two identical curves both show. No two
    models share (colour, line style, marker)."""
    roles = roles or {}
    out: dict[str, dict] = {}
    k = r = 0
    for model in models:
        role = roles.get(model) or _role(model)
        if role == "reference":
            out[model] = {"color": REFERENCE_COLOURS[r % len(REFERENCE_COLOURS)], "linestyle": "-", "marker": "",
                          "lw": 4.0, "alpha": 0.55, "zorder": 2, "solid_capstyle": "butt"}  # fmt: skip
            r += 1
            continue
        cycle = k // len(PALETTE)  # the second ten models: other dashes, markers shifted
        out[model] = {"color": PALETTE[k % len(PALETTE)], "linestyle": DASHES[cycle % len(DASHES)],
                      "marker": MARKERS[(k + 3 * cycle) % len(MARKERS)], "markersize": 3.0, "lw": 1.1, "alpha": 1.0,
                      "zorder": 3 + k % 10}  # fmt: skip
        if role == "oracle":
            out[model]["linestyle"] = ":"
        k += 1
    return out


def _fit(width: float, height: float) -> tuple[float, float]:
    """(width, height) in inches scaled down, aspect kept, to at most PAGE_WIDTH_IN x MAX_HEIGHT_IN."""
    scale = min(1.0, PAGE_WIDTH_IN / width, MAX_HEIGHT_IN / height)
    return width * scale, height * scale


def _figure(width: float, height: float, nrows: int, ncols: int, layout: str | None = "constrained", **kwargs):
    """A figure of at most the page's size, ``constrained`` layout by default (call inside :func:`_styled`)."""
    return plt.subplots(nrows, ncols, figsize=_fit(width, height), squeeze=False, layout=layout, **kwargs)


def _styled(build):
    """Run a figure builder under the project's font sizes (:data:`RC`): matplotlib reads them as each text is made."""
    import functools

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with plt.rc_context(RC):
            return build(*args, **kwargs)

    return wrapper


def _suptitle(fig, title: str, **kwargs) -> None:
    """The figure's title, each line wrapped to the figure's width (at the title's font size)."""
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * RC["figure.titlesize"])))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in title.splitlines()), **kwargs)


def _text(*args, **kwargs):
    """``Axes.text`` / ``Figure.text`` with the project's font sizes (rc_context resolved at creation)."""
    target, rest = args[0], args[1:]
    kwargs.setdefault("fontsize", RC["xtick.labelsize"])
    return target.text(*rest, **kwargs)


def kabsch_onto(frame: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``frame`` (atoms, 3) rotated and translated onto ``target`` (atoms, 3), least squares (Kabsch,
    the same proper rotation as the ARMSE of :mod:`diffmd.metrics`)."""
    p = frame - frame.mean(axis=0)
    q = target - target.mean(axis=0)
    rot = kabsch_rotation(p[None], q[None])[0]
    return p @ rot.T + target.mean(axis=0)


def principal_axes(frame: np.ndarray) -> np.ndarray:
    """(3, 3) rows = principal axes of ``frame`` (atoms, 3), largest spread first."""
    centred = frame - frame.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt


def view_axes(frame: np.ndarray, tilt_deg: tuple[float, float] = (25.0, 20.0)) -> np.ndarray:
    """Viewing axes (3, 3): the principal axes of ``frame`` tilted about x then y by ``tilt_deg``
    degrees, so atoms stacked along the smallest axis (e.g. CH2 hydrogens) do not hide each other."""
    ax, ay = np.radians(tilt_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    return ry @ rx @ principal_axes(frame)


def draw_molecule(
    ax, frame: np.ndarray, numbers: np.ndarray, axes: np.ndarray, centre: np.ndarray, half: tuple[float, float],
    scale: float = 1.0,
) -> None:
    """Ball-and-stick drawing of one frame (atoms, 3) Å, projected on ``axes`` (3, 3) around ``centre``;
    ``half`` = (half width, half height) of the panel in Å (atoms outside are clipped); ``scale`` multiplies
    the stick and outline widths (points) for smaller panels."""
    ax.set_xlim(-half[0], half[0])
    ax.set_ylim(-half[1], half[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if not np.isfinite(frame).all():
        _text(ax, 0, 0, "not finite\n(diverged)", ha="center", va="center", color="crimson")
        return
    proj = (frame - centre) @ axes.T  # (atoms, 3): x, y in the plane, z towards the viewer
    zmin, zmax = proj[:, 2].min(), proj[:, 2].max()
    depth = (proj[:, 2] - zmin) / (zmax - zmin + 1e-9)
    for i, j in find_bonds(frame, numbers):
        mid = (proj[i] + proj[j]) / 2
        for a in (i, j):  # each half-stick just above its own atom: it leaves the rear ball, dives under the front one
            ax.plot(
                [proj[a, 0], mid[0]],
                [proj[a, 1], mid[1]],
                color="0.35",
                lw=2.2 * scale,
                zorder=2.0 * proj[a, 2] + 2e-3,
                solid_capstyle="butt",
            )
    for k in np.argsort(proj[:, 2]):
        radius = 0.4 * covalent_radius(int(numbers[k])) + 0.1
        shade = 0.75 + 0.25 * depth[k]
        colour = np.array(matplotlib.colors.to_rgb(element_colour(int(numbers[k])))) * shade
        ax.add_patch(
            Circle(
                (proj[k, 0], proj[k, 1]),
                radius,
                facecolor=np.clip(colour, 0, 1),
                edgecolor="black",
                lw=0.5 * scale,
                zorder=2.0 * proj[k, 2] + 1e-3,
            )
        )


def snapshot_columns(n_frames_source: int, every: int, max_columns: int = MAX_SNAPSHOT_COLUMNS) -> list[int]:
    """Source-frame offsets from the start frame at which snapshots are drawn: 0, every, 2*every, ... up to
    ``n_frames_source``; more than ``max_columns`` of them are thinned to ``max_columns`` evenly spaced ones
    (the first and the last kept)."""
    cols = list(range(0, n_frames_source + 1, every))
    if len(cols) <= max_columns:
        return cols
    keep = np.unique(np.round(np.linspace(0, len(cols) - 1, max_columns)).astype(int))
    return [cols[i] for i in keep]


def _frame_at(ro: Rollout, offset: int, truth: bool) -> np.ndarray | None:
    """The frame ``offset`` source frames after the start, or None when this rollout has none there."""
    frames = ro.frame_indices - ro.frame_indices[0]
    hit = np.nonzero(frames == offset)[0]
    if hit.size == 0:
        return None
    return (ro.reference if truth else ro.positions)[hit[0]]


def _missing_reason(ro: Rollout, offset: int) -> str:
    """Why a rollout has no drawable frame ``offset`` source frames after its start (a cell's label)."""
    span = int(ro.frame_indices[-1] - ro.frame_indices[0]) if len(ro.frame_indices) else 0
    if ro.diverged and ro.diverged_at >= 0 and offset >= ro.diverged_at * ro.stride:
        return f"diverged\nat {ro.diverged_at * ro.stride * ro.dt_fs:g} fs"
    if offset > span:
        return "rollout\nended"
    if ro.stride > 1 and offset % ro.stride:
        return f"no frame\n({ro.stride * ro.dt_fs:g} fs\nsteps)"
    return "no frame"


def _ordered_rollouts(rollouts: list[Rollout], models: list[str] | None) -> list[tuple[str, Rollout]]:
    named = [(run_identity(r.path)["model"], r) for r in rollouts]
    order = {m: i for i, m in enumerate(models or [])}
    return sorted(named, key=lambda mr: order.get(mr[0], len(order)))


@_styled
def snapshot_figure(rollouts: list[Rollout], every: int, title: str, models: list[str] | None = None):
    """The paper's Fig. 4 for one molecule: rows = ground truth + methods that roll out, columns = snapshot
    times; the whole grid fits :data:`PAGE_WIDTH_IN` x :data:`MAX_HEIGHT_IN`."""
    if not rollouts:
        raise ValueError("snapshot figure: no rollouts given")
    named = _ordered_rollouts(rollouts, models)
    one_step = [m for m, r in named if not r.applicable or len(r.frame_indices) < 2]
    named = [(m, r) for m, r in named if m not in one_step]
    truth_ro = min(rollouts, key=lambda r: r.stride)
    start = truth_ro.reference[0]
    span = int(max(r.frame_indices[-1] - r.frame_indices[0] for r in rollouts))
    cols = snapshot_columns(span, every)
    axes3 = view_axes(start)
    centre = start.mean(axis=0)
    extent = np.abs((start - centre) @ axes3.T)[:, :2].max(axis=0) + 0.7
    half = (float(extent[0]), float(max(extent[1], 0.55 * extent[0])))  # Å; panels follow the molecule's shape
    rows = [("ground truth", truth_ro, True)] + [(m, r, False) for m, r in named]
    label_w, title_h = 1.35, 0.3 + 0.2 * (title.count("\n") + 2)
    panel_w = (PAGE_WIDTH_IN - label_w) / max(len(cols), 3)
    panel_h = panel_w * half[1] / half[0]
    panel_h = min(panel_h, (MAX_HEIGHT_IN - title_h - 0.3) / len(rows))
    panel_w = panel_h * half[0] / half[1]
    foot_h = 0.25 if one_step else 0.05
    width, height = label_w + panel_w * len(cols) + 0.05, title_h + panel_h * len(rows) + foot_h
    fig, axs = _figure(width, height, len(rows), len(cols), layout=None)
    fig.subplots_adjust(left=label_w / width, right=1 - 0.05 / width, top=1 - title_h / height,
                        bottom=foot_h / height, wspace=0.04, hspace=0.04)  # fmt: skip
    scale = panel_w / 1.9  # stick and ball outlines follow the panel size
    for r, (label, ro, truth) in enumerate(rows):
        for c, offset in enumerate(cols):
            ax = axs[r, c]
            frame = _frame_at(ro, offset, truth)
            if frame is None or not np.isfinite(frame).all():
                _blank(ax, half)
                why = "diverged" if frame is not None else _missing_reason(ro, offset)
                _text(ax, 0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=MIN_FONT_PT,
                      color="crimson" if "diverged" in why else "0.35")  # fmt: skip
            else:
                aligned = kabsch_onto(frame, start)
                draw_molecule(ax, aligned, ro.atomic_numbers, axes3, centre, half, scale)
                proj = (aligned - centre) @ axes3.T
                outside = int((np.abs(proj[:, 0]) > half[0]).sum() + (np.abs(proj[:, 1]) > half[1]).sum())
                if outside:
                    _text(ax, 0.5, 0.03, f"{outside} out\nof view", transform=ax.transAxes, fontsize=MIN_FONT_PT,
                          ha="center", va="bottom", color="crimson")  # fmt: skip
            if r == 0:
                ax.set_title(f"+{offset * truth_ro.dt_fs:g} fs", fontsize=RC["xtick.labelsize"])
        suffix = " (ref.)" if (label in cards() or label in ROW_MODELS) and _role(label) == "reference" else ""
        axs[r, 0].set_ylabel(label + suffix, rotation=0, ha="right", va="center")
    if one_step:
        fig.text(0.01, 0.01, f"Not drawn (one-step models, no rollout): {', '.join(one_step)}.",
                 fontsize=RC["xtick.labelsize"], ha="left", va="bottom")  # fmt: skip
    fig.text(0.01, 1 - (title_h - 0.05) / height, "time after the start frame:", ha="left", va="bottom",
             fontsize=MIN_FONT_PT, color="0.35")  # fmt: skip
    _suptitle(fig, title, y=1 - 0.05 / height, va="top")
    return fig


def _blank(ax, half: tuple[float, float]) -> None:
    ax.set_xlim(-half[0], half[0])
    ax.set_ylim(-half[1], half[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _curves_of(y: Yardstick) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(t_fs, ARMSE mean, RMSD mean, RMSD lo, RMSD hi) of one run: its multi-start ``curve`` or, for an
    older file, the single rollout's curves at t = i x step_fs (no band)."""
    if y.curve is not None:
        c = y.curve
        return c["t_fs"], c["armse_mean"], c["rmsd_mean"], c["rmsd_lo"], c["rmsd_hi"]
    rec = y.record
    n = len(rec.armse_curve)
    if n and y.step_fs is None:
        raise ValueError(f"{rec.path}: no 'dt_fs'/'step_fs' (and no rollout.npz beside it): time in fs unknown")
    t = np.arange(1, n + 1) * (y.step_fs or 1.0)
    return t, np.asarray(rec.armse_curve, float), np.asarray(rec.rmsd_per_frame, float), None, None


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def _same_curve(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    """Whether two (t, values...) curves are the same to the tables' tolerance (:data:`SAME_REL`, 1% at every
    point; NaN where NaN): one model behaves as the other (``diffmd`` as published and ``static``)."""
    if a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]):
        return False
    return all(np.allclose(x, y, rtol=SAME_REL, atol=0.0, equal_nan=True) for x, y in zip(a[1:], b[1:]))


def _legend_height(entries: int, title_lines: int) -> float:
    """Inches a one-column legend of ``entries`` lines needs beside the panels, the figure's title included."""
    return (entries + title_lines + 1) * RC["legend.fontsize"] * 2.2 / 72 + 0.7


def _grid_shape(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n_panels, max_cols)
    return -(-n_panels // cols), cols


@_styled
def curves_figure(records: list[Yardstick], title: str, models: list[str] | None = None):
    """ARMSE up to t and RMSD at t against rollout time in fs, two panels per molecule (molecules wrap into
    rows of at most four).

    Lines: the mean over rollout starts of each run (``curve``), one distinct style per model
    (:func:`model_styles`); the oracle rows' RMSD band (2.5-97.5% across starts) is shaded; reference rows
    are wide pale lines underneath, so a model with the very same curve (its legend says "= static") shows on
    top; one-step-only models (floors) have no curve. Dotted vertical lines mark the ARMSE horizons of the
    tables; an x marks where a diverged rollout's curve stops. Both axes are logarithmic.
    """
    if not records:
        raise ValueError("curves figure: no armse.json records given")
    molecules = list(dict.fromkeys(y.record.molecule for y in records))
    model_order = ordered(models, [y.model for y in records])
    roles = {y.model: y.role for y in records}
    styles = model_styles(model_order, roles)
    horizons = sorted({m["horizon_fs"] for y in records for m in y.metrics
                       if m["metric"] == "armse" and m["horizon_fs"]})  # fmt: skip
    block_rows, cols = _grid_shape(len(molecules))
    height = max(3.4 * block_rows + 0.8, _legend_height(len(model_order), 2))
    fig, axs = _figure(max(2.3 * cols + 2.6, 5.5), height, 2 * block_rows, cols, sharex="col")
    handles: dict[str, object] = {}
    for i, mol in enumerate(molecules):
        br, c = divmod(i, cols)
        drawn: dict[str, tuple] = {}
        for model in model_order:
            for y in (x for x in records if x.record.molecule == mol and x.model == model):
                if not y.rollout_applicable:
                    continue
                curve = _curves_of(y)
                t, armse, rmsd, lo, hi = curve
                if t.size == 0:
                    continue
                same = next((m for m, other in drawn.items() if _same_curve(curve[:3], other)), None)
                drawn[model] = curve[:3]
                st = dict(styles[model])
                every = max(1, t.size // 8)
                for r, values in enumerate((armse, rmsd)):
                    ax = axs[2 * br + r, c]
                    yv = _positive(values)
                    (line,) = ax.plot(t, yv, markevery=(i % every, every), **st)
                    finite = np.nonzero(np.isfinite(yv))[0]
                    if y.record.diverged and finite.size and finite[-1] < t.size - 1:
                        ax.plot(t[finite[-1]], yv[finite[-1]], "x", color=st["color"], ms=6, mew=1.5,
                                zorder=st["zorder"])  # fmt: skip
                    if r == 0 and model not in handles:
                        line.set_label(model + (f" (≈ {same})" if same else "")
                                       + (" (oracle; band: 2.5-97.5% of starts)" if y.role == "oracle" else ""))
                        handles[model] = line
                if y.role == "oracle" and lo is not None and hi is not None:
                    axs[2 * br + 1, c].fill_between(t, _positive(lo), _positive(hi), color=st["color"], alpha=0.2,
                                                    lw=0, zorder=1)  # fmt: skip
        for r in range(2):
            ax = axs[2 * br + r, c]
            for h in horizons:
                ax.axvline(h, color="0.6", lw=0.6, ls=":", zorder=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="both", lw=0.4)
            if c == 0:
                ax.set_ylabel("ARMSE up to t (Å)" if r == 0 else "RMSD at t (Å)")
        axs[2 * br, c].set_title(mol)
        axs[2 * br + 1, c].set_xlabel("rollout time t (fs)")
    for j in range(len(molecules), block_rows * cols):
        br, c = divmod(j, cols)
        axs[2 * br, c].set_visible(False)
        axs[2 * br + 1, c].set_visible(False)
    fig.legend(handles=[handles[m] for m in model_order if m in handles], loc="outside right center", frameon=False,
               title="x = diverged\ndotted: table horizons")  # fmt: skip
    _suptitle(fig, title)
    return fig


@_styled
def hr_figure(records: list[Yardstick], title: str, models: list[str] | None = None):
    """h(r) of the ground truth (grey, filled) against each model (line): one panel per (model, molecule),
    from each run's ``hr`` (common bins); models in rows, molecules in columns (one molecule: the models wrap
    into three columns). An oracle named in ``models`` without runs gets a panel with the reason; a model
    without h(r) for a molecule a "no h(r)" panel."""
    with_hr = [y for y in records if y.hr is not None and y.rollout_applicable]
    if not with_hr:
        raise ValueError("h(r) figure: no armse.json with an 'hr' key given")
    molecules = list(dict.fromkeys(y.record.molecule for y in with_hr))
    source = with_hr[0].record.source
    missing = missing_oracles(records, models, source)
    rows = ordered(models, [y.model for y in with_hr] + list(missing))
    styles = model_styles(ordered(models, [y.model for y in records]), {y.model: y.role for y in records})
    wrap = 3 if len(molecules) == 1 else 1
    panels = [(model, mol) for mol in molecules for model in rows]
    n_rows = -(-len(rows) // wrap)
    n_cols = len(molecules) * wrap
    fig, axs = _figure(PAGE_WIDTH_IN, 0.75 * n_rows + 0.9, n_rows, n_cols)
    xlim: dict[str, list[float]] = {}
    for y in with_hr:  # one r range per molecule: every bin some model or the truth fills, +- 2 bins
        edges = y.hr["edges"]
        used = np.nonzero((np.nan_to_num(y.hr["ref"]) > 0) | (np.nan_to_num(y.hr["pred"]) > 0))[0]
        if used.size:
            lo, hi = edges[max(used[0] - 2, 0)], edges[min(used[-1] + 3, edges.size - 1)]
            old = xlim.get(y.record.molecule, [lo, hi])
            xlim[y.record.molecule] = [min(old[0], lo), max(old[1], hi)]
    ymax = {mol: max(float(np.nanmax(np.concatenate([np.nan_to_num(y.hr["ref"]), np.nan_to_num(y.hr["pred"])])))
                     for y in with_hr if y.record.molecule == mol) * 1.08 for mol in molecules}  # fmt: skip
    for k, (model, mol) in enumerate(panels):
        m_idx, j = divmod(k, len(rows))
        r, sub = j % n_rows, j // n_rows
        c = m_idx * wrap + sub
        ax = axs[r, c]
        hit = next((y for y in with_hr if y.model == model and y.record.molecule == mol), None)
        if hit is None:
            why = f"NA: {missing[model]}" if model in missing else "no h(r)"
            _text(ax, 0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.35")
            ax.set_yticks([])
        else:
            edges, pred, ref = hit.hr["edges"], hit.hr["pred"], hit.hr["ref"]
            ax.stairs(np.nan_to_num(ref), edges, fill=True, color="0.82", label="ground truth")
            st = styles.get(model, {"color": "C0"})
            ax.stairs(np.nan_to_num(pred), edges, color=st["color"], lw=0.9, label=model)
        if mol in xlim:
            ax.set_xlim(*xlim[mol])
        ax.set_ylim(0, ymax[mol] or 1.0)
        _text(ax, 0.98, 0.92, model, transform=ax.transAxes, ha="right", va="top")
        if r == 0 and sub == 0:
            ax.set_title(mol)
        last = r == n_rows - 1 or j == len(rows) - 1
        if last:
            ax.set_xlabel("r (Å)")
        else:
            ax.tick_params(labelbottom=False)
    used_cells = {((k % len(rows)) % n_rows, (k // len(rows)) * wrap + (k % len(rows)) // n_rows)
                  for k in range(len(panels))}  # fmt: skip
    for r in range(n_rows):
        for c in range(n_cols):
            if (r, c) not in used_cells:
                axs[r, c].set_visible(False)
    fig.supylabel("h(r) (Å⁻¹)")
    _suptitle(fig, f"{title}\nground truth (grey, filled) against each model (line)".strip())
    return fig


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike | None = None, dpi: int = DPI) -> None:
    """Write PNG (and PDF) atomically at the figure's own size (``constrained`` layout: nothing cropped or
    added), then close the figure."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    plt.close(fig)


#: Columns of the trainer's ``train_log.csv`` the learning curves read (diffmd.engine.train.LOG_FIELDS).
LEARNING_COLUMNS = ("epoch", "loss", "val_one_step")


def read_train_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``train_log.csv`` as float arrays (empty cells -> NaN); a one-line ``ValueError`` naming the file
    when a column the learning curves need is missing."""
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: empty training log")
    missing = [c for c in LEARNING_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: training log lacks column(s) {', '.join(missing)}")
    return {c: np.array([float(r[c]) if r[c] not in ("", None) else np.nan for r in rows]) for c in rows[0]}


def _log_identity(path: Path) -> tuple[str, str]:
    """(molecule or run, model) of ``results/<dataset>/<run>/<model>/seed<N>/train_log.csv`` or of a tuned
    model's ``.../<model>/seed<N>/selection.json``."""
    parts = Path(path).parts
    if len(parts) < 4:
        raise ValueError(f"{path}: not a run directory's train_log.csv (results/<dataset>/<run>/<model>/seed<N>/)")
    return parts[-4], parts[-3]


def selected_train_log(selection: str | os.PathLike) -> tuple[Path, str]:
    """The ``train_log.csv`` of a tuned model's selected grid point (``selection.json`` -> ``best.checkpoint``,
    its ``grid/...`` part found beside the selection file) and the point's name."""
    selection = Path(selection)
    chosen = load_selection(selection)  # the file's one reader (diffmd.rundir)
    ckpt = chosen.checkpoint
    parts = Path(ckpt).parts
    inside = parts[parts.index("grid"):] if "grid" in parts else parts[-2:]
    log = selection.parent.joinpath(*inside).with_name("train_log.csv")
    if not log.exists():
        log = Path(ckpt).with_name("train_log.csv")
    if not log.exists():
        raise ValueError(f"{selection}: the selected checkpoint's train_log.csv is missing ({log})")
    return log, chosen.point


@_styled
def _no_epochs(log: dict[str, np.ndarray]) -> bool:
    """A log of a model that is not trained by epochs: one row, at epoch 0 (references, floors, sGDML)."""
    return log["epoch"].size == 1 and not float(log["epoch"][0]) > 0


def learning_curves_figure(logs: list[str | os.PathLike], title: str, models: list[str] | None = None):
    """Learning curves of every trained model, two panels per molecule (or training run): the validation
    one-step error (Å, top) and the dimensionless training loss (bottom) against epoch, one distinct style
    per model; the epoch with the best validation number is marked with a dot. ``logs`` are the trainer's
    ``train_log.csv`` files and, for a model tuned over a grid (DiffMD), its ``selection.json``: the selected
    point's log is drawn, labelled with the point. Models with nothing to learn (one row at epoch 0: the
    references and floors) are horizontal lines of their validation error, for comparison."""
    if not logs:
        raise ValueError("learning curves: no train_log.csv given")
    entries = []
    for p in logs:
        run, model = _log_identity(Path(p))
        if Path(p).name == "selection.json":
            path, point = selected_train_log(p)
            entries.append((run, model, read_train_log(path), f" (grid point {point})" if point else ""))
        else:
            entries.append((run, model, read_train_log(p), ""))
    runs = list(dict.fromkeys(e[0] for e in entries))
    model_order = ordered(models, [e[1] for e in entries])
    styles = model_styles(model_order)
    block_rows, cols = _grid_shape(len(runs))
    height = max(3.2 * block_rows + 0.7, _legend_height(len(model_order), 2))
    fig, axs = _figure(max(2.3 * cols + 2.6, 5.5), height, 2 * block_rows, cols, sharex="col")
    handles: dict[str, object] = {}
    for i, run in enumerate(runs):
        br, c = divmod(i, cols)
        top, bottom = axs[2 * br, c], axs[2 * br + 1, c]
        learned = [e for e in entries if e[0] == run and not _no_epochs(e[2])]
        last_epoch = max((float(np.nanmax(e[2]["epoch"])) for e in learned), default=1.0)
        for model in model_order:
            for _, _, log, note in (e for e in entries if e[0] == run and e[1] == model):
                st = dict(styles[model])
                one = _positive(log["val_one_step"])
                if _no_epochs(log):  # reference / floor: a level to compare with
                    if np.isfinite(one[0]):
                        (line,) = top.plot([0, max(last_epoch, 1)], [one[0]] * 2, **{**st, "marker": ""})
                        handles.setdefault(model, line)
                        line.set_label(model + " (no epochs)")
                    continue
                every = max(1, log["epoch"].size // 8)
                (line,) = top.plot(log["epoch"], one, markevery=every, **st)
                if model not in handles:
                    line.set_label(model + note)
                    handles[model] = line
                if np.isfinite(one).any():
                    best = int(np.nanargmin(one))
                    top.plot(log["epoch"][best], one[best], "o", color=st["color"], ms=5, mfc="none", mew=1.2,
                             zorder=20)  # fmt: skip
                bottom.plot(log["epoch"], _positive(log["loss"]), markevery=every, **st)
        for ax, ylabel in ((top, "validation\none-step error (Å)"), (bottom, "training loss\n(dimensionless)")):
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            if c == 0:
                ax.set_ylabel(ylabel)
        top.set_title(run)
        bottom.set_xlabel("epoch")
    for j in range(len(runs), block_rows * cols):
        br, c = divmod(j, cols)
        axs[2 * br, c].set_visible(False)
        axs[2 * br + 1, c].set_visible(False)
    fig.legend(handles=[handles[m] for m in model_order if m in handles], loc="outside right center", frameon=False,
               title="open circle: best validation epoch\nstraight: a model without epochs")  # fmt: skip
    _suptitle(fig, title)
    return fig
