# Data layer (diffmd/data): raw sources -> canonical trajectories -> split files.
# Each rule is one line of the diffmd.data command line. Formats: docs/ARCHITECTURE.md ("Data files").
#   data/md17/{molecule}.npz             MD17 trajectory (download, local or GFN2-xTB)
#   data/md17/{molecule}.report.{csv,md} its equilibrium: per-bond-type temperature and spread vs rMD17 DFT
#   data/c7o2h10/{isomer}.npz + index.json   C7O2H10 isomers (iso<ID> downloaded, xtb01... simulated)
#   data/splits/md17/{molecule}.json     S2L split;  data/splits/c7o2h10.json   O2O split


rule md17_trajectory:
    conda:
        "../../envs/workflow.yaml"
    output:
        "data/md17/{molecule}.npz",
    log:
        "results/logs/md17_trajectory/{molecule}.log",
    benchmark:
        "results/benchmarks/md17_trajectory/{molecule}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
    params:
        source=PLAN.source("md17"),
        cfg=arg(PLAN.source_settings("md17")),
    threads: 1
    shell:
        "python -m diffmd.data md17 --molecule {wildcards.molecule} --source {params.source} --config-json {params.cfg} --threads {threads} --out {output} > {log} 2>&1"


rule md17_report:
    conda:
        "../../envs/workflow.yaml"
    input:
        "data/md17/{molecule}.npz",
    output:
        csv="data/md17/{molecule}.report.csv",
        md="data/md17/{molecule}.report.md",
    log:
        "results/logs/md17_report/{molecule}.log",
    benchmark:
        "results/benchmarks/md17_report/{molecule}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
    shell:
        "python -m diffmd.data.equilibrium --trajectory {input} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule xtb_isomer:
    conda:
        "../../envs/workflow.yaml"
    output:
        "data/c7o2h10/{isomer}.npz",
    log:
        "results/logs/xtb_isomer/{isomer}.log",
    benchmark:
        "results/benchmarks/xtb_isomer/{isomer}.tsv"
    wildcard_constraints:
        isomer=r"xtb\d\d",
    params:
        cfg=arg(PLAN.source_settings("c7o2h10")),
    threads: 1
    shell:
        "python -m diffmd.data xtb-isomer --name {wildcards.isomer} --config-json {params.cfg} --threads {threads} --out {output} > {log} 2>&1"


rule c7o2h10_index:
    conda:
        "../../envs/workflow.yaml"
    input:
        expand("data/c7o2h10/{isomer}.npz", isomer=PLAN.static_isomers()),
    output:
        C7O2H10_INDEX,
    log:
        "results/logs/c7o2h10_index/c7o2h10.log",
    benchmark:
        "results/benchmarks/c7o2h10_index/c7o2h10.tsv"
    params:
        source=PLAN.source("c7o2h10"),
        cfg=arg(PLAN.source_settings("c7o2h10")),
    threads: 1
    shell:
        "python -m diffmd.data c7o2h10 --source {params.source} --config-json {params.cfg} --out-dir data/c7o2h10 > {log} 2>&1"


rule split_md17:
    conda:
        "../../envs/workflow.yaml"
    input:
        "data/md17/{molecule}.npz",
    output:
        "data/splits/md17/{molecule}.json",
    log:
        "results/logs/split_md17/{molecule}.log",
    benchmark:
        "results/benchmarks/split_md17/{molecule}.tsv"
    wildcard_constraints:
        molecule="|".join(MD17_MOLECULES),
    params:
        cfg=arg(PLAN.split_config("md17")),
    shell:
        "python -m diffmd.data split-md17 --trajectory {input} --config-json {params.cfg} --out {output} > {log} 2>&1"


checkpoint split_c7o2h10:
    conda:
        "../../envs/workflow.yaml"
    input:
        C7O2H10_INDEX,
    output:
        C7O2H10_SPLIT,
    log:
        "results/logs/split_c7o2h10/c7o2h10.log",
    benchmark:
        "results/benchmarks/split_c7o2h10/c7o2h10.tsv"
    params:
        cfg=arg(PLAN.split_config("c7o2h10")),
    shell:
        "python -m diffmd.data split-c7o2h10 --index {input} --config-json {params.cfg} --out {output} > {log} 2>&1"

