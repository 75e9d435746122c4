"""EGNN_vel specifics (with its coordinate gates scaled up, so the equivariance check is not passed by
tiny outputs); the generic equivariance, batching and overfit tests are in tests/test_models_all.py."""

from __future__ import annotations

import torch

from diffmd import batch as B
from diffmd.registry import build_model
from diffmd.testing import assert_equivariant, toy_batch


def make(**kw):
    torch.manual_seed(0)
    return build_model("egnn", {"hidden": 16, "layers": 3, **kw}).double()


def test_equivariance_rotation_reflection_translation_permutation():
    model = make()
    with torch.no_grad():
        # scale the velocity gates up so the check is not trivially passed by tiny outputs
        for layer in model.layers:
            layer.coord_mlp[-1].weight.mul_(1000.0)
    assert_equivariant(model.predict, toy_batch(3), kind="position", reflect=True, atol=1e-9)
    assert_equivariant(model.predict, toy_batch(3), kind="position", reflect=False, atol=1e-9, seed=3)


def test_output_moves_and_depends_on_velocity():
    model = make()
    batch = toy_batch(2)
    out = model.predict(batch)
    faster = dict(batch)
    faster[B.VELOCITIES] = 2 * batch[B.VELOCITIES]
    assert (out - batch[B.POSITIONS]).abs().max() > 0
    assert (model.predict(faster) - out).abs().max() > 1e-6
