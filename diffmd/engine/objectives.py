"""Training objectives every engine-trained model gets, without a model branch (issue 24): input noise and an
unrolled (pushforward) loss. Both wrap the model's own ``loss(batch)``, so a diffusion model keeps its denoising
loss and a regressor its position loss; both are off by default (``train.input_noise: 0``, ``train.unroll: 1``),
where the trainer calls ``model.loss`` exactly as before.

``train.input_noise`` σ (Å), as in Sanchez-Gonzalez et al. 2020 ("Learning to Simulate Complex Physics with
Graph Networks", training noise): Gaussian noise n ~ N(0, σ²) per coordinate on the current frame x(t), carried
consistently into the inputs derived from it, v(t) = x(t) - x(t-1) and a(t-1) = x(t) - 2x(t-1) + x(t-2) (the
history frames x(t-1), x(t-2) stay the data's), while the target stays the clean next frame x(t+1): the model
learns to step from a slightly wrong state back onto the data, the situation a rollout puts it in after its own
errors. On a trajectory of constant velocity the clean target is an exact function of the noisy inputs,
x(t+1) = x̃ + ṽ - 2ã (tests/test_engine_objectives.py).

``train.unroll`` u (steps): the pushforward trick (Brandstetter, Worrall & Welling 2022, "Message Passing Neural
PDE Solvers"): from the true history at t, the model rolls itself out u - 1 steps without gradients
(``model.predict``, inputs by the rollout's backward differences), then its ordinary loss is taken on the last
step against the data's x(t + u) (``batch.UNROLL_TARGET``, which the training pairs carry when u > 1:
:func:`diffmd.data.pairs.unroll_segments`, :class:`diffmd.data.pairs.PairDataset`). Gradients flow through the
last step only, so the model learns to correct the input distribution its own rollouts produce at the price of
u - 1 extra forward passes. u = 1 is the one-step loss itself.

Both are device ops only: no host read in the step (tests/test_engine_objectives.py counts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffmd import batch as B


def noisy_inputs(batch: B.Batch, sigma: float, generator: torch.Generator | None = None) -> B.Batch:
    """``batch`` with Gaussian noise of ``sigma`` Å on x(t) and consistently on v(t) and a(t-1); the targets (and
    every other key) unchanged. ``generator``: for tests (default: torch's global generator, seeded by the
    trainer, so a resumed run draws the same noise)."""
    x = batch[B.POSITIONS]
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator) * sigma
    out = dict(batch)
    out[B.POSITIONS] = x + noise
    out[B.VELOCITIES] = batch[B.VELOCITIES] + noise
    out[B.ACCELERATIONS] = batch[B.ACCELERATIONS] + noise
    return out


@torch.no_grad()
def advance(model: Any, batch: B.Batch, steps: int) -> B.Batch:
    """``batch``'s inputs after ``steps`` of the model's own rollout (no gradients): x <- x̂(t+1), v <- x̂ - x,
    a <- v_new - v, exactly as :func:`diffmd.engine.rollout.rollout_copies` builds its inputs."""
    out = dict(batch)
    inputs = B.inputs_only(batch)
    for _ in range(steps):
        nxt = model.predict(inputs)
        x, v = inputs[B.POSITIONS], inputs[B.VELOCITIES]
        vel = nxt - x
        inputs = {**inputs, B.POSITIONS: nxt, B.VELOCITIES: vel, B.ACCELERATIONS: vel - v}
    for key in (B.POSITIONS, B.VELOCITIES, B.ACCELERATIONS):
        out[key] = inputs[key].detach()
    return out


def unroll_loss(model: Any, batch: B.Batch, unroll: int) -> torch.Tensor:
    """The pushforward loss (module docstring): ``model.loss`` on the inputs after ``unroll - 1`` of the model's
    own steps, against ``UNROLL_TARGET`` x(t + unroll); ``model.loss(batch)`` for ``unroll`` 1."""
    if unroll <= 1:
        return model.loss({k: v for k, v in batch.items() if k != B.UNROLL_TARGET})
    if B.UNROLL_TARGET not in batch:
        raise ValueError(f"train.unroll {unroll}: the batch has no {B.UNROLL_TARGET!r} (build the pairs with "
                         "PairDataset(unroll_segments(...), unroll=...))")  # fmt: skip
    was_training = model.training
    state = advance(model, batch, unroll - 1)
    model.train(was_training)
    state[B.TARGET_POSITIONS] = state.pop(B.UNROLL_TARGET)
    return model.loss(state)


def check_options(cfg: dict[str, Any]) -> None:
    """One line naming the key when ``train.input_noise`` or ``train.unroll`` is out of range."""
    sigma, unroll = cfg.get("input_noise", 0.0), cfg.get("unroll", 1)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"train.input_noise: must be a number >= 0 (Å), got {sigma!r}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"train.unroll: must be an integer >= 1, got {unroll!r}")


def engine_loss(model: Any, cfg: dict[str, Any]) -> Callable[[B.Batch], torch.Tensor] | None:
    """The training objective ``cfg`` asks for, or None (``model.loss`` itself: the default, unchanged)."""
    check_options(cfg)
    sigma, unroll = float(cfg.get("input_noise", 0.0)), int(cfg.get("unroll", 1))
    if sigma == 0.0 and unroll == 1:
        return None

    def loss(batch: B.Batch) -> torch.Tensor:
        if sigma > 0.0:
            batch = noisy_inputs(batch, sigma)
        return unroll_loss(model, batch, unroll)

    return loss
