"""Costs table: training wall time, rollout speed, peak memory, score evaluations per frame.

Inputs are Snakemake ``benchmark:`` TSV files (columns ``s``, ``h:m:s``, ``max_rss``, ``max_vms``,
... in seconds and MB) under ``results/benchmarks/<rule>/<dataset>/<molecule>/<model>/seed<seed>``
and the ``armse.json`` files (``frames_per_second``, ``score_evals_per_frame``). The workflow declares
which TSVs are training jobs (every training behind a run: the engine's, or each point of a grid search,
summed per seed; :meth:`diffmd.plan.Plan.training_benchmarks`) and which are rollouts; the path says whose run
a TSV is. O2O models are trained once per model (``results/c7o2h10/trained/{model}/seed{seed}/``), so their
training benchmark sits under molecule ``trained`` and is shown for every target.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd

from diffmd.reports.results import RunRecord, source_label
from diffmd.reports.yardstick import Report, Section

TRAINED_ONCE = "trained"


def read_benchmark(path: str | os.PathLike) -> dict[str, float]:
    """Mean of each numeric column of one Snakemake benchmark TSV (several repeats are averaged)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    rows = list(csv.DictReader(lines, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark TSV (no 's' column)")
    out: dict[str, float] = {}
    for key in rows[0]:
        vals = []
        for row in rows:
            try:
                vals.append(float(row[key]))
            except (TypeError, ValueError):
                continue
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def benchmark_identity(path: str | os.PathLike) -> dict[str, str] | None:
    """rule, dataset, molecule, model, seed of a benchmark file, or None when the path does not say.

    Reads ``.../benchmarks/<rule>/<dataset>/<molecule>/<model>/seed<n>[.tsv | /<anything>.tsv]``:
    the first folder after ``benchmarks`` is the rule, then the dataset (md17 or c7o2h10), the
    molecule (or ``trained`` for O2O training), the model and ``seed<n>``; the tuning rules add one file
    per grid point: ``<rule>/<dataset>/<molecule>/<model>/seed<n>/<point>.tsv``.
    """
    parts = Path(path).with_suffix("").parts
    if "benchmarks" not in parts:
        return None
    rest = list(parts[parts.index("benchmarks") + 1 :])
    datasets = [i for i, p in enumerate(rest) if p in ("md17", "c7o2h10")]
    if len(rest) < 4 or not datasets:
        return None
    i = datasets[0]
    if len(rest) < i + 4 or not rest[i + 3].startswith("seed") or not rest[i + 3][4:].isdigit():
        return None
    return {"rule": rest[0], "dataset": rest[i], "molecule": rest[i + 1], "model": rest[i + 2], "seed": rest[i + 3][4:]}


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _per_seed_sum(entries: list[tuple[str, dict[str, float]]]) -> float | None:
    """Mean over seeds of the summed wall time (s) of that seed's jobs."""
    per_seed: dict[str, float] = defaultdict(float)
    for seed, bench in entries:
        per_seed[seed] += bench.get("s", 0.0)
    return _mean(list(per_seed.values()))


def cost_rows(
    records: list[RunRecord], train_benchmarks: list[str], rollout_benchmarks: list[str]
) -> list[dict[str, object]]:
    """One row per (dataset, molecule, model), seeds averaged. ``train_benchmarks``: the TSVs of the training jobs
    (several per seed for a grid search: summed), ``rollout_benchmarks``: the rollout jobs' (paths)."""
    bench: dict[tuple, list[tuple[str, dict[str, float]]]] = defaultdict(list)
    for kind, paths in (("train", train_benchmarks), ("rollout", rollout_benchmarks)):
        for path in paths:
            ident = benchmark_identity(path)
            if ident is None:
                raise ValueError(f"{path}: cannot tell dataset/molecule/model/seed from this benchmark path")
            bench[(kind, ident["dataset"], ident["molecule"], ident["model"])].append(
                (ident["seed"], read_benchmark(path)))
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for rec in records:
        groups[(rec.dataset, rec.molecule, rec.model)].append(rec)
    rows = []
    for (dataset, molecule, model), recs in groups.items():
        own = ("train", dataset, molecule, model) in bench
        train = bench.get(("train", dataset, molecule if own else TRAINED_ONCE, model), [])
        roll = bench.get(("rollout", dataset, molecule, model), [])
        rss = [b.get("max_rss") for _, b in train + roll]
        rows.append(
            {
                "dataset": dataset,
                "molecule": molecule,
                "model": model,
                "seeds": len(recs),
                "data_source": source_label(dataset, recs[0].source),
                "train_seconds": _per_seed_sum(train),
                "train_shared_across_targets": (not own) if train else None,
                "rollout_seconds": _mean([r.rollout_seconds for r in recs]),
                "rollout_frames_per_second": _mean([r.frames_per_second for r in recs]),
                "peak_memory_MB": max([v for v in rss if v is not None], default=None),
                "score_evals_per_frame": _mean([r.score_evals_per_frame for r in recs]),
            }
        )
    return rows


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


COLUMNS = [
    "dataset",
    "molecule",
    "model",
    "seeds",
    "train_seconds",
    "train_shared_across_targets",
    "rollout_seconds",
    "rollout_frames_per_second",
    "peak_memory_MB",
    "score_evals_per_frame",
    "data_source",
]


def costs_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The rows as a DataFrame with :data:`COLUMNS` (None where not recorded)."""
    return pd.DataFrame([{c: row[c] for c in COLUMNS} for row in rows], columns=COLUMNS)


def render_costs_csv(rows: list[dict[str, object]]) -> str:
    """``DataFrame.to_csv``: empty cells where not recorded."""
    return costs_frame(rows).to_csv(index=False, na_rep="", lineterminator="\n")


def costs_report(rows: list[dict[str, object]]) -> Report:
    """The costs table (every column but the data source, which the notes name) as a
    :class:`~diffmd.reports.yardstick.Report`: CSV, Markdown and HTML from one frame."""
    shown = COLUMNS[:-1]
    body = [(_fmt(row[shown[0]]), [_fmt(row[c]) for c in shown[1:]]) for row in rows]
    sources = sorted({str(row["data_source"]) for row in rows})
    notes = [
        *(f"Data: {s}" for s in sources),
        "train_seconds: wall time of the training job (`s` column), per seed; for DiffMD the sum over its "
        "hyper-parameter grid points; O2O models are trained once for all targets "
        "(train_shared_across_targets = yes).",
        "peak_memory_MB: the largest `max_rss` of the training and rollout jobs (CPU resident memory).",
        "score_evals_per_frame: score-network evaluations per generated frame (diffusion models; 0 "
        "otherwise). '-' = not recorded.",
    ]
    title = "Compute costs per model and molecule (Snakemake benchmark files + armse.json)"
    section = Section(title, list(shown), body, text_columns=3)
    return Report("", "", title, costs_frame(rows), [section], notes, preamble="")


def render_costs_md(rows: list[dict[str, object]]) -> str:
    return costs_report(rows).markdown()
