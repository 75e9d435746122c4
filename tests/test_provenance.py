"""diffmd.provenance: config hash, file checksums with a cache, git state, the written record."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from diffmd import provenance
from diffmd.provenance import config_hash, git_state, sha256_file, write_provenance


def test_config_hash_ignores_key_order_and_sees_values():
    a = {"train": {"lr": 5e-4, "epochs": 2}, "seeds": [1]}
    b = {"seeds": [1], "train": {"epochs": 2, "lr": 5e-4}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({"train": {"lr": 5e-4, "epochs": 3}, "seeds": [1]})
    assert config_hash(a) != config_hash({**a, "seeds": [2]})
    assert len(config_hash(a)) == 64


def test_sha256_file_matches_hashlib_and_notices_changes(tmp_path):
    f = tmp_path / "x.bin"
    payload = os.urandom(3 * (1 << 20) + 17)  # crosses chunk boundaries
    f.write_bytes(payload)
    assert sha256_file(f) == hashlib.sha256(payload).hexdigest()
    f.write_bytes(payload[:-1] + b"\x00" if payload[-1] else payload[:-1] + b"\x01")
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        sha256_file(tmp_path / "missing.bin")


def test_sha256_file_is_cached_by_path_mtime_size(tmp_path, monkeypatch):
    f = tmp_path / "big.npz"
    f.write_bytes(b"a" * 1000)
    first = sha256_file(f)
    opened = []
    real_open = type(f).open

    def counting_open(self, mode="r", *args, **kwargs):
        if mode == "rb":
            opened.append(self)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(type(f), "open", counting_open)
    assert sha256_file(f) == first
    assert opened == []  # second call served from the cache
    st = f.stat()
    f.write_bytes(b"b" * 1000)  # same size; bump mtime so the cache key changes
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert sha256_file(f) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert len(opened) == 1


def test_git_state_outside_a_repository_is_none(tmp_path):
    assert git_state(tmp_path) is None


def test_git_state_in_a_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)

    git("init", "-q")
    (repo / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "init")
    state = git_state(repo)
    assert state is not None and len(state["commit"]) == 40 and state["dirty"] is False
    (repo / "a.txt").write_text("2")
    assert git_state(repo)["dirty"] is True


def test_write_provenance_record(tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(b"trajectory bytes")
    cfg = {"model": "egnn", "train": {"epochs": 1}}
    out = write_provenance(tmp_path / "run", config=cfg, inputs=[data], device="cuda:0",
                           extra={"rule": "train"})
    assert out == tmp_path / "run" / "provenance.json"
    rec = json.loads(out.read_text())
    assert rec["schema"] == provenance.SCHEMA_VERSION
    assert rec["config_hash"] == config_hash(cfg) and rec["config"] == cfg
    assert rec["inputs"][str(data)] == {"sha256": hashlib.sha256(b"trajectory bytes").hexdigest(),
                                        "bytes": 16}
    assert rec["device"] == "cuda:0" and rec["extra"] == {"rule": "train"}
    assert rec["packages"]["numpy"] and rec["packages"]["torch"]
    assert rec["python"].count(".") == 2 and rec["hostname"] and rec["timestamp"].endswith("+00:00")
    assert "git" in rec
    # no temporary files left beside it
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["provenance.json"]
    assert rec["stage"] and set(rec["stages"]) == {rec["stage"]}


def test_write_provenance_without_config_or_inputs(tmp_path):
    rec = json.loads(write_provenance(tmp_path).read_text())
    assert rec["config_hash"] is None and rec["inputs"] == {} and rec["device"] == "cpu"


def test_write_provenance_missing_input_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        write_provenance(tmp_path, inputs=[tmp_path / "nope.npz"])
    assert not (tmp_path / "provenance.json").exists()


def test_provenance_markdown_cites_each_run(tmp_path):
    data = tmp_path / "split.json"
    data.write_text("{}")
    run_a = tmp_path / "results/md17/ethanol/egnn/seed1"
    run_b = tmp_path / "results/md17/ethanol/static/seed1"
    write_provenance(run_a, config={"a": 1}, inputs=[data])
    run_b.mkdir(parents=True)
    md = provenance.provenance_markdown([run_a / "armse.json", run_b / "armse.json"])
    row_a = next(line for line in md.splitlines() if str(run_a) in line)
    assert f"`{run_a / 'provenance.json'}`" in row_a and config_hash({"a": 1})[:12] in row_a
    assert f"split.json {sha256_file(data)[:12]}" in row_a
    assert any(str(run_b) in line and "provenance.json missing" in line for line in md.splitlines())
    (run_b / "provenance.json").write_text("{broken")
    with pytest.raises(ValueError, match="provenance.json"):
        provenance.provenance_markdown([run_b / "armse.json"])


def test_stages_sharing_a_directory_keep_their_records(tmp_path):
    write_provenance(tmp_path, config={"train": 1}, stage="train")
    write_provenance(tmp_path, config={"rollout": 2}, stage="rollout")
    rec = json.loads((tmp_path / "provenance.json").read_text())
    assert rec["stage"] == "rollout" and rec["config_hash"] == config_hash({"rollout": 2})
    assert rec["stages"]["train"]["config_hash"] == config_hash({"train": 1})
    write_provenance(tmp_path, config={"train": 3}, stage="train")  # a rerun replaces its own stage only
    rec = json.loads((tmp_path / "provenance.json").read_text())
    assert rec["stages"]["train"]["config_hash"] == config_hash({"train": 3})
    assert rec["stages"]["rollout"]["config_hash"] == config_hash({"rollout": 2})
    assert "stages" not in rec["stages"]["train"]


def test_provenance_imports_nothing_from_the_data_layer(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    code = ("import sys; import diffmd.provenance as p; p.sha256_file(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith('diffmd.data')))")
    out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
    from diffmd.io import sha256_of

    assert sha256_of(f) == sha256_file(f) == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("text", ["[1, 2]", "{broken", "\udcff"])
def test_damaged_provenance_file_names_the_file(tmp_path, text):
    path = tmp_path / "provenance.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError) as info:
        provenance.read_provenance(tmp_path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    write_provenance(tmp_path, stage="train")  # a damaged earlier record is replaced
    assert json.loads(path.read_text())["stage"] == "train"
