# Engine rules (diffmd/engine): train -> rollout -> evaluate, one line of the engine's command line each.
#   results/md17/{molecule}/{model}/seed{seed}/model.pt        S2L: trained per molecule
#   results/c7o2h10/trained/{model}/seed{seed}/model.pt        O2O: trained once per model
#   results/{dataset}/{molecule}/{model}/seed{seed}/{rollout.npz,rollout.extxyz,armse.json}
#   results/md17/{molecule}/summary.json                       every model and seed of one molecule
# Single target:   snakemake --cores 2 results/md17/aspirin/egnn/seed1/armse.json
# One molecule:    snakemake --cores 2 results/md17/aspirin/summary.json
# A row is a registered model or a variant of one (config `variants:`): --model gets the model the row builds
# (PLAN.base_model), run directories the row; a row's own rollout settings reach only its rollouts (PLAN.rollout_arg).
# Models with a tuning procedure (DiffMD's grid, diffmd.smk) get their checkpoint from its rules:
# the train rule only matches PLAN.engine_models(). Input functions live in common.smk.
# A run that also simulates (simulation.datasets) rolls out in simulation.smk's rollout_simulate instead (the same
# outputs plus simulation.json, one process): `rollout` below is for the others (ruleorder there).


rule train:
    conda:
        "../../envs/workflow.yaml"
    input:
        unpack(PLAN.train_inputs),
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/model.pt",
        "results/{dataset}/{molecule}/{model}/seed{seed}/train_log.csv",  # the learning curve
    log:
        "results/logs/train/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(PLAN.engine_models()),
    params:
        model=PLAN.base_model_of,
        model_params=PLAN.model_params_arg,
        train=PLAN.stage_arg("train"),
        out=subpath(output[0], parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {params.model} --params {params.model_params} --train-config {params.train} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_TRAIN_COMPILE\" --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule rollout:
    conda:
        "../../envs/workflow.yaml"
    input:
        unpack(PLAN.rollout_inputs),
    output:
        npz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.npz",
        xyz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.extxyz",
        ref_xyz="results/{dataset}/{molecule}/{model}/seed{seed}/reference.extxyz",
    log:
        "results/logs/rollout/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/rollout/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join([*MD17_MOLECULES, ISOMER_PATTERN]),
    params:
        target=PLAN.rollout_target,
        cfg=PLAN.rollout_arg,
        out=subpath(output.npz, parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.rollout --split {input.split} --checkpoint {input.checkpoint} {params.target} --rollout-config {params.cfg} --seed {wildcards.seed} --threads {threads} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_ROLLOUT_COMPILE\" --out {params.out} > {log} 2>&1"


rule evaluate:
    conda:
        "../../envs/workflow.yaml"
    input:
        "results/{dataset}/{molecule}/{model}/seed{seed}/rollout.npz",
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/armse.json",
    log:
        "results/logs/evaluate/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join([*MD17_MOLECULES, ISOMER_PATTERN]),
    params:
        meta=PLAN.run_meta,
        cfg=PLAN.stage_arg("evaluate"),
    threads: 1
    shell:
        "python -m diffmd.engine.evaluate --rollout {input} --meta {params.meta} --rollout-config {params.cfg} --out {output} > {log} 2>&1"


rule md17_molecule:
    conda:
        "../../envs/workflow.yaml"
    input:
        summary_inputs,
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

