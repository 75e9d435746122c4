# Simulations at the field's scale and proper scores (diffmd/engine/simulate.py, docs/simulation.md): every model
# that rolls out is run simulation.n_starts x simulation.length_fs from starts spread over the test segment (the
# engine's batched multi-start rollout), judged by survival under Fu et al.'s bond rule, temperatures, the
# reference potential's energy and pooled h(r)/W1; samples are scored against a physics ensemble.
#   results/{dataset}/{molecule}/simulation_ensemble/seed{seed}.npz     the reference ensemble (ensemble-role model)
#   results/{dataset}/{molecule}/{model}/seed{seed}/simulation.json    one model's simulations and scores
#   results/tables/simulation_{dataset}.{csv,md,html}, results/figures/survival_{dataset}.{png,pdf}
#   one model:  snakemake --cores 2 results/md17/aspirin/egnn/seed1/simulation.json   (its rollout job)


rule simulation_ensemble:
    conda:
        "../../envs/workflow.yaml"
    input:
        unpack(PLAN.ensemble_inputs),
    output:
        "results/{dataset}/{molecule}/simulation_ensemble/seed{seed}.npz",
    log:
        "results/logs/simulation_ensemble/{dataset}/{molecule}/seed{seed}.log",
    benchmark:
        "results/benchmarks/simulation_ensemble/{dataset}/{molecule}/seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join([*MD17_MOLECULES, ISOMER_PATTERN]),
    params:
        target=PLAN.rollout_target,
        cfg=PLAN.simulation_config_arg,
    resources:
        gpu=lambda w: PLAN.gpu(PLAN.ensemble_model(w.dataset)),
    threads: 1
    shell:
        "python -m diffmd.engine.simulate ensemble --split {input.split} --checkpoint {input.checkpoint} {params.target} --simulation-config {params.cfg} --seed {wildcards.seed} --threads {threads} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_ROLLOUT_COMPILE\" --out {output} > {log} 2>&1"


# The simulations run in the rollout job of the same run, after its rollout (diffmd.engine.rollout --simulation-out):
# one process start-up, CUDA context and capture for both (issue 23/25: the paper DAG's 117 separate simulation
# jobs cost ~1 GPU-hour of start-ups; the quick profile 14 start-ups). This rule replaces `rollout` (models.smk)
# for the runs that simulate (ruleorder below): a simulation setting reruns them, a yardstick horizon does not.
rule rollout_simulate:
    conda:
        "../../envs/workflow.yaml"
    input:
        unpack(PLAN.simulation_inputs),
    output:
        npz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.npz",
        xyz="results/{dataset}/{molecule}/{model}/seed{seed}/rollout.extxyz",
        ref_xyz="results/{dataset}/{molecule}/{model}/seed{seed}/reference.extxyz",
        simulation="results/{dataset}/{molecule}/{model}/seed{seed}/simulation.json",
    log:
        "results/logs/rollout_simulate/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        # the rollout's benchmark (the costs table reads it there)
        "results/benchmarks/rollout/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        dataset="|".join(PLAN.simulation_datasets()) or "^$",
        molecule="|".join([*MD17_MOLECULES, ISOMER_PATTERN]),
        model="|".join(sorted({m for d in PLAN.simulation_datasets() for m in PLAN.simulation_models(d)})) or "^$",
    params:
        target=PLAN.rollout_target,
        cfg=PLAN.rollout_arg,
        sim_cfg=PLAN.simulation_config_arg,
        ensemble=PLAN.ensemble_arg,
        meta=PLAN.run_meta,
        out=subpath(output.npz, parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.rollout --split {input.split} --checkpoint {input.checkpoint} {params.target} --rollout-config {params.cfg} --seed {wildcards.seed} --threads {threads} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_ROLLOUT_COMPILE\" --out {params.out} --simulation-config {params.sim_cfg} {params.ensemble} --meta {params.meta} --simulation-out {output.simulation} > {log} 2>&1"


ruleorder: rollout_simulate > rollout


rule simulation_table:
    conda:
        "../../envs/workflow.yaml"
    input:
        lambda w: PLAN.simulation_files(w.dataset, test_columns(w.dataset)),
    output:
        csv="results/tables/simulation_{dataset}.csv",
        md="results/tables/simulation_{dataset}.md",
        html=report("results/tables/simulation_{dataset}.html", caption="../report/simulation.rst", category="Tables",
                    subcategory="Simulations"),
        png=report("results/figures/survival_{dataset}.png", caption="../report/simulation.rst", category="Figures",
                   subcategory="Survival"),
        pdf="results/figures/survival_{dataset}.pdf",
    params:
        na=PLAN.na_reasons_arg,
        models=PLAN.rows_arg(),
        columns=table_columns,
    log:
        "results/logs/simulation_table/{dataset}.log",
    benchmark:
        "results/benchmarks/simulation_table/{dataset}.tsv"
    shell:
        "python -m diffmd.reports simulation --inputs {input} --models {params.models} --na-reasons {params.na} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} --png {output.png} --pdf {output.pdf} > {log} 2>&1"
