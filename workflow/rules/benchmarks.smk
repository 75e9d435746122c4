# Cost of simulated time (benchmarks/cost.py): wall seconds per simulated ps of the reference GFN2-xTB MD,
# of every trained model's rollout (static and constant_velocity excluded) and of Score Dynamics at the
# strides score_dynamics.cost_strides, measured in one job -> results/tables/cost_md17.{csv,md}.
#   results/md17/{molecule}/cost/{model}/stride{k}/seed{seed}/model.pt   extra strides of the model whose
# stride comes from the config (the stride equal to the table run's reuses its checkpoint); PLAN.cost_*.
#   snakemake --cores 2 results/tables/cost_md17.csv


rule cost_train_strided:
    conda:
        "../../envs/workflow.yaml"
    input:
        split="data/splits/md17/{molecule}.json",
    output:
        "results/md17/{molecule}/cost/{model}/stride{k}/seed{seed}/model.pt",
    log:
        "results/logs/cost/train_{model}_{molecule}_stride{k}_seed{seed}.log",
    benchmark:
        "results/benchmarks/cost/train_{model}_{molecule}_stride{k}_seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
        model=PLAN.cost_strided_model() or "^$",
        k=r"\d+",
    params:
        model_params=PLAN.cost_train_arg,
        train=PLAN.stage_arg("train"),
        out=subpath(output[0], parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {wildcards.model} --params {params.model_params} --train-config {params.train} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_TRAIN_COMPILE\" --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule cost_md17:
    conda:
        "../../envs/workflow.yaml"
    input:
        PLAN.cost_inputs_of,
    output:
        csv="results/tables/cost_md17.csv",
        md="results/tables/cost_md17.md",
    log:
        "results/logs/cost/cost_md17.log",
    benchmark:
        "results/benchmarks/cost/cost_md17.tsv"
    params:
        manifest=arg(PLAN.cost_manifest()),
    resources:
        gpu=max([PLAN.gpu(m) for m in PLAN.cost_models()] or [0]),
    threads: 1
    shell:
        "python -m benchmarks.cost --manifest {params.manifest} --out-csv {output.csv} --out-md {output.md} --device \"$DIFFMD_DEVICE\" --threads {threads} > {log} 2>&1"


# What the paper-scale run costs a GPU (issue 21). benchmarks/launches.py counts, at the paper's model sizes, the
# dispatched ops, host syncs and FLOPs of every learned model's training step, network evaluation and rollout step,
# eager and captured (results/tables/launches.{csv,md}; the counts do not depend on the device, so a CPU job);
# benchmarks/paper_cost.py prices them with the assumed H200 constants (benchmarks/devices/h200_assumed.json) times
# the paper DAG's work: GPU-hours per rule, the total and the wall clock on one 8-core + 1-GPU box. Every profile.
rule launches:
    conda:
        "../../envs/workflow.yaml"
    output:
        csv="results/tables/launches.csv",
        md="results/tables/launches.md",
        units="results/tables/launch_units.json",
    log:
        "results/logs/cost/launches.log",
    benchmark:
        "results/benchmarks/cost/launches.tsv"
    threads: 1
    shell:
        "python -m benchmarks.launches --threads {threads} --out-csv {output.csv} --out-md {output.md} --units-out {output.units} > {log} 2>&1"


rule paper_cost:
    conda:
        "../../envs/workflow.yaml"
    input:
        "results/tables/launch_units.json",
    output:
        csv="results/tables/paper_cost.csv",
        md="results/tables/paper_cost.md",
    log:
        "results/logs/cost/paper_cost.log",
    benchmark:
        "results/benchmarks/cost/paper_cost.tsv"
    threads: 1
    shell:
        "python -m benchmarks.paper_cost --units-in {input} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
