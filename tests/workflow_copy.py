"""Run the real Snakemake workflow in a throw-away copy of the repository (tests never touch results/).

Used by tests/test_slurm.py, tests/test_faults.py and tests/test_gpu_resources.py. A copy holds the
Snakefile, config.yaml, config/, workflow/ and profiles/ plus a tiny experiment config (TINY_CONFIG:
one MD17 molecule simulated with GFN2-xTB for a few hundred frames, 1-2 epochs) merged over
config/quick.yaml, so a train -> rollout -> evaluate chain takes seconds on one CPU core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "config", "workflow", "profiles", "envs")

TINY_CONFIG: dict = {
    "seeds": [1],
    "models": ["static", "constant_velocity", "egnn"],
    "data": {
        "md17": {
            "source": "xtb",
            "molecules": ["ethanol"],
            "xtb": {"temperature_K": 500.0, "dt_fs": 0.5, "n_frames": 320, "equilibration_steps": 20,
                    "friction_per_fs": 0.01, "seed": 1, "massive_langevin_steps": 40},
        },
        "c7o2h10": {
            "source": "xtb",
            "xtb": {"n_isomers": 2, "temperature_K": 100.0, "dt_fs": 1.0, "n_frames": 50,
                    "equilibration_steps": 10, "friction_per_fs": 0.01, "seed": 1, "massive_langevin_steps": 20},
        },
    },
    "splits": {
        "md17": {"n_train": 200, "n_val": 50, "n_test": 50, "stride": 1},
        "c7o2h10": {"targets": [], "n_targets": 1, "n_val_isomers": 1, "stride": 1},
    },
    "train": {"batch_size": 50, "epochs": 2, "val_every": 1, "val_horizon": 20, "device": "cpu"},
    "rollout": {"horizon": 40},
}


def with_global_epochs(config: dict) -> dict:
    """``config`` with every per-model ``train.epochs`` / ``val_every`` of config/quick.yaml set to the config's
    own ``train`` values (unless the config names that model's own): quick.yaml trains the cheap models 40-100
    epochs, which would otherwise win over the tiny config's 1-6 and cost minutes per test."""
    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text()).get("model_params") or {}
    train = config.get("train") or {}
    out = dict(config)
    params = {k: dict(v) for k, v in (config.get("model_params") or {}).items()}
    for name, p in quick.items():
        quick_train = (p or {}).get("train") or {}
        own = (params.get(name) or {}).get("train") or {}
        fixed = {key: train[key] for key in ("epochs", "val_every") if key in quick_train and key in train
                 and key not in own}  # fmt: skip
        if fixed:
            params.setdefault(name, {})["train"] = {**own, **fixed}
    if params:
        out["model_params"] = params
    return out


def make_workdir(dest: Path, config: dict | None = None) -> Path:
    """Copy the workflow into ``dest`` and write ``dest/tiny.yaml`` (TINY_CONFIG or ``config``, with the tiny
    config's epochs for every model: :func:`with_global_epochs`)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "tiny.yaml").write_text(yaml.safe_dump(with_global_epochs(config if config is not None else TINY_CONFIG)))
    return dest


def workflow_env(extra: dict | None = None) -> dict[str, str]:
    """The environment for snakemake and its jobs: this interpreter's bin first, one thread each."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    env.update(extra or {})
    return env


def snakemake_cmd(*args: str, profile_args: tuple[str, ...] = ("--cores", "1")) -> list[str]:
    """``python -m snakemake`` with the quick profile and tiny.yaml merged over config.yaml."""
    return [sys.executable, "-m", "snakemake", *profile_args,
            "--configfile", "config/quick.yaml", "tiny.yaml", *args]


def run_snakemake(workdir: Path, *targets: str, extra_args: tuple[str, ...] = (),
                  profile_args: tuple[str, ...] = ("--cores", "1"), env: dict | None = None,
                  timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` for ``targets``; on failure raise with the log tail and job logs."""
    cmd = snakemake_cmd(*extra_args, "--", *targets, profile_args=profile_args)
    proc = subprocess.run(cmd, cwd=workdir, env=workflow_env(env), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}) in {workdir}:\n{proc.stderr[-4000:]}\n"
                             f"{job_logs(workdir)}")
    return proc


def planned_jobs(workdir: Path, config: dict, *targets: str) -> dict[str, int]:
    """The jobs a dry run (default rerun triggers) plans for ``targets`` with ``config`` as tiny.yaml: ``{rule:
    count}``, {} when nothing is to be done. tiny.yaml is restored afterwards."""
    import re

    tiny = workdir / "tiny.yaml"
    before = tiny.read_text()
    tiny.write_text(yaml.safe_dump(with_global_epochs(config)))
    try:
        proc = run_snakemake(workdir, *targets, extra_args=("-n", "--cores", "1"), profile_args=())
    finally:
        tiny.write_text(before)
    table = re.search(r"^Job stats:\n(.*?)(?:\n\n|\Z)", proc.stdout, re.S | re.M)
    if table is None:
        if "Nothing to be done" not in proc.stdout + proc.stderr:
            raise AssertionError(f"dry run in {workdir}: neither jobs nor 'Nothing to be done':\n{proc.stdout[-2000:]}")
        return {}
    rows = [line.split() for line in table.group(1).splitlines()[2:]]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit() and r[0] != "total"}


def job_logs(workdir: Path, tail: int = 1500) -> str:
    """The tails of every rule log under results/logs (for failure messages)."""
    out = []
    for log in sorted((workdir / "results" / "logs").rglob("*.log")):
        out.append(f"--- {log.relative_to(workdir)}\n{log.read_text(errors='replace')[-tail:]}")
    return "\n".join(out)
