"""Docs checked against the code they describe (issue 16 row 11): the rollout.npz keys listed in
docs/ARCHITECTURE.md are the keys diffmd/rundir.py writes, and every package-data glob of pyproject.toml
matches files that exist (a wheel would silently ship without them otherwise)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from diffmd import rundir

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _bullet(doc: str, name: str) -> str:
    """The text of the ``- `name` ...`` bullet of a Markdown list (up to the next bullet or heading)."""
    match = re.search(rf"^- `{re.escape(name)}`(.*?)(?=^- |^#|\Z)", doc, flags=re.S | re.M)
    assert match, f"docs/ARCHITECTURE.md: no bullet for `{name}`"
    return match.group(1)


def test_architecture_lists_exactly_the_rollout_npz_keys(tmp_path):
    atoms, n, m, f = 3, 4, 2, 5
    pos = np.zeros((n + 1, atoms, 3))
    multi = rundir.MultiStart(starts=np.arange(m), positions=np.zeros((m, n + 1, atoms, 3)),
                              reference=np.zeros((m, n + 1, atoms, 3)), frame_indices=np.zeros((m, n + 1), int),
                              diverged_at=np.full(m, -1), seconds=0.1, score_evals=np.zeros(n))  # fmt: skip
    one = rundir.OneStep(frames=np.arange(f), predicted=np.zeros((f, atoms, 3)), target=np.zeros((f, atoms, 3)),
                         current=np.zeros((f, atoms, 3)), previous=np.zeros((f, atoms, 3)),
                         forces_predicted=np.zeros((f, atoms, 3)), forces_target=np.zeros((f, atoms, 3)))  # fmt: skip
    rundir.write_rollout(tmp_path, positions=pos, reference=pos, frame_indices=np.arange(n + 1),
                         atomic_numbers=np.array([6, 1, 1]), diverged_at=-1, stride=1, dt_fs=0.5, seconds=0.1,
                         score_evals=np.zeros(n), source="xtb", molecule="ethanol", model="egnn", extxyz=False,
                         multi=multi, one_step=one)  # fmt: skip
    with np.load(tmp_path / rundir.ROLLOUT_NAME) as data:
        written = set(data.files)
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"`([a-z][a-z0-9_]*)`", _bullet(doc, "rollout.npz")))
    assert listed - written == set(), f"docs/ARCHITECTURE.md lists keys rollout.npz does not have: {listed - written}"
    assert written - listed == set(), f"rollout.npz keys missing from docs/ARCHITECTURE.md: {written - listed}"


def test_package_data_globs_match_files():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    empty = [f"{pkg}/{glob}" for pkg, globs in package_data.items() for glob in globs
             if not list((REPO / pkg.replace(".", "/")).glob(glob))]  # fmt: skip
    assert not empty, f"pyproject.toml package-data globs that match no file: {empty}"


def test_package_data_covers_the_non_python_files_the_package_reads():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["diffmd"]
    shipped = {p for g in globs for p in (REPO / "diffmd").glob(g)}
    data_files = {p for ext in ("*.yaml", "*.json", "*.xyz") for p in (REPO / "diffmd").rglob(ext)}
    assert data_files - shipped == set(), f"files under diffmd/ a wheel would not ship: {data_files - shipped}"
