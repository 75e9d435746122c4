"""benchmarks/device_check.sh runs without a GPU (shortened, on CPU) and writes its one summary file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_device_check_on_cpu(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["models"] = ["static", "rf"]
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_BUDGET_S": "1", "DEVICE_CHECK_SKIP_PYTEST": "1",
           "DEVICE_CHECK_STEPS": "2", "DEVICE_CHECK_MODELS": "egnn", "DEVICE_CHECK_CONFIG_JSON": json.dumps(config),
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    out = tmp_path / "check"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/device_check.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Device check: CPU")
    assert "DiffMD batched validation" in summary and "6 eps x 4 starts x 2" in summary
    assert "Multi-start rollouts" in summary and "Paper-scale cost model" in summary and "GPU-hours" in summary
    assert "skipped" in summary
    units = json.loads((out / "paper_cost_units.json").read_text())  # for `paper_cost --units-in` elsewhere
    assert units["format"] == "diffmd-bench paper_cost units 2"
    assert units["records"]["rf|md17"]["units"]["train_step"]["eager"]["ops"] > 0
