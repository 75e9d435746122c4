"""Checkpoints load with ``weights_only=True``: a crafted pickle is refused and runs nothing (issue 15, row 1)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from diffmd.engine.common import load_checkpoint, load_torch, rng_state, save_torch, set_rng_state


class _Payload:
    """Unpickling this would create the marker file (what a hostile ``last.pt`` would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["last.pt", "model.pt"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    torch.save({"epoch": 3, "rng": _Payload(str(marker))}, path)
    loader = load_torch if name == "last.pt" else load_checkpoint
    with pytest.raises(ValueError) as info:
        loader(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: refused") and "\n" not in msg
    assert "system" in msg
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    random.gauss(0, 1), np.random.normal()  # non-trivial cached-gaussian state
    save_torch(tmp_path / "last.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(load_torch(tmp_path / "last.pt")["rng"])
    assert (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist()) == expected


def test_garbage_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint at all\n" * 10)
    with pytest.raises(ValueError, match="corrupt or unreadable checkpoint") as info:
        load_torch(path)
    assert "\n" not in str(info.value)
