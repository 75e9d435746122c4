"""Download faults through the workflow's c7o2h10_index rule (``python -m diffmd.data c7o2h10``),
against a local HTTP server on 127.0.0.1 that serves a small synthetic C7O2H10 archive.

* The server cuts the first response in the middle of the file; the rule's download resumes with an
  HTTP Range request, verifies the archive and builds the isomer trajectories.
* The cached archive is then corrupted on disk; a rerun of the rule detects the bad checksum (lock
  file) and fetches the archive again instead of converting the damaged copy: same trajectories.

The data layer's own tests cover fetch() itself; these check the behaviour through the pipeline.
"""

from __future__ import annotations

import copy
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from workflow_copy import TINY_CONFIG, make_workdir, run_snakemake

from diffmd.data.trajectory import load_trajectory

pytestmark = pytest.mark.slow

ARCHIVE = "c7o2h10_md.tar.gz"
INDEX = "data/c7o2h10/index.json"
CACHED = "data/raw/c7o2h10/" + ARCHIVE
SYMBOLS = ["C"] * 7 + ["O"] * 2 + ["H"] * 10


def _archive(ids=(1004, 2134), n_frames=12) -> bytes:
    """A tar.gz laid out like the upstream one: c7o2h10_md/<ID>.xyz, 19 atoms per frame (Å)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for file_id in ids:
            base = rng.normal(scale=1.5, size=(19, 3))
            lines = []
            for f in range(n_frames):
                pos = base + 0.01 * f + rng.normal(scale=0.005, size=base.shape)
                lines += ["19", f"frame {f}"]
                lines += [f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(SYMBOLS, pos)]
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"c7o2h10_md/{file_id}.xyz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Server:
    """Serves one payload; the first full GET sends the headers and only half the body, then hangs up."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.requests, self.cut_done = payload, [], False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = outer.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.end_headers()
                if not rng and not outer.cut_done:
                    outer.cut_done = True
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{ARCHIVE}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _trajectories(wd: Path) -> dict[str, np.ndarray]:
    index = json.loads((wd / INDEX).read_text())
    return {name: load_trajectory(wd / path).positions for name, path in index["files"].items()}


def test_cut_download_resumes_and_corrupted_cache_is_fetched_again(tmp_path):
    payload = _archive()
    with _Server(payload) as server:
        cfg = copy.deepcopy(TINY_CONFIG)
        cfg["data"]["c7o2h10"] = {"source": "download",
                                  "download": {"url": server.url, "retries": 3, "timeout_s": 10}}
        wd = make_workdir(tmp_path / "wf", cfg)
        run_snakemake(wd, INDEX)
        assert server.cut_done and server.requests[0] is None
        assert server.requests[1] == f"bytes={len(payload) // 2}-", server.requests  # resumed, not restarted
        assert (wd / CACHED).read_bytes() == payload
        first = _trajectories(wd)
        assert sorted(first) == ["iso1004", "iso2134"] and first["iso1004"].shape == (12, 19, 3)

        damaged = bytearray(payload)
        damaged[len(damaged) // 3] ^= 0xFF
        (wd / CACHED).write_bytes(bytes(damaged))
        n_before = len(server.requests)
        run_snakemake(wd, INDEX, extra_args=("--forcerun", "c7o2h10_index"))
        assert server.requests[n_before:] == [None], "the damaged cache was not fetched again"
        assert (wd / CACHED).read_bytes() == payload
        log = (wd / "results/logs/c7o2h10_index/c7o2h10.log").read_text()
        assert "fails verification" in log, log[-2000:]
        again = _trajectories(wd)
        for name in first:
            np.testing.assert_array_equal(first[name], again[name])
