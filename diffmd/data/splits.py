"""The paper's two tasks as split files (formats: docs/ARCHITECTURE.md, "Data files").

S2L (MD17, one molecule): frame pairs ``(t, t+stride)`` in time order; the first ``n_train``
pairs train, the next ``n_val`` validate, the next ``n_test`` test (paper: 20,000 / 10,000 /
10,000). The first pair starts at ``t = 2*stride`` so that ``v(t) = x(t) - x(t-k)`` and
``a(t-k) = x(t) - 2x(t-k) + x(t-2k)`` have their history; no range ever reaches past the
trajectory.

O2O (C7O2H10): the targets come from the config (paper: ISO_1004, ISO_2134, ISO_2126, ISO_3001,
ISO_1007) or, with ``targets: []``, are the ``n_targets`` isomers with the largest ARMSE of the
constant prediction ``x(t0)`` (the paper's selection rule). ``n_val_isomers`` of the remaining
isomers validate (spread evenly over their constant-prediction ARMSE ranking, so validation is
neither the easiest nor the hardest of them) and the rest train.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.data.plausibility import check_plausible
from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, load_trajectory
from diffmd.metrics import armse
from diffmd.provenance import sha256_file


class SplitError(ValueError):
    """A split cannot be made (message names the file or config key and the numbers)."""


def _range(start: int, stop: int) -> dict[str, int]:
    return {"start": int(start), "stop": int(stop)}


def check_md17_identity(traj: Trajectory, molecule: str, origin: str | os.PathLike) -> None:
    """The trajectory must be the requested MD17 molecule (its recorded name, dataset and atoms)."""
    if traj.name != molecule or traj.dataset != "md17":
        raise SplitError(f"{origin}: holds {traj.dataset} {traj.name!r}, expected MD17 {molecule!r}"
                         " (a file of another molecule copied over it?)")
    from diffmd.data.md17 import check_composition

    check_composition(origin, molecule, traj.atomic_numbers)


def md17_split(traj_path: str | os.PathLike, n_train: int, n_val: int, n_test: int, stride: int = 1,
               molecule: str | None = None, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The S2L split of one MD17 trajectory (ranges of current frames ``t``); with ``molecule``, the
    trajectory must hold that molecule; with ``checks`` (``data.md17.checks``; ``{}``: the defaults) it must
    pass the plausibility checks (:mod:`diffmd.data.plausibility`)."""
    if stride < 1:
        raise SplitError(f"splits.md17.stride: must be >= 1, got {stride}")
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 1:
            raise SplitError(f"splits.md17.{key}: must be >= 1, got {value}")
    traj = load_trajectory(traj_path)
    if molecule is not None:
        check_md17_identity(traj, molecule, traj_path)
    if checks is not None:
        check_plausible(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, checks, str(traj_path),
                        "data.md17.checks")
    n_frames = traj.n_frames
    start = 2 * stride
    train_stop = start + n_train
    val_stop = train_stop + n_val
    test_stop = val_stop + n_test
    needed = test_stop + stride  # the last pair (test_stop - 1, test_stop - 1 + stride) must exist
    if needed > n_frames:
        raise SplitError(
            f"{traj_path}: {n_frames} frames, the split needs {needed} (2*stride={start} history"
            f" + n_train={n_train} + n_val={n_val} + n_test={n_test} pairs + stride={stride});"
            " make the trajectory longer or the split smaller"
        )
    return {
        "dataset": "md17", "molecule": traj.name, "trajectory": str(traj_path),
        "trajectory_sha256": sha256_file(traj_path), "source": traj.source, "stride": int(stride),
        "n_frames": n_frames, "dt_fs": traj.dt_fs,
        "train": _range(start, train_stop), "val": _range(train_stop, val_stop), "test": _range(val_stop, test_stop),
    }


def constant_prediction_armse(positions: np.ndarray, start: int, stop: int, stride: int) -> float:
    """ARMSE (Å, :func:`diffmd.metrics.armse`, Kabsch-aligned) of predicting ``x(start)`` for every later frame.

    The compared frames are ``start + i*stride`` for ``i >= 1`` up to the last frame a rollout from
    ``start`` reaches (``stop - 1 + stride``); ``positions`` is (frames, atoms, 3) in Å.
    """
    ref = positions[start: stop + stride: stride]
    if ref.shape[0] < 2:
        raise SplitError(f"no frames to compare after frame {start} (stop {stop}, stride {stride})")
    pred = np.broadcast_to(positions[start], ref.shape)
    return armse(pred, ref, align=True)


def _frames_range(
    n_frames: int, stride: int, max_frames: int | None, origin: str, history: int = 0
) -> dict[str, int]:
    """Current frames of an isomer: from ``max(2*stride, history)`` (so every model of the experiment,
    the largest stride included, has its v and a history and starts at the same frame) to the last
    frame whose target exists."""
    n_use = min(n_frames, max_frames) if max_frames else n_frames
    start, stop = max(2 * stride, int(history)), n_use - stride
    if stop <= start:
        raise SplitError(f"{origin}: {n_use} usable frames, need at least {3 * stride + 1} for stride {stride}")
    return _range(start, stop)


def _spread(names: list[str], k: int) -> list[str]:
    """``k`` names at evenly spaced quantiles of an ordered list."""
    m = len(names)
    return [names[int((i + 0.5) * m / k)] for i in range(k)] if k else []


def c7o2h10_split(index: dict[str, Any], cfg: dict[str, Any], index_path: str = "index.json",
                  checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The O2O split from ``index.json``'s content and config ``splits.c7o2h10``; with ``checks``
    (``data.c7o2h10.checks``) every isomer must pass the plausibility checks."""
    stride = int(cfg.get("stride", 1))
    if stride < 1:
        raise SplitError(f"splits.c7o2h10.stride: must be >= 1, got {stride}")
    files: dict[str, str] = dict(index["files"])
    names = list(index.get("isomers", files))
    unlisted = [n for n in names if n not in files]
    if unlisted:
        raise SplitError(f"{index_path}: isomer(s) {', '.join(unlisted)} listed without a file in 'files'")
    frames, armse, shas, n_frames = {}, {}, {}, {}
    for name in names:
        traj = load_trajectory(files[name])
        if traj.name != name or traj.dataset != "c7o2h10":
            raise SplitError(f"{files[name]}: holds {traj.dataset} {traj.name!r}, but {index_path} lists it as"
                             f" c7o2h10 {name!r}")
        if checks is not None:
            check_plausible(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, checks, files[name],
                            "data.c7o2h10.checks")
        frames[name] = _frames_range(
            traj.n_frames, stride, cfg.get("max_frames"), files[name], cfg.get("history_frames", 0)
        )
        armse[name] = constant_prediction_armse(traj.positions, frames[name]["start"], frames[name]["stop"], stride)
        shas[name], n_frames[name] = sha256_file(files[name]), traj.n_frames
    ranked = sorted(names, key=lambda n: -armse[n])
    targets = list(cfg.get("targets") or [])
    if targets:
        unknown = [t for t in targets if t not in files]
        if unknown:
            raise SplitError(
                f"splits.c7o2h10.targets: {', '.join(unknown)} not in {index_path} (isomers there: {names[0]}..."
                f"{names[-1]}, source {index.get('source')}); use targets: [] to pick them automatically"
            )
        selection = "config"
    else:
        targets = ranked[: int(cfg.get("n_targets", 5))]
        selection = "constant_prediction"
    rest = [n for n in ranked if n not in targets]
    n_val = int(cfg.get("n_val_isomers", 0))
    if n_val >= len(rest):
        raise SplitError(
            f"splits.c7o2h10: {len(names)} isomers, {len(targets)} targets and n_val_isomers={n_val} leave no "
            f"training isomer in {index_path}"
        )
    val = _spread(rest, n_val)
    train = [n for n in names if n not in targets and n not in val]
    return {
        "dataset": "c7o2h10", "source": index.get("source"), "stride": stride, "selection": selection,
        "constant_prediction_armse": {n: round(armse[n], 6) for n in ranked},
        "train_isomers": train, "val_isomers": val, "targets": targets,
        "trajectories": {n: files[n] for n in names}, "trajectory_sha256": shas,
        "n_frames": n_frames, "frames": frames,
    }


def read_split(path: str | os.PathLike, checksum: Checksum | None = None) -> dict[str, Any]:
    """The one reader of split files: the JSON (a one-line error naming the file when it is missing or not JSON),
    checked by :func:`validate_split`; with ``checksum``, every trajectory's SHA-256 against the file's now (the
    jobs, :func:`diffmd.data.pairs.load_split`), without, the content only (the workflow at parse time)."""
    from diffmd.io import read_json

    return validate_split(read_json(Path(path)), path, checksum)


# --- validation of split files (the jobs on load, the workflow at parse time) ----------------------


def resolve_path(path: str, split_path: str | os.PathLike) -> Path:
    """A path from a split file: relative to the working directory (the repository root)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    raise FileNotFoundError(f"{split_path}: trajectory {path} not found (relative to {Path.cwd()})")


#: ``checksum(path) -> SHA-256`` of a trajectory; the workflow passes a cached one (diffmd.data.preflight)
Checksum = Callable[[Path], str]


def validate_split(split: Any, path: str | os.PathLike, checksum: Checksum | None = sha256_file) -> dict[str, Any]:
    """``split`` (a split file's content) checked, one-line :class:`ValueError` naming ``path``: its keys, stride >= 1,
    train/val/test ranges in range and disjoint (O2O: no isomer in two parts), every trajectory's SHA-256
    recorded (a split without its trajectory's checksum is refused: it could point at any file), and, with
    ``checksum``, equal to the file's now. Returns ``split``."""
    if not isinstance(split, dict):
        raise ValueError(f"{path}: not a split file (expected a JSON object)")
    for key in ("dataset", "stride"):
        if key not in split:
            raise ValueError(f"{path}: missing key {key!r}")
    if split["dataset"] == "md17":
        missing = [k for k in ("trajectory", "train", "val", "test", "trajectory_sha256") if k not in split]
    elif split["dataset"] == "c7o2h10":
        missing = [k for k in ("train_isomers", "val_isomers", "targets", "trajectories", "frames",
                               "trajectory_sha256") if k not in split]  # fmt: skip
    else:
        raise ValueError(f"{path}: unknown dataset {split['dataset']!r}")
    if missing:
        why = (": a split without its trajectory's checksum is refused (it could point at any file); remake it"
               if "trajectory_sha256" in missing else "")
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}{why}")
    stride = split["stride"]
    if not _is_int(stride) or stride < 1:
        raise ValueError(f"{path}: 'stride' must be an integer >= 1, got {stride!r}")
    if split["dataset"] == "md17":
        _check_md17_split(split, path, checksum)
    else:
        _check_c7o2h10_split(split, path, checksum)
    return split


def check_split_trajectory(split: dict[str, Any], traj: Trajectory, traj_path: str | os.PathLike,
                           split_path: str | os.PathLike, isomer: str | None = None) -> None:
    """The trajectory a split points at must hold the split's molecule (MD17: its name, dataset and atoms) or
    the isomer it is listed as (C7O2H10): a split edited to point at another molecule's file is refused."""
    if split["dataset"] == "md17":
        molecule = split.get("molecule")
        if not isinstance(molecule, str):
            raise ValueError(f"{split_path}: missing key 'molecule' (the MD17 molecule the split is of)")
        try:
            check_md17_identity(traj, molecule, traj_path)
        except (SplitError, TrajectoryFormatError) as exc:
            raise ValueError(f"{split_path}: is a split of MD17 {molecule!r}, but {exc}") from None
    elif traj.name != isomer or traj.dataset != "c7o2h10":
        raise ValueError(f"{split_path}: lists {traj_path} as c7o2h10 {isomer!r}, but it holds {traj.dataset}"
                         f" {traj.name!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(rng: Any, what: str, stride: int, n_frames: Any, path: str | os.PathLike) -> tuple[int, int]:
    """``{"start", "stop"}`` of current frames: integers, history ``2*stride`` before, targets inside."""
    if not (isinstance(rng, dict) and _is_int(rng.get("start")) and _is_int(rng.get("stop"))):
        raise ValueError(f"{path}: {what} must be {{'start': int, 'stop': int}}, got {rng!r}")
    start, stop = rng["start"], rng["stop"]
    if start < 2 * stride:
        raise ValueError(f"{path}: {what} starts at frame {start}, before the history 2*stride={2 * stride}")
    if stop <= start:
        raise ValueError(f"{path}: {what} is empty or reversed ({start}..{stop})")
    if _is_int(n_frames) and stop + stride > n_frames:
        raise ValueError(f"{path}: {what} ends at {stop}; with stride {stride} its last target is past the"
                         f" {n_frames} frames of the trajectory")
    return start, stop


def _check_checksum(traj: str, expected: Any, what: str, path: str | os.PathLike, checksum: Checksum | None) -> None:
    if not (isinstance(expected, str) and len(expected) == 64):
        raise ValueError(f"{path}: the SHA-256 of {what} {traj} must be 64 hex digits, got {expected!r}")
    if checksum is None:
        return
    actual = checksum(resolve_path(traj, path))
    if actual != expected:
        raise ValueError(f"{path}: {what} {traj} has SHA-256 {actual[:16]}..., the split was made from"
                         f" {str(expected)[:16]}...: the trajectory changed; remake the split")


def _check_md17_split(split: dict[str, Any], path: str | os.PathLike, checksum: Checksum | None) -> None:
    stride, n_frames = split["stride"], split.get("n_frames")
    parts = {part: _check_range(split[part], f"'{part}'", stride, n_frames, path) for part in ("train", "val", "test")}
    ordered = sorted(parts.items(), key=lambda kv: kv[1])
    for (a, (_, a_stop)), (b, (b_start, _)) in zip(ordered, ordered[1:]):
        if b_start < a_stop:
            raise ValueError(f"{path}: '{a}' {parts[a]} and '{b}' {parts[b]} overlap (train, val and test must be"
                             " disjoint)")
    _check_checksum(str(split["trajectory"]), split["trajectory_sha256"], "trajectory", path, checksum)


def _check_c7o2h10_split(split: dict[str, Any], path: str | os.PathLike, checksum: Checksum | None) -> None:
    stride = split["stride"]
    lists = {key: split[key] for key in ("train_isomers", "val_isomers", "targets")}
    for key, names in lists.items():
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{path}: {key!r} must be a list of isomer names")
    seen: dict[str, str] = {}
    for key, names in lists.items():
        for name in names:
            if name in seen:
                raise ValueError(f"{path}: isomer {name!r} is in both {seen[name]!r} and {key!r} (leakage)")
            seen[name] = key
    trajectories, frames, shas = split["trajectories"], split["frames"], split["trajectory_sha256"]
    if not (isinstance(trajectories, dict) and isinstance(frames, dict) and isinstance(shas, dict)):
        raise ValueError(f"{path}: 'trajectories', 'frames' and 'trajectory_sha256' must map isomer names to a file,"
                         " a frame range and a SHA-256")
    n_frames = split.get("n_frames") if isinstance(split.get("n_frames"), dict) else {}
    for name in seen:
        if name not in trajectories or name not in frames:
            raise ValueError(f"{path}: isomer {name!r} missing from 'trajectories' or 'frames'")
        _check_range(frames[name], f"frames of {name!r}", stride, n_frames.get(name), path)
        if name not in shas:
            raise ValueError(f"{path}: no SHA-256 of isomer {name!r} in 'trajectory_sha256': a split without its"
                             " trajectories' checksums is refused; remake it")
        _check_checksum(str(trajectories[name]), shas[name], f"trajectory of {name!r}", path, checksum)
