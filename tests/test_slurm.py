"""The SLURM profile on a real one-node SLURM cluster (slurmctld + slurmd + munged on 127.0.0.1).

The fixture installs Debian's slurm-wlm and munge when they are missing (root + apt-get; the test is
skipped, with the reason, only when they cannot be installed), starts the cluster with
tests/slurm/start_cluster.sh and always stops it with tests/slurm/stop_cluster.sh. No slurmdbd: the
plugin is told to query job states with squeue (``--slurm-status-command squeue``; MinJobAge=600 keeps
finished jobs visible). The node advertises one GRES gpu slot (File=/dev/null) so GPU rules, which
the plugin submits with ``--gpus=1``, are scheduled on a CPU machine.

The test runs the tiny quick-profile config's chain md17_trajectory -> split_md17 -> train -> rollout_simulate
(the rollout with its simulation) -> evaluate locally, then the engine's part (train -> rollout_simulate ->
evaluate, three SLURM jobs) from the
same data through ``snakemake --profile profiles/slurm``, and checks equal outputs; each SLURM job
must have COMPLETED and ask for a GPU exactly when its rule is a GPU rule.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from workflow_copy import REPO, job_logs, make_workdir, run_snakemake, workflow_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPTS = REPO / "tests" / "slurm"
TARGET = "results/md17/ethanol/constant_velocity/seed1/armse.json"
SPLIT = "data/splits/md17/ethanol.json"
RUN_DIR = "results/md17/ethanol/constant_velocity/seed1"
#: Rules whose jobs ask SLURM for a GPU in this chain: none, since constant velocity runs on the CPU (Plan.gpu,
#: issue 21: only a learned model's training and rollout hold one; tests/test_gpu_resources.py checks those).
GPU_RULES: set[str] = set()
# Small requests so the chain fits any CI machine (the profile's paper-scale sizes ask for 32 GB).
SMALL = ("--set-resources", "md17_trajectory:mem_mb=1000", "split_md17:mem_mb=1000", "train:mem_mb=1000",
         "train:cpus_per_task=1", "rollout:mem_mb=1000", "rollout:cpus_per_task=1", "rollout_simulate:mem_mb=1000",
         "rollout_simulate:cpus_per_task=1", "evaluate:mem_mb=1000",
         "--default-resources", "mem_mb=1000", "runtime=10", "cpus_per_task=1")


def _install_slurm() -> str | None:
    """Install slurm-wlm and munge with apt-get; return why not when that is impossible."""
    if all(shutil.which(x) for x in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")):
        return None
    if os.geteuid() != 0:
        return "slurm-wlm/munge are not installed and installing them needs root"
    if shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and apt-get is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` timed out"
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node cluster; yields the environment (SLURM_CONF) for clients."""
    reason = _install_slurm()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    root = tmp_path_factory.mktemp("slurm")
    ctld, slurmd = _free_ports(2)
    try:
        proc = subprocess.run([str(SCRIPTS / "start_cluster.sh"), str(root), str(ctld), str(slurmd)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode == 3:
            pytest.skip(f"not starting a test cluster: {proc.stderr.strip()}")
        assert proc.returncode == 0, f"start_cluster.sh failed:\n{proc.stdout}\n{proc.stderr}"
        yield {"SLURM_CONF": proc.stdout.strip().splitlines()[-1]}
    finally:
        subprocess.run([str(SCRIPTS / "stop_cluster.sh"), str(root)], capture_output=True, timeout=120)


def _slurm_jobs(stdout: str) -> dict[str, str]:
    """SLURM job id -> rule name, from the plugin's 'submitted with SLURM jobid' lines."""
    pat = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_([A-Za-z0-9_]+)/")
    return {m.group(1): m.group(2) for m in pat.finditer(stdout)}


def _scontrol(jobid: str, env: dict) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], env=workflow_env(env), capture_output=True,
                         text=True, timeout=30).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def _assert_same_results(local: Path, cluster: Path) -> None:
    """Checkpoint, rollout and ARMSE equal between the local and the SLURM run."""
    ra, rb = (np.load(d / RUN_DIR / "rollout.npz") for d in (local, cluster))
    for key in ("positions", "reference", "frame_indices", "diverged"):
        np.testing.assert_array_equal(ra[key], rb[key])
    ja, jb = (json.loads((d / TARGET).read_text()) for d in (local, cluster))
    for key in ("armse", "armse_unaligned", "rmsd_per_frame", "armse_curve", "n_frames", "diverged"):
        assert ja[key] == jb[key], key
    ca, cb = (torch.load(d / RUN_DIR / "model.pt", weights_only=False) for d in (local, cluster))
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for k in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][k], cb["state_dict"][k]), k
    for d in (local, cluster):
        assert (d / RUN_DIR / "provenance.json").is_file()


def test_profile_runs_a_chain_on_a_local_slurm_cluster(slurm_cluster, tmp_path):
    torch.set_num_threads(1)
    local = make_workdir(tmp_path / "local")
    run_snakemake(local, SPLIT)

    cluster = make_workdir(tmp_path / "cluster")
    # the data (a GFN2-xTB simulation and its split) is shared: the cluster runs the engine's jobs, while the
    # same chain runs locally beside it (the cluster run mostly waits on the plugin's status checks)
    shutil.copytree(local / "data", cluster / "data")
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(run_snakemake, local, TARGET)
        proc = run_snakemake(
            cluster, TARGET, env=slurm_cluster, timeout=420,
            profile_args=("--profile", "profiles/slurm", "--jobs", "2"),
            extra_args=("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                        "--retries", "0", *SMALL),
        )
        local_run.result()
    jobs = _slurm_jobs(proc.stdout + proc.stderr)
    # the tiny config simulates md17, so its rollout job is rollout_simulate (the simulation runs inside it)
    assert sorted(jobs.values()) == sorted(["train", "rollout_simulate", "evaluate"]), \
        f"{jobs}\n{job_logs(cluster)}"
    lines = []
    for jobid, rule in sorted(jobs.items(), key=lambda kv: int(kv[0])):
        info = _scontrol(jobid, slurm_cluster)
        lines.append(f"{jobid} {rule} JobState={info.get('JobState')} ExitCode={info.get('ExitCode')} "
                     f"RunTime={info.get('RunTime')} TRES={info.get('TRES')} "
                     f"TresPerJob={info.get('TresPerJob', '')} NodeList={info.get('NodeList')}")
        assert info.get("JobState") == "COMPLETED", lines[-1]
        asks_gpu = "gpu" in info.get("TresPerJob", "")
        assert asks_gpu == (rule in GPU_RULES), lines[-1]
    squeue = subprocess.run(["squeue", "--states=all", "-o", "%i|%j|%T|%M|%N"], env=workflow_env(slurm_cluster),
                            capture_output=True, text=True, timeout=30).stdout
    print("\nSLURM jobs (scontrol):\n" + "\n".join(lines) + "\nsqueue --states=all:\n" + squeue)
    _assert_same_results(local, cluster)
