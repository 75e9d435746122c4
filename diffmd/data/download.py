"""Robust downloads of the upstream data files: resume, retry, verify, rename atomically.

:func:`fetch` streams a URL into ``<dest>.part``. A broken connection is resumed with an HTTP
``Range`` request guarded by ``If-Range`` (the server's ETag or Last-Modified, kept beside the
partial file in ``<dest>.part.json``), so a changed upstream file is fetched from zero instead of
spliced onto an old beginning; a partial file with no such record (left by something else) is
discarded. The body must match ``Content-Length`` / ``Content-Range``; every failure is retried with
exponential backoff within an overall deadline per file (``download.deadline_s``: connect, headers and
body; a watchdog shuts the socket at the deadline, so a server trickling its headers cannot outlast
it), and the finished file is checked against its pinned (``download.sha256``) or known size and
SHA-256 before it is renamed onto ``dest``. Files whose checksum we do not know have their *content*
read in full (a gzip archive to its end with its CRC and every tar member's data; an npz with the
expected arrays and every member's zip CRC; an HTML error page served with status 200 is refused)
and are then recorded in a lock file (``data/checksums.lock.json``) and verified against that record
on every later use, so a silently changed upstream file or a damaged cache is caught. A resumed
download that fails verification (a server that changed the bytes behind the same ETag: a splice)
is discarded and fetched once more from the start. A cached file that fails verification is removed
and fetched again; it is never used. Redirects to another host are returned in :class:`Fetched` and
end up in the provenance.

Facts about the upstream files (``MD17_FILES``, ``MD17_FRAMES``, ``KNOWN_FILES``) come from the
public loaders of MD17 (quantum-machine.org); only the aspirin checksum is known in advance.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import json
import os
import socket
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from diffmd.io import atomic_path, sha256_of

try:  # POSIX advisory locks keep parallel jobs from clobbering the checksum lock file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["sha256_of"]  # re-exported: the hash itself lives in diffmd.io

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
#: Sources: aspirin's size and SHA-256 are those published with the ConfAna project's
#: ``scripts/md17_to_xyz.py`` (MD17_ASPIRIN_SHA256). For the other seven files no public loader
#: we could search states a checksum: torch_geometric's ``datasets/md17.py``, torchmd-net's
#: ``datasets/md17.py``/``md22.py`` and schnetpack's ``datasets/md17.py`` list only URLs and file
#: names, and the upstream npz files carry only an internal ``md5`` key of their arrays (not of the
#: file). Those files are therefore verified through the lock file (first download recorded after
#: its content was checked: keys, shapes, frame count).
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "md17_aspirin.npz": (202_398_748, "af4ce531bf8cf07610c0bd876cb5b321f3c301d2365720967d98d45e1db1f748"),
}
C7O2H10_ARCHIVE = "c7o2h10_md.tar.gz"

#: Defaults of the ``download`` config keys (workflow schema, ``definitions: download``).
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT_S = 60.0  # one socket operation
DEFAULT_DEADLINE_S = 6 * 3600.0  # the whole file, all retries included
DEFAULT_MAX_EXTRACT_BYTES = 16 * 2**30  # total bytes an archive may unpack to
DEFAULT_MAX_MEMBERS = 100_000  # entries an archive may hold

_CHUNK = 1 << 20
_RETRY_HTTP = {408, 429, 500, 502, 503, 504}
#: A content check: raises :class:`ContentError` (or any ValueError) when ``path`` is not the expected file.
ContentCheck = Callable[[Path], None]


class DownloadError(RuntimeError):
    """A download failed for good (message is one line and names the URL or file)."""


class NoNetworkError(DownloadError):
    """The host cannot be reached at all; the message names the offline alternatives."""


class ChecksumError(DownloadError):
    """A file's size or SHA-256 does not match the known or recorded value."""


class ContentError(DownloadError):
    """A file is not what it claims to be (an HTML page instead of an archive, an npz without its arrays)."""


class DiskFullError(DownloadError):
    """No space left on the device while writing ``path`` (the message names it)."""


@dataclass
class Fetched:
    """Where a file came from and what it is (goes into the trajectory's provenance)."""

    path: Path
    url: str | None
    sha256: str
    bytes: int
    verified_by: str  # "known" | "pinned" | "lock" | "recorded" (first download, now in the lock file)
    from_cache: bool
    redirects: list[dict[str, Any]] = field(default_factory=list)  # hops to another host

    def provenance(self) -> dict[str, Any]:
        record = {"url": self.url, "file": self.path.name, "sha256": self.sha256, "bytes": self.bytes,
                  "verified_by": self.verified_by}
        if self.redirects:
            record["redirects"] = list(self.redirects)
        return record


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


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
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise DownloadError(f"{self.path}: checksum lock file is not valid JSON ({why})") from None
        if not isinstance(data, dict):
            raise DownloadError(f"{self.path}: checksum lock file must hold a JSON object")
        return data

    def get(self, name: str) -> dict[str, Any] | None:
        entry = self._read().get(name)
        if entry is None:
            return None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise DownloadError(f"{self.path}: entry {name!r} is damaged; {self.clear_hint(name)}")
        return entry

    def clear_hint(self, name: str) -> str:
        return f"to accept a changed upstream file, delete the entry {name!r} from {self.path} (or delete that file)"

    def record(self, name: str, sha256: str, size: int, url: str | None) -> None:
        with self._mutex():
            data = self._read()
            data[name] = {"sha256": sha256, "bytes": size, "url": url}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass
class Expected:
    """What a file must be: size and SHA-256 (None when unknown), where that came from, how to clear it."""

    size: int | None
    sha256: str | None
    origin: str | None  # "known" | "pinned" | "lock" | None
    where: str = ""  # human-readable source of the value, for messages
    hint: str = ""  # how to get past a mismatch that is not a damaged file


def expected_for(name: str, lock: ChecksumLock | None, sha256: str | None = None,
                 config_key: str = "data.md17") -> Expected:
    """What is known about a file: a pinned ``sha256`` first, then built-in facts, then the lock file."""
    if sha256:
        size = KNOWN_FILES[name][0] if name in KNOWN_FILES and KNOWN_FILES[name][1] == sha256 else None
        return Expected(size, str(sha256).lower(), "pinned", f"{config_key}.download.sha256",
                        f"check {config_key}.download.sha256")
    if name in KNOWN_FILES:
        size, sha = KNOWN_FILES[name]
        return Expected(size, sha, "known", "the checksum built into diffmd.data.download",
                        f"or pin another file with {config_key}.download.sha256")
    entry = lock.get(name) if lock is not None else None
    if entry and lock is not None:
        return Expected(int(entry["bytes"]), str(entry["sha256"]), "lock", f"recorded in {lock.path}",
                        lock.clear_hint(name))
    return Expected(None, None, None)


def verify_file(path: Path, size: int | None, sha256: str | None = None, origin: str | None = None) -> str:
    """Check size and SHA-256 of ``path``; returns the actual SHA-256; raises :class:`ChecksumError`."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path}: {actual_size} bytes, expected {size} ({origin}): truncated or wrong file")
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256:
        raise ChecksumError(f"{path}: SHA-256 {actual} does not match the expected {sha256} ({origin})")
    return actual


def _verify(path: Path, exp: Expected) -> str:
    return verify_file(path, exp.size, exp.sha256, exp.where or exp.origin)


# ---------------------------------------------------------------------------------------------- content


@dataclass
class TarEntry:
    """One member of a tar archive as :func:`scan_gzip_tar` read it."""

    name: str
    kind: str  # "file" | "link" (hard or symbolic) | "dir" | "other"
    size: int  # bytes it unpacks to; a link counts at its target's size
    sha256: str | None  # of its data (a link: its target's); None for directories and others
    target: str | None = None  # a link's target, as a member name


class _CountingReader:
    """A read-only stream over a decompressed archive that records how far it was read and where its last
    non-zero byte lies (a tar archive ends in zero blocks: anything non-zero after the last member that
    :mod:`tarfile` parsed is a header it could not read)."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.pos, self.last_nonzero = raw, 0, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        stripped = len(data.rstrip(b"\0"))
        if stripped:
            self.last_nonzero = self.pos + stripped
        self.pos += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _link_target(member: tarfile.TarInfo) -> str:
    """The member name a hard link or symbolic link points at (symbolic links are relative to their folder)."""
    if member.islnk():
        return os.path.normpath(member.linkname)
    return os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname))


@contextlib.contextmanager
def open_tar_stream(path: Path) -> Iterator[tuple[tarfile.TarFile, _CountingReader]]:
    """``path`` (a .tar.gz) opened for one pass: gzip decompressed by :mod:`gzip`, which checks the CRC and
    length of every gzip member at its end and raises on a cut stream (tarfile's own ``r|gz`` does neither)."""
    with gzip.open(path, "rb") as gz:
        reader = _CountingReader(gz)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            yield tar, reader


def check_tar_end(path: Path, tar: tarfile.TarFile, reader: _CountingReader) -> None:
    """After the last member: read the gzip stream to its end (its CRC is checked there) and make sure nothing
    but zero padding follows the last member tarfile could parse (tarfile stops silently at a bad header)."""
    reader.drain()
    if reader.last_nonzero > tar.offset:
        raise ContentError(f"{path}: corrupt archive (unreadable tar header at byte {tar.offset} of"
                           f" {reader.pos} after {len(tar.members)} members)")


def link_size(member: tarfile.TarInfo, seen: dict[str, TarEntry], path: Path) -> TarEntry:
    """A link member's target among the members before it (its size counts toward the caps); a link to
    anything else is refused."""
    target = _link_target(member)
    entry = seen.get(target)
    if entry is None or entry.kind != "file":
        raise ContentError(f"{path}: link member {member.name!r} points at {member.linkname!r}, which is not a file"
                           " earlier in the archive")
    return entry


def scan_gzip_tar(path: Path, max_members: int = DEFAULT_MAX_MEMBERS, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
                  config_key: str = "download") -> list[TarEntry]:
    """Every member of a ``.tar.gz``, read in full (nothing is written): the gzip stream to its end with its
    CRC, every member's data (hashed), and no unreadable header before the end.

    Raises :class:`ContentError` when the file is not gzip (an HTML page, say), not a tar inside, truncated
    or spliced (a CRC that does not match), or holds more than ``max_members`` entries or ``max_bytes`` of
    data in total; a hard or symbolic link counts at its target's size.
    """
    with path.open("rb") as fh:
        head = fh.read(64)
    if head[:2] != b"\x1f\x8b":
        raise ContentError(f"{path}: not a gzip archive (starts with {head[:24]!r}; an error page?)")
    entries: list[TarEntry] = []
    seen: dict[str, TarEntry] = {}
    total = 0
    try:
        with open_tar_stream(path) as (tar, reader):
            for member in tar:
                if len(entries) >= max_members:
                    raise ContentError(f"{path}: more than {max_members} entries ({config_key}.max_members)")
                if member.isfile():
                    digest, n = hashlib.sha256(), 0
                    src = tar.extractfile(member)
                    for block in iter(lambda: src.read(_CHUNK), b""):  # noqa: B023 - consumed right here
                        digest.update(block)
                        n += len(block)
                    if n != member.size:
                        raise ContentError(f"{path}: member {member.name!r} holds {n} of its {member.size} bytes")
                    entry = TarEntry(os.path.normpath(member.name), "file", n, digest.hexdigest())
                elif member.islnk() or member.issym():
                    target = link_size(member, seen, path)
                    entry = TarEntry(os.path.normpath(member.name), "link", target.size, target.sha256, target.name)
                else:
                    entry = TarEntry(os.path.normpath(member.name), "dir" if member.isdir() else "other",
                                     max(int(member.size), 0), None)
                total += entry.size
                if total > max_bytes:
                    raise ContentError(f"{path}: unpacks to more than {max_bytes} bytes (member {member.name!r};"
                                       f" {config_key}.max_extract_bytes)")
                entries.append(entry)
                seen[entry.name] = entry
            check_tar_end(path, tar, reader)
    except ContentError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, TypeError, ValueError) as exc:  # TypeError: a cut header
        if disk_full(exc):
            raise DiskFullError(f"{path}: disk full while reading the archive ({exc.strerror})") from None
        raise ContentError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    if not entries:
        raise ContentError(f"{path}: empty archive")
    return entries


def check_gzip_tar(path: Path, max_members: int = DEFAULT_MAX_MEMBERS,
                   max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES, config_key: str = "download") -> list[str]:
    """The member names of a ``.tar.gz`` read in full by :func:`scan_gzip_tar` (same errors)."""
    return [e.name for e in scan_gzip_tar(path, max_members, max_bytes, config_key)]


def check_npz(path: Path, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{key: (shape, dtype)}`` of an npz read in full: every header (nothing allocated from what it claims),
    then every member's data streamed to its end, so zip's CRC of each is checked (a flipped bit in an array
    is caught here, before a checksum is locked). :class:`ContentError` when it is not a sound npz."""
    from diffmd.data.trajectory import TrajectoryFormatError, npz_headers, read_npz_members

    try:
        heads = npz_headers(path)
        read_npz_members(path, max_bytes)
    except TrajectoryFormatError as exc:
        raise ContentError(str(exc)) from None
    return heads


def default_check(name: str) -> ContentCheck | None:
    """The content check a file's name implies (``.tar.gz``/``.tgz``: a tar listing; ``.npz``: npz headers)."""
    if name.endswith((".tar.gz", ".tgz")):
        return lambda p: (check_gzip_tar(p), None)[1]
    if name.endswith(".npz"):
        return lambda p: (check_npz(p), None)[1]
    return None


def _run_check(check: ContentCheck | None, path: Path) -> None:
    if check is None:
        return
    try:
        check(path)
    except DownloadError:
        raise
    except (ValueError, KeyError) as exc:  # TrajectoryFormatError and friends
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ContentError(message) from None


# ---------------------------------------------------------------------------------------------- HTTP


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does and notes every hop to another host."""

    def __init__(self, hops: list[dict[str, Any]]) -> None:
        self.hops = hops

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib API
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            src, dst = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(new.full_url)
            hop = {"from": req.full_url, "to": new.full_url, "status": int(code)}
            if src.hostname != dst.hostname and hop not in self.hops:
                self.hops.append(hop)
        return new


class _Watchdog:
    """Shuts a download's sockets down when its per-file deadline passes.

    A socket timeout bounds one operation only: a server trickling its status line and headers one byte at
    a time (or the body, between two reads) never trips it. The watchdog's timer covers the whole file:
    connect (bounded by the socket timeout, itself capped at the time left), headers and body.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline, self.fired = deadline, False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._classes: dict[type, type] = {}
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            socks, self._socks = self._socks, []
        for sock in socks:
            _shutdown(sock)

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.fired:
                self._socks.append(sock)
                return
        _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def connection_class(self, base: type) -> type:
        """``base`` (an ``http.client`` connection class) whose sockets this watchdog can shut down."""
        if base not in self._classes:
            watchdog = self

            class Watched(base):  # type: ignore[misc, valid-type]
                def connect(self) -> None:
                    super().connect()
                    watchdog.register(self.sock)

            self._classes[base] = Watched
        return self._classes[base]

    def handlers(self) -> list[urllib.request.BaseHandler]:
        watchdog = self

        class HTTP(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):  # noqa: ANN001 - urllib API
                return super().do_open(watchdog.connection_class(http_class), req, **kwargs)

        class HTTPS(urllib.request.HTTPSHandler):
            def do_open(self, http_class, req, **kwargs):  # noqa: ANN001 - urllib API
                return super().do_open(watchdog.connection_class(http_class), req, **kwargs)

        return [HTTP(), HTTPS()]


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _open(url: str, start: int, timeout_s: float, validator: str | None = None,
          hops: list[dict[str, Any]] | None = None, watchdog: _Watchdog | None = None) -> http.client.HTTPResponse:
    headers = {"User-Agent": "diffmd-bench"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers: list[urllib.request.BaseHandler] = [_RecordRedirects(hops if hops is not None else [])]
    if watchdog is not None:
        handlers += watchdog.handlers()
    if host in ("127.0.0.1", "localhost", "::1"):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def _is_unreachable(exc: BaseException) -> bool:
    """True when the host cannot be resolved or the network is down (retrying will not help)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return True
    return isinstance(reason, OSError) and reason.errno in (101, 113)  # ENETUNREACH, EHOSTUNREACH


def _validator(resp: http.client.HTTPResponse) -> str | None:
    """A strong ETag, else Last-Modified: what ``If-Range`` may carry (RFC 9110 13.1.5)."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


class _Partial:
    """``<dest>.part`` and its record ``<dest>.part.json`` (URL and validator of the bytes in it)."""

    def __init__(self, part: Path, url: str) -> None:
        self.part, self.meta, self.url = part, part.with_name(part.name + ".json"), url
        self.validator: str | None = None
        self.trusted = False  # bytes in ``part`` were written by this call (resumable without a validator)
        self.resumed = False  # bytes were appended to an earlier response's (a splice, if the server lied)

    def adopt(self) -> None:
        """Keep a partial file from an earlier run only if it records this URL and a validator."""
        if not self.part.exists():
            self.meta.unlink(missing_ok=True)
            return
        try:
            record = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get("url") == self.url and record.get("validator"):
            self.validator = str(record["validator"])
            return
        tqdm.write(f"{self.part}: partial file of unknown origin, starting the download from zero")
        self.discard()

    def size(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def resumable(self) -> bool:
        return self.size() > 0 and (self.trusted or self.validator is not None)

    def start_fresh(self, validator: str | None) -> None:
        self.validator, self.trusted = validator, True
        if validator:
            self.meta.write_text(json.dumps({"url": self.url, "validator": validator}) + "\n")
        else:
            self.meta.unlink(missing_ok=True)

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
        self.validator, self.trusted, self.resumed = None, False, False


class _DeadlineExceeded(Exception):
    pass


def _append(fh: Any, chunk: bytes) -> None:
    fh.write(chunk)


def _stream_once(url: str, partial: _Partial, timeout_s: float, bars: dict[str, tqdm], deadline: float,
                 hops: list[dict[str, Any]], watchdog: _Watchdog | None = None) -> tuple[int, int | None]:
    """One HTTP request appending to the partial file; returns (bytes on disk, total expected or None).

    The progress bar is created on the first response, so a failed connection prints nothing.
    """
    start = partial.size() if partial.resumable() else 0
    if start == 0:
        partial.discard()
    with _open(url, start, min(timeout_s, max(deadline - time.monotonic(), 0.001)), partial.validator, hops,
               watchdog) as resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        validator = _validator(resp)
        total = None
        if status == 206 and start > 0:
            crange = resp.headers.get("Content-Range", "")
            unit_range = crange.split(" ", 1)[-1]
            first = unit_range.split("-", 1)[0]
            changed = partial.validator is not None and validator is not None and validator != partial.validator
            if not first.isdigit() or int(first) != start or changed:  # not the continuation we asked for
                partial.discard()
                raise ConnectionError(f"server answered Range {start}- with {crange!r}: restarting")
            total = int(crange.rsplit("/", 1)[1]) if "/" in crange and not crange.endswith("*") else None
            partial.resumed = True
        else:
            if status == 206:
                raise ConnectionError("unexpected 206 for a request without Range")
            start = 0  # a full body: the server ignored Range or If-Range did not match
            partial.start_fresh(validator)
            if length is not None and length.strip().isdigit():
                total = int(length)
        if "bar" not in bars:
            bars["bar"] = tqdm(desc=partial.part.name.removesuffix(".part"), unit="B", unit_scale=True,
                               mininterval=2.0)
        bar = bars["bar"]
        bar.reset(total=total)
        bar.update(start)
        with partial.part.open("ab" if start else "wb") as fh:
            while True:
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded
                chunk = resp.read1(_CHUNK)  # at most one socket read: a trickle cannot outlast the deadline
                if not chunk:
                    break
                _append(fh, chunk)
                bar.update(len(chunk))
    return partial.size(), total


def _retry_loop(url: str, partial: _Partial, retries: int, timeout_s: float, backoff_s: float, config_key: str,
                bars: dict[str, tqdm], deadline_s: float, hops: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + deadline_s
    attempt = 0

    def too_late() -> DownloadError:
        have = partial.size()
        if partial.validator is None:  # without an ETag/Last-Modified a later run could not resume it safely
            partial.discard()
        kept = ", kept for a resume" if partial.size() else ""
        return DownloadError(
            f"{url}: not finished within {deadline_s:g} s ({have} bytes so far{kept});"
            f" raise {config_key}.download.deadline_s or use a faster mirror ({config_key}.download.url_base)"
        )

    watchdog = _Watchdog(deadline)
    try:
        while True:
            try:
                have, total = _stream_once(url, partial, timeout_s, bars, deadline, hops, watchdog)
                if watchdog.expired():  # the watchdog cut the connection: the body may look complete but is not
                    raise _DeadlineExceeded
                if total is None or have == total:
                    return
                if have > total:  # more bytes than announced: the file on disk is not this resource
                    partial.discard()
                    raise ConnectionError(f"got {have} bytes, the server announced {total}")
                raise ConnectionError(f"connection closed after {have} of {total} bytes")
            except _DeadlineExceeded:
                raise too_late() from None
            except urllib.error.HTTPError as exc:
                if exc.code == 416:  # range not satisfiable: our partial file is stale
                    partial.discard()
                elif exc.code not in _RETRY_HTTP:
                    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
                err: BaseException = exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if disk_full(exc) or disk_full(reason):
                    partial.discard()
                    raise DiskFullError(f"{partial.part}: disk full (no space left on device) while downloading"
                                        f" {url}") from None
                if watchdog.expired():  # connect, headers or body cut at the deadline
                    raise too_late() from None
                if _is_unreachable(exc):
                    raise NoNetworkError(no_network_message(url, exc, config_key)) from None
                err = exc
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{url}: failed after {retries} retries ({type(err).__name__}: {err})")
            pause = backoff_s * 2 ** (attempt - 1)
            if time.monotonic() + pause >= deadline:
                raise too_late()
            time.sleep(pause)
    finally:
        watchdog.cancel()


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
    retries: int = DEFAULT_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    backoff_s: float = 1.0,
    config_key: str = "data.md17",
    sha256: str | None = None,
    check: ContentCheck | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> Fetched:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    ``sha256`` pins the file's checksum (config ``download.sha256``); otherwise a built-in or
    locked checksum is used. A cached ``dest`` is verified; if it fails it is deleted and
    downloaded again. A fresh download that fails verification raises :class:`ChecksumError`
    (naming the lock file and how to clear it when the lock holds the other value) and leaves
    nothing behind. A file with no checksum anywhere has its content checked (``check``, default
    by its name) and only then is recorded in ``lock``.
    """
    dest = Path(dest)
    exp = expected_for(dest.name, lock, sha256, config_key)
    check = check if check is not None else default_check(dest.name)
    if dest.exists():
        try:
            actual = _verify(dest, exp)
            if exp.sha256 is None:
                _run_check(check, dest)
                if lock is not None:
                    lock.record(dest.name, actual, dest.stat().st_size, url)
            return Fetched(dest, url, actual, dest.stat().st_size, exp.origin or "recorded", True)
        except (ChecksumError, ContentError) as exc:
            tqdm.write(f"cached file fails verification, fetching it again: {exc}")
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _Partial(dest.with_name(dest.name + ".part"), url)
    partial.adopt()
    hops: list[dict[str, Any]] = []
    part = partial.part
    for attempt in (1, 2):
        bars: dict[str, tqdm] = {}
        try:
            _retry_loop(url, partial, retries, timeout_s, backoff_s, config_key, bars, deadline_s, hops)
        finally:
            if "bar" in bars:
                bars["bar"].close()
        resumed = partial.resumed
        try:
            actual = _verify(part, exp)
            if exp.sha256 is None:
                _run_check(check, part)
            break
        except (ChecksumError, ContentError) as exc:
            partial.discard()
            if resumed and attempt == 1:  # a splice of two versions behind one validator: start from zero
                tqdm.write(f"{url}: the resumed download fails verification ({exc}); discarded it, downloading"
                           " it again from the start")
                continue
            if isinstance(exc, ChecksumError):
                detail = str(exc).split(": ", 1)[1]
                raise ChecksumError(f"{url}: download does not match ({detail}); removed it; {exp.hint}") from None
            detail = str(exc).split(": ", 1)[1] if str(exc).startswith(str(part)) else str(exc)
            raise ContentError(f"{url}: the download is not the expected file ({detail}); removed it, nothing"
                               " recorded") from None
    os.replace(part, dest)
    partial.meta.unlink(missing_ok=True)
    if exp.sha256 is None and lock is not None:
        lock.record(dest.name, actual, dest.stat().st_size, url)
    return Fetched(dest, url, actual, dest.stat().st_size, exp.origin or "recorded", False, hops)


def use_local(path: str | os.PathLike, lock: ChecksumLock | None = None, *, sha256: str | None = None,
              check: ContentCheck | None = None, config_key: str = "data.md17") -> Fetched:
    """A file the user already has: verified against a pinned, known or locked checksum when there is one,
    otherwise its content is checked (it is never recorded: only downloads are)."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file not found")
    exp = expected_for(path.name, lock, sha256, config_key)
    try:
        actual = _verify(path, exp)
    except ChecksumError as exc:
        raise ChecksumError(f"{exc}; {exp.hint}") from None
    if exp.sha256 is None:
        _run_check(check if check is not None else default_check(path.name), path)
    return Fetched(path, None, actual, path.stat().st_size, exp.origin or "unverified", True)


def find_local(local_dir: str | os.PathLike, names: tuple[str, ...], config_key: str) -> Path:
    """The first of ``names`` present in ``local_dir``; one-line error listing what was looked for."""
    folder = Path(local_dir)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DownloadError(f"{config_key}.download.local_dir={folder}: none of {', '.join(names)} found there")


def download_settings(dl: dict[str, Any]) -> dict[str, Any]:
    """``fetch`` keyword arguments from a config ``download`` section (defaults for absent keys)."""
    return {"retries": int(dl.get("retries", DEFAULT_RETRIES)),
            "timeout_s": float(dl.get("timeout_s", DEFAULT_TIMEOUT_S)),
            "deadline_s": float(dl.get("deadline_s", DEFAULT_DEADLINE_S))}
