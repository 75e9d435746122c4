# Config validation, the experiment plan (diffmd/plan/: every decision lives there, tested) and the
# input functions the rules call. No model or dataset is named here: the plan asks the registry.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from diffmd.config import SCHEMA_PATH, coerce_command_line
from diffmd.data.splits import read_split
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
    """A list the C7O2H10 split checkpoint chose (its isomers' trajectories or the targets), by its one reader."""
    return list(read_split(checkpoints.split_c7o2h10.get().output[0])[key])


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


def runs(filename, figure_seed=False):
    """An input function: ``filename`` of every run of the job's dataset (md17 without one), or of its molecule
    only where the job has one; ``figure_seed``: the figure seed's runs only."""
    return lambda w: run_files(getattr(w, "dataset", "md17"), filename, [PLAN.figure_seed()] if figure_seed else None,
                               [w.molecule] if hasattr(w, "molecule") else None)  # fmt: skip


dataset_armse, dataset_rollouts, summary_inputs = runs("armse.json"), runs("rollout.npz"), runs("armse.json")
molecule_armse, molecule_rollouts = runs("armse.json", True), runs("rollout.npz", True)


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
