"""Pieces shared by the engine's entry points: device, seeding, checkpoints, RNG state."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmd.io import atomic_path
from diffmd.registry import TrajectoryModel, build_model


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
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and a rename (a killed job leaves no half file)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[TrajectoryModel, dict]:
    """Rebuild the model of a ``model.pt`` (``{"model", "params", "state_dict", ...}``)."""
    ckpt = load_torch(path)
    for key in ("model", "params", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path}: missing key {key!r}")
    model = build_model(ckpt["model"], ckpt["params"], source=str(path))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), ckpt
