"""DeviceData (diffmd/engine/batching.py): the training and validation pairs resident on the device give the
dataset's own batches bit for bit, every key included: the force floor's step and, on Nosé-Hoover data, the
data's chain state (float64) that xtb_nh continues (issue 21 on top of issue 23a)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffmd.batch as B
from diffmd.data.pairs import PairDataset, Segment
from diffmd.engine.batching import DeviceData
from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seg(name: str, n_frames: int, seed: int, chains: bool, atoms: int | None = None) -> Segment:
    rng = np.random.default_rng(seed)
    pos = vibrating_truth(n_frames, seed=seed)
    z = np.asarray(ETHANOL_Z)
    if atoms is not None:  # a smaller molecule: the first atoms
        pos, z = pos[:, :atoms], z[:atoms]
    return Segment(name, pos, z, start=2, stop=n_frames - 1, forces=rng.normal(size=pos.shape),
                   thermostat_state=rng.normal(size=(n_frames, 6)) if chains else None)  # fmt: skip


def _same(got: B.Batch, want: B.Batch) -> None:
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


@pytest.mark.parametrize("mixed", [False, True], ids=["one_segment", "two_molecules"])
@pytest.mark.parametrize("chains", [False, True], ids=["no_chain", "chain_state"])
def test_device_batches_are_the_datasets(mixed, chains):
    segs = [_seg("a", 20, 1, chains)] + ([_seg("b", 16, 2, chains, atoms=6)] if mixed else [])
    data = PairDataset(segs)
    dev = DeviceData(data, "cpu")
    idx = np.arange(len(data))[::-1][:7]
    want = data.batch(idx)
    got = dev.batch(idx[np.argsort(data.seg_of[idx], kind="stable")])  # grouped by segment, as the dataset does
    _same(got, want)
    assert (B.THERMOSTAT_STATE in got) == chains
    if chains:
        assert got[B.THERMOSTAT_STATE].dtype == torch.float64 and got[B.THERMOSTAT_STATE].shape == (7, 6)
