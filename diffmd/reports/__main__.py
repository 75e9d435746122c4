"""Command line: ``python -m diffmd.reports <command> ...`` (one call per Snakemake rule).

Commands::

    tables    --inputs armse.json... [--models M...] [--columns C...] --csv F --md F [--html F]
    paper     --dataset {md17,c7o2h10} --inputs armse.json... [--models M...] --csv F --md F [--html F]
    validity  --rollouts rollout.npz... [--params JSON] [--models M...] --csv F --md F [--html F]
    snapshots --rollouts rollout.npz... --every N [--models M...] [--title T] --png F --pdf F
    curves    --inputs armse.json... [--models M...] [--title T] --png F --pdf F
    costs     --inputs armse.json... [--benchmarks tsv...] [--benchmark-dir D] --csv F --md F [--html F]

Every table is written as CSV and Markdown; every figure as PNG and PDF; all atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffmd.io import write_text
from diffmd.provenance import provenance_markdown
from diffmd.reports import costs, paper, tables, validity
from diffmd.reports.html import markdown_to_html
from diffmd.reports.results import load_record, load_records, load_rollout, single_source, source_label


def _common(p: argparse.ArgumentParser, inputs: str = "--inputs", outputs: tuple[str, str] = ("--csv", "--md")):
    p.add_argument(inputs, nargs="+", required=True)
    p.add_argument("--models", nargs="*", default=None, help="row order (the config's models)")
    for out in outputs:
        p.add_argument(out, required=True)
    if outputs == ("--csv", "--md"):
        p.add_argument("--html", default=None, help="also write the Markdown as an HTML page (for the report)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m diffmd.reports", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tables", help="ARMSE table (Table 1 / Table 2 shape)")
    _common(p)
    p.add_argument("--columns", nargs="*", default=None, help="column order (molecules or targets)")
    p = sub.add_parser("paper", help="the paper's table beside ours")
    _common(p)
    p.add_argument("--dataset", choices=["md17", "c7o2h10"], required=True)
    p.add_argument("--columns", nargs="*", default=None)
    p = sub.add_parser("validity", help="bond-length validity and stability horizon")
    _common(p, "--rollouts")
    p.add_argument("--params", default="{}", help="JSON object overriding the validity defaults")
    p = sub.add_parser("snapshots", help="Fig. 4: snapshots per method")
    _common(p, "--rollouts", ("--png", "--pdf"))
    p.add_argument("--every", type=int, required=True, help="source frames between snapshots")
    p.add_argument("--title", default="")
    p = sub.add_parser("curves", help="ARMSE and RMSD against rollout time")
    _common(p, "--inputs", ("--png", "--pdf"))
    p.add_argument("--title", default="")
    p = sub.add_parser("costs", help="training time, rollout speed, memory, score evaluations")
    _common(p)
    p.add_argument("--benchmarks", nargs="*", default=[], help="benchmark TSV files")
    p.add_argument("--benchmark-dir", default=None, help="also read every run's TSV under this folder")
    return ap


def _write_table(args: argparse.Namespace, csv_text: str, md_text: str) -> None:
    """CSV, Markdown and (with --html) an HTML page of the same table."""
    write_text(args.csv, csv_text)
    write_text(args.md, md_text)
    if args.html:
        write_text(args.html, markdown_to_html(md_text, Path(args.md).stem))


def _sibling_source(rollout_paths: list[str]) -> str:
    """Data-source label of rollouts, from the armse.json beside each one (one source only)."""
    recs = [load_record(Path(p).with_name("armse.json")) for p in rollout_paths]
    dataset, source = single_source(recs, "validity table")
    return f"{source_label(dataset, source)} (source = {source!r})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tables":
        tab = tables.make_table(load_records(args.inputs), args.models, args.columns)
        md = tables.render_markdown(tab) + provenance_markdown(args.inputs)  # cite each run's provenance
        _write_table(args, tables.render_csv(tab), md)
    elif args.command == "paper":
        sbs = paper.side_by_side(load_records(args.inputs), args.dataset, args.models, args.columns)
        _write_table(args, paper.render_side_by_side_csv(sbs), paper.render_side_by_side_md(sbs))
    elif args.command == "validity":
        params = json.loads(args.params)
        label = _sibling_source(args.rollouts)
        rows = validity.validity_rows([load_rollout(p) for p in args.rollouts], params)
        md = validity.render_validity_md(rows, label, args.models, params)
        _write_table(args, validity.render_validity_csv(rows, label), md)
    elif args.command == "snapshots":
        from diffmd.reports import figures

        label = _sibling_source(args.rollouts)
        fig = figures.snapshot_figure(
            [load_rollout(p) for p in args.rollouts], args.every, f"{args.title}\n{label}".strip(), args.models
        )
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "curves":
        from diffmd.reports import figures

        recs = load_records(args.inputs)
        dataset, source = single_source(recs, "curves figure")
        fig = figures.curves_figure(recs, f"{args.title}\n{source_label(dataset, source)}".strip(), args.models)
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "costs":
        found = costs.find_benchmarks(args.benchmark_dir) if args.benchmark_dir else []
        rows = costs.cost_rows(load_records(args.inputs), sorted(set(args.benchmarks) | set(found)))
        _write_table(args, costs.render_costs_csv(rows), costs.render_costs_md(rows))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
