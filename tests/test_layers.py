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


RUN_FILES = ("armse.json", "rollout.npz", "simulation.json", "selection.json", "ROLLOUT_NAME", "ARMSE_NAME")
READERS = ("read_json", "json.load", "json.loads", "np.load", "numpy.load")


def _raw_run_file_readers(path: Path) -> list[str]:
    """Functions of ``path`` that call a raw JSON/npz reader and name a run file (in code or docstring)."""
    text = path.read_text()
    if not any(name in text for name in RUN_FILES) or not any(r.split(".")[-1] in text for r in READERS):
        return []
    out = []
    for node in ast.walk(ast.parse(text, str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        calls = {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
        source = ast.get_source_segment(text, node) or ""
        if calls & set(READERS) and any(name in source for name in RUN_FILES):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return out


def test_run_files_are_parsed_by_rundir_only():
    """armse.json, rollout.npz, simulation.json and selection.json are read through diffmd/rundir.py (typed records,
    one-line errors); no other module opens them raw (split files: diffmd.data.splits.read_split)."""
    files = [f for d in ("diffmd", "benchmarks") for f in sorted((ROOT / d).rglob("*.py"))
             if f.name != "rundir.py" and "testing" not in f.parts]  # fmt: skip
    found = [hit for f in files for hit in _raw_run_file_readers(f)]
    assert not found, found


def test_the_run_file_check_sees_a_raw_reader(tmp_path):
    bad = ROOT / "tests" / "_tmp_raw_reader.py"
    bad.write_text('def f(p):\n    """Read armse.json."""\n    return read_json(p)\n')
    try:
        assert _raw_run_file_readers(bad) == ["tests/_tmp_raw_reader.py:1 f"]
    finally:
        bad.unlink()
