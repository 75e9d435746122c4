"""The device check (benchmarks/device_check.py, issue 22) rehearsed on this CPU as the bare CUDA image would run it.

The image lacks ase, jsonschema, rdkit, tblite, sgdml, snakemake, tabulate and markdown: a ``sitecustomize`` on
``PYTHONPATH`` (benchmarks/devices/bare_image) makes them unimportable in the check and in every process it
starts, except what the prepared wheels install (``pip install --no-index --no-deps --target DIR``): here ase and
tabulate, linked from this environment into DIR as that command would unpack them; jsonschema stays blocked (the
counting path runs without it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import device_check as D
from benchmarks import paper_cost as P

ROOT = Path(__file__).resolve().parent.parent
BLOCKER = ROOT / "benchmarks" / "devices" / "bare_image"


def tiny_config() -> dict:
    """The paper config with two learned models at tiny sizes (DiffMD with a fixed-step sampler: no adaptive
    solver to count), so the rehearsal takes about a minute on two cores."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["models"] = ["static", "egnn", "diffmd"]
    config["model_params"] = {
        "egnn": {"hidden": 16, "layers": 2},
        "diffmd": {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ffn": 32, "sampler": "euler_maruyama",
                   "sampler_options": {"euler_maruyama": {"n_steps": 3}}},
    }  # fmt: skip
    config["diffmd"]["grid"] = {"sigma_s": [1.0e-2], "a_bar": [1.0], "eta_sigma": [1.0], "eps": [0.2, 0.8]}
    return config


def bare_env(tmp_path: Path, allow: list[str]) -> dict[str, str]:
    """The environment of a bare image whose ``--target`` folder holds ``allow`` (linked from this environment)."""
    deps = tmp_path / "devdeps"
    deps.mkdir()
    for name in allow:
        spec = importlib.util.find_spec(name)
        src = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        (deps / src.name).symlink_to(src)
    path = os.pathsep.join([str(BLOCKER), str(deps)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return {**os.environ, "PYTHONPATH": path, "DEVICE_CHECK_ALLOW": str(deps), "PYTHON": sys.executable,
            "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip


def run_check(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def archive_json(out: Path, name: str):
    with tarfile.open(out / "device_check.tar.gz") as tar:
        return json.load(tar.extractfile(f"device_check/{name}"))


def test_the_blocker_emulates_the_bare_image(tmp_path):
    env = bare_env(tmp_path, ["tabulate"])
    code = ("import importlib\nfor m in ('ase', 'jsonschema', 'rdkit', 'snakemake', 'tabulate', 'numpy'):\n"
            "    try:\n        importlib.import_module(m); print(m, 'ok')\n"
            "    except ImportError: print(m, 'blocked')")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:6] == ["ase blocked", "jsonschema blocked", "rdkit blocked", "snakemake blocked",
                                   "tabulate ok", "numpy ok"]  # fmt: skip


@pytest.mark.slow
def test_rehearsal_on_cpu_with_the_bare_images_packages_blocked(tmp_path):
    """Every stage runs (the CUDA tests are collected without an import error and skipped: no CUDA), the outputs
    are three files, the summary names every unit measured, and the units file is what ``paper_cost --units-in``
    reads: the reprojection is one command."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(tiny_config()))
    out = tmp_path / "check"
    proc = run_check(bare_env(tmp_path, list(D.CHECK_NEEDS)), "--out", str(out), "--deadline-s", "300",
                     "--config-json", f"@{cfg}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["device_check.tar.gz", "summary.md", "units.json"]  # <= 8 files come back from a device
    stages = {r["stage"]: r for r in archive_json(out, "stages.json")}
    assert list(stages) == list(D.STAGES)
    assert stages["cuda_tests"]["status"] == "skipped: no CUDA"
    assert not re.search(r"\d+ errors?\b", stages["cuda_tests"]["note"]) and "skipped" in stages["cuda_tests"]["note"]
    assert all(r["status"] == "ok" for name, r in stages.items() if name != "cuda_tests"), stages
    env = archive_json(out, "env.json")
    assert env["missing_on_bare_image"]["jsonschema"] is False and env["missing_on_bare_image"]["ase"] is True
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Device check: CPU") and "shortened CPU sizes" in summary
    assert "Units measured: eval, rollout_step, train_step." in summary
    for section in ("## Device constants", "## Process start-up", "## CPU batch building",
                    "## Processes sharing the device", "## Seconds per unit", "## Reprojection"):  # fmt: skip
        assert section in summary, section
    assert "jsonschema absent" in summary
    times = archive_json(out, "unit_times.json")
    ok = [t for t in times if t["status"] == "ok"]
    assert {t["molecule"] for t in ok} >= {"aspirin", "ethanol", "c7o2h10_iso0"}
    assert {t["model"] for t in ok} == {"egnn", "diffmd"} and {t["batch"] for t in ok} == {1, 6}
    assert {t["precision"] for t in ok} >= {"float32", "tf32", "bf16"}
    assert all(t["n"] >= 5 and t["min"] <= t["median"] <= t["max"] for t in ok)
    # the units file: counts, measured seconds per batch, the measured constants; paper_cost reads it
    units = P.read_units(str(out / "units.json"))
    assert units["constants"]["device"].startswith("CPU") and "measured t_op" in units["constants"]["source"]
    at = units["records"]["egnn|md17"]["units"]["train_step"]["seconds_at"]["eager"]
    assert set(at) == {"1", "6"} and all(v > 0 for v in at.values())
    result = P.main(["--units-in", str(out / "units.json"), "--config-json", f"@{cfg}",
                     "--out-csv", str(tmp_path / "p.csv"), "--out-md", str(tmp_path / "p.md")])  # fmt: skip
    assert result["total_h"] > 0 and "units read from" in (tmp_path / "p.md").read_text()


def test_a_failing_stage_is_recorded_and_the_rest_still_run(tmp_path):
    """Without the wheels (ase blocked too) the stages that need the model code fail with their error recorded,
    the others run, and the summary and archive are still written; a stage with no time left is not started."""
    out = tmp_path / "check"
    env = bare_env(tmp_path, [])
    proc = run_check(env, "--out", str(out), "--stages", "env,constants,counts,projection", "--deadline-s", "60",
                     timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    stages = {r["stage"]: r for r in archive_json(out, "stages.json")}
    assert stages["env"]["status"] == "ok" and "missing ase, tabulate" in stages["env"]["note"]
    assert stages["constants"]["status"] == "ok"
    assert stages["counts"]["status"] == "failed" and "No module named 'ase'" in stages["counts"]["error"]
    assert stages["projection"]["status"] == "failed" and "no counts" in stages["projection"]["note"]
    assert "## Device constants" in (out / "summary.md").read_text()
    assert not (out / "units.json").exists()
    run_check(env, "--out", str(tmp_path / "late"), "--stages", "env,constants", "--deadline-s", "6.5", timeout=120)
    stages = {r["stage"]: r for r in archive_json(tmp_path / "late", "stages.json")}
    assert stages["constants"]["status"] == "timeout" and "not started" in stages["constants"]["note"]


def test_measured_seconds_interpolate_between_batches():
    u = {"batch": 1, "seconds_at": {"eager": {"1": 0.01, "6": 0.012, "32": 0.02, "200": 0.1}}}
    assert P.measured_seconds(u, "eager", 1, 1) == 0.01
    assert P.measured_seconds(u, "eager", 0.5, 0.5) == 0.01  # no cheaper below the smallest batch measured
    assert P.measured_seconds(u, "eager", 19, 19) == pytest.approx(0.016)
    assert P.measured_seconds(u, "eager", 400, 400) == pytest.approx(0.2)  # proportional beyond the largest
    assert P.measured_seconds(u, "captured", 6, 6) is None  # not measured: priced from the counts
    assert P.measured_seconds({"batch": 1, "seconds": {"eager": 0.5}}, "eager", 3, 3) == 1.5


def test_the_frozen_isomer_is_rdkits_embedding():
    """benchmarks/devices/molecules.json (the bare image has no RDKit) holds what benchmarks.launches embeds."""
    pytest.importorskip("rdkit")
    from benchmarks.launches import c7o2h10_molecule

    frozen = D.frozen_molecules()
    mol = c7o2h10_molecule()
    assert frozen[mol.name]["numbers"] == mol.numbers.tolist() and len(mol.numbers) == 19
    np.testing.assert_allclose(frozen[mol.name]["positions"], mol.positions, atol=1e-6)
    for name in ("ethanol", "aspirin"):
        ref = D.molecule(name)
        np.testing.assert_allclose(frozen[name]["positions"], ref.positions, atol=1e-6)


def test_the_wheel_script_pins_what_the_check_needs():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_device_wheels.py"), "--dry-run",
                           "--dest", "wheels"], capture_output=True, text=True, check=True)  # fmt: skip
    cmd = proc.stdout.split()
    for flag in ("download", "--no-deps", "--only-binary=:all:", "3.12", "manylinux2014_x86_64"):
        assert flag in cmd
    pins = {t.split("==")[0] for t in cmd if "==" in t}
    assert set(D.CHECK_NEEDS) <= pins and {"jsonschema", "referencing", "rpds-py", "attrs"} <= pins
    assert all(len(t.split("==")[1]) > 0 for t in cmd if "==" in t)
