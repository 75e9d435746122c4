# Engine rules (diffmd/engine): train -> rollout -> evaluate, one `python -m diffmd.engine.<cli>` line each.
#   results/md17/{molecule}/{model}/seed{seed}/model.pt        S2L: trained per molecule
#   results/c7o2h10/trained/{model}/seed{seed}/model.pt        O2O: trained once per model
#   results/{dataset}/{molecule}/{model}/seed{seed}/{rollout.npz,rollout.extxyz,armse.json}
#   results/md17/{molecule}/summary.json                       every model and seed of one molecule
# Single target:   snakemake --cores 2 results/md17/aspirin/egnn/seed1/armse.json
# One molecule:    snakemake --cores 2 results/md17/aspirin/summary.json
# The DiffMD checkpoint comes from its grid-tuning rules (diffmd.smk), hence TRAIN_MODELS.

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


rule train:
    input:
        unpack(train_inputs),
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/model.pt",
    log:
        "results/logs/train/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule=TRAIN_RUN_NAMES,
        model="|".join(TRAIN_MODELS),
    params:
        model_params=train_model_params,
        train=train_config,
        out=subpath(output[0], parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {wildcards.model} --params {params.model_params} --train-config {params.train} --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule rollout:
    input:
        unpack(rollout_inputs),
    output:
        npz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.npz",
        xyz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.extxyz",
    log:
        "results/logs/rollout/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/rollout/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule=TEST_RUN_NAMES,
    params:
        target=rollout_target,
        cfg=rollout_config,
        out=subpath(output.npz, parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.rollout --split {input.split} --checkpoint {input.checkpoint} {params.target} --rollout-config {params.cfg} --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule evaluate:
    input:
        "results/{dataset}/{molecule}/{model}/seed{seed}/rollout.npz",
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/armse.json",
    log:
        "results/logs/evaluate/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule=TEST_RUN_NAMES,
    params:
        meta=run_meta,
    threads: 1
    shell:
        "python -m diffmd.engine.evaluate --rollout {input} --meta {params.meta} --out {output} > {log} 2>&1"


rule md17_molecule:
    input:
        molecule_runs,
    output:
        "results/md17/{molecule}/summary.json",
    log:
        "results/logs/md17_molecule/{molecule}.log",
    benchmark:
        "results/benchmarks/md17_molecule/{molecule}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
    threads: 1
    shell:
        "python -m diffmd.engine.evaluate summarize --out {output} {input} > {log} 2>&1"


ALL_TARGETS.extend(
    expand("results/md17/{molecule}/{model}/seed{seed}/armse.json", molecule=MD17_MOLECULES, model=MODELS, seed=SEEDS)
)
ALL_TARGETS.append(c7o2h10_armse)
