"""Downloads against a local HTTP server: good, truncated, wrong checksum, dropped and resumed."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest

from diffmd.data import download as dl
from diffmd.data.download import ChecksumError, ChecksumLock, DownloadError, NoNetworkError, fetch

BODY = bytes(range(256)) * 4096  # 1 MiB, several read chunks


class Handler(http.server.BaseHTTPRequestHandler):
    """Paths: /good (Range ok), /drop (first reply cut mid-file, then Range ok), /norange (cut,
    Range ignored), /short (a consistent but truncated file), /cut (always cut)."""

    requests: list[tuple[str, str | None]] = []
    body = BODY

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path, rng = self.path, self.headers.get("Range")
        Handler.requests.append((path, rng))
        body = self.body[: len(self.body) // 3] if path == "/short" else self.body
        first = sum(1 for p, _ in Handler.requests if p == path) == 1
        if path == "/missing":
            self.send_error(404, "Not Found")
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng and path in ("/good", "/drop", "/cut") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = path == "/cut" or (path in ("/drop", "/norange") and first)
        payload = body[start:]
        self.wfile.write(payload[: len(payload) // 2] if cut else payload)
        self.close_connection = True


@pytest.fixture()
def server():
    Handler.requests = []
    Handler.body = BODY
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_file_is_recorded_then_verified(server, tmp_path):
    lock = ChecksumLock(tmp_path / "checksums.lock.json")
    got = fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    assert (tmp_path / "good.bin").read_bytes() == BODY
    assert got.sha256 == _sha(BODY) and got.verified_by == "recorded" and not got.from_cache
    assert lock.get("good.bin") == {"sha256": _sha(BODY), "bytes": len(BODY), "url": f"{server}/good"}
    assert not (tmp_path / "good.bin.part").exists()
    again = fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    assert again.from_cache and again.verified_by == "lock"
    assert len(Handler.requests) == 1  # the verified cache is used, no second request


def test_changed_upstream_file_fails_against_lock(server, tmp_path):
    lock = ChecksumLock(tmp_path / "lock.json")
    fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    (tmp_path / "good.bin").unlink()
    Handler.body = BODY[::-1]
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    assert not (tmp_path / "good.bin").exists() and not (tmp_path / "good.bin.part").exists()


def test_damaged_cache_is_fetched_again(server, tmp_path):
    lock = ChecksumLock(tmp_path / "lock.json")
    fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    (tmp_path / "good.bin").write_bytes(BODY[:1000])  # a truncated cached copy
    got = fetch(f"{server}/good", tmp_path / "good.bin", lock=lock, backoff_s=0.01)
    assert not got.from_cache and (tmp_path / "good.bin").read_bytes() == BODY


def test_wrong_known_checksum(server, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.KNOWN_FILES, "known.bin", (len(BODY), "0" * 64))
    with pytest.raises(ChecksumError, match=r"SHA-256 .* does not match"):
        fetch(f"{server}/good", tmp_path / "known.bin", backoff_s=0.01)
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_fails_size_check(server, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.KNOWN_FILES, "short.bin", (len(BODY), _sha(BODY)))
    with pytest.raises(ChecksumError, match=rf"{len(BODY) // 3} bytes, expected {len(BODY)}"):
        fetch(f"{server}/short", tmp_path / "short.bin", backoff_s=0.01)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_resumes_with_range(server, tmp_path):
    got = fetch(f"{server}/drop", tmp_path / "drop.bin", backoff_s=0.01)
    assert (tmp_path / "drop.bin").read_bytes() == BODY and got.bytes == len(BODY)
    assert [r for _, r in Handler.requests] == [None, f"bytes={len(BODY) // 2}-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    fetch(f"{server}/norange", tmp_path / "nr.bin", backoff_s=0.01)
    assert (tmp_path / "nr.bin").read_bytes() == BODY
    assert len(Handler.requests) == 2 and Handler.requests[1][1] is not None  # asked for a range, got all


def test_connection_that_keeps_dropping_gives_up(server, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="failed after 2 retries"):
        fetch(f"{server}/cut", tmp_path / "cut.bin", retries=2, backoff_s=0.01)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "cut.bin").exists()


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing: HTTP 404"):
        fetch(f"{server}/missing", tmp_path / "m.bin", backoff_s=0.01)


def test_no_network_names_the_alternatives(tmp_path):
    with pytest.raises(NoNetworkError) as info:
        fetch("http://nonexistent.invalid/md17_ethanol.npz", tmp_path / "x.npz", config_key="data.md17")
    msg = str(info.value)
    assert "\n" not in msg and "no network" in msg
    assert "data.md17.download.local_dir" in msg and "data.md17.source: xtb" in msg
