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
        train=arg(PLAN.train_config()),
        out=subpath(output[0], parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {wildcards.model} --params {params.model_params} --train-config {params.train} --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


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
        gpu=1,
    threads: 1
    shell:
        "python -m benchmarks.cost --manifest {params.manifest} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"

