"""The shell commands every document of the repository prints, as argument lists (for tests/test_readme_commands.py
and tests/test_report_command.py).

Where commands are found:

* Markdown (README.md, results/README.md, benchmarks/README.md, docs/*.md): fenced ```bash / sh / console /
  shell blocks, indented (4-space) code blocks, and inline code spans that start with a program (``snakemake``,
  ``python``, ``pip``, with or without ``.venv/bin/``) and give it at least one argument;
* comments of the workflow's own files (config.yaml, config/*.yaml, profiles/*/config.yaml, Snakefile,
  workflow/rules/*.smk): a comment whose text (after an optional ``Label:``) starts with such a program, and
  inline code spans in comments.

Lines are joined at ``\\`` continuations, split at ``&&`` and ``;``, comments after ``#`` dropped, and leading
``VAR=value`` assignments kept apart (:attr:`Command.env`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ("snakemake", "python", "python3", "pip")
#: A command's first word: optional ``VAR=value`` assignments, an optional path (``.venv/bin/``), a program.
_START = re.compile(r"^(?:\S+=\S+\s+)*(?:\S*/)?(?:snakemake|python3?|pip)(?:\s|$)")
_FENCE = re.compile(r"^```(bash|sh|console|shell)[ \t]*\n(.*?)^```", re.S | re.M)
_ANY_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
#: Words that stand for something the reader fills in: a command that holds one is not runnable as printed.
PLACEHOLDER = re.compile(r"\.\.\.|<[^>]*>|^\[|\{[^}:'\"]*,[^}:'\"]*\}|^[A-Z][A-Z_]+$|/path/to/|\$")


@dataclass
class Command:
    """One command as printed: ``tokens`` (program first), ``env`` (leading assignments), where it is printed."""

    tokens: list[str]
    where: str
    env: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def program(self) -> str:
        return Path(self.tokens[0]).name

    def placeholders(self) -> list[str]:
        return [t for t in self.tokens if PLACEHOLDER.search(t)]

    def __repr__(self) -> str:
        return f"{self.where}: {self.text}"


def markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "results" / "README.md", REPO / "benchmarks" / "README.md",
            *sorted((REPO / "docs").glob("*.md"))]  # fmt: skip


def workflow_files() -> list[Path]:
    return [REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml")),
            *sorted((REPO / "profiles").glob("*/config.yaml")), REPO / "Snakefile",
            *sorted((REPO / "workflow" / "rules").glob("*.smk"))]  # fmt: skip


def _logical_lines(text: str) -> list[str]:
    """Lines of shell text, a newline inside quotes kept in its line (as the shell reads it)."""
    lines, cur, quote = [], [], ""
    for ch in text:
        if ch == "\n" and not quote:
            lines.append("".join(cur))
            cur = []
            continue
        if ch in "'\"" and (not quote or quote == ch):
            quote = "" if quote else ch
        cur.append(" " if ch == "\n" else ch)
    lines.append("".join(cur))
    return lines


def split_commands(text: str, where: str) -> list[Command]:
    """Shell text -> commands (continuations joined, ``&&`` / ``;`` split, comments dropped)."""
    out = []
    for line in _logical_lines(re.sub(r"\\\n", " ", text)):
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ValueError(f"{where}: not valid shell: {line!r} ({exc})") from None
        parts: list[list[str]] = [[]]
        for tok in tokens:
            if tok in ("&&", ";", "||"):
                parts.append([])
            elif tok.endswith(";") and len(tok) > 1:
                parts[-1].append(tok[:-1])
                parts.append([])
            else:
                parts[-1].append(tok)
        for part in parts:
            env = {}
            while part and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", part[0]):
                key, value = part.pop(0).split("=", 1)
                env[key] = value
            if part:
                out.append(Command(part, where, env, shlex.join(part)))
    return out


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def markdown_commands(path: Path) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(REPO)
    out = []
    for m in _FENCE.finditer(text):
        out += split_commands(m.group(2), f"{rel}:{_line_of(text, m.start())}")
    lines = _ANY_FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text).splitlines()
    prose = list(lines)
    i = 0
    while i < len(lines):  # indented code blocks: 4 spaces after a blank line, holding a command
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()) and lines[i].lstrip()[:1] not in "-*|":
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or lines[i - 1].rstrip().endswith("\\")):
                i += 1
            block = "\n".join(line[4:] for line in lines[start:i])
            if any(_START.match(part.strip()) for part in re.split(r"&&|;|\n", block)):
                prose[start:i] = [""] * (i - start)
                out += split_commands(block, f"{rel}:{start + 1}")
            continue
        i += 1
    for m in _SPAN.finditer(" ".join(prose)):
        span = m.group(1).strip()
        if _START.match(span) and len(span.split()) >= 2:
            out += split_commands(span, f"{rel}: `{span[:60]}`")
    return out


def comment_commands(path: Path) -> list[Command]:
    """Commands in the comments of a workflow file: a comment that is a command (after an optional ``Label:``;
    a trailing ``  # ...`` or ``(...)`` remark dropped), and inline code spans in comments."""
    rel = path.relative_to(REPO)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if "#" not in line:
            continue
        comment = line.split("#", 1)[1].strip()
        body = re.sub(r"^[A-Z][\w ]*:\s+", "", comment)
        if _START.match(body) and "`" not in body:
            out += split_commands(re.split(r"\s{2,}[#(]", body)[0], f"{rel}:{n}")
        for m in _SPAN.finditer(comment):
            if _START.match(m.group(1)) and len(m.group(1).split()) >= 2:
                out += split_commands(m.group(1), f"{rel}:{n}")
    return out


def all_commands() -> list[Command]:
    """Every command of every document and workflow comment, in file order."""
    out: list[Command] = []
    for path in markdown_files():
        out += markdown_commands(path)
    for path in workflow_files():
        out += comment_commands(path)
    return out
