"""train.compile / rollout.compile (diffmd/engine/capture.py): the captured network gives eager's numbers.

Kept tiny (inductor compiles on a CPU in seconds at these sizes); on CUDA the same switch replays the compiled
kernels as CUDA graphs (mode reduce-overhead), which the device check exercises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd.data.pairs import PairDataset, Segment
from diffmd.engine.batching import DeviceData
from diffmd.engine.capture import apply_compile, compile_enabled, compile_loss, compile_mode
from diffmd.registry import build_model
from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"diffmd": {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "dropout": 0.0, "n_time_freq": 2}}


def _batch(model):
    seg = Segment("eth", vibrating_truth(30, seed=1), ETHANOL_Z, start=2, stop=20)
    return DeviceData(PairDataset([seg]), "cpu", model).batch(np.arange(4))


def test_settings():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not compile_enabled("auto", cpu) and compile_enabled("auto", cuda)
    assert compile_enabled(True, cpu) and compile_enabled("true", cpu) and not compile_enabled(False, cuda)
    assert compile_mode(cuda) == "reduce-overhead" and compile_mode(cpu) == "default"
    with pytest.raises(ValueError, match="compile"):
        compile_enabled("sometimes", cpu)


@pytest.mark.parametrize("name", ["diffmd"])
def test_compiled_loss_matches_eager(name):
    """The compiled training objective (network and loss, forward and backward graphs) gives eager's loss and
    gradients to float round-off; the parameter names (checkpoints) are unchanged."""
    torch.manual_seed(0)
    eager = build_model(name, TINY[name])
    torch.manual_seed(0)
    captured = build_model(name, TINY[name])
    assert compile_loss(captured, torch.device("cpu"), True)
    assert list(captured.state_dict()) == list(eager.state_dict())  # parameters untouched: checkpoints unchanged
    batch = _batch(eager)
    for model in (eager, captured):
        model.loss_scale = 1e-3
        torch.manual_seed(3)
        model.loss(batch).backward()
    torch.manual_seed(3)
    loss_e = eager.loss(batch)
    torch.manual_seed(3)
    loss_c = captured.loss(batch)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-7)
    for pe, pc in zip(eager.parameters(), captured.parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-4, atol=1e-6)


def test_inference_targets_are_compiled_in_place():
    model = build_model("diffmd", TINY["diffmd"])
    names = list(model.state_dict())
    assert apply_compile(model, torch.device("cpu"), False) == []
    assert apply_compile(model, torch.device("cpu"), True) == ["EGT"]  # the score network, not the sampler
    assert list(model.state_dict()) == names
