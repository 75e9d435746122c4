# DiffMD grid search (paper Table 3) -> the checkpoint the engine's rollout/evaluate rules consume.
#   results/{dataset}/{run}/diffmd/seed{seed}/grid/{point}/model.pt         one model per (sigma_s, a_bar, eta_sigma)
#   results/{dataset}/{run}/diffmd/seed{seed}/grid/{point}/val_eps{eps}.json  validation ARMSE per sampler eps
#   results/{dataset}/{run}/diffmd/seed{seed}/{model.pt,selection.json}       the best point, eps in its params
# {run} is the MD17 molecule (S2L) or "trained" (O2O, C7O2H10). Logic: diffmd/models/diffmd/tune.py.
# Tuned models are asked from the plan (PLAN.tuned_models("diffmd_grid")); none -> no grid jobs.
GRID_MODELS = PLAN.tuned_models("diffmd_grid")
# point names are s<sigma_s>_a<a_bar>_h<eta_sigma> (plan.point_name); unknown ones fail in PLAN.point_params
DIFFMD_POINT_PATTERN = r"s[0-9.e+-]+_a[0-9.e+-]+_h[0-9.e+-]+"


rule diffmd_train_point:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=PLAN.split_of,
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/grid/{point}/model.pt",
    log:
        "results/logs/diffmd_train_point/{dataset}/{molecule}/{model}/seed{seed}/{point}.log",
    benchmark:
        "results/benchmarks/diffmd_train_point/{dataset}/{molecule}/{model}/seed{seed}/{point}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
        point=DIFFMD_POINT_PATTERN,
    params:
        model_params=PLAN.grid_point_arg,
        train=arg(PLAN.train_config()),
        out=subpath(output[0], parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {wildcards.model} --params {params.model_params} --train-config {params.train} --seed {wildcards.seed} --out {params.out} > {log} 2>&1"


rule diffmd_validate:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=PLAN.split_of,
        checkpoint="results/{dataset}/{molecule}/{model}/seed{seed}/grid/{point}/model.pt",
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/grid/{point}/val_eps{eps}.json",
    log:
        "results/logs/diffmd_validate/{dataset}/{molecule}/{model}/seed{seed}/{point}/eps{eps}.log",
    benchmark:
        "results/benchmarks/diffmd_validate/{dataset}/{molecule}/{model}/seed{seed}/{point}/eps{eps}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
        point=DIFFMD_POINT_PATTERN,
        eps=r"[0-9.e+-]+",
    params:
        train=arg(PLAN.train_config()),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.models.diffmd.tune validate --split {input.split} --checkpoint {input.checkpoint} --eps {wildcards.eps} --train-config {params.train} --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule diffmd_select:
    conda:
        "../../envs/workflow.yaml"
    input:
        PLAN.grid_validations,
    output:
        model="results/{dataset}/{molecule}/{model}/seed{seed}/model.pt",
        selection="results/{dataset}/{molecule}/{model}/seed{seed}/selection.json",
    log:
        "results/logs/diffmd_select/{dataset}/{molecule}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/diffmd_select/{dataset}/{molecule}/{model}/seed{seed}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
    params:
        grid=arg(PLAN.grid()),
        grid_dir=PLAN.grid_dir,
    threads: 1
    shell:
        "python -m diffmd.models.diffmd.tune select --grid-dir {params.grid_dir} --grid {params.grid} --out-model {output.model} --out-selection {output.selection} > {log} 2>&1"
