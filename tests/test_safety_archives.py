"""Archives and npz files read in full before they are trusted (issue 27, rows 1, 2, 6, 7 and 10), against
servers on 127.0.0.1 only, each bounded in time.

Row 1: a server whose Content-Length is shorter than the body: the cut archive ends at a member boundary
(tarfile's own listing stops there silently); the gzip stream read to its end refuses it, nothing locked.
Row 2: a resume where the server keeps its ETag but changes the bytes: the splice fails the full read, the
partial file is discarded and the file fetched again from zero.
Row 6: an archive of one xyz plus hundreds of hard or symbolic links: links count at their target's size
toward the cap; duplicate isomers (copies or links) are refused.
Row 7: a server trickling its headers: the per-file deadline covers connect and headers.
Row 10: an MD17 npz with one bit flipped in an array (zip CRC bad, headers fine) is refused before locking.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import time
import zlib

import numpy as np
import pytest
from test_safety_downloads import Site, _xyz, body

from diffmd.data import c7o2h10 as C
from diffmd.data.download import ChecksumLock, ContentError, DownloadError, check_npz, fetch
from diffmd.data.md17 import md17_content_check
from diffmd.data.trajectory import TrajectoryFormatError


@pytest.fixture()
def site():
    s = Site()
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar_members(members: dict[str, bytes], links: dict[str, tuple[str, str]] | None = None) -> list[bytes]:
    """The uncompressed tar stream, one chunk per member (header + data + padding), then the end blocks.
    ``links``: name -> ("hard" | "sym", target)."""
    chunks = []
    for name, data in members.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        chunks.append(info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512))
    for name, (kind, target) in (links or {}).items():
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if kind == "hard" else tarfile.SYMTYPE
        info.linkname = target
        chunks.append(info.tobuf(format=tarfile.GNU_FORMAT))
    chunks.append(b"\0" * 1024)
    return chunks


def _gzip(chunks: list[bytes], level: int = 6) -> tuple[bytes, list[int]]:
    """A gzip stream of the chunks, flushed after each (so a cut there decompresses to a whole-member prefix);
    returns the bytes and the offset after each chunk."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    out, ends = b"", []
    for chunk in chunks:
        out += comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
        ends.append(len(out))
    return out + comp.flush(), ends


def _many_members(n: int, seed: int = 0) -> dict[str, bytes]:
    return {f"c7o2h10_md/{1000 + i}.xyz": _xyz(n_frames=3, seed=seed + i) for i in range(n)}


# ------------------------------------------------------------------------------------------- row 1


def test_content_length_cut_at_a_member_boundary_is_refused_and_not_locked(site, tmp_path):
    payload, ends = _gzip(_tar_members(_many_members(60)))
    cut = ends[20]  # 21 whole members, no end blocks, no gzip trailer: tarfile's own listing ends quietly here
    (tmp_path / "cut.tar.gz").write_bytes(payload[:cut])
    with tarfile.open(tmp_path / "cut.tar.gz", "r|gz") as tar:
        assert len([m for m in tar]) == 21  # what the archive check used to accept
    site.routes["/c7o2h10_md.tar.gz"] = body(payload, length=cut)  # Content-Length shorter than the body
    lock = ChecksumLock(tmp_path / "lock.json")
    dest = tmp_path / "raw" / "c7o2h10_md.tar.gz"
    t0 = time.monotonic()
    with pytest.raises(ContentError) as info:
        fetch(f"{site.url}/c7o2h10_md.tar.gz", dest, lock=lock, backoff_s=0.01, retries=1, check=C.archive_check())
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert "\n" not in msg and "corrupt or truncated archive" in msg and "nothing recorded" in msg, msg
    assert not lock.path.exists() and not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    site.routes["/c7o2h10_md.tar.gz"] = body(payload)  # the server is fixed: the whole archive is accepted
    got = fetch(f"{site.url}/c7o2h10_md.tar.gz", dest, lock=lock, backoff_s=0.01, check=C.archive_check())
    assert got.sha256 == _sha(payload) and lock.get(dest.name)["sha256"] == _sha(payload)


def test_a_bad_header_in_the_middle_is_not_the_end_of_the_archive(tmp_path):
    chunks = _tar_members(_many_members(10))
    chunks[5] = b"\x01" * 512 + chunks[5][512:]  # member 6's header destroyed, the gzip stream itself sound
    payload, _ = _gzip(chunks)
    (tmp_path / "c7o2h10_md.tar.gz").write_bytes(payload)
    with pytest.raises(ContentError, match=r"unreadable tar header at byte \d+ .* after 5 members"):
        C.archive_check()(tmp_path / "c7o2h10_md.tar.gz")
    with pytest.raises(TrajectoryFormatError, match="unreadable tar header"):
        C.safe_extract(tmp_path / "c7o2h10_md.tar.gz", tmp_path / "raw")
    assert not (tmp_path / "raw" / "c7o2h10_md").exists() and not (tmp_path / "raw" / ".extracting").exists()


# ------------------------------------------------------------------------------------------- row 2


def test_resume_spliced_under_the_same_etag_is_discarded_and_fetched_again(site, tmp_path):
    # two versions of the same length and layout (level 0: stored blocks), so the splice is a well-formed
    # gzip stream and tar listing; only the data and the gzip CRC tell them apart
    old = _gzip(_tar_members(_many_members(30, seed=0)), level=0)[0]
    new = _gzip(_tar_members(_many_members(30, seed=100)), level=0)[0]
    assert len(old) == len(new) and old != new
    half = len(old) // 2
    calls = {"n": 0}

    def lying(h: http.server.BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        rng = h.headers.get("Range")
        if calls["n"] == 1:  # version 1, connection lost halfway
            h.send_response(200)
            h.send_header("ETag", '"v1"')
            h.send_header("Content-Length", str(len(old)))
            h.end_headers()
            h.wfile.write(old[:half])
            h.wfile.flush()
            h.close_connection = True
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0  # version 2 behind the same ETag
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(new) - 1}/{len(new)}")
        h.send_header("ETag", '"v1"')
        h.send_header("Content-Length", str(len(new) - start))
        h.end_headers()
        h.wfile.write(new[start:])

    site.routes["/c7o2h10_md.tar.gz"] = lying
    lock = ChecksumLock(tmp_path / "lock.json")
    dest = tmp_path / "c7o2h10_md.tar.gz"
    got = fetch(f"{site.url}/c7o2h10_md.tar.gz", dest, lock=lock, backoff_s=0.01, retries=2,
                check=C.archive_check())
    assert [r["range"] for r in site.requests] == [None, f"bytes={half}-", None]  # resumed, then from zero
    assert dest.read_bytes() == new and got.sha256 == _sha(new) and lock.get(dest.name)["sha256"] == _sha(new)
    assert not dest.with_name(dest.name + ".part").exists() and not dest.with_name(dest.name + ".part.json").exists()


# ------------------------------------------------------------------------------------------- row 6


def _links_archive(kind: str, n_links: int) -> bytes:
    big = _xyz(n_frames=60)
    links = {f"c7o2h10_md/{2000 + i}.xyz": (kind, "c7o2h10_md/1000.xyz" if kind == "hard" else "1000.xyz")
             for i in range(n_links)}
    return _gzip(_tar_members({"c7o2h10_md/1000.xyz": big}, links))[0]


@pytest.mark.parametrize("kind", ["hard", "sym"])
def test_links_count_at_their_targets_size(tmp_path, kind):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    archive.write_bytes(_links_archive(kind, 300))
    size = len(_xyz(n_frames=60))
    cap = 20 * size  # room for 20 copies of the file, not for 301
    with pytest.raises(ContentError, match="unpacks to more than"):
        C.archive_check(max_bytes=cap)(archive)
    with pytest.raises(TrajectoryFormatError, match=r"unpacks to more than \d+ bytes \(member 'c7o2h10_md/2019.xyz'"):
        C.safe_extract(archive, tmp_path / "raw", max_bytes=cap)
    assert not (tmp_path / "raw" / "c7o2h10_md").exists() and not (tmp_path / "raw" / ".extracting").exists()


@pytest.mark.parametrize("kind", ["hard", "sym", "copy"])
def test_duplicate_isomers_are_refused(tmp_path, kind):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    first = _xyz(n_frames=6, seed=1)
    if kind == "copy":
        archive.write_bytes(_gzip(_tar_members({"c7o2h10_md/1000.xyz": first, "c7o2h10_md/1001.xyz": _xyz(seed=2),
                                                "c7o2h10_md/1002.xyz": first}))[0])
    else:
        archive.write_bytes(_links_archive(kind, 1))
    with pytest.raises(TrajectoryFormatError, match="duplicate isomers would leak across the O2O split") as info:
        C.archive_check()(archive)
    assert "\n" not in str(info.value)
    folder = C.safe_extract(archive, tmp_path / "raw")  # what a local_dir or an older lock entry would pass on
    with pytest.raises(TrajectoryFormatError, match=r"the same trajectory as .*1000\.xyz .*duplicate isomers"):
        C.convert_folder(folder, tmp_path / "out", "local", {})


def test_a_link_out_of_the_archive_is_refused(tmp_path):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    archive.write_bytes(_gzip(_tar_members({"c7o2h10_md/1000.xyz": _xyz()}, {"c7o2h10_md/1001.xyz":
                                                                              ("sym", "/etc/passwd")}))[0])
    with pytest.raises(ContentError, match="link member 'c7o2h10_md/1001.xyz' points at '/etc/passwd'"):
        C.archive_check()(archive)


# ------------------------------------------------------------------------------------------- row 7


def test_trickled_headers_stop_at_the_deadline(site, tmp_path):
    stop = threading.Event()

    def trickle_headers(h: http.server.BaseHTTPRequestHandler) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Slow: " + b"y" * 100:  # 1 byte / 50 ms: 7 s
            if stop.is_set():
                return
            try:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)
        h.close_connection = True

    site.routes["/slow.bin"] = trickle_headers
    t0 = time.monotonic()
    try:
        with pytest.raises(DownloadError) as info:
            fetch(f"{site.url}/slow.bin", tmp_path / "slow.bin", timeout_s=2, deadline_s=0.5, backoff_s=0.01)
    finally:
        stop.set()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"the deadline of 0.5 s took {elapsed:.1f} s"
    msg = str(info.value)
    assert "not finished within 0.5 s" in msg and "deadline_s" in msg and "\n" not in msg
    assert not (tmp_path / "slow.bin").exists()


# ------------------------------------------------------------------------------------------- row 10


ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


def _md17_npz(flip: bool) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, R=rng.normal(size=(400, 9, 3)), z=ETHANOL_Z, E=rng.normal(size=(400, 1)),
             F=rng.normal(size=(400, 9, 3)))  # stored, like the upstream files
    raw = bytearray(buf.getvalue())
    if flip:
        at = raw.index(b"R.npy") + 2000  # inside R's data: headers, keys, shapes and frames all intact
        raw[at] ^= 0x04
    return bytes(raw)


def test_one_flipped_bit_in_an_md17_array_is_refused_before_locking(site, tmp_path):
    bad, good = _md17_npz(True), _md17_npz(False)
    (tmp_path / "bad.npz").write_bytes(bad)
    with np.load(tmp_path / "bad.npz") as npz:  # the headers and z read fine: what the check used to read
        assert npz["z"].tolist() == ETHANOL_Z.tolist()
    lock = ChecksumLock(tmp_path / "lock.json")
    dest = tmp_path / "raw" / "md17_ethanol.npz"
    check = md17_content_check("ethanol", check_frames=False)
    site.routes["/md17_ethanol.npz"] = body(bad)
    with pytest.raises(ContentError, match=r"Bad CRC-32 for file 'R\.npy'.*nothing recorded") as info:
        fetch(f"{site.url}/md17_ethanol.npz", dest, lock=lock, backoff_s=0.01, check=check)
    assert "\n" not in str(info.value)
    assert not lock.path.exists() and not dest.exists()
    with pytest.raises(ContentError, match="Bad CRC-32"):  # the generic npz check (files without their own)
        check_npz(tmp_path / "bad.npz")
    site.routes["/md17_ethanol.npz"] = body(good)  # the good file is accepted: nothing stale in the lock
    got = fetch(f"{site.url}/md17_ethanol.npz", dest, lock=lock, backoff_s=0.01, check=check)
    assert got.sha256 == _sha(good) and lock.get(dest.name)["sha256"] == _sha(good)
