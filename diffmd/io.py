"""Atomic file writes and small readers shared by every command-line entry point.

Every output is written to a temporary file in the destination folder and renamed into place,
so a killed job never leaves a half-written result that looks finished; the temporary file a killed
writer leaves behind is removed by the next write of the same output.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Temporary files of :func:`atomic_path` are ``.<name>.tmp-<host>-<pid>-<random><suffix>``: the writer's host and
#: process id say whether a left-over one belongs to a write still running.
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
#: A temporary file of another host (a cluster node) or of the code before 0.1 is taken as abandoned after this long.
FOREIGN_TEMP_AGE_S = 6 * 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it (SIGKILL during a write skips
    every ``finally``); returns them. One of this host whose process is gone is removed at once; one of another
    host, or without a process id (written by older code), once it is older than :data:`FOREIGN_TEMP_AGE_S`.
    A write still running keeps its file."""
    path = Path(path)
    gone: list[Path] = []
    try:
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return gone
    host, now = _host(), time.time()
    for tmp in siblings:
        try:
            if not tmp.is_file():
                continue
            found = _TEMP.match(tmp.name[: len(tmp.name) - len(tmp.suffix)] if tmp.suffix else tmp.name) or \
                _TEMP.match(tmp.name)
            if found and found.group("name") == path.name and found.group("host") == host:
                stale = not _alive(int(found.group("pid")))
            else:
                stale = now - tmp.stat().st_mtime > FOREIGN_TEMP_AGE_S
            if stale:
                tmp.unlink(missing_ok=True)
                gone.append(tmp)
        except OSError:
            continue
    return gone


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success. The temporaries of earlier
    writers of ``path`` that were killed are removed first (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{_host()}-{os.getpid()}-",
                               suffix=suffix or path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """``np.savez_compressed`` through a temporary file (numpy would append .npz to the name)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in ``chunk``-byte pieces (no cache; see diffmd.provenance)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
