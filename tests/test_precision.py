"""``train.precision: bf16`` (issue 14: mixed precision only where accuracy allows, tested against float32).

For every model the engine trains, one training loss and its gradient under bf16 autocast (CPU here; the same
autocast region on CUDA) against float32 on the same batch and the same draws of the loss's randomness.
Sampling and rollouts stay float32 (the config schema says why).
"""

from __future__ import annotations

import pytest
import torch
from test_models_all import MODELS, generic, quick_params, with_forces

from diffmd import batch as B
from diffmd.engine.train import autocast
from diffmd.registry import build_model, get_model_class
from diffmd.testing import toy_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _loss_and_grad(model: torch.nn.Module, batch: B.Batch, precision: str) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same noise draws, dropout masks and diffusion times in both precisions
    with autocast(torch.device("cpu"), precision):
        loss = model.loss(batch).float()
    loss.backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return float(loss.detach()), torch.cat(grads)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_training_step_tracks_float32_or_is_refused(name):
    """Models allowing bf16: loss within 2% and gradient cosine > 0.999 of float32 (measured: >= 0.99997).
    Models refusing it (``bf16_refused``) must indeed fail that check or fail to run, so a refusal is never
    stale, and the trainer stops on them with the reason."""
    cls = get_model_class(name)
    if not cls.trainable or not generic(name):
        pytest.skip(f"{name}: nothing the engine trains")
    torch.manual_seed(0)
    model = build_model(name, quick_params(name), source=f"{name} (quick sizes)")
    batch = B.to_device(with_forces(toy_batch(3, seed=4)), "cpu", torch.float32)
    with torch.no_grad():
        model.loss(batch)  # lazy state (scales set by the first batch)
    model.train()
    loss32, grad32 = _loss_and_grad(model, batch, "float32")
    try:
        loss16, grad16 = _loss_and_grad(model, batch, "bf16")
    except RuntimeError as exc:
        assert cls.bf16_refused, f"{name}: bf16 autocast fails ({exc}) but the model does not refuse it"
        return
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cos = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
    close = abs(loss16 - loss32) <= 0.02 * abs(loss32) and cos > 0.999
    if cls.bf16_refused:
        assert not close, f"{name} refuses bf16 ({cls.bf16_refused}) but tracks float32 (cosine {cos:.5f})"
    else:
        assert close, f"{name}: loss {loss32:.5g} (float32) vs {loss16:.5g} (bf16), gradient cosine {cos:.5f}"


def test_trainer_refuses_bf16_for_a_model_that_refuses_it(tmp_path):
    from diffmd.engine.train import train

    with pytest.raises(ValueError, match="train.precision: bf16 is refused for tfn: e3nn"):
        train(str(tmp_path / "no_split.json"), "tfn", quick_params("tfn"), {"precision": "bf16", "device": "cpu"},
              1, str(tmp_path / "run"))  # fmt: skip


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="train.precision"):
        autocast(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("name", MODELS)
def test_tf32_training_step_tracks_float32_or_is_refused(name):
    """``train.precision: tf32`` (TF32 matmuls on a GPU's tensor cores) emulated on a CPU: every float32 matmul
    reads its operands rounded to TF32's 10-bit mantissa (diffmd.engine.capture.EmulatedTF32). Models allowing
    it: loss within 0.5% and gradient cosine > 0.9999 of float32 (float32-level agreement for a training step);
    a model refusing it (``tf32_refused``) must indeed fail that check."""
    from diffmd.engine.capture import EmulatedTF32

    cls = get_model_class(name)
    if not cls.trainable or not generic(name):
        pytest.skip(f"{name}: nothing the engine trains")
    torch.manual_seed(0)
    model = build_model(name, quick_params(name), source=f"{name} (quick sizes)")
    batch = B.to_device(with_forces(toy_batch(3, seed=4)), "cpu", torch.float32)
    with torch.no_grad():
        model.loss(batch)
    model.train()
    loss32, grad32 = _loss_and_grad(model, batch, "float32")
    with EmulatedTF32():
        loss_t, grad_t = _loss_and_grad(model, batch, "float32")
    cos = float(torch.nn.functional.cosine_similarity(grad32, grad_t, dim=0))
    close = abs(loss_t - loss32) <= 5e-3 * abs(loss32) and cos > 0.9999
    if cls.tf32_refused:
        assert not close, f"{name} refuses tf32 ({cls.tf32_refused}) but tracks float32 (cosine {cos:.6f})"
    else:
        assert close, f"{name}: loss {loss32:.6g} (float32) vs {loss_t:.6g} (tf32), gradient cosine {cos:.6f}"


def test_emulated_tf32_rounds_matmul_operands():
    from diffmd.engine.capture import EmulatedTF32, round_to_tf32

    x = torch.tensor([1.0 + 2.0**-11, 1.0 + 2.0**-10 + 2.0**-12, 3.0])
    assert round_to_tf32(x).tolist() == [1.0, 1.0 + 2.0**-10, 3.0]  # ties to even; 10 mantissa bits kept
    a, b = torch.full((1, 1), 1.0 + 2.0**-12), torch.ones(1, 1)
    with EmulatedTF32():
        assert float(a @ b) == 1.0
    assert float(a @ b) == 1.0 + 2.0**-12
