"""Figures: the paper's Fig. 4 (trajectory snapshots per method), ARMSE / RMSD curves against time in
fs (multi-start means, the physics oracle's 2.5-97.5% band shaded) and h(r) of the ground truth
against each model.

Snapshots: one row per method with the ground truth on top, one column per snapshot time (every
``snapshot_every`` source frames), ball-and-stick drawings coloured by element (CPK/Jmol colours
from :mod:`diffmd.elements`), bonds recomputed on every drawn frame from covalent radii (so a
broken bond disappears). Every frame is Kabsch-superimposed on the start frame (rotation +
translation) and drawn as an orthographic projection onto the start frame's two principal axes,
atoms painted back to front by depth, so rows and columns are comparable by eye.
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

from diffmd.elements import colour as element_colour  # noqa: E402
from diffmd.elements import covalent_radius  # noqa: E402
from diffmd.io import atomic_path  # noqa: E402
from diffmd.metrics import kabsch_rotation  # noqa: E402
from diffmd.registry import MODEL_MODULES  # noqa: E402
from diffmd.reports.results import Rollout, run_identity  # noqa: E402
from diffmd.reports.validity import find_bonds  # noqa: E402
from diffmd.reports.yardstick import Yardstick, missing_oracles, ordered  # noqa: E402
from diffmd.rundir import role_of  # noqa: E402


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
    ax, frame: np.ndarray, numbers: np.ndarray, axes: np.ndarray, centre: np.ndarray, half: tuple[float, float]
) -> None:
    """Ball-and-stick drawing of one frame (atoms, 3) Å, projected on ``axes`` (3, 3) around ``centre``;
    ``half`` = (half width, half height) of the panel in Å (atoms outside are clipped)."""
    ax.set_xlim(-half[0], half[0])
    ax.set_ylim(-half[1], half[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if not np.isfinite(frame).all():
        ax.text(0, 0, "not finite\n(diverged)", ha="center", va="center", fontsize=8, color="crimson")
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
                lw=2.2,
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
                lw=0.5,
                zorder=2.0 * proj[k, 2] + 1e-3,
            )
        )


def snapshot_columns(n_frames_source: int, every: int) -> list[int]:
    """Source-frame offsets from the start frame at which snapshots are drawn: 0, every, 2*every, ..."""
    return list(range(0, n_frames_source + 1, every))


def _frame_at(ro: Rollout, offset: int, truth: bool) -> np.ndarray | None:
    """The frame ``offset`` source frames after the start, or None when this rollout has none there."""
    frames = ro.frame_indices - ro.frame_indices[0]
    hit = np.nonzero(frames == offset)[0]
    if hit.size == 0:
        return None
    return (ro.reference if truth else ro.positions)[hit[0]]


def _ordered_rollouts(rollouts: list[Rollout], models: list[str] | None) -> list[tuple[str, Rollout]]:
    named = [(run_identity(r.path)["model"], r) for r in rollouts]
    order = {m: i for i, m in enumerate(models or [])}
    return sorted(named, key=lambda mr: order.get(mr[0], len(order)))


def snapshot_figure(rollouts: list[Rollout], every: int, title: str, models: list[str] | None = None):
    """The paper's Fig. 4 for one molecule: rows = ground truth + methods, columns = snapshot times."""
    if not rollouts:
        raise ValueError("snapshot figure: no rollouts given")
    named = _ordered_rollouts(rollouts, models)
    truth_ro = min(rollouts, key=lambda r: r.stride)
    start = truth_ro.reference[0]
    span = int(truth_ro.frame_indices[-1] - truth_ro.frame_indices[0])
    cols = snapshot_columns(span, every)
    axes3 = view_axes(start)
    centre = start.mean(axis=0)
    extent = np.abs((start - centre) @ axes3.T)[:, :2].max(axis=0) + 0.7
    half = (float(extent[0]), float(max(extent[1], 0.55 * extent[0])))  # Å; panels follow the molecule's shape
    panel = (1.9, 1.9 * half[1] / half[0])
    rows = [("ground truth", truth_ro, True)] + [(m, r, False) for m, r in named]
    size = (panel[0] * len(cols) + 1.4, panel[1] * len(rows) + 0.2 * (title.count("\n") + 1))
    fig, axs = plt.subplots(len(rows), len(cols), figsize=size, squeeze=False)
    for r, (label, ro, truth) in enumerate(rows):
        for c, offset in enumerate(cols):
            ax = axs[r, c]
            frame = _frame_at(ro, offset, truth)
            if frame is None:
                ax.axis("off")
                ax.text(0.5, 0.5, "no frame", transform=ax.transAxes, ha="center", fontsize=7, color="0.5")
                continue
            aligned = kabsch_onto(frame, start) if np.isfinite(frame).all() else frame
            draw_molecule(ax, aligned, ro.atomic_numbers, axes3, centre, half)
            if r == 0:
                ax.set_title(f"t0 + {offset * truth_ro.dt_fs:g} fs", fontsize=8)
        suffix = " (ref.)" if label in MODEL_MODULES and role_of(label) == "reference" else ""
        axs[r, 0].set_ylabel(label + suffix, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.16 * (title.count("\n") + 1) / height))
    return fig


#: Line style per role: reference rows dashed (drawn on top), force fields dash-dotted, the rest solid.
ROLE_STYLE = {"reference": "--", "force_field": "-."}


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


def curves_figure(records: list[Yardstick], title: str, models: list[str] | None = None):
    """ARMSE up to t (top) and RMSD at t (bottom) against rollout time in fs, one column per molecule.

    Lines: the mean over rollout starts of each run (``curve``); the oracle rows' RMSD band (2.5-97.5%
    across starts) is shaded; reference rows (static, constant velocity) are dashed and drawn on top;
    one-step-only models (floors) have no curve. Dotted vertical lines mark the ARMSE horizons of the
    tables; an x marks where a diverged rollout's curve stops. Both axes are logarithmic.
    """
    if not records:
        raise ValueError("curves figure: no armse.json records given")
    molecules = list(dict.fromkeys(y.record.molecule for y in records))
    model_order = ordered(models, [y.model for y in records])
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(model_order)}
    horizons = sorted({m["horizon_fs"] for y in records for m in y.metrics
                       if m["metric"] == "armse" and m["horizon_fs"]})  # fmt: skip
    width = 3.8 * len(molecules) + 1.8
    fig, axs = plt.subplots(2, len(molecules), figsize=(width, 6.2), squeeze=False, sharex="col")
    labelled: set[str] = set()
    for c, mol in enumerate(molecules):
        for model in model_order:
            for y in (x for x in records if x.record.molecule == mol and x.model == model):
                if not y.rollout_applicable:
                    continue
                t, armse, rmsd, lo, hi = _curves_of(y)
                if t.size == 0:
                    continue
                style = ROLE_STYLE.get(y.role, "-")
                z = 5 if y.role == "reference" else 3
                label = None
                if model not in labelled:
                    label = model + (" (oracle, band: 2.5-97.5% of starts)" if y.role == "oracle" else "")
                    labelled.add(model)
                for r, values in enumerate((armse, rmsd)):
                    ax = axs[r, c]
                    yv = _positive(values)
                    ax.plot(t, yv, style, color=colours[model], lw=1.6 if z == 5 else 1.2, zorder=z,
                            label=label if r == 0 else None)  # fmt: skip
                    finite = np.nonzero(np.isfinite(yv))[0]
                    if y.record.diverged and finite.size and finite[-1] < t.size - 1:
                        ax.plot(t[finite[-1]], yv[finite[-1]], "x", color=colours[model], ms=7, mew=2, zorder=z)
                if y.role == "oracle" and lo is not None and hi is not None:
                    axs[1, c].fill_between(t, _positive(lo), _positive(hi), color=colours[model], alpha=0.2,
                                           lw=0, zorder=1)  # fmt: skip
        for r in range(2):
            ax = axs[r, c]
            for h in horizons:
                ax.axvline(h, color="0.6", lw=0.6, ls=":", zorder=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="both", lw=0.4)
            ax.set_ylabel("ARMSE up to t (Å)" if r == 0 else "RMSD at t (Å)")
        axs[0, c].set_title(mol, fontsize=10)
        axs[1, c].set_xlabel("rollout time t (fs)")
    fig.legend(loc="center right", fontsize=8, frameon=False, title="x = diverged; dotted: table horizons",
               title_fontsize=7)  # fmt: skip
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.6 / width, 1))
    return fig


def hr_figure(records: list[Yardstick], title: str, models: list[str] | None = None):
    """h(r) of the ground truth (grey, filled) against each model (line): one row per model, one column
    per molecule, from each run's ``hr`` (common bins). An oracle named in ``models`` without runs gets
    a panel with the reason; a model without h(r) for a molecule a "no h(r)" panel."""
    with_hr = [y for y in records if y.hr is not None and y.rollout_applicable]
    if not with_hr:
        raise ValueError("h(r) figure: no armse.json with an 'hr' key given")
    molecules = list(dict.fromkeys(y.record.molecule for y in with_hr))
    source = with_hr[0].record.source
    missing = missing_oracles(records, models, source)
    rows = ordered(models, [y.model for y in with_hr] + list(missing))
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(ordered(models, [y.model for y in records]))}
    fig, axs = plt.subplots(len(rows), len(molecules), figsize=(3.0 * len(molecules) + 0.8, 1.5 * len(rows) + 0.8),
                            squeeze=False, sharex="col")  # fmt: skip
    for c, mol in enumerate(molecules):
        for r, model in enumerate(rows):
            ax = axs[r, c]
            ax.tick_params(labelsize=7)
            hit = next((y for y in with_hr if y.model == model and y.record.molecule == mol), None)
            if hit is None:
                why = f"NA: {missing[model]}" if model in missing else "no h(r)"
                ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4")
                ax.set_yticks([])
            else:
                edges, pred, ref = hit.hr["edges"], hit.hr["pred"], hit.hr["ref"]
                ax.stairs(np.nan_to_num(ref), edges, fill=True, color="0.8", label="ground truth")
                ax.stairs(np.nan_to_num(pred), edges, color=colours[model], lw=1.1, label=model)
                used = np.nonzero((np.nan_to_num(ref) > 0) | (np.nan_to_num(pred) > 0))[0]
                if used.size:
                    ax.set_xlim(edges[max(used[0] - 2, 0)], edges[min(used[-1] + 3, edges.size - 1)])
            if c == 0:
                ax.set_ylabel(model, fontsize=8, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(mol, fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel("r (Å)", fontsize=8)
    fig.suptitle(f"{title}\nh(r) (Å⁻¹): ground truth (grey, filled) against each model (line)".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike | None = None, dpi: int = 150) -> None:
    """Write PNG (and PDF) atomically, then close the figure."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
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
    """(molecule or run, model) of ``results/<dataset>/<run>/<model>/seed<N>/train_log.csv``."""
    parts = Path(path).parts
    if len(parts) < 4:
        raise ValueError(f"{path}: not a run directory's train_log.csv (results/<dataset>/<run>/<model>/seed<N>/)")
    return parts[-4], parts[-3]


def learning_curves_figure(logs: list[str | os.PathLike], title: str, models: list[str] | None = None):
    """Learning curves, one column per molecule (or training run): the validation one-step error (Å, top)
    and the dimensionless training loss (bottom) against epoch, one line per model; the epoch with the
    best validation number is marked with a dot. Models with nothing to learn (one row at epoch 0: the
    references and floors) are horizontal dashed lines of their validation error, for comparison."""
    if not logs:
        raise ValueError("learning curves: no train_log.csv given")
    entries = [(*_log_identity(Path(p)), read_train_log(p)) for p in logs]
    runs = list(dict.fromkeys(e[0] for e in entries))
    model_order = ordered(models, [e[1] for e in entries])
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(model_order)}
    width = 4.2 * len(runs) + 2.2
    fig, axs = plt.subplots(2, len(runs), figsize=(width, 6.0), squeeze=False, sharex="col")
    labelled: set[str] = set()
    for c, run in enumerate(runs):
        learned = [e for e in entries if e[0] == run and e[2]["epoch"].size > 1]
        last_epoch = max((float(np.nanmax(e[2]["epoch"])) for e in learned), default=1.0)
        for model in model_order:
            for _, _, log in (e for e in entries if e[0] == run and e[1] == model):
                label = None if model in labelled else model
                labelled.add(model)
                one = _positive(log["val_one_step"])
                if log["epoch"].size == 1:  # reference / floor: a level to compare with
                    if np.isfinite(one[0]):
                        axs[0, c].hlines(one[0], 1, max(last_epoch, 1), colors=[colours[model]], linestyles="--",
                                         lw=1.0, label=label)  # fmt: skip
                    continue
                axs[0, c].plot(log["epoch"], one, "-", color=colours[model], lw=1.2, label=label)
                if np.isfinite(one).any():
                    best = int(np.nanargmin(one))
                    axs[0, c].plot(log["epoch"][best], one[best], "o", color=colours[model], ms=4)
                axs[1, c].plot(log["epoch"], _positive(log["loss"]), "-", color=colours[model], lw=1.2)
        for r, ylabel in enumerate(("validation one-step error (Å)", "training loss (dimensionless)")):
            ax = axs[r, c]
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            ax.set_ylabel(ylabel)
        axs[0, c].set_title(run, fontsize=10)
        axs[1, c].set_xlabel("epoch")
    fig.legend(loc="center right", fontsize=8, frameon=False, title="dashed: models with nothing to learn\n"
               "dot: best validation epoch", title_fontsize=7)  # fmt: skip
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / width, 1))
    return fig
