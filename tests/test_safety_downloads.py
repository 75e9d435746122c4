"""Downloads verified before they are trusted (issue 15, rows 2-5), against servers on 127.0.0.1 only.

Row 2: an HTML page served with status 200 is refused before its checksum is locked; a pinned
SHA-256 is checked before caching; a lock mismatch names the lock file and how to clear it.
Row 3: a Content-Length shorter than the body, a foreign ``.part``, ``If-Range`` on resume.
Row 4: capped extraction, ``.extracting/`` removed on every failure, a full disk named as such.
Row 5: an overall deadline per file against a trickling server; cross-host redirects recorded.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time

import numpy as np
import pytest

from diffmd.data import c7o2h10 as C
from diffmd.data import download as dl
from diffmd.data.download import ChecksumError, ChecksumLock, ContentError, DiskFullError, DownloadError, fetch
from diffmd.data.trajectory import TrajectoryFormatError

SYMBOLS = ["C"] * 7 + ["O"] * 2 + ["H"] * 10


def _xyz(n_frames: int = 6, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(19, 3))
    lines = []
    for f in range(n_frames):
        pos = base + 0.01 * f
        lines += ["19", f"frame {f}"] + [f"{s} {x:.5f} {y:.5f} {z:.5f}" for s, (x, y, z) in zip(SYMBOLS, pos)]
    return ("\n".join(lines) + "\n").encode()


def _archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = _archive({"c7o2h10_md/1004.xyz": _xyz(), "c7o2h10_md/2134.xyz": _xyz(seed=1)})
HTML = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>" * 20


class Site:
    """A tiny configurable HTTP server: ``routes[path] = callable(handler) -> None``."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.requests: list[dict[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                outer.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                       "if_range": self.headers.get("If-Range")})
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def site():
    s = Site()
    yield s
    s.close()


def body(payload: bytes, *, length: int | None = None, etag: str | None = None, ranges: bool = True):
    """A route serving ``payload`` (honouring Range and If-Range against ``etag`` when ``ranges``)."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng and ranges else 0
        if start and if_range is not None and if_range != etag:
            start = 0  # RFC 9110: a failed If-Range means the whole current representation
        data = payload[start:]
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        if etag:
            h.send_header("ETag", etag)
        h.send_header("Content-Length", str(len(data) if length is None else length))
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True

    return route


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------- row 2


def test_html_page_is_refused_before_locking_and_the_fixed_server_then_works(site, tmp_path):
    lock = ChecksumLock(tmp_path / "checksums.lock.json")
    dest = tmp_path / "raw" / "c7o2h10_md.tar.gz"
    site.routes["/c7o2h10_md.tar.gz"] = body(HTML)
    with pytest.raises(ContentError) as info:
        fetch(f"{site.url}/c7o2h10_md.tar.gz", dest, lock=lock, backoff_s=0.01, check=C.archive_check())
    msg = str(info.value)
    assert "\n" not in msg and "not a gzip archive" in msg and "nothing recorded" in msg
    assert lock.get(dest.name) is None and not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    site.routes["/c7o2h10_md.tar.gz"] = body(ARCHIVE)  # the server is fixed
    got = fetch(f"{site.url}/c7o2h10_md.tar.gz", dest, lock=lock, backoff_s=0.01, check=C.archive_check())
    assert got.sha256 == _sha(ARCHIVE) and lock.get(dest.name)["sha256"] == _sha(ARCHIVE)


def test_md17_npz_without_its_arrays_is_not_locked(site, tmp_path):
    from diffmd.data.md17 import obtain_md17

    buf = io.BytesIO()
    np.savez(buf, positions=np.zeros((3, 9, 3)))
    site.routes["/md17_ethanol.npz"] = body(buf.getvalue())
    cfg = {"download": {"url_base": site.url, "retries": 0}}
    with pytest.raises(ContentError, match="missing key\\(s\\) R, z"):
        obtain_md17("ethanol", "download", cfg, tmp_path / "raw", tmp_path / "lock.json")
    assert not (tmp_path / "lock.json").exists() and not list((tmp_path / "raw").iterdir())


def test_pinned_sha256_is_checked_before_caching_or_locking(site, tmp_path):
    site.routes["/c7o2h10_md.tar.gz"] = body(ARCHIVE)
    cfg = {"download": {"url": f"{site.url}/c7o2h10_md.tar.gz", "sha256": "0" * 64, "retries": 0}}
    with pytest.raises(ChecksumError) as info:
        C.obtain_c7o2h10("download", cfg, tmp_path / "raw", tmp_path / "lock.json")
    assert "data.c7o2h10.download.sha256" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "lock.json").exists() and not list((tmp_path / "raw").iterdir())
    cfg["download"]["sha256"] = _sha(ARCHIVE)
    folder, prov = C.obtain_c7o2h10("download", cfg, tmp_path / "raw", tmp_path / "lock.json")
    assert prov["verified_by"] == "pinned" and sorted(p.name for p in folder.glob("*.xyz")) == ["1004.xyz", "2134.xyz"]


def test_lock_mismatch_names_the_lock_file_and_how_to_clear_it(site, tmp_path):
    lock = ChecksumLock(tmp_path / "checksums.lock.json")
    site.routes["/f.bin"] = body(b"first version " * 100)
    fetch(f"{site.url}/f.bin", tmp_path / "f.bin", lock=lock, backoff_s=0.01)
    (tmp_path / "f.bin").unlink()
    site.routes["/f.bin"] = body(b"second version " * 100)
    with pytest.raises(ChecksumError) as info:
        fetch(f"{site.url}/f.bin", tmp_path / "f.bin", lock=lock, backoff_s=0.01)
    msg = str(info.value)
    assert str(lock.path) in msg and "delete the entry 'f.bin'" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------- row 3


def test_content_length_shorter_than_the_body_is_not_locked(site, tmp_path):
    lock = ChecksumLock(tmp_path / "lock.json")
    site.routes["/c7o2h10_md.tar.gz"] = body(ARCHIVE, length=len(ARCHIVE) // 2)
    with pytest.raises(ContentError, match="corrupt or truncated archive"):
        fetch(f"{site.url}/c7o2h10_md.tar.gz", tmp_path / "c7o2h10_md.tar.gz", lock=lock, backoff_s=0.01)
    assert not lock.path.exists() and not (tmp_path / "c7o2h10_md.tar.gz").exists()


def test_foreign_part_file_is_not_spliced(site, tmp_path):
    payload = bytes(range(256)) * 512
    site.routes["/f.bin"] = body(payload)
    (tmp_path / "f.bin.part").write_bytes(b"X" * 5000)  # left by something else: no record of its origin
    got = fetch(f"{site.url}/f.bin", tmp_path / "f.bin", backoff_s=0.01)
    assert (tmp_path / "f.bin").read_bytes() == payload and got.sha256 == _sha(payload)
    assert site.requests[0]["range"] is None


def test_resume_sends_if_range_and_restarts_when_the_file_changed(site, tmp_path):
    old, new = b"A" * 50_000, b"B" * 60_000
    part = tmp_path / "f.bin.part"
    part.write_bytes(old[:20_000])
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": f"{site.url}/f.bin", "validator": '"v1"'}))
    site.routes["/f.bin"] = body(new, etag='"v2"')  # changed upstream since the partial download
    fetch(f"{site.url}/f.bin", tmp_path / "f.bin", backoff_s=0.01)
    assert site.requests[0]["range"] == "bytes=20000-" and site.requests[0]["if_range"] == '"v1"'
    assert (tmp_path / "f.bin").read_bytes() == new  # restarted, not spliced
    assert not (tmp_path / "f.bin.part.json").exists()
    # same validator: the resume continues where it stopped
    part.write_bytes(new[:10_000])
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": f"{site.url}/f.bin", "validator": '"v2"'}))
    (tmp_path / "f.bin").unlink()
    fetch(f"{site.url}/f.bin", tmp_path / "f.bin", backoff_s=0.01)
    assert site.requests[-1]["range"] == "bytes=10000-" and (tmp_path / "f.bin").read_bytes() == new


# ------------------------------------------------------------------------------------------- row 4


def test_archive_over_the_size_cap_stops_at_the_header(tmp_path):
    bomb = tmp_path / "c7o2h10_md.tar.gz"
    bomb.write_bytes(_archive({"c7o2h10_md/1004.xyz": _xyz(), "c7o2h10_md/big.dat": bytes(8 << 20)}))
    with pytest.raises(TrajectoryFormatError, match=r"unpacks to more than 1048576 bytes .*'c7o2h10_md/big.dat'"):
        C.safe_extract(bomb, tmp_path / "raw", "tag", max_bytes=1 << 20)
    assert not (tmp_path / "raw" / ".extracting").exists() and not (tmp_path / "raw" / "c7o2h10_md").exists()
    with pytest.raises(ContentError, match="max_extract_bytes"):  # the same cap before the checksum is locked
        C.archive_check(max_bytes=1 << 20)(bomb)


def test_member_cap_and_caps_from_the_config(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "c7o2h10_md.tar.gz").write_bytes(_archive({f"c7o2h10_md/{i}.xyz": _xyz(seed=i) for i in range(5)}))
    cfg = {"download": {"local_dir": str(local), "max_members": 3}}
    with pytest.raises(ContentError, match="more than 3 entries"):
        C.obtain_c7o2h10("local", cfg, tmp_path / "raw", tmp_path / "lock.json")
    with pytest.raises(TrajectoryFormatError, match="more than 3 entries"):
        C.safe_extract(local / "c7o2h10_md.tar.gz", tmp_path / "raw", "t", max_members=3)
    assert not (tmp_path / "raw" / ".extracting").exists()


def test_corrupt_archive_leaves_no_extracting_folder(tmp_path):
    cut = tmp_path / "c7o2h10_md.tar.gz"
    cut.write_bytes(ARCHIVE[: len(ARCHIVE) // 2])
    with pytest.raises(TrajectoryFormatError, match="corrupt or truncated archive"):
        C.safe_extract(cut, tmp_path / "raw")
    assert not (tmp_path / "raw" / ".extracting").exists()


def test_full_disk_while_unpacking_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    archive.write_bytes(ARCHIVE)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile, "copyfileobj", no_space)
    with pytest.raises(DiskFullError) as info:
        C.safe_extract(archive, tmp_path / "raw")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'raw' / '.extracting'}: disk full") and "\n" not in msg
    assert not (tmp_path / "raw" / ".extracting").exists()


def test_full_disk_while_downloading_is_not_retried(site, tmp_path, monkeypatch):
    site.routes["/f.bin"] = body(b"x" * 100_000)

    def no_space(fh, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl, "_append", no_space)
    with pytest.raises(DiskFullError, match=r"f.bin.part: disk full"):
        fetch(f"{site.url}/f.bin", tmp_path / "f.bin", backoff_s=0.01, retries=3)
    assert len(site.requests) == 1 and not (tmp_path / "f.bin.part").exists()


# ------------------------------------------------------------------------------------------- row 5


def test_trickling_server_hits_the_overall_deadline(site, tmp_path):
    stop = threading.Event()

    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(200):  # 1 byte every 20 ms: every socket read succeeds, the file never finishes
            if stop.is_set():
                return
            try:
                h.wfile.write(b"x")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.02)

    site.routes["/slow.bin"] = trickle
    t0 = time.monotonic()
    try:
        with pytest.raises(DownloadError) as info:
            fetch(f"{site.url}/slow.bin", tmp_path / "slow.bin", timeout_s=2, deadline_s=0.6, backoff_s=0.01)
    finally:
        stop.set()
    assert time.monotonic() - t0 < 3.0
    msg = str(info.value)
    assert "not finished within 0.6 s" in msg and "deadline_s" in msg and "\n" not in msg
    assert not (tmp_path / "slow.bin").exists() and not (tmp_path / "slow.bin.part").exists()  # no validator


def test_cross_host_redirect_is_recorded(site, tmp_path):
    payload = b"redirected payload " * 100
    target = f"http://localhost:{site.port}/real.bin"

    def moved(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", target)
        h.send_header("Content-Length", "0")
        h.end_headers()

    site.routes["/f.bin"] = moved
    site.routes["/real.bin"] = body(payload)
    got = fetch(f"{site.url}/f.bin", tmp_path / "f.bin", backoff_s=0.01)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert got.redirects == [{"from": f"{site.url}/f.bin", "to": target, "status": 302}]
    assert got.provenance()["redirects"] == got.redirects
