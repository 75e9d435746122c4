"""Figures: the paper's Fig. 4 (trajectory snapshots per method) and ARMSE / RMSD curves.

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

from diffmd.elements import COLOURS, covalent_radius  # noqa: E402
from diffmd.io import atomic_path  # noqa: E402
from diffmd.metrics import kabsch_rotation  # noqa: E402
from diffmd.registry import MODEL_MODULES  # noqa: E402
from diffmd.reports.results import Rollout, RunRecord, run_identity  # noqa: E402
from diffmd.reports.validity import find_bonds  # noqa: E402
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
        colour = np.array(matplotlib.colors.to_rgb(COLOURS.get(int(numbers[k]), "#FF1493"))) * shade
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


def curves_figure(records: list[RunRecord], title: str, models: list[str] | None = None):
    """ARMSE (top) and per-frame RMSD (bottom) against rollout time: one column per molecule."""
    if not records:
        raise ValueError("curves figure: no armse.json records given")
    molecules = list(dict.fromkeys(r.molecule for r in records))
    model_order = list(
        dict.fromkeys([m for m in (models or []) if any(r.model == m for r in records)] + [r.model for r in records])
    )
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(model_order)}
    fig, axs = plt.subplots(2, len(molecules), figsize=(3.6 * len(molecules) + 1.5, 6.0), squeeze=False, sharex="col")
    for c, mol in enumerate(molecules):
        for r, key in enumerate(("armse_curve", "rmsd_per_frame")):
            ax = axs[r, c]
            for model in model_order:
                for i, rec in enumerate(x for x in records if x.molecule == mol and x.model == model):
                    y = np.asarray(getattr(rec, key), dtype=float)
                    if y.size == 0:
                        continue
                    t = np.arange(1, y.size + 1) * rec.stride
                    style = "--" if rec.role == "reference" else "-"
                    ax.plot(
                        t,
                        np.where(y > 0, y, np.nan),
                        style,
                        color=colours[model],
                        lw=1.2,
                        label=model if (i == 0 and c == 0 and r == 0) else None,
                    )
                    finite = np.nonzero(np.isfinite(y) & (y > 0))[0]
                    if rec.diverged and finite.size:  # mark where a diverged rollout stops
                        ax.plot(t[finite[-1]], y[finite[-1]], "x", color=colours[model], ms=7, mew=2)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="both", lw=0.4)
            if r == 0:
                ax.set_title(mol, fontsize=10)
            ax.set_ylabel("ARMSE up to t (Å)" if r == 0 else "RMSD at t (Å)")
            if r == 1:
                ax.set_xlabel("rollout time (source frames)")
    fig.legend(loc="center right", fontsize=8, frameon=False, title="x = diverged", title_fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.3 / (3.6 * len(molecules) + 1.5), 1))
    return fig


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike | None = None, dpi: int = 150) -> None:
    """Write PNG (and PDF) atomically, then close the figure."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
