"""Every command every document prints works as printed (issues 16 and 26 row 2).

Documents: README.md, results/README.md, benchmarks/README.md, docs/*.md, and the comments of config.yaml,
config/*.yaml, the profiles, the Snakefile and workflow/rules/*.smk (tests/doc_commands.py finds the commands).

* No command holds a placeholder (``TARGET``, ``<molecule>``, ``...``): a reader can paste each one.
* ``snakemake``: each command is parsed by Snakemake's own command line (profiles applied), in a throw-away copy
  of the workflow, and the paths it names must land among its targets (an option that takes several values
  would swallow them). Then one dry run per distinct workflow set-up (configs, profiles, executor; their targets
  together) builds the DAG in that copy and must list every target: one DAG build per check instead of one
  process per command. A ``--report`` command of the paper config must stop with the line that names the
  missing run; the quick profile's report is built for real on a tiny finished run in tests/test_report_command.py.
* ``python -m MODULE ARGS`` / ``python SCRIPT ARGS``: the module's own ``argparse`` parser accepts ARGS (run in this
  process up to the parse, nothing after it); ``python -m MODULE`` alone: the module exists.
* ``pip``, ``python -m venv``, ``python -m pytest``, ``cd``: the files, extras and pins they name exist.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import runpy
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from doc_commands import REPO, Command, all_commands, markdown_files
from workflow_copy import make_workdir, workflow_env

COMMANDS = all_commands()
SNAKEMAKE = [c for c in COMMANDS if c.program == "snakemake"]
PYTHON = [c for c in COMMANDS if c.program in ("python", "python3") and c.tokens[1:3] not in (["-m", "venv"],
                                                                                        ["-m", "pytest"])]  # fmt: skip
OTHERS = [c for c in COMMANDS if c not in SNAKEMAKE and c not in PYTHON]
_TARGET = re.compile(r"^(results|data)/")
_FENCE = re.compile(r"^```(bash|sh|console|shell)[ \t]*\n(.*?)^```", re.S | re.M)


def test_the_documents_have_the_commands_this_test_runs():
    readme = [c for c in SNAKEMAKE if c.where.startswith("README.md")]
    assert len(readme) >= 8 and OTHERS and PYTHON, "README.md: fewer commands than expected"
    for path in markdown_files():
        for _, block in _FENCE.findall(path.read_text(encoding="utf-8")):
            proc = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
            assert proc.returncode == 0, f"{path.relative_to(REPO)}: a block is not valid bash: {proc.stderr}\n{block}"


def test_no_command_needs_filling_in():
    bad = [f"{c!r}: {', '.join(c.placeholders())}" for c in COMMANDS if c.placeholders()]
    assert not bad, "commands a reader cannot paste as printed:\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """A throw-away copy of the workflow (no data, no results): where the printed commands run."""
    return make_workdir(tmp_path_factory.mktemp("docs") / "wf")


def _parse(cmd: Command, where: Path) -> argparse.Namespace:
    """Snakemake's own parse of the printed arguments (profiles found and applied as in ``where``)."""
    import os

    from snakemake.cli import parse_args

    cwd = os.getcwd()
    os.chdir(where)
    try:
        return parse_args(cmd.tokens[1:])[1]
    except SystemExit as exc:
        raise AssertionError(f"{cmd!r}: snakemake refuses the arguments (exit {exc.code})") from None
    except Exception as exc:  # noqa: BLE001 - Snakemake's parse raises many kinds
        raise AssertionError(f"{cmd!r}: snakemake refuses the arguments: {exc}") from None
    finally:
        os.chdir(cwd)


def _mode(args: argparse.Namespace) -> str:
    return "report" if args.report else "lint" if args.lint else "dag"


def _groups(workflow: Path) -> dict[tuple, list[tuple[Command, argparse.Namespace]]]:
    """The snakemake commands grouped by the workflow set-up their DAG depends on (mode, config files, config
    overrides, profiles, executor); each command parsed once (one that does not parse, or holds a placeholder, is
    another test's failure)."""
    groups: dict[tuple, list] = {}
    for cmd in SNAKEMAKE:
        yours = [p for t in cmd.tokens[1:] if _TARGET.match(t) for p in Path(t).parts if p.startswith("my")]
        if cmd.placeholders() or yours:
            continue  # a placeholder fails its own test; a target the reader makes first (my_model) is a tutorial's
        try:
            args = _parse(cmd, workflow)
        except AssertionError:
            continue
        key = (_mode(args), tuple(str(p) for p in args.configfile or ()), tuple(args.config or ()),
               str(args.workflow_profile), tuple(args.profile or ()), args.executor, args.report)  # fmt: skip
        groups.setdefault(key, []).append((cmd, args))
    return groups


def test_snakemake_commands_parse_as_printed_and_keep_their_targets(workflow):
    failures = []
    for cmd in SNAKEMAKE:
        try:
            args = _parse(cmd, workflow)
        except AssertionError as exc:
            failures.append(str(exc))
            continue
        named = [t for t in cmd.tokens[1:] if _TARGET.match(t) and t != str(args.report)]
        lost = [t for t in named if t not in set(args.targets)]
        failures += [f"{cmd!r}: {t} is not a target (an option before it took it as a value)" for t in lost]
    assert not failures, "\n".join(failures)


def _dry_run(key: tuple, members: list[tuple[Command, argparse.Namespace]], root: Path, i: int):
    """One Snakemake process per set-up: the first command's options, every member's targets."""
    wd = make_workdir(root / f"wf{i}")
    first, first_args = members[0]
    targets = list(dict.fromkeys(t for _, a in members for t in sorted(a.targets)))
    rest = [t for t in first.tokens[1:] if t not in first_args.targets and t not in ("-n", "--dry-run", "--dryrun")]
    argv = rest if key[0] == "report" else ["-n", *rest] + (["--", *targets] if targets else [])
    proc = subprocess.run([sys.executable, "-m", "snakemake", *argv], cwd=wd, env=workflow_env(), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    return key, members, proc, wd


def _quick(key: tuple) -> bool:
    return "profiles/quick" in (key[3], *key[4])


@pytest.mark.slow
def test_every_snakemake_set_up_dry_runs_with_all_its_targets(workflow, tmp_path):
    # the quick profile's report is built for real on a finished tiny run: tests/test_report_command.py
    groups = {k: v for k, v in _groups(workflow).items() if not (k[0] == "report" and _quick(k))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _dry_run(*job[1], tmp_path, job[0]), enumerate(groups.items())))
    failures = []
    for key, members, proc, wd in results:
        out = proc.stdout + proc.stderr
        printed = "; ".join(repr(c) for c, _ in members)
        mode, quick = key[0], _quick(key)
        if mode == "report":
            if proc.returncode == 0 or "report files are missing under" not in out:
                failures.append(f"{printed}: expected the missing-run message, rc {proc.returncode}:\n{out[-1500:]}")
            continue
        if mode == "lint":
            if proc.returncode != 0:
                failures.append(f"{printed}: rc {proc.returncode}\n{out[-2500:]}")
            continue
        if proc.returncode != 0 or "This was a dry-run" not in out:
            failures.append(f"{printed}: rc {proc.returncode}\n{out[-2500:]}")
            continue
        for cmd, args in members:
            failures += [f"{cmd!r}: the dry run does not build {t}" for t in args.targets if t not in out]
        if quick and not (wd / "runs" / "quick" / ".snakemake").is_dir():
            failures.append(f"{printed}: the quick profile did not run under runs/quick")
    assert not failures, "\n\n".join(failures)


class _Parsed(Exception):
    """Raised by the patched parse_args once a module's parser accepted the printed arguments."""


@pytest.mark.parametrize("cmd", PYTHON, ids=[c.text[:70] for c in PYTHON])
def test_python_commands_parse_as_printed(cmd, monkeypatch):
    tokens = cmd.tokens[1:]
    if tokens[0] == "-m":
        module, args = tokens[1], tokens[2:]
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, f"{cmd!r}: no module {module}"
        source = Path(spec.origin).read_text() if spec.origin.endswith(".py") else ""
        if not args:
            return  # the module named: it exists
        main_src = Path(spec.submodule_search_locations[0]) / "__main__.py" if spec.submodule_search_locations else None
        source += main_src.read_text() if main_src and main_src.exists() else ""
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        script = REPO / tokens[0]
        assert script.is_file(), f"{cmd!r}: no script {tokens[0]}"
        source, args = script.read_text(), tokens[1:]
        run = lambda: runpy.run_path(str(script), run_name="__main__")  # noqa: E731
    assert "ArgumentParser" in source or "OneLineArgumentParser" in source, f"{cmd!r}: no argparse parser to check"
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", [tokens[0], *args])
    try:
        run()
    except _Parsed:
        return
    except SystemExit as exc:
        pytest.fail(f"{cmd!r}: the module's parser refuses the printed arguments (exit {exc.code})")
    except Exception as exc:  # noqa: BLE001 - argparse.ArgumentError (exit_on_error=False), an import error, ...
        pytest.fail(f"{cmd!r}: {type(exc).__name__}: {exc}")
    pytest.fail(f"{cmd!r}: finished without parsing its arguments with argparse")


def _option_values(tokens: list[str], *names: str) -> list[str]:
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in names]


@pytest.mark.parametrize("cmd", OTHERS, ids=[c.text[:60] for c in OTHERS])
def test_other_commands_name_what_exists(cmd):
    tokens, prog = cmd.tokens, cmd.program
    assert prog in ("python3", "python", "pip", "rm", "cp", "cd"), f"{cmd!r}: no check for this command"
    if prog in ("python3", "python"):
        module = tokens[2]
        if module == "pytest":
            args = tokens[3:]  # test paths: the arguments that are neither options nor an option's value (-m slow)
            paths = [t for i, t in enumerate(args) if not t.startswith("-")
                     and (i == 0 or args[i - 1] not in ("-m", "-k", "-p"))]  # fmt: skip
            assert all((REPO / p.split("::")[0]).exists() for p in paths), cmd
    elif prog == "pip":
        assert tokens[1] == "install", cmd
        for f in _option_values(tokens, "-c", "-r", "--constraint", "--requirement"):
            assert (REPO / f).is_file(), f"{cmd!r}: {f} does not exist"
        for e in _option_values(tokens, "-e", "--editable"):
            assert (REPO / e.split("[")[0] / "pyproject.toml").is_file(), cmd
            extras = re.findall(r"\[(.*)\]", e)
            optional = (REPO / "pyproject.toml").read_text()
            assert all(f"\n{x.strip()} = " in optional for x in ",".join(extras).split(",") if x), cmd
        for url in _option_values(tokens, "--index-url", "--extra-index-url"):
            assert url.startswith("https://download.pytorch.org/whl/"), cmd
        pins = [t for t in tokens if t.startswith("torch==")]
        assert all(p in (REPO / "constraints.txt").read_text().split() for p in pins), f"{pins} != constraints.txt"
    elif prog == "cd":
        assert len(tokens) == 2 and not Path(tokens[1]).is_absolute(), f"{cmd!r}: cd into the repository's own folders"
    assert shlex.join(tokens)


_REPO_PATH = re.compile(r"(?<![\w./-])((?:diffmd|baselines|benchmarks|workflow|docs|tests|config|profiles"
                        r"|envs|\.ci)/[\w./-]*\w\*?|(?:config|constraints|pyproject)\.(?:yaml|txt|toml))")  # fmt: skip


def _made_by_the_reader(name: str) -> bool:
    """A path the reader makes (``profiles/mycluster``, ``my_model.py``) or a run's (``.../seed1/model.pt``)."""
    return any(part.startswith("my") or part.startswith("seed") for part in Path(name).parts)


def test_every_repository_file_the_documents_name_exists():
    """config.yaml named a schema file (workflow/schemas/config.schema.yaml) that did not exist."""
    from doc_commands import workflow_files

    missing = []
    for path in markdown_files() + workflow_files():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines() if path.suffix == ".md" else [ln.split("#", 1)[1] for ln in text.splitlines()
                                                                  if "#" in ln]  # fmt: skip
        for name in (n.rstrip(".") for line in lines for n in _REPO_PATH.findall(line)):
            if not _made_by_the_reader(name) and not (REPO / name).exists() and not list(REPO.glob(name)):
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert not missing, "files the documents name that do not exist:\n" + "\n".join(sorted(set(missing)))
