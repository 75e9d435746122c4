# diffmd-bench: DiffMD (Wu & Li, AAAI 2023) against its baselines, end to end.
#   snakemake --cores 8 --resources gpu=1                      # the paper's settings
#   snakemake --cores 2 --configfile config/quick.yaml         # offline quick profile
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/diffmd.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/reports.smk"


rule all:
    default_target: True
    input:
        PLAN.static_targets(),
        c7o2h10_final_targets,
