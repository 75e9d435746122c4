# Grid search of the models tuned by "diffmd_grid" (DiffMD: paper Table 3; diffmd_corrected: kernel_scale) -> the
# checkpoint the engine's rollout/evaluate rules consume. Each model's grid is the config section named after it
# (diffmd.grid, diffmd_corrected.grid), its training keys declared by its class (plan.GridSpec); eps samples only.
# <model>.search (docs/paper_scale.md; PLAN.search(model): a grid smaller than halving.eta is searched in full):
#  full:
#   results/{dataset}/{run}/{model}/seed{seed}/grid/{point}/model.pt          one model per training point
#   results/{dataset}/{run}/{model}/seed{seed}/grid/{point}/validation.json   validation at every eps, one job
#  halving (successive halving, PLAN.halving_schedule):
#   .../grid/rung{r}/slot{j}/{model.pt,validation.json}   one job trains a slot's point r's epochs and validates it
#   .../grid/rung{r}/ranking.json                          the points rung r+1 trains (slot j = survivor j)
#  both:
#   results/{dataset}/{run}/{model}/seed{seed}/{model.pt,selection.json}        the best (point, eps)
# {run} is the MD17 molecule (S2L) or "trained" (O2O, C7O2H10). Logic: diffmd/engine/grid.py (any grid-tuned model).
# Tuned models are asked from the plan (PLAN.tuned_models("diffmd_grid")); none -> no grid jobs.
GRID_MODELS = PLAN.tuned_models("diffmd_grid")
# point names: s<sigma_s>_a<a_bar>_h<eta_sigma> (DiffMD), kernel_scale<value> (GridSpec.point_name); the pattern
# is every tuned model's points; a point of another model's grid fails in PLAN.point_params
GRID_POINT_PATTERN = PLAN.grid_point_pattern()


# ranking and selection read a few JSON files: run where Snakemake runs, never submitted to a cluster
localrules:
    diffmd_rank,
    diffmd_select,


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
        point=GRID_POINT_PATTERN,
    params:
        model_params=PLAN.grid_point_arg,
        train=PLAN.stage_arg("train"),
        out=subpath(output[0], parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model {wildcards.model} --params {params.model_params} --train-config {params.train} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_TRAIN_COMPILE\" --seed {wildcards.seed} --no-final-rollout --out {params.out} > {log} 2>&1"


rule diffmd_validate:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=PLAN.split_of,
        checkpoint="results/{dataset}/{molecule}/{model}/seed{seed}/grid/{point}/model.pt",
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/grid/{point}/validation.json",
    log:
        "results/logs/diffmd_validate/{dataset}/{molecule}/{model}/seed{seed}/{point}.log",
    benchmark:
        "results/benchmarks/diffmd_validate/{dataset}/{molecule}/{model}/seed{seed}/{point}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
        point=GRID_POINT_PATTERN,
    params:
        train=PLAN.stage_arg("train"),
        eps=PLAN.grid_eps_arg,
        batch=PLAN.batch_eps_arg,
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.grid validate --split {input.split} --checkpoint {input.checkpoint} --eps {params.eps} --train-config {params.train} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_TRAIN_COMPILE\" --seed {wildcards.seed} {params.batch} --out {output} > {log} 2>&1"


rule diffmd_rung:
    conda:
        "../../envs/workflow.yaml"
    input:
        unpack(PLAN.rung_inputs),
    output:
        model="results/{dataset}/{molecule}/{model}/seed{seed}/grid/rung{rung}/slot{slot}/model.pt",
        validation="results/{dataset}/{molecule}/{model}/seed{seed}/grid/rung{rung}/slot{slot}/validation.json",
    log:
        "results/logs/diffmd_rung/{dataset}/{molecule}/{model}/seed{seed}/rung{rung}_slot{slot}.log",
    benchmark:
        # under diffmd_train_point: the cost report sums a tuned model's trainings there (diffmd/reports/costs.py)
        "results/benchmarks/diffmd_train_point/{dataset}/{molecule}/{model}/seed{seed}/rung{rung}_slot{slot}.tsv"
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
        rung=r"\d+",
        slot=r"\d+",
    params:
        model_params=PLAN.model_params_arg,
        grid=PLAN.grid_arg,
        epochs=lambda w: PLAN.rung(w)["epochs"],
        ranking=lambda w, input: f"--ranking {input.ranking}" if "ranking" in input.keys() else "",
        train=PLAN.stage_arg("train"),
        batch=PLAN.batch_eps_arg,
        report=PLAN.report_rollout_arg,
        out=subpath(output.model, parent=True),
    resources:
        gpu=PLAN.gpu_of,
    threads: 1
    shell:
        "python -m diffmd.engine.grid train-slot --split {input.split} --model {wildcards.model} --params {params.model_params} --grid {params.grid} --slot {wildcards.slot} --epochs {params.epochs} {params.ranking} --train-config {params.train} --device \"$DIFFMD_DEVICE\" --compile \"$DIFFMD_TRAIN_COMPILE\" --seed {wildcards.seed} {params.batch} {params.report} --out-dir {params.out} > {log} 2>&1"


rule diffmd_rank:
    conda:
        "../../envs/workflow.yaml"
    input:
        PLAN.rung_validations,
    output:
        "results/{dataset}/{molecule}/{model}/seed{seed}/grid/rung{rung}/ranking.json",
    log:
        "results/logs/diffmd_rank/{dataset}/{molecule}/{model}/seed{seed}/rung{rung}.log",
    wildcard_constraints:
        molecule="|".join(PLAN.train_run_names()),
        model="|".join(GRID_MODELS) or "^$",
        rung=r"\d+",
    params:
        keep=PLAN.rung_keep,
    threads: 1
    shell:
        "python -m diffmd.engine.grid rank --validations {input} --keep {params.keep} --out {output} > {log} 2>&1"


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
        grid=PLAN.grid_arg,
    threads: 1
    shell:
        "python -m diffmd.engine.grid select --validations {input} --grid {params.grid} --out-model {output.model} --out-selection {output.selection} > {log} 2>&1"
