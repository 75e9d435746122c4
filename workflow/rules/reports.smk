# Reports (diffmd/reports): the ARMSE tables (Table 1, Table 2: paper column + horizon-resolved ARMSE),
# the one-step and distribution tables (issue 12), the paper side by side, physical validity, the
# snapshot figures (the paper's Fig. 4), ARMSE/RMSD curves in fs, h(r) figures and the costs table.
# The yardstick tables' CSVs are long format; their Markdown and HTML are rendered from them.
# Each rule is one line of the diffmd.reports command line; outputs are report() items, so
#   snakemake --report results/report.html                            (paper config, repository root)
#   snakemake --workflow-profile profiles/quick --report results/report.html   (quick profile: runs/quick/results/)
# builds one browsable page with every table (the benchmarks' cost_md17 and paper_cost through their HTML
# twins below) and figure. Run paths come from docs/ARCHITECTURE.md ("Result files");
# the C7O2H10 targets come from c7o2h10_targets() in data.smk.

SNAPSHOT_EVERY = PLAN.config["report"]["snapshot_every"]


rule aggregate:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        csv="results/tables/table{num}_{dataset}.csv",
        md="results/tables/table{num}_{dataset}.md",
        html=report("results/tables/table{num}_{dataset}.html", caption="../report/armse_table.rst",
                    category="Tables", subcategory="ARMSE"),
    params:
        na=PLAN.na_reasons_arg,
        models=PLAN.rows_arg(),
        columns=table_columns,
    log:
        "results/logs/aggregate/table{num}_{dataset}.log",
    benchmark:
        "results/benchmarks/aggregate/table{num}_{dataset}.tsv"
    wildcard_constraints:
        num="1|2",
    shell:
        "python -m diffmd.reports tables --inputs {input} --models {params.models} --na-reasons {params.na} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule one_step:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        csv="results/tables/one_step_{dataset}.csv",
        md="results/tables/one_step_{dataset}.md",
        html=report("results/tables/one_step_{dataset}.html", caption="../report/one_step.rst", category="Tables",
                    subcategory="One-step error"),
    params:
        na=PLAN.na_reasons_arg,
        models=PLAN.rows_arg(),
        columns=table_columns,
    log:
        "results/logs/one_step/{dataset}.log",
    benchmark:
        "results/benchmarks/one_step/{dataset}.tsv"
    shell:
        "python -m diffmd.reports one-step --inputs {input} --models {params.models} --na-reasons {params.na} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule distributions:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        csv="results/tables/distributions_{dataset}.csv",
        md="results/tables/distributions_{dataset}.md",
        html=report("results/tables/distributions_{dataset}.html", caption="../report/distributions.rst", category="Tables",
                    subcategory="Distributional fidelity"),
    params:
        na=PLAN.na_reasons_arg,
        models=PLAN.rows_arg(),
        columns=table_columns,
    log:
        "results/logs/distributions/{dataset}.log",
    benchmark:
        "results/benchmarks/distributions/{dataset}.tsv"
    shell:
        "python -m diffmd.reports distributions --inputs {input} --models {params.models} --na-reasons {params.na} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule paper_vs_ours:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        csv="results/tables/paper_vs_ours_{dataset}.csv",
        md="results/tables/paper_vs_ours_{dataset}.md",
        html=report("results/tables/paper_vs_ours_{dataset}.html", caption="../report/paper_vs_ours.rst",
                    category="Tables", subcategory="Paper vs ours"),
    params:
        models=PLAN.rows_arg(),
        columns=table_columns,
    log:
        "results/logs/paper_vs_ours/{dataset}.log",
    benchmark:
        "results/benchmarks/paper_vs_ours/{dataset}.tsv"
    shell:
        "python -m diffmd.reports paper --dataset {wildcards.dataset} --inputs {input} --models {params.models} --columns {params.columns} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule validity:
    conda:
        "../../envs/workflow.yaml"
    input:
        rollouts=dataset_rollouts,
        armse=dataset_armse,
    output:
        csv="results/tables/validity_{dataset}.csv",
        md="results/tables/validity_{dataset}.md",
        html=report("results/tables/validity_{dataset}.html", caption="../report/validity.rst",
                    category="Tables", subcategory="Physical validity"),
    params:
        models=PLAN.rows_arg(),
        validity=arg(PLAN.config["report"]["validity"]),
    log:
        "results/logs/validity/{dataset}.log",
    benchmark:
        "results/benchmarks/validity/{dataset}.tsv"
    shell:
        "python -m diffmd.reports validity --rollouts {input.rollouts} --params {params.validity} --models {params.models} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule snapshots:
    conda:
        "../../envs/workflow.yaml"
    input:
        rollouts=molecule_rollouts,
        armse=molecule_armse,
    output:
        png=report("results/figures/snapshots_{dataset}_{molecule}.png", caption="../report/snapshots.rst",
                   category="Figures", subcategory="Snapshots (Fig. 4)"),
        pdf=report("results/figures/snapshots_{dataset}_{molecule}.pdf", caption="../report/snapshots.rst",
                   category="Figures", subcategory="Snapshots (Fig. 4), PDF"),
    params:
        models=PLAN.rows_arg(),
        every=SNAPSHOT_EVERY,
        seed=PLAN.figure_seed(),
    log:
        "results/logs/snapshots/{dataset}_{molecule}.log",
    benchmark:
        "results/benchmarks/snapshots/{dataset}_{molecule}.tsv"
    shell:
        "python -m diffmd.reports snapshots --rollouts {input.rollouts} --every {params.every} --models {params.models} --title '{wildcards.dataset} / {wildcards.molecule}, seed {params.seed}' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule curves:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        png=report("results/figures/armse_curves_{dataset}.png", caption="../report/curves.rst",
                   category="Figures", subcategory="ARMSE curves"),
        pdf=report("results/figures/armse_curves_{dataset}.pdf", caption="../report/curves.rst",
                   category="Figures", subcategory="ARMSE curves, PDF"),
    params:
        models=PLAN.rows_arg(),
    log:
        "results/logs/curves/{dataset}.log",
    benchmark:
        "results/benchmarks/curves/{dataset}.tsv"
    shell:
        "python -m diffmd.reports curves --inputs {input} --models {params.models} --title 'ARMSE and RMSD against rollout time ({wildcards.dataset})' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule learning_curves:
    conda:
        "../../envs/workflow.yaml"
    input:
        PLAN.train_logs_of,
    output:
        png=report("results/figures/learning_curves_{dataset}.png", caption="../report/learning_curves.rst",
                   category="Figures", subcategory="Learning curves"),
        pdf=report("results/figures/learning_curves_{dataset}.pdf", caption="../report/learning_curves.rst",
                   category="Figures", subcategory="Learning curves, PDF"),
    params:
        models=PLAN.rows_arg(),
    log:
        "results/logs/learning_curves/{dataset}.log",
    benchmark:
        "results/benchmarks/learning_curves/{dataset}.tsv"
    shell:
        "python -m diffmd.reports learning-curves --inputs {input} --models {params.models} --title 'Learning curves ({wildcards.dataset})' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule hr_figure:
    conda:
        "../../envs/workflow.yaml"
    input:
        dataset_armse,
    output:
        png=report("results/figures/hr_{dataset}.png", caption="../report/hr.rst", category="Figures",
                   subcategory="h(r)"),
        pdf=report("results/figures/hr_{dataset}.pdf", caption="../report/hr.rst", category="Figures",
                   subcategory="h(r), PDF"),
    params:
        models=PLAN.rows_arg(),
    log:
        "results/logs/hr_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/hr_figure/{dataset}.tsv"
    shell:
        "python -m diffmd.reports hr --inputs {input} --models {params.models} --title 'h(r), ground truth against each model ({wildcards.dataset})' --png {output.png} --pdf {output.pdf} > {log} 2>&1"


# The costs table reads the benchmark TSVs of the training and rollout jobs, all declared inputs: the plan says
# which training jobs each run has (the train rule's, or each point of a grid search), the rules' own `benchmark:`
# patterns where their files are.
rule costs:
    conda:
        "../../envs/workflow.yaml"
    input:
        armse=all_armse,
        train=lambda w: PLAN.training_benchmarks({"train": rules.train.benchmark, "point": rules.diffmd_train_point.benchmark, "rung": rules.diffmd_rung.benchmark}),
        rollout=rollout_benchmarks,
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
        "python -m diffmd.reports costs --inputs {input.armse} --train-benchmarks {input.train} --rollout-benchmarks {input.rollout} --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"



# The cost benchmarks' tables (benchmarks.smk writes CSV and Markdown) as HTML pages in the report
# (PLAN.report_html_targets).
rule cost_md17_html:
    conda:
        "../../envs/workflow.yaml"
    input:
        "results/tables/cost_md17.md",
    output:
        report("results/tables/cost_md17.html", caption="../report/cost_md17.rst", category="Tables",
               subcategory="Cost of simulated time"),
    log:
        "results/logs/table_html/cost_md17.log",
    benchmark:
        "results/benchmarks/table_html/cost_md17.tsv"
    shell:
        "python -m diffmd.reports.html --md {input} --html {output} --title 'Cost of simulated time (MD17)' > {log} 2>&1"


rule paper_cost_html:
    conda:
        "../../envs/workflow.yaml"
    input:
        "results/tables/paper_cost.md",
    output:
        report("results/tables/paper_cost.html", caption="../report/paper_cost.rst", category="Tables",
               subcategory="Paper-scale cost"),
    log:
        "results/logs/table_html/paper_cost.log",
    benchmark:
        "results/benchmarks/table_html/paper_cost.tsv"
    shell:
        "python -m diffmd.reports.html --md {input} --html {output} --title 'Projected cost of the paper-scale run' > {log} 2>&1"
