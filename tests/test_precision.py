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
