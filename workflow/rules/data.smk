# Data layer (diffmd/data): raw sources -> canonical trajectories -> split files.
# Each rule is one `python -m diffmd.data <command>` line. Formats: docs/ARCHITECTURE.md ("Data files").
#   data/md17/{molecule}.npz             MD17 trajectory (download, local or GFN2-xTB)
#   data/c7o2h10/{isomer}.npz + index.json   C7O2H10 isomers (iso<ID> downloaded, xtb01... simulated)
#   data/splits/md17/{molecule}.json     S2L split;  data/splits/c7o2h10.json   O2O split
# Helpers for other rule files: c7o2h10_isomers(), c7o2h10_targets(), C7O2H10_SPLIT, md17_split().

DATA = config["data"]
SPLITS = config["splits"]
MD17_SOURCE = DATA["md17"]["source"]
C7O2H10_SOURCE = DATA["c7o2h10"]["source"]
C7O2H10_INDEX = "data/c7o2h10/index.json"
C7O2H10_SPLIT = "data/splits/c7o2h10.json"
C7O2H10_CONFIG_TARGETS = list(SPLITS["c7o2h10"].get("targets") or [])


XTB_ISOMERS = _xtb_isomer_names() if C7O2H10_SOURCE == "xtb" else []
if XTB_ISOMERS and C7O2H10_CONFIG_TARGETS and not set(C7O2H10_CONFIG_TARGETS) <= set(XTB_ISOMERS):
    raise ValueError(
        f"splits.c7o2h10.targets {C7O2H10_CONFIG_TARGETS} are not simulated isomers ({XTB_ISOMERS[0]}.."
        f"{XTB_ISOMERS[-1]}) with data.c7o2h10.source: xtb; name xtb isomers or use targets: []"
    )


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
        source=MD17_SOURCE,
        cfg=source_settings("md17"),
    threads: 1
    shell:
        "python -m diffmd.data md17 --molecule {wildcards.molecule} --source {params.source} --config-json {params.cfg} --threads {threads} --out {output} > {log} 2>&1"


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
        cfg=source_settings("c7o2h10"),
    threads: 1
    shell:
        "python -m diffmd.data xtb-isomer --name {wildcards.isomer} --config-json {params.cfg} --threads {threads} --out {output} > {log} 2>&1"


rule c7o2h10_index:
    conda:
        "../../envs/workflow.yaml"
    input:
        xtb_isomer_trajectories,
    output:
        C7O2H10_INDEX,
    log:
        "results/logs/c7o2h10_index/c7o2h10.log",
    benchmark:
        "results/benchmarks/c7o2h10_index/c7o2h10.tsv"
    params:
        source=C7O2H10_SOURCE,
        cfg=source_settings("c7o2h10"),
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
        cfg=as_json_arg(SPLITS["md17"]),
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
        cfg=as_json_arg({**SPLITS["c7o2h10"], "history_frames": o2o_history_frames()}),
    shell:
        "python -m diffmd.data split-c7o2h10 --index {input} --config-json {params.cfg} --out {output} > {log} 2>&1"


ALL_TARGETS.extend(expand("data/md17/{molecule}.npz", molecule=MD17_MOLECULES))
ALL_TARGETS.extend(md17_split(m) for m in MD17_MOLECULES)
ALL_TARGETS.extend([C7O2H10_INDEX, C7O2H10_SPLIT])
