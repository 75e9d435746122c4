"""``python -m diffmd.data``: sources end to end, one-line errors, finished outputs never touched."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from diffmd.data.__main__ import main
from diffmd.data.trajectory import load_trajectory
from diffmd.data.xyz import read_xyz

DATA = Path(__file__).parent / "data"


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _md17_file(path: Path) -> None:
    """Three real MD17 ethanol frames in the upstream npz layout."""
    x = read_xyz(DATA / "md17_ethanol_first3.xyz")
    np.savez(path, R=x.positions, z=x.atomic_numbers, E=np.zeros((3, 1)), F=x.extra)


def test_local_source_with_legacy_name(tmp_path, capsys):
    _md17_file(tmp_path / "ethanol_dft.npz")
    cfg = json.dumps({"source": "local", "download": {"local_dir": str(tmp_path)}})
    out = tmp_path / "out" / "ethanol.npz"
    code, err = _run(capsys, "md17", "--molecule", "ethanol", "--source", "local", "--config-json", cfg,
                     "--out", str(out), "--lock", str(tmp_path / "lock.json"))
    assert code == 0, err
    traj = load_trajectory(out)
    assert traj.positions.shape == (3, 9, 3) and traj.source == "local"
    assert traj.provenance["file"] == "ethanol_dft.npz" and len(traj.provenance["sha256"]) == 64


def test_corrupt_local_file_is_one_line_and_keeps_finished_output(tmp_path, capsys):
    (tmp_path / "md17_ethanol.npz").write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "ethanol.npz"
    out.write_bytes(b"finished earlier")
    cfg = json.dumps({"download": {"local_dir": str(tmp_path)}})
    code, err = _run(capsys, "md17", "--molecule", "ethanol", "--source", "local", "--config-json", cfg,
                     "--out", str(out), "--lock", str(tmp_path / "lock.json"))
    assert code == 1 and err.count("\n") == 1
    assert "md17_ethanol.npz: corrupt or truncated npz" in err
    assert out.read_bytes() == b"finished earlier"


def test_local_source_needs_local_dir_and_known_molecule(tmp_path, capsys):
    code, err = _run(capsys, "md17", "--molecule", "ethanol", "--source", "local", "--config-json", "{}",
                     "--out", str(tmp_path / "e.npz"))
    assert code == 1 and "data.md17.download.local_dir: required" in err
    code, err = _run(capsys, "md17", "--molecule", "water", "--source", "download", "--config-json", "{}",
                     "--out", str(tmp_path / "w.npz"))
    assert code == 1 and "unknown MD17 molecule 'water'" in err


def test_download_without_network_is_one_line(tmp_path, capsys):
    cfg = json.dumps({"download": {"url_base": "http://nonexistent.invalid/npz", "retries": 1}})
    code, err = _run(capsys, "md17", "--molecule", "uracil", "--source", "download", "--config-json", cfg,
                     "--out", str(tmp_path / "u.npz"), "--cache-dir", str(tmp_path / "raw"),
                     "--lock", str(tmp_path / "lock.json"))
    assert code == 1 and err.count("\n") == 1
    assert "data.md17.download.local_dir" in err and "data.md17.source: xtb" in err
    assert not (tmp_path / "u.npz").exists()


def _fake_isomer_xyz(n_frames: int, seed: int) -> str:
    """A C7O2H10-shaped xyz text (19 atoms drifting 0.01 Å per frame and jiggling by 0.005 Å: a plausible
    kinetic temperature, data.c7o2h10.checks)."""
    rng = np.random.default_rng(seed)
    symbols = ["C"] * 7 + ["O"] * 2 + ["H"] * 10
    base = rng.normal(scale=1.5, size=(19, 3))
    out = []
    for f in range(n_frames):
        pos = base + 0.01 * f + rng.normal(scale=0.005, size=base.shape)
        out += ["19", f"frame {f}"] + [f"{s} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}" for s, p in zip(symbols, pos)]
    return "\n".join(out) + "\n"


@pytest.fixture()
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_c7o2h10_download_and_split(served, tmp_path, capsys, monkeypatch):
    root, url = served
    with tarfile.open(root / "c7o2h10_md.tar.gz", "w:gz") as tar:
        for k, file_id in enumerate(("1004", "1007", "2126", "3001")):
            data = _fake_isomer_xyz(12 + k, k).encode()
            info = tarfile.TarInfo(f"c7o2h10_md/{file_id}.xyz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.chdir(tmp_path)
    cfg = json.dumps({"source": "download", "download": {"url": f"{url}/c7o2h10_md.tar.gz"}})
    code, err = _run(capsys, "c7o2h10", "--source", "download", "--config-json", cfg, "--out-dir", "data/c7o2h10",
                     "--raw-dir", "data/raw/c7o2h10", "--lock", "data/checksums.lock.json")
    assert code == 0, err
    index = json.loads(Path("data/c7o2h10/index.json").read_text())
    assert index["isomers"] == ["iso1004", "iso1007", "iso2126", "iso3001"]
    lock = json.loads(Path("data/checksums.lock.json").read_text())
    assert lock["c7o2h10_md.tar.gz"]["sha256"] == index["archive"]["sha256"]
    split_cfg = json.dumps({"targets": ["iso1004", "iso3001"], "n_val_isomers": 1})
    code, err = _run(capsys, "split-c7o2h10", "--index", "data/c7o2h10/index.json", "--config-json", split_cfg,
                     "--out", "data/splits/c7o2h10.json")
    assert code == 0, err
    split = json.loads(Path("data/splits/c7o2h10.json").read_text())
    assert split["targets"] == ["iso1004", "iso3001"] and split["selection"] == "config"
    assert sorted(split["train_isomers"] + split["val_isomers"]) == ["iso1007", "iso2126"]
    assert split["frames"]["iso3001"] == {"start": 2, "stop": 14}  # 15 frames, stride 1


def test_split_md17_too_short_is_one_line(tmp_path, capsys):
    _md17_file(tmp_path / "ethanol_dft.npz")
    cfg = json.dumps({"download": {"local_dir": str(tmp_path)}})
    traj = tmp_path / "ethanol.npz"
    assert _run(capsys, "md17", "--molecule", "ethanol", "--source", "local", "--config-json", cfg,
                "--out", str(traj), "--lock", str(tmp_path / "lock.json"))[0] == 0
    code, err = _run(capsys, "split-md17", "--trajectory", str(traj), "--config-json",
                     json.dumps({"n_train": 10, "n_val": 1, "n_test": 1}), "--out", str(tmp_path / "s.json"))
    assert code == 1 and err.count("\n") == 1 and "ethanol.npz: 3 frames, the split needs 15" in err
    assert not (tmp_path / "s.json").exists()


def test_md17_download_records_checksum_then_uses_verified_cache(served, tmp_path, capsys, monkeypatch):
    from diffmd.data import download

    root, url = served
    _md17_file(root / "md17_ethanol.npz")
    monkeypatch.setitem(download.MD17_FRAMES, "ethanol", 3)  # the served file holds 3 real frames
    cfg = json.dumps({"download": {"url_base": url, "retries": 1}})
    argv = ["md17", "--molecule", "ethanol", "--source", "download", "--config-json", cfg,
            "--cache-dir", str(tmp_path / "raw"), "--lock", str(tmp_path / "lock.json")]
    assert _run(capsys, *argv, "--out", str(tmp_path / "a.npz"))[0] == 0
    first = load_trajectory(tmp_path / "a.npz").provenance
    assert first["url"] == f"{url}/md17_ethanol.npz" and first["verified_by"] == "recorded"
    assert json.loads((tmp_path / "lock.json").read_text())["md17_ethanol.npz"]["sha256"] == first["sha256"]
    (root / "md17_ethanol.npz").unlink()  # the second run must not need the server
    assert _run(capsys, *argv, "--out", str(tmp_path / "b.npz"))[0] == 0
    assert load_trajectory(tmp_path / "b.npz").provenance["verified_by"] == "lock"
