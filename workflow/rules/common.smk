# Helpers shared by the workflow: config validation, the experiment's axes, wildcard
# constraints and the target registry behind `rule all`.
import json
import os
import shlex
import sys

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

# Rules call `python -m diffmd...`: make that the interpreter running Snakemake (the project's
# venv), also when the venv is not activated (`.venv/bin/snakemake ...`); and make the package
# importable from the workflow's own directory under --use-conda (envs/workflow.yaml holds the
# dependencies, not the package itself). Jobs inherit both.
os.environ.update(
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])),
)

SEEDS = [int(s) for s in config["seeds"]]
MODELS = list(config["models"])
MD17_MOLECULES = list(config["data"]["md17"]["molecules"])

# Each rule file appends the final outputs it owns; `rule all` asks for all of them.
ALL_TARGETS = []


def all_targets():
    return ALL_TARGETS


def as_json_arg(obj):
    """A config section as one shell-quoted JSON argument for the package's entry points."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


wildcard_constraints:
    model="|".join(MODELS),
    seed=r"\d+",
    molecule=r"[a-z0-9_]+",
    dataset="md17|c7o2h10",


def model_params(model, dataset):
    """Hyper-parameters of `model` for `dataset`: config/models/<model>.yaml + model_params.<model>.

    Score Dynamics takes its stride (frames per step) from score_dynamics.stride.<dataset>.
    """
    from diffmd.config import resolve_model_config

    overrides = dict(config.get("model_params", {}).get(model, {}))
    if model == "score_dynamics":
        stride = config.get("score_dynamics", {}).get("stride", {}).get(dataset)
        if stride is not None:
            overrides.setdefault("stride", int(stride))
    return resolve_model_config(model, overrides)


# --- helpers of data.smk (kept here: snakemake --lint wants rules and functions apart) ---
def _xtb_isomer_names():
    from diffmd.data.isomers import xtb_isomer_names

    xtb = DATA["c7o2h10"].get("xtb", {})
    return xtb_isomer_names(int(xtb.get("n_isomers", 20)), xtb.get("isomers"))


def source_settings(dataset):
    """Only the config a dataset's source reads (so adding a molecule or editing the other source's
    settings does not trigger a rerun): {"xtb": ...} or {"download": ...}."""
    section = DATA[dataset]
    key = "xtb" if section["source"] == "xtb" else "download"
    return as_json_arg({key: section.get(key, {})})


def c7o2h10_isomers(wildcards=None):
    """Names of all C7O2H10 isomers: xtb01.. for the xtb source (known at parse time); for the
    download/local source the iso<ID> names found in the archive, read from the checkpoint
    split_c7o2h10's split file (call only inside input functions)."""
    if C7O2H10_SOURCE == "xtb":
        return list(XTB_ISOMERS)
    with open(checkpoints.split_c7o2h10.get().output[0]) as fh:
        return list(json.load(fh)["trajectories"])


def c7o2h10_targets(wildcards=None):
    """The O2O target isomers: splits.c7o2h10.targets when given (known at parse time), otherwise
    the ones the checkpoint split_c7o2h10 chose (call only inside input functions)."""
    if C7O2H10_CONFIG_TARGETS:
        return list(C7O2H10_CONFIG_TARGETS)
    with open(checkpoints.split_c7o2h10.get().output[0]) as fh:
        return list(json.load(fh)["targets"])


def md17_split(molecule):
    """Path of the S2L split file of an MD17 molecule."""
    return f"data/splits/md17/{molecule}.json"


def xtb_isomer_trajectories(wildcards):
    return expand("data/c7o2h10/{isomer}.npz", isomer=XTB_ISOMERS)


# --- helpers of diffmd.smk (kept here: snakemake --lint wants rules and functions apart) ---
def diffmd_split(wildcards):
    return engine_split(wildcards)


def diffmd_point_model_params(wildcards):
    base = model_params("diffmd", wildcards.dataset)
    return as_json_arg(diffmd_point_params(base, DIFFMD_GRID, wildcards.point))


def diffmd_validations(wildcards):
    run = diffmd_grid_dir(wildcards)
    return [f"{run}/{p}/val_eps{e}.json" for p in DIFFMD_POINTS for e in DIFFMD_EPS]


def diffmd_grid_dir(wildcards):
    return f"results/{wildcards.dataset}/{wildcards.molecule}/diffmd/seed{wildcards.seed}/grid"


# --- helpers of benchmarks.smk (kept here: snakemake --lint wants rules and functions apart) ---
def cost_extra_strides():
    """Cost strides that need their own Score Dynamics model (not the table's score_dynamics run)."""
    reuse = SD_MAIN_STRIDE if "score_dynamics" in MODELS else None
    return [k for k in COST_STRIDES if k != reuse]


def cost_runs(molecule):
    """[(label, checkpoint, armse.json or None)] of one molecule, in table order."""
    runs = []
    for model in MODELS:
        if model in COST_EXCLUDED:
            continue
        run = f"results/md17/{molecule}/{model}/seed{COST_SEED}"
        label = f"{model} (stride {SD_MAIN_STRIDE})" if model == "score_dynamics" else model
        runs.append((label, f"{run}/model.pt", f"{run}/armse.json"))
    for k in cost_extra_strides():
        ckpt = f"results/md17/{molecule}/cost/score_dynamics/stride{k}/seed{COST_SEED}/model.pt"
        runs.append((f"score_dynamics (stride {k})", ckpt, None))
    return runs


def cost_inputs(wildcards):
    files = []
    for molecule in COST_MOLECULES:
        files.append(md17_split(molecule))
        for _, ckpt, armse in cost_runs(molecule):
            files += [ckpt] + ([armse] if armse else [])
    return files


def cost_manifest(wildcards):
    molecules = {
        m: {"split": md17_split(m),
            "runs": [{"label": lab, "checkpoint": c, "armse_json": a} for lab, c, a in cost_runs(m)]}
        for m in COST_MOLECULES
    }
    return as_json_arg({
        "molecules": molecules, "xtb": config["data"]["md17"]["xtb"], "md_steps": int(SD_CFG.get("cost_md_steps", 300)),
        "frames": SD_CFG.get("cost_frames"), "threads": 1, "device": config["train"].get("device", "auto"),
        "seed": COST_SEED,
    })


def cost_train_params(wildcards):
    return as_json_arg({**model_params("score_dynamics", "md17"), "stride": int(wildcards.k)})


# --- helpers of reports.smk (kept here: snakemake --lint wants rules and functions apart) ---
def run_files(dataset, filename, seeds=None, molecules=None):
    """`filename` in every run directory of `dataset` the config implies (molecules x models x seeds)."""
    if molecules is None:
        molecules = MD17_MOLECULES if dataset == "md17" else c7o2h10_targets()
    return expand(
        "results/{dataset}/{molecule}/{model}/seed{seed}/{filename}",
        dataset=dataset,
        molecule=molecules,
        model=MODELS,
        seed=SEEDS if seeds is None else seeds,
        filename=filename,
    )


def column_order(dataset):
    return " ".join(MD17_MOLECULES if dataset == "md17" else c7o2h10_targets())


def dataset_armse(wildcards):
    return run_files(wildcards.dataset, "armse.json")


def dataset_rollouts(wildcards):
    return run_files(wildcards.dataset, "rollout.npz")


def molecule_rollouts(wildcards):
    return run_files(wildcards.dataset, "rollout.npz", [FIGURE_SEED], [wildcards.molecule])


def molecule_armse(wildcards):
    return run_files(wildcards.dataset, "armse.json", [FIGURE_SEED], [wildcards.molecule])


def all_armse(wildcards):
    return run_files("md17", "armse.json") + run_files("c7o2h10", "armse.json")


def table_columns(wildcards):
    return column_order(wildcards.dataset)


def c7o2h10_snapshot_figures(wildcards):
    """Fig. 4 for every C7O2H10 target (a function: the targets may be chosen from the data)."""
    return expand("results/figures/snapshots_c7o2h10_{molecule}.png", molecule=c7o2h10_targets())


def rollout_benchmarks(wildcards):
    """The benchmark TSV of every rollout job, from the rollout rule's own `benchmark:` pattern."""
    pattern = rules.rollout.benchmark
    md17 = expand(pattern, dataset="md17", molecule=MD17_MOLECULES, model=MODELS, seed=SEEDS)
    return md17 + expand(pattern, dataset="c7o2h10", molecule=c7o2h10_targets(), model=MODELS, seed=SEEDS)


# --- engine (models.smk): train -> rollout -> evaluate ---------------------------------------
TRAIN_MODELS = [m for m in MODELS if m != "diffmd"]
O2O_TRAINED = "trained"
# C7O2H10 isomer names (docs/ARCHITECTURE.md): iso<ID> downloaded, xtb<NN> simulated; never "trained".
ISOMER_PATTERN = r"iso\d+|xtb\d+"
#: the {molecule} of a training run (an MD17 molecule or "trained") and of a test run
TRAIN_RUN_NAMES = "|".join([*MD17_MOLECULES, O2O_TRAINED])
TEST_RUN_NAMES = "|".join([*MD17_MOLECULES, ISOMER_PATTERN])


def engine_split(wildcards):
    """The split file a run reads: S2L per molecule, O2O one file for every isomer."""
    if wildcards.dataset == "md17":
        return md17_split(wildcards.molecule)
    return C7O2H10_SPLIT


def train_inputs(wildcards):
    if (wildcards.dataset == "md17") != (wildcards.molecule != O2O_TRAINED):
        raise ValueError(
            f"no training run results/{wildcards.dataset}/{wildcards.molecule}: "
            f"use results/md17/<molecule>/... or results/c7o2h10/{O2O_TRAINED}/..."
        )
    return {"split": engine_split(wildcards)}


def train_model_params(wildcards):
    return as_json_arg(model_params(wildcards.model, wildcards.dataset))


def train_config(wildcards):
    """The config's train section plus the rollout's divergence bound (used by validation rollouts)."""
    bound = config["rollout"].get("divergence_bound_A", 100.0)
    return as_json_arg({**config["train"], "divergence_bound_A": bound})


def rollout_inputs(wildcards):
    run = O2O_TRAINED if wildcards.dataset == "c7o2h10" else wildcards.molecule
    return {
        "split": engine_split(wildcards),
        "checkpoint": f"results/{wildcards.dataset}/{run}/{wildcards.model}/seed{wildcards.seed}/model.pt",
    }


def rollout_target(wildcards):
    return f"--target {wildcards.molecule}" if wildcards.dataset == "c7o2h10" else ""


def rollout_config(wildcards):
    return as_json_arg({**config["rollout"], "device": config["train"].get("device", "auto")})


def run_meta(wildcards):
    return as_json_arg(
        {"dataset": wildcards.dataset, "molecule": wildcards.molecule, "model": wildcards.model,
         "seed": int(wildcards.seed)}
    )


def molecule_runs(wildcards):
    return expand(
        "results/md17/{molecule}/{model}/seed{seed}/armse.json",
        molecule=wildcards.molecule, model=MODELS, seed=SEEDS,
    )


def c7o2h10_armse(wildcards):
    return expand(
        "results/c7o2h10/{molecule}/{model}/seed{seed}/armse.json",
        molecule=c7o2h10_targets(), model=MODELS, seed=SEEDS,
    )


def o2o_history_frames():
    """Frames every C7O2H10 rollout starts after: 2 x the largest stride of any model, so all models
    (Score Dynamics' stride k included) start from the same frame and have their v and a history."""
    strides = [int(config["splits"]["c7o2h10"].get("stride", 1))]
    strides += [int(model_params(m, "c7o2h10").get("stride", 1)) for m in MODELS]
    return 2 * max(strides)
