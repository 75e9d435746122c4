"""Check that a dry run of the paper config lists the complete DAG.

Usage: python .ci/check_dryrun.py DRYRUN_OUTPUT.txt
Every (molecule, model) of Table 1 and every (target, model) of Table 2 must have an
evaluation job, and both tables must be built.
"""

import sys
from pathlib import Path

import yaml

text = Path(sys.argv[1]).read_text()
config = yaml.safe_load(Path("config.yaml").read_text())
missing = []
for seed in config["seeds"]:
    for model in config["models"]:
        for mol in config["data"]["md17"]["molecules"]:
            path = f"results/md17/{mol}/{model}/seed{seed}/armse.json"
            if path not in text:
                missing.append(path)
        for target in config["splits"]["c7o2h10"]["targets"]:
            path = f"results/c7o2h10/{target}/{model}/seed{seed}/armse.json"
            if path not in text:
                missing.append(path)
for table in ("results/tables/table1_md17.csv", "results/tables/table2_c7o2h10.csv"):
    if table not in text:
        missing.append(table)
if missing:
    print(f"dry run is missing {len(missing)} expected outputs, e.g.:", *missing[:10], sep="\n  ")
    sys.exit(1)
n = len(config["models"]) * (len(config["data"]["md17"]["molecules"]) + len(config["splits"]["c7o2h10"]["targets"]))
print(f"dry run lists all {n} evaluation jobs per seed and both tables")
