"""Every command block of README.md works as printed (issue 16).

Each ```bash / ```sh / ```console block is split into commands (``\\`` continuations joined, ``&&`` chains
split, comments dropped). Every ``snakemake`` command is run with ``-n`` added (nothing else changed:
targets, flags and profiles exactly as printed) in a throw-away copy of the workflow, so it can touch no
real results; a ``--report`` command is run as printed in that copy, which has no finished run, and must
stop with the one line that says which run it needs. The other commands (venv, pip, pytest) are checked
for what they name: the constraints file, the editable project, the modules they run.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from workflow_copy import REPO, make_workdir, workflow_env

README = REPO / "README.md"
BLOCK = re.compile(r"^```(bash|sh|console)[ \t]*\n(.*?)^```", re.S | re.M)


def readme_commands(text: str) -> list[list[str]]:
    """The README's shell commands as argument lists, in order."""
    commands = []
    for _, body in BLOCK.findall(text):
        body = re.sub(r"\\\n", " ", body)
        for line in body.splitlines():
            line = line.strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                tokens = shlex.split(part, comments=True)
                if tokens:
                    commands.append(tokens)
    return commands


COMMANDS = readme_commands(README.read_text())
SNAKEMAKE = [c for c in COMMANDS if Path(c[0]).name == "snakemake"]
OTHERS = [c for c in COMMANDS if Path(c[0]).name != "snakemake"]


def test_readme_has_the_commands_this_test_runs():
    assert len(SNAKEMAKE) >= 8 and OTHERS, "README.md: fewer command blocks than expected"
    for block in BLOCK.findall(README.read_text()):
        proc = subprocess.run(["bash", "-n"], input=block[1], capture_output=True, text=True)
        assert proc.returncode == 0, f"README.md block is not valid bash: {proc.stderr}\n{block[1]}"


def _dry_args(args: list[str]) -> list[str]:
    if "--report" in args or any(a.startswith("--report=") for a in args):
        return args
    return args if {"-n", "--dry-run", "--dryrun"} & set(args) else ["-n", *args]


def _run(job: tuple[int, list[str]], root: Path) -> tuple[list[str], subprocess.CompletedProcess, Path]:
    i, args = job
    wd = make_workdir(root / f"wf{i}")
    cmd = [sys.executable, "-m", "snakemake", *_dry_args(args)]
    return args, subprocess.run(cmd, cwd=wd, env=workflow_env(), capture_output=True, text=True, timeout=300), wd


def test_every_readme_snakemake_command_dry_runs_as_printed(tmp_path):
    unique = list({tuple(_dry_args(c[1:])): c[1:] for c in SNAKEMAKE}.values())  # `snakemake` == `snakemake -n`
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _run(job, tmp_path), enumerate(unique)))
    failures = []
    for args, proc, wd in results:
        out = proc.stdout + proc.stderr
        printed = "snakemake " + shlex.join(args)
        if "--report" in args:
            if proc.returncode == 0 or "report files are missing under" not in out:
                failures.append(f"{printed}: expected the missing-run message, rc {proc.returncode}:\n{out[-1500:]}")
            continue
        if proc.returncode != 0 or "This was a dry-run" not in out:
            failures.append(f"{printed}: rc {proc.returncode}\n{out[-2500:]}")
            continue
        targets = [a for a in args if a.startswith(("results/", "data/"))]
        failures += [f"{printed}: the dry run does not build {t}" for t in targets if t not in out]
        if "profiles/quick" in args and not (wd / "runs" / "quick" / ".snakemake").is_dir():
            failures.append(f"{printed}: the quick profile did not run under runs/quick")
    assert not failures, "\n\n".join(failures)


def _option_values(tokens: list[str], *names: str) -> list[str]:
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in names]


@pytest.mark.parametrize("tokens", OTHERS, ids=[shlex.join(c)[:60] for c in OTHERS])
def test_other_readme_commands_name_what_exists(tokens):
    prog = Path(tokens[0]).name
    assert prog in ("python3", "python", "pip", "rm", "cp"), f"README.md: no check for the command {tokens}"
    if prog in ("python3", "python"):
        assert tokens[1] == "-m", tokens
        module = tokens[2]
        assert module == "venv" or importlib.util.find_spec(module), f"README.md: no module {module}: {tokens}"
        if module == "pytest":
            paths = [t for t in tokens[3:] if not t.startswith("-")]
            assert all((REPO / p.split("::")[0]).exists() for p in paths), tokens
    elif prog == "pip":
        assert tokens[1] == "install", tokens
        for f in _option_values(tokens, "-c", "-r", "--constraint", "--requirement"):
            assert (REPO / f).is_file(), f"README.md: {f} does not exist: {tokens}"
        for e in _option_values(tokens, "-e", "--editable"):
            assert (REPO / e.split("[")[0] / "pyproject.toml").is_file(), tokens
            extras = re.findall(r"\[(.*)\]", e)
            optional = (REPO / "pyproject.toml").read_text()
            assert all(f"\n{x.strip()} = " in optional for x in ",".join(extras).split(",") if x), tokens
        for url in _option_values(tokens, "--index-url", "--extra-index-url"):
            assert url.startswith("https://download.pytorch.org/whl/"), tokens
        pins = [t for t in tokens if t.startswith("torch==")]
        assert all(p in (REPO / "constraints.txt").read_text().split() for p in pins), f"{pins} != constraints.txt"
