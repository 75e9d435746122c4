# Config validation, the experiment plan (diffmd/plan.py: every decision lives there, tested) and the
# input functions the rules call. No model or dataset is named here: the plan asks the registry.
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from diffmd.config import SCHEMA_PATH, coerce_command_line
from diffmd.plan import ISOMER_PATTERN, Plan, shell_arg

# --config 'seeds=[1,2]' and --config 'model_params={"egnn":{"hidden":64}}' arrive as strings
config.update(coerce_command_line(config, dict(getattr(getattr(workflow, "config_settings", None), "config", {}))))
validate(config, schema=str(SCHEMA_PATH))

# Rules call the package's command lines with python: make that the interpreter running Snakemake (the venv),
# also when the venv is not activated, and make the package importable from the workflow's own
# directory under --use-conda. Jobs inherit both.
os.environ.update(
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])),
)

try:  # the plan checks the config and every existing data file a job would refuse (diffmd/data/preflight.py)
    PLAN = Plan(config, origin="config")
except ValueError as exc:  # one line naming the key or file, before any job ran (so before anything is deleted)
    raise WorkflowError(str(exc)) from None
# The machine (train.device, the compile switches) reaches the jobs as environment variables, never as params:
# a rerun trigger must not fire for a setting that cannot change a result (diffmd/stages.py)
os.environ.update(PLAN.machine_environment())
SEEDS, MODELS, MD17_MOLECULES = PLAN.seeds, PLAN.models, PLAN.md17_molecules
C7O2H10_INDEX = "data/c7o2h10/index.json"
C7O2H10_SPLIT = PLAN.split_path("c7o2h10", "")


wildcard_constraints:
    model="|".join(MODELS),
    seed=r"\d+",
    molecule=r"[a-z0-9_]+",
    dataset="md17|c7o2h10",


arg = shell_arg  # a plan value as one shell-quoted JSON argument


def split_file(key):
    with open(checkpoints.split_c7o2h10.get().output[0]) as fh:
        return list(json.load(fh)[key])


def c7o2h10_isomers(wildcards=None):
    """All C7O2H10 isomers: known at parse time (simulated) or read from the split checkpoint."""
    return PLAN.static_isomers() or split_file("trajectories")


def c7o2h10_targets(wildcards=None):
    """The O2O targets: from the config, or the ones the split checkpoint chose."""
    return PLAN.config_targets() or split_file("targets")


def test_columns(dataset):
    """The molecules (S2L) or target isomers (O2O) of a dataset's table; none for a switched-off dataset."""
    if not PLAN.enabled(dataset):
        return []
    return MD17_MOLECULES if PLAN.task(dataset) == "s2l" else c7o2h10_targets()


def run_files(dataset, filename, seeds=None, molecules=None):
    return PLAN.run_files(dataset, molecules or test_columns(dataset), filename, seeds)


def dataset_armse(wildcards):
    return run_files(wildcards.dataset, "armse.json")


def dataset_rollouts(wildcards):
    return run_files(wildcards.dataset, "rollout.npz")


def summary_inputs(wildcards):
    return run_files("md17", "armse.json", molecules=[wildcards.molecule])


def molecule_armse(wildcards):
    return run_files(wildcards.dataset, "armse.json", [PLAN.figure_seed()], [wildcards.molecule])


def molecule_rollouts(wildcards):
    return run_files(wildcards.dataset, "rollout.npz", [PLAN.figure_seed()], [wildcards.molecule])


def table_columns(wildcards):
    return " ".join(test_columns(wildcards.dataset))


def all_armse(wildcards):
    return run_files("md17", "armse.json") + run_files("c7o2h10", "armse.json")


def rollout_benchmarks(wildcards):
    """The benchmark TSV of every rollout job, from the rollout rule's own `benchmark:` pattern."""
    return sum((expand(rules.rollout.benchmark, dataset=d, molecule=test_columns(d), model=PLAN.models_for(d),
                       seed=SEEDS) for d in ("md17", "c7o2h10")), [])


def c7o2h10_final_targets(wildcards):
    """The final outputs that depend on the O2O targets (maybe chosen by the split checkpoint)."""
    return run_files("c7o2h10", "armse.json") + expand(
        "results/figures/snapshots_c7o2h10_{molecule}.png", molecule=test_columns("c7o2h10"))


# The report (reports.smk): the cost benchmarks' tables as HTML pages, and the check of `--report`'s inputs.
def report_html_targets():
    """The HTML twins of the benchmark tables this config builds (see table_html)."""
    names = (["cost_md17"] if PLAN.has_cost_table() else []) + ["paper_cost"]
    return [f"results/tables/{name}.html" for name in names]


def report_files():
    """The report's pages and figures known at parse time (every final table's HTML and every figure)."""
    return [p for p in PLAN.static_targets() + report_html_targets() if p.endswith((".html", ".png"))]


def check_report_inputs(run_root, basedir):
    """Stop `snakemake --report` with one line naming the run it needs when this config's run is not built."""
    files = report_files()
    missing = [p for p in files if not os.path.exists(p)]
    if not missing:
        return
    where = "the repository root" if os.path.normpath(run_root) == "." else run_root
    msg = (f"snakemake --report: {len(missing)} of this config's {len(files)} report files are missing under "
           f"{where} (e.g. {missing[0]}): the report bundles a finished run of the same config, so run it first "
           "(the same command without --report)")
    quick = basedir / "runs" / "quick" / "results"
    if os.path.normpath(run_root) == "." and quick.is_dir():
        msg += ("; for the quick profile's run (runs/quick/): "
                "snakemake --workflow-profile profiles/quick --report results/report.html")
    raise WorkflowError(msg)
