"""GPU requests: a job holds a GPU slot only when it uses CUDA (issue 21): every training and rollout job of a
learned model (the engine's train/rollout, the tuned models' grid training and validation, the cost benchmark's
training and rollouts) asks for gpu=1, decided by the plan from the registry (Plan.gpu); the CPU rows (static,
constant velocity, the force floor, physics oracles and the ensemble reference, sGDML, ASE calculators) and every
other job ask for none. With
``--resources gpu=1`` a workstation runs one GPU job at a time, the default profile several (slots), and the SLURM
plugin turns gpu=1 into --gpus=1."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from workflow_copy import make_workdir, workflow_env

pytestmark = pytest.mark.slow

#: rollout_simulate: the rollout job of a run that simulates too (workflow/rules/simulation.smk; the ensemble job is
#: a CPU row's)
GPU_RULES = {"train", "rollout", "diffmd_train_point", "diffmd_validate", "diffmd_rung", "cost_train_strided",
             "cost_md17", "rollout_simulate"}
#: Models whose jobs run on the CPU (registry.uses_accelerator False): they never hold a GPU.
CPU_ROWS = {"static", "constant_velocity", "force_verlet", "xtb_nve", "xtb_nh", "xtb_langevin", "sgdml",
            "ase_calculator"}
BLOCK = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n)*)", re.MULTILINE)


def dry_run_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources + the ``model`` wildcard) of every job block in ``snakemake -n`` output."""
    jobs = []
    for rule, body in BLOCK.findall(text):
        res = re.search(r"^\s+resources: (.*)$", body, re.MULTILINE)
        items = [kv.split("=", 1) for kv in res.group(1).split(", ")] if res else []
        out = {kv[0].strip(): kv[1].strip() for kv in items if len(kv) == 2}
        model = re.search(r"^\s+wildcards: .*\bmodel=([\w]+)", body, re.MULTILINE)
        if model:
            out["model"] = model.group(1)
        jobs.append((rule, out))
    return jobs


def check_gpu_requests(jobs: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Problems: a learned model's training or rollout job without gpu=1, a CPU row's or any other job asking for
    a GPU."""
    bad = []
    for rule, res in jobs:
        gpu = res.get("gpu")
        wanted = rule in GPU_RULES and res.get("model") not in CPU_ROWS
        label = f"{rule} {res.get('model', '')}".strip()
        if wanted and gpu != "1":
            bad.append(f"{label}: gpu={gpu} (expected 1)")
        elif not wanted and gpu not in (None, "0"):
            bad.append(f"{label}: asks for gpu={gpu}")
    return bad


def _dry_run(workdir, *config_args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "8", "--resources", "gpu=1",
                           *config_args], cwd=workdir, env=workflow_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_cpu_rows_are_the_registrys_cpu_models():
    """A newly registered model lands on one side on purpose: CPU_ROWS above is the registry's CPU side."""
    from diffmd.registry import available_models, get_model_class, uses_accelerator

    assert {m for m in available_models() if not uses_accelerator(get_model_class(m))} == CPU_ROWS


def test_parser_sees_gpu_and_non_gpu_jobs():
    text = ("rule train:\n    input: a\n    resources: tmpdir=<TBD>, mem_mb=1000, gpu=1\n\n"
            "rule evaluate:\n    resources: tmpdir=<TBD>\n\n"
            "checkpoint split_c7o2h10:\n    output: x\n\nrule rollout:\n    resources: tmpdir=<TBD>\n")
    jobs = dry_run_jobs(text)
    assert [r for r, _ in jobs] == ["train", "evaluate", "split_c7o2h10", "rollout"]
    assert check_gpu_requests(jobs) == ["rollout: gpu=None (expected 1)"]
    assert check_gpu_requests([("evaluate", {"gpu": "1"})]) == ["evaluate: asks for gpu=1"]
    assert check_gpu_requests([("train", {"gpu": "1", "model": "static"})]) == ["train static: asks for gpu=1"]
    assert check_gpu_requests([("train", {"gpu": "0", "model": "sgdml"}), ("train", {"gpu": "1", "model": "egnn"})]) \
        == []  # fmt: skip


@pytest.mark.parametrize("config_args", [("--configfile", "config/quick.yaml"), ()], ids=["quick", "paper"])
def test_every_train_and_rollout_job_and_nothing_else_asks_for_the_gpu(tmp_path, config_args):
    workdir = make_workdir(tmp_path / "wf")
    jobs = dry_run_jobs(_dry_run(workdir, *config_args))
    rules = {r for r, _ in jobs}
    rollouts = ("rollout", "rollout_simulate")  # a run that simulates rolls out in rollout_simulate
    assert {"train", "evaluate"} <= rules and rules & set(rollouts), sorted(rules)
    assert sum(r == "train" for r, _ in jobs) >= 2 and sum(r in rollouts for r, _ in jobs) >= 2
    assert check_gpu_requests(jobs) == []
    # the CPU rows are there, on the CPU
    assert {res.get("model") for r, res in jobs if r in rollouts and res.get("gpu") in (None, "0")} & CPU_ROWS


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
