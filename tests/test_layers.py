"""The package's layers: the models (diffmd/models, baselines) sit below the engine, the plan and the reports and
import none of them (the grid search lives in diffmd/engine/grid.py and asks the model, never the reverse)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("diffmd.engine", "diffmd.plan", "diffmd.reports")


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_models_import_no_upper_layer():
    files = sorted((ROOT / "diffmd" / "models").rglob("*.py")) + sorted((ROOT / "baselines").rglob("*.py"))
    assert len(files) > 10
    upward = [f"{f.relative_to(ROOT)}: {name}" for f in files for name in _imports(f)
              if any(name == u or name.startswith(u + ".") for u in UPPER)]  # fmt: skip
    assert not upward, upward


def test_the_layer_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from diffmd.engine.train import train\n")
    assert _imports(bad) == ["diffmd.engine.train"]
