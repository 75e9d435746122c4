"""Check that a dry run of the paper config lists the complete DAG.

Usage: python .ci/check_dryrun.py DRYRUN_OUTPUT.txt
Every (molecule, model) of Table 1 and every (target, model) of Table 2 that the experiment plan runs
must have an evaluation job (a model whose data is missing there, e.g. a physics oracle on downloaded
data, is NA in the tables with its reason and must have none), and every table must be built.
"""

import sys
from pathlib import Path

import yaml

from diffmd.plan import Plan

text = Path(sys.argv[1]).read_text()
plan = Plan(yaml.safe_load(Path("config.yaml").read_text()))
expected = plan.run_files("md17", plan.md17_molecules, "armse.json")
expected += plan.run_files("c7o2h10", plan.config_targets(), "armse.json")
missing = [p for p in expected if p not in text]
unexpected = [f"results/{d}/{m}/{model}/" for d in ("md17", "c7o2h10") for model in plan.na_reasons(d)
              for m in (plan.md17_molecules if d == "md17" else plan.config_targets())
              if f"results/{d}/{m}/{model}/" in text]  # fmt: skip
tables = [t for t in plan.static_targets() if t.startswith("results/tables/") and t.endswith(".csv")]
missing += [t for t in tables if t not in text]
if missing or unexpected:
    print(f"dry run is missing {len(missing)} expected outputs, e.g.:", *missing[:10], sep="\n  ")
    print(f"dry run has {len(unexpected)} runs the plan leaves out, e.g.:", *unexpected[:10], sep="\n  ")
    sys.exit(1)
print(f"dry run lists all {len(expected)} evaluation jobs and {len(tables)} tables; "
      f"NA by design: {sorted({m for d in ('md17', 'c7o2h10') for m in plan.na_reasons(d)})}")
