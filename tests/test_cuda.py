"""The CUDA path, run first by the device check (benchmarks/device_check.py, issue 22); skipped without CUDA.

* ``train.precision``: on the device's own tensor cores, a training step in TF32 and in bf16 tracks float32 for
  every model that allows it (the CPU tests emulate TF32 and run bf16 autocast on the CPU: tests/test_precision.py);
* ``train.compile`` / ``rollout.compile``: the captured training objective and the captured network (torch.compile
  ``reduce-overhead``: CUDA graphs, :mod:`diffmd.engine.capture`) give eager's numbers on CUDA (on a CPU:
  tests/test_capture.py).

Training and rollout on CUDA end to end: tests/test_engine_rollout.py; every model's prediction on CUDA against the
CPU: tests/test_models_all.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models_all import MODELS, generic, quick_params, with_forces

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, Segment
from diffmd.engine.batching import DeviceData
from diffmd.engine.capture import apply_compile, compile_loss, matmul_precision
from diffmd.engine.train import autocast
from diffmd.registry import build_model, get_model_class
from diffmd.testing import toy_batch
from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")
TINY = {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_ffn": 16, "dropout": 0.0, "n_time_freq": 2}


def _loss_and_grad(model: torch.nn.Module, batch: B.Batch, precision: str) -> tuple[float, torch.Tensor]:
    """As the trainer's step does it (diffmd.engine.train.train_step), without the optimiser."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same noise draws, dropout masks and diffusion times in every precision
    with matmul_precision(CUDA, precision):
        with autocast(CUDA, precision):
            loss = model.loss(batch).float()
        loss.backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return float(loss.detach()), torch.cat(grads)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("name", MODELS)
def test_training_step_on_cuda_tracks_float32(name, precision):
    """TF32: loss within 0.5% and gradient cosine > 0.9999 of float32; bf16: within 2% and > 0.999 (the CPU
    tests' bounds); a model refusing the precision is not trained in it (the trainer stops on it)."""
    cls = get_model_class(name)
    if not cls.trainable or not generic(name):
        pytest.skip(f"{name}: nothing the engine trains")
    refused = cls.tf32_refused if precision == "tf32" else cls.bf16_refused
    if refused:
        pytest.skip(f"{name} refuses {precision}: {refused}")
    torch.manual_seed(0)
    model = build_model(name, quick_params(name), source=f"{name} (quick sizes)").to(CUDA)
    batch = B.to_device(with_forces(toy_batch(3, seed=4)), CUDA, torch.float32)
    with torch.no_grad():
        model.loss(batch)  # lazy state (scales set by the first batch)
    model.train()
    loss32, grad32 = _loss_and_grad(model, batch, "float32")
    loss_p, grad_p = _loss_and_grad(model, batch, precision)
    cos = float(torch.nn.functional.cosine_similarity(grad32, grad_p, dim=0))
    rel, bound = (5e-3, 0.9999) if precision == "tf32" else (0.02, 0.999)
    assert abs(loss_p - loss32) <= rel * abs(loss32) and cos > bound, (
        f"{name}: loss {loss32:.6g} (float32) vs {loss_p:.6g} ({precision}), gradient cosine {cos:.6f}"
    )


def _batch(model: torch.nn.Module) -> B.Batch:
    seg = Segment("eth", vibrating_truth(30, seed=1), ETHANOL_Z, start=2, stop=20)
    return DeviceData(PairDataset([seg]), CUDA, model).batch(np.arange(4))


def test_captured_training_objective_matches_eager_on_cuda():
    """``train.compile`` on CUDA (the whole objective compiled, replayed as CUDA graphs): after the warm-up calls
    that record the graphs, loss and gradients equal eager's to float round-off, draw for draw."""
    torch.manual_seed(0)
    eager = build_model("diffmd", TINY).to(CUDA)
    torch.manual_seed(0)
    captured = build_model("diffmd", TINY).to(CUDA)
    assert compile_loss(captured, CUDA, True)
    batch = _batch(eager)
    for model in (eager, captured):
        model.loss_scale = 1e-3
        for _ in range(3):  # compile, record, replay
            model.zero_grad(set_to_none=True)
            torch.manual_seed(3)
            model.loss(batch).backward()
    out = {}
    for key, model in (("eager", eager), ("captured", captured)):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        loss = model.loss(batch)
        loss.backward()
        out[key] = (loss.detach().clone(), [None if p.grad is None else p.grad.detach().clone()
                                            for p in model.parameters()])  # fmt: skip
    torch.testing.assert_close(out["captured"][0], out["eager"][0], rtol=1e-5, atol=1e-7)
    for ge, gc in zip(out["eager"][1], out["captured"][1]):
        assert (ge is None) == (gc is None)
        if ge is not None:
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-6)


def test_captured_network_matches_eager_on_cuda():
    """``rollout.compile`` on CUDA (the model's network compiled in place, CUDA graphs): the same evaluations."""
    torch.manual_seed(0)
    model = build_model("diffmd", TINY).to(CUDA).eval()
    inputs = B.inputs_only(_batch(model))
    with torch.no_grad():
        model.begin_rollout(inputs)
        eager = model.network_call(inputs).clone()
        assert apply_compile(model, CUDA, True) == ["EGT"]
        for _ in range(3):  # compile, record, replay
            captured = model.network_call(inputs).clone()
    torch.testing.assert_close(captured, eager, rtol=1e-5, atol=1e-6)
