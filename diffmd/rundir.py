"""The run directory's files: the one reader and the one writer of ``rollout.npz`` / ``rollout.extxyz``
and ``armse.json`` (formats: docs/ARCHITECTURE.md, "Result files").

The engine (rollout, evaluate), the reports, the benchmarks and the test fixtures all go through this
module; every reader checks the keys it needs and raises a one-line ``ValueError`` or
``FileNotFoundError`` naming the file and the key.

Run directories: ``results/{dataset}/{molecule}/{model}/seed{seed}/``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.io import atomic_path, read_json, save_npz, write_json

ROLLOUT_NAME, EXTXYZ_NAME, ARMSE_NAME = "rollout.npz", "rollout.extxyz", "armse.json"
REFERENCE_EXTXYZ_NAME = "reference.extxyz"  # the ground truth at the same frames, to overlay in OVITO / ASE
ARMSE_REQUIRED = ("dataset", "molecule", "model", "seed", "source", "armse", "diverged")
#: The keys of one yardstick row (``metrics`` of ``armse.json``); absent optional keys read as null/empty.
METRIC_ROW_KEYS = ("metric", "horizon_fs", "value", "ci_low", "ci_high", "ci_method", "ci_n", "n_starts", "n_diverged",
                   "unit")  # fmt: skip
#: The keys of the multi-start ``curve`` of ``armse.json``.
CURVE_KEYS = ("t_fs", "rmsd_mean", "rmsd_lo", "rmsd_hi", "armse_mean")
#: The keys of ``hr`` (the pair-distance distribution) of ``armse.json``.
HR_KEYS = ("edges", "pred", "ref")


def role_of(model: str) -> str:
    """The role on ``model``'s card (diffmd/models/cards.yaml; no import of the model). Readers of run files take
    the role the rollout wrote there; this is for the writer, and for rows the tables name that have no run."""
    from diffmd.cards import card

    return card(model).role


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
    role: str = "baseline"  # the model's registered role (diffmd.registry.ROLES)
    rollout_applicable: bool = True  # False for one-step-only models (no ARMSE: "-", not NA)
    #: the yardstick's rows (:mod:`diffmd.engine.yardstick`), each with the keys :data:`METRIC_ROW_KEYS`
    metrics: list[dict[str, Any]] = field(default_factory=list)
    dt_fs: float | None = None  # fs between source frames (the file's, else the rollout.npz beside it)
    step_fs: float | None = None  # fs per model step (stride x dt_fs)
    curve: dict[str, np.ndarray] | None = None  # multi-start curve: CURVE_KEYS -> (n,) arrays, NaN for null
    hr: dict[str, np.ndarray] | None = None  # h(r): edges (b+1,) Å, pred and ref (b,) Å^-1
    start_spacing_fs: float | None = None  # closest two multi-start start frames (fs)
    start_window_fs: float | None = None  # each start's rollout window (fs)


def file_role(data: dict[str, Any], path: Any) -> str:
    """The role the run's files carry (the rollout wrote it once; never worked out again here)."""
    role = data.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"{path}: no 'role' (written before runs carried their role): rerun its rollout and "
                         "evaluate jobs")  # fmt: skip
    return role


def _opt_float(value: object, path: str, key: str) -> float | None:
    return _num(value, f"{path}: key {key!r}")


def _num(value: object, where: str) -> float | None:
    """A finite number, or None (null, or not finite); anything else: a one-line ValueError naming ``where``."""
    if value is None:
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where} is {value!r}, expected a number or null") from None
    return out if math.isfinite(out) else None


def _floats(values: object, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise ValueError(f"{where} is {type(values).__name__}, expected a list")
    out = [_num(v, f"{where}[{i}]") for i, v in enumerate(values)]
    return np.array([np.nan if v is None else v for v in out], dtype=float)


def _metric_rows(data: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The yardstick's ``metrics`` rows, checked and normalised to :data:`METRIC_ROW_KEYS`."""
    rows = data.get("metrics") or []
    if not isinstance(rows, list):
        raise ValueError(f"{path}: key 'metrics' is {type(rows).__name__}, expected a list")
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: key 'metrics[{i}]"
        if not isinstance(row, dict):
            raise ValueError(f"{where}' is not an object")
        missing = [k for k in ("metric", "value") if k not in row]
        if missing:
            raise ValueError(f"{where}' lacks {', '.join(missing)}")
        out.append({
            "metric": str(row["metric"]),
            "horizon_fs": _num(row.get("horizon_fs"), f"{where}.horizon_fs'"),
            "value": _num(row["value"], f"{where}.value'"),
            "ci_low": _num(row.get("ci_low"), f"{where}.ci_low'"),
            "ci_high": _num(row.get("ci_high"), f"{where}.ci_high'"),
            "ci_method": str(row.get("ci_method") or ""),
            "ci_n": None if row.get("ci_n") is None else int(row["ci_n"]),
            "n_starts": int(row.get("n_starts") or 0),
            "n_diverged": int(row.get("n_diverged") or 0),
            "unit": str(row.get("unit") or ""),
        })  # fmt: skip
    return out


def _float_lists(data: dict[str, Any], key: str, keys: tuple[str, ...], path: str) -> dict[str, np.ndarray] | None:
    """``data[key]``, an object of number lists (null: NaN), as arrays; None when absent or empty."""
    if not data.get(key):
        return None
    raw = data[key]
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ValueError(f"{path}: key '{key}' lacks {', '.join(missing)}")
    return {k: _floats(raw[k], f"{path}: key '{key}.{k}'") for k in keys}


def _curve(data: dict[str, Any], path: str) -> dict[str, np.ndarray] | None:
    curve = _float_lists(data, "curve", CURVE_KEYS, path)
    if curve is not None and len({v.size for v in curve.values()}) > 1:
        raise ValueError(f"{path}: key 'curve' has lists of different lengths")
    return curve


def _hr(data: dict[str, Any], path: str) -> dict[str, np.ndarray] | None:
    hr = _float_lists(data, "hr", HR_KEYS, path)
    if hr is not None and not hr["edges"].size == hr["pred"].size + 1 == hr["ref"].size + 1:
        raise ValueError(f"{path}: key 'hr' needs len(edges) = len(pred) + 1 = len(ref) + 1")
    return hr


def _read_object(path: str | os.PathLike, required: Any, lacks: str) -> dict[str, Any]:
    """One run file's JSON object with its required keys, or one line naming the file and what it lacks."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: {lacks} {', '.join(missing)}")
    return data


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read one ``armse.json`` (the only parser of the file): the keys the tables need checked, the yardstick's
    ``metrics`` rows, ``curve`` and ``hr`` checked and typed; every failure is one line naming the file and key.
    Files without the yardstick's keys load with empty metrics (the tables print NA)."""
    path = str(path)
    data = _read_object(path, ARMSE_REQUIRED, "missing key(s)")
    armse = _opt_float(data["armse"], path, "armse")
    diverged = bool(data["diverged"])
    applicable = bool(data.get("rollout_applicable", True))
    if armse is None and not diverged and applicable:
        raise ValueError(f"{path}: key 'armse' is null but 'diverged' is false")
    stride = int(data.get("stride", 1) or 1)
    metrics, curve, hr = _metric_rows(data, path), _curve(data, path), _hr(data, path)
    dt = _opt_float(data.get("dt_fs"), path, "dt_fs")
    if dt is None:
        dt = rollout_dt_fs(Path(path).with_name(ROLLOUT_NAME))
    step = _opt_float(data.get("step_fs"), path, "step_fs")
    if step is None and dt is not None:
        step = stride * dt
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
        stride=stride,
        n_frames=int(data.get("n_frames", 0) or 0),
        rmsd_per_frame=[float("nan") if v is None else float(v) for v in data.get("rmsd_per_frame") or []],
        armse_curve=[float("nan") if v is None else float(v) for v in data.get("armse_curve") or []],
        score_evals_per_frame=_opt_float(data.get("score_evals_per_frame"), path, "score_evals_per_frame"),
        rollout_seconds=_opt_float(data.get("rollout_seconds"), path, "rollout_seconds"),
        frames_per_second=_opt_float(data.get("frames_per_second"), path, "frames_per_second"),
        role=file_role(data, path),
        rollout_applicable=applicable,
        metrics=metrics,
        dt_fs=dt,
        step_fs=step,
        curve=curve,
        hr=hr,
        start_spacing_fs=_opt_float(data.get("start_spacing_fs"), path, "start_spacing_fs"),
        start_window_fs=_opt_float(data.get("start_window_fs"), path, "start_window_fs"),
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


SIMULATION_NAME, SELECTION_NAME = "simulation.json", "selection.json"
SIMULATION_REQUIRED = ("dataset", "molecule", "model", "seed", "metrics")


def load_simulation(path: str | os.PathLike) -> dict[str, Any]:
    """Read one ``simulation.json`` (:mod:`diffmd.engine.simulate`'s record); a missing key (the model's ``role``
    included: written once by the simulation, never worked out again) raises one line naming the file. The record as
    written, plus ``_path``."""
    rec = _read_object(path, SIMULATION_REQUIRED, "simulation record lacks")
    file_role(rec, path)
    rec["_path"] = str(path)
    return rec


@dataclass
class Selection:
    """One ``selection.json`` of a grid-tuned run (:func:`diffmd.engine.grid.write_selection`): the selected row."""

    path: str
    checkpoint: str  # the selected grid point's checkpoint, as the grid search wrote it
    point: str  # the point's name
    best: dict[str, Any]  # the selected validation row


def load_selection(path: str | os.PathLike) -> Selection:
    """Read one ``selection.json``; a missing ``best.checkpoint`` raises one line naming the file."""
    best = (read_json(path) or {}).get("best") or {}
    if not isinstance(best, dict) or not best.get("checkpoint"):
        raise ValueError(f"{path}: key 'best.checkpoint' missing")
    return Selection(str(path), str(best["checkpoint"]), str(best.get("point", "")), best)


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write one ``armse.json`` (atomically); ``record`` must hold :data:`ARMSE_REQUIRED`."""
    missing = [k for k in ARMSE_REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{path}: armse record lacks key(s) {', '.join(missing)}")
    write_json(path, record)


@dataclass
class MultiStart:
    """The multi-start rollouts of one run (``ms_*`` keys of ``rollout.npz``)."""

    starts: np.ndarray  # (M,) start frames
    positions: np.ndarray  # (M, n+1, atoms, 3) Å predicted, NaN after a start's divergence
    reference: np.ndarray  # (M, n+1, atoms, 3) Å
    frame_indices: np.ndarray  # (M, n+1)
    diverged_at: np.ndarray  # (M,) -1 if none
    seconds: float
    score_evals: np.ndarray  # (n,) per batched step


@dataclass
class OneStep:
    """Teacher-forced one-step predictions on test frames (``os_*`` keys of ``rollout.npz``)."""

    frames: np.ndarray  # (F,) current frames t
    predicted: np.ndarray  # (F, atoms, 3) Å, x̂(t+k)
    target: np.ndarray  # (F, atoms, 3) Å, x(t+k)
    current: np.ndarray  # (F, atoms, 3) Å, x(t)
    previous: np.ndarray  # (F, atoms, 3) Å, x(t-k)
    #: (F, atoms, 3) kcal/mol/Å at x(t): the model's forces and the data's, for the rows that compute forces
    #: (``predict_forces``: force fields, oracles) on data with force labels; None otherwise
    forces_predicted: np.ndarray | None = None
    forces_target: np.ndarray | None = None


MULTI_KEYS = {"starts": "ms_starts", "positions": "ms_positions", "reference": "ms_reference",
              "frame_indices": "ms_frame_indices", "diverged_at": "ms_diverged_at", "seconds": "ms_seconds",
              "score_evals": "ms_score_evals"}  # fmt: skip
ONE_STEP_KEYS = {"frames": "os_frames", "predicted": "os_predicted", "target": "os_target",
                 "current": "os_current", "previous": "os_previous"}  # fmt: skip
#: Optional members of the one-step part (both or neither).
ONE_STEP_FORCE_KEYS = {"forces_predicted": "os_forces_predicted", "forces_target": "os_forces_target"}


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
    source: str | None = None  # data source of the reference trajectory
    molecule: str = ""
    model: str = ""
    role: str | None = None  # the model's registered role, as the rollout wrote it (None: an older file)
    rollout_stats: dict[str, float] = field(default_factory=dict)  # the model's other counters, summed
    applicable: bool = True  # False for one-step-only models: positions hold the start frame only
    multi: MultiStart | None = None
    one_step: OneStep | None = None


ROLLOUT_REQUIRED = ("positions", "reference", "atomic_numbers")


def load_rollout(path: str | os.PathLike) -> Rollout:
    """Read one ``rollout.npz``; every failure names the file and the key."""
    path = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ROLLOUT_REQUIRED if k not in npz.files]
            if missing:
                raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path}: corrupt or truncated npz ({exc})") from None
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
        source=str(data["source"]) if "source" in data else None,
        molecule=str(data.get("molecule", "")),
        model=str(data.get("model", "")),
        role=str(data["role"]) if "role" in data else None,
        rollout_stats=json.loads(str(data["rollout_stats"])) if "rollout_stats" in data else {},
        applicable=bool(data.get("applicable", True)),
        multi=_part(data, MULTI_KEYS, MultiStart, path),
        one_step=_part(data, ONE_STEP_KEYS, OneStep, path, ONE_STEP_FORCE_KEYS),
    )


def rollout_dt_fs(path: str | os.PathLike) -> float | None:
    """The frame spacing (fs) a ``rollout.npz`` records, without loading its arrays; None if there is no file."""
    if not Path(path).exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return float(data["dt_fs"]) if "dt_fs" in data.files else None


def _part(data: dict[str, np.ndarray], keys: dict[str, str], cls: type, path: str,
          optional: dict[str, str] | None = None):  # fmt: skip
    present = [k for k in keys.values() if k in data]
    if not present:
        return None
    missing = [k for k in keys.values() if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    values = {name: data[key] for name, key in keys.items()}
    optional = optional or {}
    have = [k for k in optional.values() if k in data]
    if have and len(have) != len(optional):
        raise ValueError(f"{path}: key(s) {', '.join(k for k in optional.values() if k not in data)} missing beside "
                         f"{', '.join(have)}")  # fmt: skip
    values.update({name: data[key] for name, key in optional.items() if key in data})
    if "seconds" in values:
        values["seconds"] = float(values["seconds"])
    return cls(**values)


def run_identity(path: str | os.PathLike) -> dict[str, str]:
    """(dataset, molecule, model, seed) of ``.../{dataset}/{molecule}/{model}/seed{seed}/<file>``."""
    parts = Path(path).parts
    if len(parts) < 5 or not parts[-2].startswith("seed"):
        raise ValueError(f"{path}: not inside a run directory {{dataset}}/{{molecule}}/{{model}}/seed{{seed}}/")
    return {"dataset": parts[-5], "molecule": parts[-4], "model": parts[-3], "seed": parts[-2][4:]}


def write_rollout(
    out_dir: str | os.PathLike,
    *,
    positions: np.ndarray,
    reference: np.ndarray,
    frame_indices: np.ndarray,
    atomic_numbers: np.ndarray,
    diverged_at: int,
    stride: int,
    dt_fs: float,
    seconds: float,
    score_evals: np.ndarray,
    source: str,
    molecule: str,
    model: str,
    rollout_stats: dict[str, float] | None = None,
    extxyz: bool = True,
    applicable: bool = True,
    multi: MultiStart | None = None,
    one_step: OneStep | None = None,
) -> None:
    """Write ``rollout.npz`` (and ``rollout.extxyz``) of one run into ``out_dir``, atomically."""
    out = Path(out_dir)
    extra: dict[str, Any] = {"applicable": np.bool_(applicable)}
    for part, keys in ((multi, MULTI_KEYS), (one_step, ONE_STEP_KEYS), (one_step, ONE_STEP_FORCE_KEYS)):
        if part is not None:
            extra.update({key: np.asarray(getattr(part, name)) for name, key in keys.items()
                          if getattr(part, name) is not None})  # fmt: skip
    save_npz(
        out / ROLLOUT_NAME,
        positions=positions, reference=reference, frame_indices=frame_indices, atomic_numbers=atomic_numbers,
        diverged=np.bool_(diverged_at >= 0), diverged_at=np.int64(diverged_at), stride=np.int64(stride),
        dt_fs=np.float64(dt_fs), seconds=np.float64(seconds), score_evals=score_evals, source=np.str_(source),
        molecule=np.str_(molecule), model=np.str_(model), role=np.str_(role_of(model)),
        rollout_stats=np.str_(json.dumps(rollout_stats or {}, sort_keys=True)), **extra,
    )  # fmt: skip
    if extxyz:
        info = {"model": model, "molecule": molecule, "start_frame": int(np.asarray(frame_indices).reshape(-1)[0]),
                "diverged_at": int(diverged_at)}  # fmt: skip
        write_extxyz(out / EXTXYZ_NAME, positions, atomic_numbers, dt_fs, stride, info, frame_indices)
        write_extxyz(out / REFERENCE_EXTXYZ_NAME, reference, atomic_numbers, dt_fs, stride,
                     {**info, "model": "ground truth"}, frame_indices)  # fmt: skip


def write_extxyz(path: str | Path, positions: np.ndarray, numbers: np.ndarray, dt_fs: float, stride: int,
                 info: dict[str, Any] | None = None, frame_indices: np.ndarray | None = None) -> None:  # fmt: skip
    """The finite frames as extended XYZ (ASE / OVITO / VMD), atomically; every frame's ``info`` carries
    ``step``, ``time_fs``, the source ``frame`` index and ``info`` (model, molecule, start frame, diverged_at)."""
    from ase import Atoms
    from ase.io import write

    frames = []
    for i, x in enumerate(positions):
        if not np.isfinite(x).all():
            break
        atoms = Atoms(numbers=numbers, positions=x)
        atoms.info.update(info or {})
        atoms.info["step"] = i
        atoms.info["time_fs"] = i * stride * dt_fs
        if frame_indices is not None:
            atoms.info["frame"] = int(np.asarray(frame_indices).reshape(-1)[i])
        frames.append(atoms)
    with atomic_path(path) as tmp:
        write(str(tmp), frames, format="extxyz")
