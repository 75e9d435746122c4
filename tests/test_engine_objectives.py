"""Engine options every engine-trained model gets (issue 24, diffmd/engine/objectives.py): input noise with the
target kept clean, the pushforward unroll loss and the pairs that carry its target; off by default, sync-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_pairs import toy_md17

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, Segment, load_split, segment_batch, split_segments, unroll_segments
from diffmd.engine import train as T
from diffmd.engine.batching import DeviceData
from diffmd.engine.common import load_torch
from diffmd.engine.objectives import engine_loss, noisy_inputs, unroll_loss
from diffmd.profiling import count
from diffmd.registry import build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z, toy_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PARAMS = {"hidden": 8, "layers": 2}


def constant_velocity_segment(n_frames: int = 40) -> Segment:
    rng = np.random.default_rng(0)
    velocity = 0.01 * rng.standard_normal((9, 3))
    positions = ETHANOL_X[None] + velocity[None] * np.arange(n_frames)[:, None, None]
    return Segment("cv", positions, ETHANOL_Z, start=2, stop=n_frames - 4, dt_fs=0.5)


def test_noise_moves_x_v_a_together_and_keeps_the_clean_target_exact_on_constant_velocity():
    seg = constant_velocity_segment()
    batch = segment_batch(seg, seg.frames(), torch.float64)
    noisy = noisy_inputs(batch, 0.01, torch.Generator().manual_seed(3))
    noise = noisy[B.POSITIONS] - batch[B.POSITIONS]
    assert 0.008 < float(noise.std()) < 0.012
    # v and a carry the same noise: the history frames x(t-1), x(t-2) stay the data's
    assert torch.allclose(noisy[B.POSITIONS] - noisy[B.VELOCITIES], batch[B.POSITIONS] - batch[B.VELOCITIES],
                          atol=1e-13)  # fmt: skip
    x_tm2 = lambda b: b[B.POSITIONS] - 2 * b[B.VELOCITIES] + b[B.ACCELERATIONS]  # noqa: E731
    assert torch.allclose(x_tm2(noisy), x_tm2(batch), atol=1e-13)
    assert torch.equal(noisy[B.TARGET_POSITIONS], batch[B.TARGET_POSITIONS])
    # constant velocity: the clean next frame is an exact function of the noisy inputs
    recovered = noisy[B.POSITIONS] + noisy[B.VELOCITIES] - 2 * noisy[B.ACCELERATIONS]
    assert torch.allclose(recovered, batch[B.TARGET_POSITIONS], atol=1e-13)
    # ... which a noise-free constant-velocity step misses by twice the noise
    assert torch.allclose(noisy[B.POSITIONS] + noisy[B.VELOCITIES] - batch[B.TARGET_POSITIONS], 2 * noise,
                          atol=1e-13)  # fmt: skip


def test_unroll_one_is_the_one_step_loss():
    torch.manual_seed(0)
    model = build_model("egnn", PARAMS).double()
    batch = toy_batch(3)
    assert torch.equal(unroll_loss(model, batch, 1), model.loss(batch))
    assert engine_loss(model, {"input_noise": 0.0, "unroll": 1}) is None  # the trainer calls model.loss itself


def test_unroll_is_the_loss_after_the_models_own_steps_with_gradients_through_the_last_only():
    torch.manual_seed(0)
    model = build_model("egnn", PARAMS).double()
    batch = toy_batch(3)
    target = batch[B.TARGET_POSITIONS] + 0.01
    loss = unroll_loss(model, {**batch, B.UNROLL_TARGET: target}, 3)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    # by hand: two steps without gradients (x <- x̂, v <- x̂ - x, a <- v' - v), then the one-step loss
    state = B.inputs_only(batch)
    for _ in range(2):
        with torch.no_grad():
            nxt = model(state)
        vel = nxt - state[B.POSITIONS]
        state = {**state, B.POSITIONS: nxt, B.VELOCITIES: vel, B.ACCELERATIONS: vel - state[B.VELOCITIES]}
    manual = model.loss({**state, B.TARGET_POSITIONS: target})
    assert torch.allclose(loss, manual, rtol=1e-12)
    for g, h in zip(grads, torch.autograd.grad(manual, params, allow_unused=True, materialize_grads=True)):
        assert torch.allclose(g, h, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="train.unroll 3: the batch has no"):
        unroll_loss(model, batch, 3)


def test_pairs_carry_the_unroll_target_on_the_device_bit_for_bit(tmp_path):
    split = load_split(toy_md17(tmp_path))
    segs = split_segments(split, "train")
    cut = unroll_segments(segs, 4)
    assert cut[0].stop == segs[0].stop - 3 and cut[0].start == segs[0].start
    data = PairDataset(cut, 50, unroll=4)
    batch = data.batch(np.arange(len(data)))
    frames = data.frame_of
    want = torch.as_tensor(segs[0].positions[frames + 4].reshape(-1, 3), dtype=torch.float32)
    assert torch.equal(batch[B.UNROLL_TARGET], want)
    # the target stays inside the training part (whose last frame is stop - 1 + the split's stride)
    assert frames.max() + 4 <= segs[0].stop
    dev = DeviceData(data, "cpu").batch(np.arange(len(data)))
    assert dev.keys() == batch.keys() and all(torch.equal(dev[k], batch[k]) for k in batch)
    assert B.UNROLL_TARGET not in B.inputs_only(batch)
    assert B.UNROLL_TARGET not in PairDataset(segs, 10).batch(np.arange(3))
    with pytest.raises(ValueError, match="train.unroll: 500 steps"):
        unroll_segments(segs, 500)


def test_options_add_no_host_sync_to_a_training_step(tmp_path):
    torch.manual_seed(0)
    model = build_model("egnn", PARAMS)
    data = DeviceData(PairDataset(unroll_segments(split_segments(load_split(toy_md17(tmp_path)), "train"), 3), 40,
                                  unroll=3), "cpu", model)  # fmt: skip
    batch = data.batch(np.arange(8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # the trainer's on CUDA (no host step count)
    loss_fn = engine_loss(model, {"input_noise": 1e-3, "unroll": 3})
    T.train_step(model, opt, batch, torch.device("cpu"), loss_fn=loss_fn)  # warm-up (optimiser state)
    counts = count(lambda: T.train_step(model, opt, batch, torch.device("cpu"), loss_fn=loss_fn))
    assert counts.syncs == 0, counts.sync_sites
    plain = count(lambda: T.train_step(model, opt, batch, torch.device("cpu")))
    assert counts.ops > plain.ops  # the two extra forward passes and the noise were counted


@pytest.mark.parametrize("bad", [{"input_noise": -1.0}, {"unroll": 0}, {"unroll": 1.5}])
def test_bad_option_values_are_named(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=f"train.{key}"):
        T.resolve_train_config({**bad})


def test_defaults_train_bitwise_as_before_and_options_change_training(tmp_path):
    torch.set_num_threads(1)
    split = str(toy_md17(tmp_path))
    cfg = {"epochs": 2, "val_every": 2, "batch_size": 32, "device": "cpu", "max_train_pairs": 64, "val_frames": 10}
    T.train(split, "egnn", PARAMS, cfg, seed=3, out=tmp_path / "a")
    T.train(split, "egnn", PARAMS, {**cfg, "input_noise": 0.0, "unroll": 1}, seed=3, out=tmp_path / "b")
    T.train(split, "egnn", PARAMS, {**cfg, "input_noise": 1e-3, "unroll": 2}, seed=3, out=tmp_path / "c")
    a, b, c = (load_torch(tmp_path / d / "model.pt")["state_dict"] for d in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
