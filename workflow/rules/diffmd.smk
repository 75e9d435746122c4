# DiffMD grid search (paper Table 3) -> the checkpoint the engine's rollout/evaluate rules consume.
#   results/{dataset}/{run}/diffmd/seed{seed}/grid/{point}/model.pt         one model per (sigma_s, a_bar, eta_sigma)
#   results/{dataset}/{run}/diffmd/seed{seed}/grid/{point}/val_eps{eps}.json  validation ARMSE per sampler eps
#   results/{dataset}/{run}/diffmd/seed{seed}/{model.pt,selection.json}       the best point, eps in its params
# {run} is the MD17 molecule (S2L) or "trained" (O2O, C7O2H10). Logic: diffmd/models/diffmd/tune.py.
from diffmd.models.diffmd.tune import fmt as diffmd_fmt
from diffmd.models.diffmd.tune import grid_points as diffmd_grid_points
from diffmd.models.diffmd.tune import point_params as diffmd_point_params

DIFFMD_GRID = config.get("diffmd", {}).get("grid", {})
DIFFMD_POINTS = list(diffmd_grid_points(DIFFMD_GRID)) if "diffmd" in MODELS else []
DIFFMD_EPS = [diffmd_fmt(e) for e in DIFFMD_GRID.get("eps", [])]
DIFFMD_RUNS = "|".join(MD17_MOLECULES + ["trained"])
# point names are s<sigma_s>_a<a_bar>_h<eta_sigma> (tune.point_name); unknown ones fail in diffmd_point_params
DIFFMD_POINT_PATTERN = r"s[0-9.e+-]+_a[0-9.e+-]+_h[0-9.e+-]+"


rule diffmd_train_point:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=diffmd_split,
    output:
        "results/{dataset}/{molecule}/diffmd/seed{seed}/grid/{point}/model.pt",
    log:
        "results/logs/diffmd_train_point/{dataset}/{molecule}/seed{seed}/{point}.log",
    benchmark:
        "results/benchmarks/diffmd_train_point/{dataset}/{molecule}/seed{seed}/{point}.tsv"
    wildcard_constraints:
        molecule=DIFFMD_RUNS,
        point=DIFFMD_POINT_PATTERN,
    params:
        model_params=diffmd_point_model_params,
        train=train_config,
        out=subpath(output[0], parent=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.engine.train --split {input.split} --model diffmd --params {params.model_params} --train-config {params.train} --seed {wildcards.seed} --out {params.out} > {log} 2>&1"


rule diffmd_validate:
    conda:
        "../../envs/workflow.yaml"
    input:
        split=diffmd_split,
        checkpoint="results/{dataset}/{molecule}/diffmd/seed{seed}/grid/{point}/model.pt",
    output:
        "results/{dataset}/{molecule}/diffmd/seed{seed}/grid/{point}/val_eps{eps}.json",
    log:
        "results/logs/diffmd_validate/{dataset}/{molecule}/seed{seed}/{point}/eps{eps}.log",
    benchmark:
        "results/benchmarks/diffmd_validate/{dataset}/{molecule}/seed{seed}/{point}/eps{eps}.tsv"
    wildcard_constraints:
        molecule=DIFFMD_RUNS,
        point=DIFFMD_POINT_PATTERN,
        eps=r"[0-9.e+-]+",
    params:
        train=train_config,
    resources:
        gpu=1,
    threads: 1
    shell:
        "python -m diffmd.models.diffmd.tune validate --split {input.split} --checkpoint {input.checkpoint} --eps {wildcards.eps} --train-config {params.train} --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule diffmd_select:
    conda:
        "../../envs/workflow.yaml"
    input:
        diffmd_validations,
    output:
        model="results/{dataset}/{molecule}/diffmd/seed{seed}/model.pt",
        selection="results/{dataset}/{molecule}/diffmd/seed{seed}/selection.json",
    log:
        "results/logs/diffmd_select/{dataset}/{molecule}/seed{seed}.log",
    benchmark:
        "results/benchmarks/diffmd_select/{dataset}/{molecule}/seed{seed}.tsv"
    wildcard_constraints:
        molecule=DIFFMD_RUNS,
    params:
        grid=as_json_arg(DIFFMD_GRID),
        grid_dir=diffmd_grid_dir,
    threads: 1
    shell:
        "python -m diffmd.models.diffmd.tune select --grid-dir {params.grid_dir} --grid {params.grid} --out-model {output.model} --out-selection {output.selection} > {log} 2>&1"
