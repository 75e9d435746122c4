# diffmd-bench: DiffMD (Wu & Li, AAAI 2023) against its baselines, end to end.
#   snakemake                                   # the paper's settings (profiles/default: all cores, one GPU job)
#   snakemake -n                                # its dry run: the complete DAG
#   snakemake --workflow-profile profiles/quick          # offline quick profile, under runs/quick/
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


# The paper config, by absolute path: the profiles move the working directory (workdir: below), and
# Snakemake's report (--report) reads every config file again from there.
configfile: os.path.join(workflow.basedir, "config.yaml")


# The run root: every path in the rules (data/..., results/...) is relative to it, so two profiles with
# different data never share (and overwrite) each other's files. `run_root` is not an experiment setting
# (it is taken out of the config before the schema, the plan and the config hashes see it): the paper
# config runs at the repository root, profiles/quick/root.yaml puts the quick profile under runs/quick.
RUN_ROOT = config.pop("run_root", ".")
if not isinstance(RUN_ROOT, str) or not RUN_ROOT.strip():
    raise WorkflowError(f"run_root: expected a directory path (string), got {RUN_ROOT!r}")


workdir: RUN_ROOT


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/diffmd.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/reports.smk"


rule all:
    default_target: True
    input:
        PLAN.static_targets(),
        PLAN.report_html_targets(),
        c7o2h10_final_targets,


# The report (--report) only bundles a finished run: before Snakemake stops at the first missing file,
# say which run the report needs.
if any(a == "--report" or a.startswith("--report=") for a in sys.argv) and "--report-after-run" not in sys.argv:
    try:
        PLAN.check_report_inputs(RUN_ROOT, Path(workflow.basedir))
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None
