# Cost of simulated time (benchmarks/cost.py): wall seconds per simulated ps of the reference GFN2-xTB MD,
# of every trained model's rollout (static and constant_velocity excluded) and of Score Dynamics at the
# strides score_dynamics.cost_strides, measured in one job -> results/tables/cost_md17.{csv,md}.
#   results/md17/{molecule}/cost/score_dynamics/stride{k}/seed{seed}/model.pt   extra Score Dynamics strides
# (the stride equal to score_dynamics.stride.md17 reuses the table's own score_dynamics checkpoint).
#   snakemake --cores 2 results/tables/cost_md17.csv

SD_CFG = config.get("score_dynamics", {})
COST_STRIDES = [int(k) for k in SD_CFG.get("cost_strides", [])]
COST_MOLECULES = list(SD_CFG.get("cost_molecules", MD17_MOLECULES[:1]))
COST_SEED = min(SEEDS)
COST_EXCLUDED = ("static", "constant_velocity")
SD_MAIN_STRIDE = int(SD_CFG.get("stride", {}).get("md17", 1))
for _m in COST_MOLECULES:
    if _m not in MD17_MOLECULES:
        raise ValueError(f"config score_dynamics.cost_molecules: {_m!r} is not in data.md17.molecules")


rule cost_train_score_dynamics:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=lambda wildcards: md17_split(wildcards.molecule),
    output:
        "results/md17/{molecule}/cost/score_dynamics/stride{k}/seed{seed}/model.pt",
    log:
        "results/logs/cost/train_score_dynamics_{molecule}_stride{k}_seed{seed}.log",
    benchmark:
        "results/benchmarks/cost/train_score_dynamics_{molecule}_stride{k}_seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
        k=r"\d+",
    params:
        model_params=cost_train_params,
        train=lambda wildcards: as_json_arg(
            {**config["train"], "divergence_bound_A": config["rollout"].get("divergence_bound_A", 100.0)}
        ),
        out=subpath(output[0], parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model score_dynamics --params {params.model_params} --train-config {params.train} --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule cost_md17:
    conda:
        "../../envs/workflow.yaml"
    input:
        cost_inputs,
    output:
        csv="results/tables/cost_md17.csv",
        md="results/tables/cost_md17.md",
    log:
        "results/logs/cost/cost_md17.log",
    benchmark:
        "results/benchmarks/cost/cost_md17.tsv"
    params:
        manifest=cost_manifest,
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m benchmarks.cost --manifest {params.manifest} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


if COST_STRIDES or any(m not in COST_EXCLUDED for m in MODELS):
    ALL_TARGETS.append("results/tables/cost_md17.csv")
