"""GPU requests: with ``--resources gpu=1`` a workstation runs one GPU job at a time, and the SLURM
plugin turns ``gpu=1`` into ``--gpus=1``. A dry run of the quick profile and of the paper config must
show gpu=1 on every training and rollout job (the engine's train/rollout, DiffMD's grid training and
validation rollouts, the cost benchmark's training and rollouts) and on no other job."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from workflow_copy import make_workdir, workflow_env

pytestmark = pytest.mark.slow

GPU_RULES = {"train", "rollout", "diffmd_train_point", "diffmd_validate", "diffmd_rung", "cost_train_strided",
             "paper_cost", "cost_md17"}
BLOCK = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n)*)", re.MULTILINE)


def dry_run_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job block in ``snakemake -n`` output."""
    jobs = []
    for rule, body in BLOCK.findall(text):
        res = re.search(r"^\s+resources: (.*)$", body, re.MULTILINE)
        items = [kv.split("=", 1) for kv in res.group(1).split(", ")] if res else []
        jobs.append((rule, {kv[0].strip(): kv[1].strip() for kv in items if len(kv) == 2}))
    return jobs


def check_gpu_requests(jobs: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Problems: a GPU rule's job without gpu=1, or any other job asking for a GPU."""
    bad = []
    for rule, res in jobs:
        gpu = res.get("gpu")
        if rule in GPU_RULES and gpu != "1":
            bad.append(f"{rule}: gpu={gpu} (expected 1)")
        elif rule not in GPU_RULES and gpu not in (None, "0"):
            bad.append(f"{rule}: asks for gpu={gpu}")
    return bad


def _dry_run(workdir, *config_args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "8", "--resources", "gpu=1",
                           *config_args], cwd=workdir, env=workflow_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_parser_sees_gpu_and_non_gpu_jobs():
    text = ("rule train:\n    input: a\n    resources: tmpdir=<TBD>, mem_mb=1000, gpu=1\n\n"
            "rule evaluate:\n    resources: tmpdir=<TBD>\n\n"
            "checkpoint split_c7o2h10:\n    output: x\n\nrule rollout:\n    resources: tmpdir=<TBD>\n")
    jobs = dry_run_jobs(text)
    assert [r for r, _ in jobs] == ["train", "evaluate", "split_c7o2h10", "rollout"]
    assert check_gpu_requests(jobs) == ["rollout: gpu=None (expected 1)"]
    assert check_gpu_requests([("evaluate", {"gpu": "1"})]) == ["evaluate: asks for gpu=1"]


@pytest.mark.parametrize("config_args", [("--configfile", "config/quick.yaml"), ()], ids=["quick", "paper"])
def test_every_train_and_rollout_job_and_nothing_else_asks_for_the_gpu(tmp_path, config_args):
    workdir = make_workdir(tmp_path / "wf")
    jobs = dry_run_jobs(_dry_run(workdir, *config_args))
    rules = {r for r, _ in jobs}
    assert {"train", "rollout", "evaluate"} <= rules, sorted(rules)
    assert sum(r == "train" for r, _ in jobs) >= 2 and sum(r == "rollout" for r, _ in jobs) >= 2
    assert check_gpu_requests(jobs) == []


def test_slurm_profile_sizes_every_job(tmp_path):
    """Dry run through profiles/slurm (no cluster needed): its set-resources reach the jobs, every job
    has a runtime and memory request, and the GPU requests are unchanged."""
    workdir = make_workdir(tmp_path / "wf")
    jobs = dry_run_jobs(_dry_run(workdir, "--profile", "profiles/slurm", "--configfile", "config/quick.yaml"))
    assert check_gpu_requests(jobs) == []
    by_rule = {}
    for rule, res in jobs:
        if rule == "all":
            continue
        assert res.get("runtime") and res.get("mem_mb"), f"{rule}: {res}"
        by_rule.setdefault(rule, res)
    assert (by_rule["train"]["runtime"], by_rule["train"]["mem_mb"], by_rule["train"]["cpus_per_task"]) == \
        ("1440", "32000", "4")
    assert (by_rule["rollout"]["runtime"], by_rule["rollout"]["mem_mb"]) == ("360", "16000")
    assert (by_rule["evaluate"]["runtime"], by_rule["evaluate"]["mem_mb"]) == ("60", "4000")
