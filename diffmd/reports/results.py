"""Reading the engine's per-run result files (``armse.json``, ``rollout.npz``) for the reports.

The file contracts are in ``docs/ARCHITECTURE.md`` ("Result files"). Every reader here checks the
keys it needs and raises a one-line ``ValueError`` naming the file and the key on bad input.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffmd.io import read_json

#: Rows kept in every table as references, never ranked and never counted as baselines:
#: ``static`` is the paper's "constant prediction" x(t) = x(t0); ``constant_velocity`` is x + v.
REFERENCE_MODELS = ("static", "constant_velocity")
#: The model whose relative improvement over the best baseline the tables report.
PROPOSED_MODEL = "diffmd"

ARMSE_REQUIRED = ("dataset", "molecule", "model", "seed", "source", "armse", "diverged")

_SOURCE_WORDS = {
    ("md17", "download"): "MD17 download (Chmiela et al. 2017; DFT, 500 K, 0.5 fs) - the paper's data",
    ("c7o2h10", "download"): "C7O2H10 download (Brockherde et al. 2017; DFT PBE, 100 K, 1 fs) - the paper's data",
    ("md17", "local"): "MD17 from local files (data.md17.download.local_dir)",
    ("c7o2h10", "local"): "C7O2H10 from local files (data.c7o2h10.download.local_dir)",
    ("md17", "xtb"): "GFN2-xTB simulation of the MD17 molecules (tblite) - NOT the MD17 data set",
    ("c7o2h10", "xtb"): "GFN2-xTB simulation of C7O2H10 isomers (tblite) - NOT the paper's C7O2H10 data set",
}


def source_label(dataset: str, source: str) -> str:
    """Human-readable words for a (dataset, data source) pair, as printed above every table."""
    return _SOURCE_WORDS.get((dataset, source), f"{dataset} from source {source!r}")


@dataclass
class RunRecord:
    """One ``armse.json``: the evaluation of one rollout (one dataset, molecule, model, seed)."""

    path: str
    dataset: str
    molecule: str
    model: str
    seed: int
    source: str
    armse: float | None  # Å, Kabsch-aligned ARMSE; None when the rollout diverged
    armse_unaligned: float | None
    diverged: bool
    diverged_at: int = -1
    stride: int = 1  # frames of the source trajectory per model step
    n_frames: int = 0
    rmsd_per_frame: list[float] = field(default_factory=list)  # Å, (n,) per rolled-out frame
    armse_curve: list[float] = field(default_factory=list)  # Å, (n,) ARMSE over the first i frames
    score_evals_per_frame: float | None = None
    rollout_seconds: float | None = None
    frames_per_second: float | None = None


def _opt_float(value: object, path: str, key: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: key {key!r} is {value!r}, expected a number or null") from None
    return out if math.isfinite(out) else None


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read one ``armse.json`` and check the keys the tables need."""
    path = str(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in ARMSE_REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    armse = _opt_float(data["armse"], path, "armse")
    diverged = bool(data["diverged"])
    if armse is None and not diverged:
        raise ValueError(f"{path}: key 'armse' is null but 'diverged' is false")
    return RunRecord(
        path=path,
        dataset=str(data["dataset"]),
        molecule=str(data["molecule"]),
        model=str(data["model"]),
        seed=int(data["seed"]),
        source=str(data["source"]),
        armse=None if diverged else armse,
        armse_unaligned=None if diverged else _opt_float(data.get("armse_unaligned"), path, "armse_unaligned"),
        diverged=diverged,
        diverged_at=int(data.get("diverged_at", -1) if data.get("diverged_at") is not None else -1),
        stride=int(data.get("stride", 1) or 1),
        n_frames=int(data.get("n_frames", 0) or 0),
        rmsd_per_frame=[float("nan") if v is None else float(v) for v in data.get("rmsd_per_frame") or []],
        armse_curve=[float("nan") if v is None else float(v) for v in data.get("armse_curve") or []],
        score_evals_per_frame=_opt_float(data.get("score_evals_per_frame"), path, "score_evals_per_frame"),
        rollout_seconds=_opt_float(data.get("rollout_seconds"), path, "rollout_seconds"),
        frames_per_second=_opt_float(data.get("frames_per_second"), path, "frames_per_second"),
    )


def load_records(paths: list[str | os.PathLike]) -> list[RunRecord]:
    """Read many ``armse.json`` files; a duplicate (dataset, molecule, model, seed) is an error."""
    records = [load_record(p) for p in paths]
    seen: dict[tuple, str] = {}
    for rec in records:
        key = (rec.dataset, rec.molecule, rec.model, rec.seed)
        if key in seen:
            raise ValueError(f"{rec.path}: same dataset/molecule/model/seed as {seen[key]}")
        seen[key] = rec.path
    return records


def single_source(records: list[RunRecord], what: str) -> tuple[str, str]:
    """The one (dataset, source) of ``records``; refuse to mix data sets or data sources in one table."""
    if not records:
        raise ValueError(f"{what}: no result files given")
    pairs = sorted({(r.dataset, r.source) for r in records})
    if len(pairs) > 1:
        examples = "; ".join(
            f"{d}/{s} e.g. {next(r.path for r in records if (r.dataset, r.source) == (d, s))}" for d, s in pairs
        )
        raise ValueError(f"{what}: refusing to mix data sets or sources in one table ({examples})")
    return pairs[0]


@dataclass
class Rollout:
    """One ``rollout.npz``: predicted and reference frames of one run."""

    path: str
    positions: np.ndarray  # (n+1, atoms, 3) Å, predicted, starting with the start frame
    reference: np.ndarray  # (n+1, atoms, 3) Å, ground truth at the same frames
    atomic_numbers: np.ndarray  # (atoms,)
    frame_indices: np.ndarray  # (n+1,) frame index in the source trajectory
    stride: int
    dt_fs: float
    diverged: bool
    diverged_at: int
    seconds: float | None
    score_evals: np.ndarray  # (n,) score-network evaluations per step (0 for non-diffusion models)


ROLLOUT_REQUIRED = ("positions", "reference", "atomic_numbers")


def load_rollout(path: str | os.PathLike) -> Rollout:
    """Read one ``rollout.npz``; every failure names the file and the key."""
    path = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: file not found")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ROLLOUT_REQUIRED if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
        data = {k: npz[k] for k in npz.files}
    pos, ref = np.asarray(data["positions"], float), np.asarray(data["reference"], float)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"{path}: 'positions' has shape {pos.shape}, expected (frames, atoms, 3)")
    if ref.shape[1:] != pos.shape[1:]:
        raise ValueError(f"{path}: 'reference' has shape {ref.shape}, 'positions' {pos.shape}")
    z = np.asarray(data["atomic_numbers"], dtype=np.int64)
    if z.shape != (pos.shape[1],):
        raise ValueError(f"{path}: 'atomic_numbers' has shape {z.shape}, expected ({pos.shape[1]},)")
    n = pos.shape[0]
    stride = int(data.get("stride", 1))
    frames = np.asarray(data.get("frame_indices", np.arange(n) * stride), dtype=np.int64)
    return Rollout(
        path=path,
        positions=pos,
        reference=ref,
        atomic_numbers=z,
        frame_indices=frames,
        stride=stride,
        dt_fs=float(data.get("dt_fs", 1.0)),
        diverged=bool(data.get("diverged", False)),
        diverged_at=int(data.get("diverged_at", -1)),
        seconds=float(data["seconds"]) if "seconds" in data else None,
        score_evals=np.asarray(data.get("score_evals", np.zeros(max(n - 1, 0))), dtype=float),
    )


def run_identity(path: str | os.PathLike) -> dict[str, str]:
    """(dataset, molecule, model, seed) of ``.../{dataset}/{molecule}/{model}/seed{seed}/<file>``."""
    parts = Path(path).parts
    if len(parts) < 5 or not parts[-2].startswith("seed"):
        raise ValueError(f"{path}: not inside a run directory {{dataset}}/{{molecule}}/{{model}}/seed{{seed}}/")
    return {"dataset": parts[-5], "molecule": parts[-4], "model": parts[-3], "seed": parts[-2][4:]}
