# Reports (diffmd/reports): the ARMSE tables (Table 1, Table 2), the paper side by side, physical
# validity, the snapshot figures (the paper's Fig. 4), ARMSE/RMSD curves and the costs table.
# Each rule is one `python -m diffmd.reports <command>` line; outputs are report() items, so
#   snakemake --report results/report.html
# builds one browsable page. Run paths come from docs/ARCHITECTURE.md ("Result files");
# the C7O2H10 targets come from c7o2h10_targets() in data.smk.

REPORT = config.get("report", {})
SNAPSHOT_EVERY = int(REPORT.get("snapshot_every", 800))
#: seed whose rollouts are drawn in the snapshot figures
FIGURE_SEED = min(SEEDS)
TABLE_NUMBER = {"md17": "1", "c7o2h10": "2"}


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


rule aggregate:
    input:
        dataset_armse,
    output:
        csv="results/tables/table{num}_{dataset}.csv",
        md="results/tables/table{num}_{dataset}.md",
        html=report("results/tables/table{num}_{dataset}.html", caption="../report/armse_table.rst",
                    category="Tables", subcategory="ARMSE"),
    params:
        models=" ".join(MODELS),
        columns=table_columns,
    log:
        "results/logs/aggregate/table{num}_{dataset}.log",
    benchmark:
        "results/benchmarks/aggregate/table{num}_{dataset}.tsv"
    wildcard_constraints:
        num="1|2",
    shell:
        "python -m diffmd.reports tables --inputs {input} --models {params.models} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule paper_vs_ours:
    input:
        dataset_armse,
    output:
        csv="results/tables/paper_vs_ours_{dataset}.csv",
        md="results/tables/paper_vs_ours_{dataset}.md",
        html=report("results/tables/paper_vs_ours_{dataset}.html", caption="../report/paper_vs_ours.rst",
                    category="Tables", subcategory="Paper vs ours"),
    params:
        models=" ".join(MODELS),
        columns=table_columns,
    log:
        "results/logs/paper_vs_ours/{dataset}.log",
    benchmark:
        "results/benchmarks/paper_vs_ours/{dataset}.tsv"
    shell:
        "python -m diffmd.reports paper --dataset {wildcards.dataset} --inputs {input} --models {params.models} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule validity:
    input:
        rollouts=dataset_rollouts,
        armse=dataset_armse,
    output:
        csv="results/tables/validity_{dataset}.csv",
        md="results/tables/validity_{dataset}.md",
        html=report("results/tables/validity_{dataset}.html", caption="../report/validity.rst",
                    category="Tables", subcategory="Physical validity"),
    params:
        models=" ".join(MODELS),
        validity=as_json_arg(REPORT.get("validity", {})),
    log:
        "results/logs/validity/{dataset}.log",
    benchmark:
        "results/benchmarks/validity/{dataset}.tsv"
    shell:
        "python -m diffmd.reports validity --rollouts {input.rollouts} --params {params.validity} --models {params.models} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule snapshots:
    input:
        rollouts=molecule_rollouts,
        armse=molecule_armse,
    output:
        png=report("results/figures/snapshots_{dataset}_{molecule}.png", caption="../report/snapshots.rst",
                   category="Figures", subcategory="Snapshots (Fig. 4)"),
        pdf=report("results/figures/snapshots_{dataset}_{molecule}.pdf", caption="../report/snapshots.rst",
                   category="Figures", subcategory="Snapshots (Fig. 4), PDF"),
    params:
        models=" ".join(MODELS),
        every=SNAPSHOT_EVERY,
        seed=FIGURE_SEED,
    log:
        "results/logs/snapshots/{dataset}_{molecule}.log",
    benchmark:
        "results/benchmarks/snapshots/{dataset}_{molecule}.tsv"
    shell:
        "python -m diffmd.reports snapshots --rollouts {input.rollouts} --every {params.every} --models {params.models} --title '{wildcards.dataset} / {wildcards.molecule}, seed {params.seed}' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule curves:
    input:
        dataset_armse,
    output:
        png=report("results/figures/armse_curves_{dataset}.png", caption="../report/curves.rst",
                   category="Figures", subcategory="ARMSE curves"),
        pdf=report("results/figures/armse_curves_{dataset}.pdf", caption="../report/curves.rst",
                   category="Figures", subcategory="ARMSE curves, PDF"),
    params:
        models=" ".join(MODELS),
    log:
        "results/logs/curves/{dataset}.log",
    benchmark:
        "results/benchmarks/curves/{dataset}.tsv"
    shell:
        "python -m diffmd.reports curves --inputs {input} --models {params.models} --title 'ARMSE and RMSD against rollout time ({wildcards.dataset})' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


def rollout_benchmarks(wildcards):
    """The benchmark TSV of every rollout job, from the rollout rule's own `benchmark:` pattern."""
    pattern = rules.rollout.benchmark
    md17 = expand(pattern, dataset="md17", molecule=MD17_MOLECULES, model=MODELS, seed=SEEDS)
    return md17 + expand(pattern, dataset="c7o2h10", molecule=c7o2h10_targets(), model=MODELS, seed=SEEDS)


# The costs table reads the rollout jobs' benchmark TSVs (declared inputs) and the training jobs'
# TSVs, which it finds under results/benchmarks: training is upstream of every rollout, and which
# rule trains which model (train, DiffMD's grid rules) is the engine's business, not this file's.
rule costs:
    input:
        armse=all_armse,
        benchmarks=rollout_benchmarks,
    output:
        csv="results/tables/costs.csv",
        md="results/tables/costs.md",
        html=report("results/tables/costs.html", caption="../report/costs.rst", category="Tables",
                    subcategory="Costs"),
    log:
        "results/logs/costs/costs.log",
    benchmark:
        "results/benchmarks/costs/costs.tsv"
    shell:
        "python -m diffmd.reports costs --inputs {input.armse} --benchmarks {input.benchmarks} --benchmark-dir results/benchmarks --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


ALL_TARGETS.extend(
    expand("results/tables/{name}.{ext}", name=["table1_md17", "table2_c7o2h10"], ext=["csv", "md", "html"])
    + expand(
        "results/tables/{kind}_{dataset}.{ext}",
        kind=["paper_vs_ours", "validity"],
        dataset=["md17", "c7o2h10"],
        ext=["csv", "md", "html"],
    )
    + expand("results/figures/armse_curves_{dataset}.png", dataset=["md17", "c7o2h10"])
    + expand("results/figures/snapshots_md17_{molecule}.png", molecule=MD17_MOLECULES)
    + ["results/tables/costs.csv", "results/tables/costs.md", "results/tables/costs.html"]
)
ALL_TARGETS.append(c7o2h10_snapshot_figures)
