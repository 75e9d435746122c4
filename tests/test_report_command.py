"""The README's report command builds the report for real after a finished quick-profile run (issue 26 row 1).

Before, ``snakemake --workflow-profile profiles/quick --report results/report.html`` stopped with
``FileNotFoundError: 'config.yaml'``: the Snakefile's ``configfile:`` was relative and the profile moves the
working directory to runs/quick, where Snakemake's report reads every config file again.

Here, in a throw-away copy of the workflow whose quick profile also reads a tiny config (one molecule, a few
hundred GFN2-xTB frames, the two reference models, MD17 only: about 20 jobs), the README's quick command
runs as printed (with ``--cores 2``), then the README's report command exactly as printed.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from doc_commands import all_commands
from workflow_copy import TINY_CONFIG, job_logs, make_workdir, workflow_env

pytestmark = pytest.mark.slow


def _readme_quick_commands() -> tuple[list[str], list[str]]:
    """The README's quick-profile run and report commands (program dropped)."""
    quick = [c.tokens[1:] for c in all_commands() if c.where.startswith("README.md") and c.program == "snakemake"
             and c.tokens[1:3] == ["--workflow-profile", "profiles/quick"]]  # fmt: skip
    run = next(t for t in quick if len(t) == 2)
    report = next(t for t in quick if "--report" in t)
    return run, report


def test_readme_report_command_builds_the_report_of_a_finished_quick_run(tmp_path):
    run, report = _readme_quick_commands()
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["models"] = ["static", "constant_velocity"]
    cfg["datasets"] = ["md17"]
    cfg["rollout"] = {"horizon": 40, "n_starts": 2, "start_horizon_fs": 5.0, "horizons_fs": [1.0, 5.0],
                      "one_step_frames": 20, "energy_frames": 1}  # fmt: skip
    wd = make_workdir(tmp_path / "wf", cfg)
    profile = wd / "profiles" / "quick" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    settings["configfile"] = ["config/quick.yaml", "tiny.yaml", "profiles/quick/root.yaml"]  # the tiny run, quick root
    profile.write_text(yaml.safe_dump(settings))

    def snakemake(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=wd, env=workflow_env(),
                              capture_output=True, text=True, timeout=900)  # fmt: skip

    done = snakemake([*run, "--cores", "2"])
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{job_logs(wd / 'runs' / 'quick')}"
    built = snakemake(report)
    assert built.returncode == 0, f"{' '.join(report)}:\n{built.stderr[-3000:]}"
    page = wd / "runs" / "quick" / report[report.index("--report") + 1]
    assert page.is_file() and page.stat().st_size > 100_000
    text = page.read_text(encoding="utf-8", errors="replace")
    for item in ("table1_md17.html", "one_step_md17.html", "validity_md17.html", "paper_cost.html",
                 "armse_curves_md17.png", "snapshots_md17_ethanol.png", "learning_curves_md17.png",
                 "simulation_md17.html", "survival_md17.png"):  # fmt: skip
        assert item in text, f"the report lacks {item}"
