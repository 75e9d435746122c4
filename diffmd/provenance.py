"""Provenance of one result directory: what code, configuration, data and machine produced it.

Every result directory (``results/{dataset}/{molecule}/{model}/seed{seed}/``) gets a
``provenance.json`` written by :func:`write_provenance`::

    {"schema": 1, "timestamp": "2026-11-21T19:50:00+00:00", "hostname": "...", "device": "cpu",
     "python": "3.11.2", "packages": {"torch": "2.13.0", "numpy": ..., ...},
     "git": {"commit": "fe5b499...", "dirty": false} | null,
     "config_hash": "sha256 of the canonical JSON of config" | null, "config": {...} | null,
     "inputs": {"data/md17/ethanol.npz": {"sha256": "...", "bytes": 123}}, "extra": {...}}

The tables cite each row's provenance file and its config hash, so a number can be traced back
to the exact commit, configuration and data checksum that produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from diffmd.io import sha256_of, write_json

PROVENANCE_NAME = "provenance.json"
SCHEMA_VERSION = 1

# Distribution names (as pip knows them) whose versions are recorded when installed.
PACKAGES: dict[str, str] = {
    "torch": "torch",
    "numpy": "numpy",
    "scipy": "scipy",
    "e3nn": "e3nn",
    "torchdiffeq": "torchdiffeq",
    "ase": "ase",
    "tblite": "tblite",
    "rdkit": "rdkit",
    "snakemake": "snakemake",
    "snakemake-executor-plugin-slurm": "snakemake-executor-plugin-slurm",
    "diffmd-bench": "diffmd-bench",
}

# (resolved path, mtime_ns, size) -> sha256 hex; files are only re-read when they change.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, cached by (path, mtime, size) within this process."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found (cannot checksum)") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    _HASH_CACHE[key] = sha256_of(path)
    return _HASH_CACHE[key]


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_default)


def config_hash(cfg: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of a configuration (key order does not matter)."""
    return hashlib.sha256(canonical_json(cfg).encode("utf-8")).hexdigest()


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the given distributions; missing ones are left out."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(PACKAGES.get(name, name))
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state(start: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding this package (or ``start``); None if none."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        commit = _git(where, "rev-parse", "HEAD")
        status = _git(where, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def _git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), *args], check=True, capture_output=True, text=True, timeout=20
    ).stdout


def collect_provenance(
    *,
    config: dict | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    device: str = "cpu",
    extra: dict | None = None,
) -> dict[str, Any]:
    """The provenance record as a dict (see the module docstring for the layout)."""
    files = {}
    for item in inputs:
        p = Path(item)
        files[str(item)] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return {
        "schema": SCHEMA_VERSION,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "device": str(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
        "config_hash": config_hash(config) if config is not None else None,
        "config": config,
        "inputs": files,
        "extra": dict(extra) if extra else {},
    }


def write_provenance(
    directory: str | os.PathLike,
    *,
    config: dict | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    device: str = "cpu",
    extra: dict | None = None,
    stage: str | None = None,
) -> Path:
    """Write ``<directory>/provenance.json`` atomically and return its path.

    ``config`` is the configuration the run used (hashed with :func:`config_hash` and stored);
    ``inputs`` are the data files it read (each checksummed); ``device`` the torch device string.
    Several stages share one run directory (train, then rollout): the top level is the latest
    stage's record and ``stages`` keeps every stage's record by name, so the training config hash
    survives the rollout. ``stage`` defaults to the running script's name (``train``, ``rollout``).
    """
    stage = stage or _default_stage()
    record = collect_provenance(config=config, inputs=inputs, device=device, extra=extra)
    path = Path(directory) / PROVENANCE_NAME
    try:
        previous = read_provenance(directory) or {}
    except ValueError:  # a damaged earlier record is replaced, not trusted
        previous = {}
    stages = dict(previous.get("stages") or {})
    stages[stage] = record
    write_json(path, {**record, "stage": stage, "stages": stages})
    return path


def _default_stage() -> str:
    """``train`` for ``python -m diffmd.engine.train`` etc.; ``run`` when there is no script."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return script.stem if script is not None and script.suffix == ".py" and script.stem != "__main__" else "run"


def read_provenance(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The record in ``<directory>/provenance.json``, or None when there is none."""
    path = Path(directory) / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise ValueError(f"{path}: not valid JSON ({why})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a provenance record must be a JSON object, got {type(record).__name__}")
    return record


def provenance_markdown(result_files: Iterable[str | os.PathLike]) -> str:
    """A Markdown section citing the provenance of each run behind a table.

    ``result_files`` are the runs' files (``.../seed1/armse.json``); each row names the run
    directory's ``provenance.json`` with its git commit, config hash, device and input checksums
    (first 12 hex digits), or says that the file is missing. The table is ``DataFrame.to_markdown``'s.
    """
    import pandas as pd

    rows = []
    for run in sorted({Path(f).parent for f in result_files}):
        rec = read_provenance(run)
        if rec is None:
            rows.append([f"`{run}`", "provenance.json missing", "", "", ""])
            continue
        git = rec.get("git")
        commit = f"{git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}" if git else "no git checkout"
        chash = (rec.get("config_hash") or "")[:12]
        inputs = ", ".join(f"{Path(k).name} {v['sha256'][:12]}" for k, v in (rec.get("inputs") or {}).items())
        rows.append([f"`{run / PROVENANCE_NAME}`", commit, chash, str(rec.get("device", "")), inputs])
    table = pd.DataFrame(rows, columns=["run", "git commit", "config hash", "device", "inputs (SHA-256)"])
    lines = ["", "Provenance: `provenance.json` in each run directory (package versions, git commit, "
             "config hash, data checksums, device).", "",
             table.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)]  # fmt: skip
    return "\n".join(lines) + "\n"


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot hash {type(obj).__name__} in a configuration")
