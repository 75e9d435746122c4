"""Check that a dry run of the paper config lists the complete DAG.

Usage: python .ci/check_dryrun.py DRYRUN_OUTPUT.txt
Every (molecule, model) of Table 1 and every (target, model) of Table 2 that the experiment plan runs
must have an evaluation job (a model whose data is missing there, e.g. a physics oracle on downloaded
data, is NA in the tables with its reason and must have none), and every table must be built.
The paper DAG must fit MAX_JOBS jobs (issue 14: the "total" of the dry run's job stats), every tuned
model (DiffMD, diffmd_corrected: each its own grid) must have grid validations, and each must validate
all eps of its point in one job: a validation.json directly under a grid point or halving slot, never
one per (point, eps).
"""

import re
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

#: Largest paper DAG (issue 14: 6,499 jobs with one validation job per (point, eps); 1,767 with halving).
MAX_JOBS = 2500
total = re.search(r"^\s*total\s+(\d+)\s*$", text, flags=re.M)
if total is None:
    print("dry run: no 'total' line in its job stats (was it made with snakemake -n?)")
    sys.exit(1)
n_jobs = int(total.group(1))
grid_validations = set(re.findall(r"results/\S+?/grid/\S*validation\.json", text))
per_point = re.compile(r"results/[^/\s]+/[^/\s]+/[^/\s]+/seed\d+/grid/(rung\d+/slot\d+|[^/\s]+)/validation\.json")
per_eps = sorted(p for p in grid_validations if not per_point.fullmatch(p) or re.search(r"eps[0-9.]", p))
problems = []
if n_jobs > MAX_JOBS:
    problems.append(f"dry run has {n_jobs} jobs, more than {MAX_JOBS}")
if per_eps:
    problems.append(f"{len(per_eps)} grid validations are not one per grid point or slot (per eps?), e.g.: "
                    + ", ".join(per_eps[:5]))  # fmt: skip
tuned = plan.tuned_models("diffmd_grid")
problems += [f"no grid validation of the tuned model {m} in the dry run" for m in tuned
             if not any(f"/{m}/seed" in v for v in grid_validations)]  # fmt: skip
if missing or unexpected or problems:
    print(*problems, sep="\n")
    print(f"dry run is missing {len(missing)} expected outputs, e.g.:", *missing[:10], sep="\n  ")
    print(f"dry run has {len(unexpected)} runs the plan leaves out, e.g.:", *unexpected[:10], sep="\n  ")
    sys.exit(1)
print(f"dry run: {n_jobs} jobs (<= {MAX_JOBS}), {len(grid_validations)} grid validations of {', '.join(tuned)}, "
      f"each of all eps of one point; lists all {len(expected)} evaluation jobs and {len(tables)} tables; "
      f"NA by design: {sorted({m for d in ('md17', 'c7o2h10') for m in plan.na_reasons(d)})}")
