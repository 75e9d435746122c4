"""Command line: ``python -m diffmd.reports <command> ...`` (one call per Snakemake rule).

Commands::

    tables        --inputs armse.json... [--models M...] [--columns C...] --csv F --md F [--html F]
                  (Table 1 / 2: paper column + horizon-resolved ARMSE; long-format CSV)
    one-step      --inputs armse.json... [--models M...] [--columns C...] --csv F --md F [--html F]
    distributions --inputs armse.json... [--models M...] [--columns C...] --csv F --md F [--html F]
    hr            --inputs armse.json... [--models M...] [--title T] --png F --pdf F
    paper     --dataset {md17,c7o2h10} --inputs armse.json... [--models M...] --csv F --md F [--html F]
    validity  --rollouts rollout.npz... [--params JSON] [--models M...] --csv F --md F [--html F]
    snapshots --rollouts rollout.npz... --every N [--models M...] [--title T] --png F --pdf F
    curves    --inputs armse.json... [--models M...] [--title T] --png F --pdf F   (time in fs)
    costs     --inputs armse.json... [--train-benchmarks tsv...] [--rollout-benchmarks tsv...] --csv F --md F [--html F]
    simulation --inputs simulation.json... [--models M...] [--columns C...] --csv F --md F [--html F] --png F --pdf F
                  (simulations and proper scores, diffmd/reports/simulation.py; survival figure)

Every table is written as CSV and Markdown (and HTML with --html); every figure as PNG and PDF; all
atomically. The yardstick tables (tables, one-step, distributions) write a long-format CSV and render
their Markdown and HTML from it with pandas + tabulate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffmd.io import write_text
from diffmd.provenance import provenance_markdown
from diffmd.reports import costs, paper, tables, validity, yardstick
from diffmd.reports.html import markdown_fragment
from diffmd.reports.results import load_rollout, single_source, source_label


def _common(p: argparse.ArgumentParser, inputs: str = "--inputs", outputs: tuple[str, str] = ("--csv", "--md")):
    p.add_argument(inputs, nargs="+", required=True)
    p.add_argument("--models", nargs="*", default=None,
                   help="row order (the config's models; a variant as row=model: its card is its model's)")
    p.add_argument("--na-reasons", default="{}",
                   help="JSON {model: reason}: models of --models the plan leaves out on this dataset (NA rows)")
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
    for name, what in (("one-step", "one-step (teacher-forced) error and acceleration R², floors as rows"),
                       ("distributions", "h(r), bond/angle W1, temperature, energy excess, stability")):  # fmt: skip
        p = sub.add_parser(name, help=what)
        _common(p)
        p.add_argument("--columns", nargs="*", default=None, help="column order (molecules or targets)")
    p = sub.add_parser("hr", help="h(r) of the ground truth against each model")
    _common(p, "--inputs", ("--png", "--pdf"))
    p.add_argument("--title", default="")
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
    p = sub.add_parser("learning-curves", help="validation one-step error and training loss against epoch")
    _common(p, "--inputs", ("--png", "--pdf"))
    p.add_argument("--title", default="")
    p = sub.add_parser("simulation", help="simulations (survival, temperatures, energy, h(r)) and proper scores")
    _common(p)
    p.add_argument("--columns", nargs="*", default=None, help="column order (molecules or targets)")
    p.add_argument("--png", required=True, help="the survival figure")
    p.add_argument("--pdf", default=None)
    p = sub.add_parser("costs", help="training time, rollout speed, memory, score evaluations")
    _common(p)
    p.add_argument("--train-benchmarks", nargs="*", default=[],
                   help="benchmark TSVs of the training jobs (a grid search's points are summed per seed)")
    p.add_argument("--rollout-benchmarks", nargs="*", default=[], help="benchmark TSVs of the rollout jobs")
    return ap


def _write_report(args: argparse.Namespace, rep: yardstick.Report, runs: list[str] | None = None) -> None:
    """CSV, Markdown and (with --html) HTML of one table, all from its frame (``to_csv``, ``to_markdown``,
    ``to_html``), with the provenance of the runs behind it (files in ``runs``) cited below the table."""
    prov = provenance_markdown(runs) if runs else ""
    write_text(args.csv, rep.csv())
    write_text(args.md, rep.markdown() + prov)
    if args.html:
        write_text(args.html, rep.html(markdown_fragment(prov) if prov else ""))


def _records(paths: list[str]) -> list:
    """The paper-protocol records of ``paths`` (one-step-only models included, their ARMSE null)."""
    return [y.record for y in yardstick.load_yardsticks(paths)]


def _sibling_source(rollout_paths: list[str]) -> tuple[str, str]:
    """(dataset, source) of rollouts, from the armse.json beside each one (one source only)."""
    recs = [yardstick.load_yardstick(Path(p).with_name("armse.json")).record for p in rollout_paths]
    return single_source(recs, "validity table")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffmd.reports import yardstick as _ys

    _ys.PLANNED_NA.clear()
    _ys.PLANNED_NA.update(json.loads(getattr(args, "na_reasons", "{}") or "{}"))
    _ys.ROW_MODELS.clear()
    if hasattr(args, "models"):
        args.models = _ys.parse_rows(args.models)  # a variant comes as row=model
    if args.command == "tables":
        tab = tables.make_table(yardstick.load_yardsticks(args.inputs), args.models, args.columns)
        _write_report(args, tables.report(tab), args.inputs)  # cites each run's provenance
    elif args.command in ("one-step", "distributions"):
        build = yardstick.one_step_report if args.command == "one-step" else yardstick.distributions_report
        _write_report(args, build(yardstick.load_yardsticks(args.inputs), args.models, args.columns), args.inputs)
    elif args.command == "hr":
        from diffmd.reports import figures

        ys = yardstick.load_yardsticks(args.inputs)
        dataset, source = single_source([y.record for y in ys], "h(r) figure")
        fig = figures.hr_figure(ys, f"{args.title}\n{source_label(dataset, source)}".strip(), args.models)
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "paper":
        sbs = paper.side_by_side(_records(args.inputs), args.dataset, args.models, args.columns)
        _write_report(args, paper.side_by_side_report(sbs))
    elif args.command == "validity":
        params = json.loads(args.params)
        dataset, source = _sibling_source(args.rollouts)
        rows = validity.validity_rows([load_rollout(p) for p in args.rollouts], params)
        _write_report(args, validity.validity_report(rows, dataset, source, args.models, params), args.rollouts)
    elif args.command == "snapshots":
        from diffmd.reports import figures

        dataset, source = _sibling_source(args.rollouts)
        label = f"{source_label(dataset, source)} (source = {source!r})"
        fig = figures.snapshot_figure(
            [load_rollout(p) for p in args.rollouts], args.every, f"{args.title}\n{label}".strip(), args.models
        )
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "curves":
        from diffmd.reports import figures

        ys = yardstick.load_yardsticks(args.inputs)
        dataset, source = single_source([y.record for y in ys], "curves figure")
        fig = figures.curves_figure(ys, f"{args.title}\n{source_label(dataset, source)}".strip(), args.models)
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "learning-curves":
        from diffmd.reports import figures

        fig = figures.learning_curves_figure(args.inputs, args.title, args.models)
        figures.save_figure(fig, args.png, args.pdf)
    elif args.command == "costs":
        rows = costs.cost_rows(_records(args.inputs), args.train_benchmarks, args.rollout_benchmarks)
        _write_report(args, costs.costs_report(rows))
    elif args.command == "simulation":
        from diffmd.reports import figures
        from diffmd.reports import simulation as sim

        recs = sim.load_simulations(args.inputs)
        _write_report(args, sim.simulation_report(recs, args.models, args.columns))
        label = source_label(recs[0]["dataset"], recs[0].get("source", "")) if recs else ""
        figures.save_figure(sim.survival_figure(recs, args.models, f"Survival of the simulations\n{label}".strip()),
                            args.png, args.pdf)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
