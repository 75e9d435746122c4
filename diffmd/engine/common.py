"""Pieces shared by the engine's entry points: device, seeding, checkpoints, RNG state."""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmd.io import atomic_path
from diffmd.registry import TrajectoryModel


def resolve_device(name: str | None) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch (the job's share of the machine); 0 keeps torch's default."""
    if n > 0:
        torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, lists and numbers only, so checkpoints load with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    algo, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(x) for x in internal], gauss],
        "numpy": {"algorithm": str(algo), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states written by :func:`rng_state` (bit-identical continuation)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else npy["keys"], dtype=np.uint32)
    np.random.set_state((npy["algorithm"], keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and a rename (a killed job leaves no half file)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint loaded with ``weights_only=True``: tensors, containers and numbers only, never code.

    A file that needs anything else (a crafted pickle, or a checkpoint of an older version of this
    code that stored numpy objects) is refused with a one-line :class:`ValueError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # a pickle that would import (and may call) arbitrary code
            raise ValueError(f"{path}: refused: not a weights-only checkpoint (it asks for {found.group(1)});"
                             " delete it unless you trust its origin") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        why = detail.group(1).strip() if detail else _first_line(exc)
        raise ValueError(f"{path}: corrupt or unreadable checkpoint ({why})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure means a corrupt file
        raise ValueError(f"{path}: corrupt or unreadable checkpoint ({_first_line(exc)})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, expected a dict)")
    return obj


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (torch's messages span many lines)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[TrajectoryModel, dict]:
    """Rebuild the model of a ``model.pt`` (``{"model", "params", "state_dict", ...}``), its contents checked first
    (:func:`diffmd.engine.checkpoints.build_checked`: one-line ``ValueError`` naming the file)."""
    from diffmd.engine.checkpoints import build_checked

    ckpt = load_torch(path)
    return build_checked(ckpt, path, device), ckpt
