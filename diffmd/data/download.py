"""Robust downloads of the upstream data files: resume, retry, verify, rename atomically.

:func:`fetch` streams a URL into ``<dest>.part``. A broken connection is resumed with an HTTP
``Range`` request (the download restarts from zero when the server ignores ``Range``), every
failure is retried with exponential backoff, and the finished file is checked against its known
size and SHA-256 before it is renamed onto ``dest``. Files whose checksum we do not know are
recorded in a lock file (``data/checksums.lock.json``) on their first download and verified
against that record on every later use, so a silently changed upstream file or a damaged cache
is caught. A cached file that fails verification is removed and fetched again; it is never used.

Facts about the upstream files (``MD17_FILES``, ``MD17_FRAMES``, ``KNOWN_FILES``) come from the
public loaders of MD17 (quantum-machine.org); only the aspirin checksum is known in advance.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from diffmd.io import atomic_path, sha256_of

try:  # POSIX advisory locks keep parallel jobs from clobbering the checksum lock file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Molecule name in the config -> file name on quantum-machine.org/gdml/data/npz (benzene: the
#: 2017 re-run; the older files were named ``<molecule>_dft.npz`` and ``benzene_old_dft.npz``).
MD17_FILES: dict[str, str] = {
    "aspirin": "md17_aspirin.npz",
    "benzene": "md17_benzene2017.npz",
    "ethanol": "md17_ethanol.npz",
    "malonaldehyde": "md17_malonaldehyde.npz",
    "naphthalene": "md17_naphthalene.npz",
    "salicylic": "md17_salicylic.npz",
    "toluene": "md17_toluene.npz",
    "uracil": "md17_uracil.npz",
}
#: Older upstream names the ``local`` source also accepts.
MD17_LEGACY_FILES: dict[str, tuple[str, ...]] = {
    mol: ((f"{mol}_dft.npz",) if mol != "benzene" else ("benzene_old_dft.npz",)) for mol in MD17_FILES
}
#: Frames in each upstream MD17 trajectory (checked when a file is converted).
MD17_FRAMES: dict[str, int] = {
    "aspirin": 211_762,
    "benzene": 627_983,
    "ethanol": 555_092,
    "malonaldehyde": 993_237,
    "naphthalene": 326_250,
    "salicylic": 320_231,
    "toluene": 442_790,
    "uracil": 133_770,
}
#: File name -> (bytes, SHA-256) known in advance; all other files go through the lock file.
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "md17_aspirin.npz": (202_398_748, "af4ce531bf8cf07610c0bd876cb5b321f3c301d2365720967d98d45e1db1f748"),
}
C7O2H10_ARCHIVE = "c7o2h10_md.tar.gz"

_CHUNK = 1 << 20
_RETRY_HTTP = {408, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A download failed for good (message is one line and names the URL or file)."""


class NoNetworkError(DownloadError):
    """The host cannot be reached at all; the message names the offline alternatives."""


class ChecksumError(DownloadError):
    """A file's size or SHA-256 does not match the known or recorded value."""


@dataclass
class Fetched:
    """Where a file came from and what it is (goes into the trajectory's provenance)."""

    path: Path
    url: str | None
    sha256: str
    bytes: int
    verified_by: str  # "known" | "lock" | "recorded" (first download, now in the lock file)
    from_cache: bool

    def provenance(self) -> dict[str, Any]:
        return {"url": self.url, "file": self.path.name, "sha256": self.sha256, "bytes": self.bytes,
                "verified_by": self.verified_by}


class ChecksumLock:
    """``{file name: {"sha256", "bytes", "url"}}`` recorded on first download (JSON, atomic)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.path.with_name(f".{self.path.name}.mutex"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise DownloadError(f"{self.path}: checksum lock file is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise DownloadError(f"{self.path}: checksum lock file must hold a JSON object")
        return data

    def get(self, name: str) -> dict[str, Any] | None:
        return self._read().get(name)

    def record(self, name: str, sha256: str, size: int, url: str | None) -> None:
        with self._mutex():
            data = self._read()
            data[name] = {"sha256": sha256, "bytes": size, "url": url}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def expected_for(name: str, lock: ChecksumLock | None) -> tuple[int | None, str | None, str | None]:
    """(bytes, sha256, origin) known for a file name: built-in facts first, then the lock file."""
    if name in KNOWN_FILES:
        size, sha = KNOWN_FILES[name]
        return size, sha, "known"
    entry = lock.get(name) if lock is not None else None
    if entry:
        return int(entry["bytes"]), str(entry["sha256"]), "lock"
    return None, None, None


def verify_file(path: Path, size: int | None, sha256: str | None, origin: str | None) -> str:
    """Check size and SHA-256 of ``path``; returns the actual SHA-256; raises :class:`ChecksumError`."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path}: {actual_size} bytes, expected {size} ({origin}): truncated or wrong file")
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256:
        raise ChecksumError(f"{path}: SHA-256 {actual} does not match the expected {sha256} ({origin})")
    return actual


def _open(url: str, start: int, timeout_s: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "diffmd-bench"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
    opener = urllib.request.build_opener(*handlers)
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def _is_unreachable(exc: BaseException) -> bool:
    """True when the host cannot be resolved or the network is down (retrying will not help)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return True
    return isinstance(reason, OSError) and reason.errno in (101, 113)  # ENETUNREACH, EHOSTUNREACH


def _stream_once(url: str, part: Path, timeout_s: float, bars: dict[str, tqdm]) -> tuple[int, int | None]:
    """One HTTP request appending to ``part``; returns (bytes on disk, total expected or None).

    The progress bar is created on the first response, so a failed connection prints nothing.
    """
    start = part.stat().st_size if part.exists() else 0
    with _open(url, start, timeout_s) as resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        if start > 0 and status != 206:  # the server ignored Range: restart from zero
            start = 0
        total = None
        if status == 206:
            crange = resp.headers.get("Content-Range", "")
            total = int(crange.rsplit("/", 1)[1]) if "/" in crange and not crange.endswith("*") else None
        elif length is not None:
            total = int(length)
        if "bar" not in bars:
            bars["bar"] = tqdm(desc=part.name.removesuffix(".part"), unit="B", unit_scale=True, mininterval=2.0)
        bar = bars["bar"]
        bar.reset(total=total)
        bar.update(start)
        with part.open("ab" if start else "wb") as fh:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                fh.write(chunk)
                bar.update(len(chunk))
    return part.stat().st_size, total


def _download(url: str, part: Path, retries: int, timeout_s: float, backoff_s: float, config_key: str) -> None:
    """Fill ``part`` with the whole body of ``url``, resuming after broken connections."""
    bars: dict[str, tqdm] = {}
    try:
        _retry_loop(url, part, retries, timeout_s, backoff_s, config_key, bars)
    finally:
        if "bar" in bars:
            bars["bar"].close()


def _retry_loop(url: str, part: Path, retries: int, timeout_s: float, backoff_s: float, config_key: str,
                bars: dict[str, tqdm]) -> None:
    attempt = 0
    while True:
        try:
            have, total = _stream_once(url, part, timeout_s, bars)
            if total is None or have == total:
                return
            if have > total:  # a stale partial file longer than the resource: start over
                part.unlink()
            raise ConnectionError(f"connection closed after {have} of {total} bytes")
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # range not satisfiable: our partial file is stale
                part.unlink(missing_ok=True)
            elif exc.code not in _RETRY_HTTP:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            err: BaseException = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if _is_unreachable(exc):
                raise NoNetworkError(no_network_message(url, exc, config_key)) from None
            err = exc
        attempt += 1
        if attempt > retries:
            raise DownloadError(f"{url}: failed after {retries} retries ({type(err).__name__}: {err})")
        time.sleep(backoff_s * 2 ** (attempt - 1))


def no_network_message(url: str, exc: BaseException, config_key: str) -> str:
    host = urllib.parse.urlsplit(url).hostname
    reason = getattr(exc, "reason", exc)
    return (
        f"cannot reach {host} to download {url} (no network? {reason}); either put the file in "
        f"{config_key}.download.local_dir or set {config_key}.source: xtb to simulate the data offline"
    )


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    lock: ChecksumLock | None = None,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
    config_key: str = "data.md17",
) -> Fetched:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    A cached ``dest`` is verified (known checksum or lock file); if it fails it is deleted and
    downloaded again. A fresh download that fails verification raises :class:`ChecksumError`
    and leaves nothing behind. Files with no known checksum are recorded in ``lock``.
    """
    dest = Path(dest)
    size, sha, origin = expected_for(dest.name, lock)
    if dest.exists():
        try:
            actual = verify_file(dest, size, sha, origin)
            if sha is None and lock is not None:
                lock.record(dest.name, actual, dest.stat().st_size, url)
            return Fetched(dest, url, actual, dest.stat().st_size, origin or "recorded", True)
        except ChecksumError as exc:
            tqdm.write(f"cached file fails verification, fetching it again: {exc}")
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _download(url, part, retries, timeout_s, backoff_s, config_key)
    try:
        actual = verify_file(part, size, sha, origin)
    except ChecksumError as exc:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: download does not match ({str(exc).split(': ', 1)[1]}); removed it") from None
    os.replace(part, dest)
    if sha is None and lock is not None:
        lock.record(dest.name, actual, dest.stat().st_size, url)
    return Fetched(dest, url, actual, dest.stat().st_size, origin or "recorded", False)


def use_local(path: str | os.PathLike, lock: ChecksumLock | None = None) -> Fetched:
    """A file the user already has: verified against a known or locked checksum when there is one."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file not found")
    size, sha, origin = expected_for(path.name, lock)
    actual = verify_file(path, size, sha, origin)
    return Fetched(path, None, actual, path.stat().st_size, origin or "unverified", True)


def find_local(local_dir: str | os.PathLike, names: tuple[str, ...], config_key: str) -> Path:
    """The first of ``names`` present in ``local_dir``; one-line error listing what was looked for."""
    folder = Path(local_dir)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DownloadError(f"{config_key}.download.local_dir={folder}: none of {', '.join(names)} found there")

