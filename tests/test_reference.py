"""The reference models are exact: static repeats x(t), constant velocity adds v(t)."""

from __future__ import annotations

import numpy as np
import torch

from diffmd import batch as B
from diffmd.data.pairs import Segment
from diffmd.engine.rollout import rollout
from diffmd.registry import build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z, toy_batch


def test_static_and_constant_velocity_predictions():
    batch = toy_batch(3)
    static, cv = build_model("static"), build_model("constant_velocity")
    assert not static.trainable and not cv.trainable
    assert torch.equal(static.predict(batch), batch[B.POSITIONS])
    assert torch.equal(cv.predict(batch), batch[B.POSITIONS] + batch[B.VELOCITIES])


def test_constant_velocity_rollout_is_exact_on_uniform_motion():
    # every atom moves 0.01 Å/frame along a fixed direction: straight-line extrapolation is exact
    drift = np.array([0.01, -0.02, 0.005])
    pos = ETHANOL_X[None] + drift * np.arange(40)[:, None, None]
    seg = Segment("ethanol", pos, ETHANOL_Z, start=2, stop=39)
    res = rollout(build_model("constant_velocity"), seg, 5, 30, dtype=torch.float64)
    np.testing.assert_allclose(res.positions, pos[5:36], atol=1e-12)
    res = rollout(build_model("static"), seg, 5, 30, dtype=torch.float64)
    np.testing.assert_allclose(res.positions, np.broadcast_to(pos[5], res.positions.shape), atol=1e-12)
    np.testing.assert_array_equal(res.frame_indices, np.arange(5, 36))
    assert not res.diverged and res.score_evals.shape == (30,)
