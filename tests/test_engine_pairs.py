"""Frame-pair datasets: backward differences only, graph once per molecule, split handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, Segment, load_split, segment_batch, split_segments
from diffmd.data.trajectory import Trajectory, save_trajectory
from diffmd.provenance import sha256_file
from diffmd.testing import ETHANOL_X, ETHANOL_Z

DATA = Path(__file__).parent / "data"


def toy_positions(n_frames: int = 300, seed: int = 0) -> np.ndarray:
    """Ethanol with every coordinate oscillating harmonically (Å), (n_frames, 9, 3)."""
    rng = np.random.default_rng(seed)
    amp = 0.03 * rng.standard_normal((9, 3))
    phase = rng.uniform(0, 2 * np.pi, (9, 3))
    t = np.arange(n_frames)[:, None, None]
    return ETHANOL_X[None] + amp * np.sin(0.15 * t + phase)


def toy_md17(directory: Path, n_frames: int = 300, ranges=((2, 150), (150, 200), (200, 290))) -> Path:
    """A canonical trajectory + S2L split file in ``directory``; returns the split path."""
    traj_path = directory / "toy.npz"
    save_trajectory(traj_path, Trajectory(toy_positions(n_frames), ETHANOL_Z, 0.5, 300.0, "ethanol", "md17", "xtb"))
    split = {"dataset": "md17", "molecule": "ethanol", "trajectory": str(traj_path), "source": "xtb", "stride": 1,
             "n_frames": n_frames, "trajectory_sha256": sha256_file(traj_path)}  # fmt: skip
    for part, (a, b) in zip(("train", "val", "test"), ranges):
        split[part] = {"start": a, "stop": b}
    path = directory / "split.json"
    path.write_text(json.dumps(split))
    return path


def toy_c7o2h10(directory: Path) -> Path:
    """Three 'isomers' (toy trajectories with different seeds) and an O2O split file."""
    names = ["iso1", "iso2", "iso3"]
    trajs, frames = {}, {}
    for i, name in enumerate(names):
        path = directory / f"{name}.npz"
        save_trajectory(path, Trajectory(toy_positions(120, seed=i), ETHANOL_Z, 1.0, 100.0, name, "c7o2h10", "xtb"))
        trajs[name], frames[name] = str(path), {"start": 2, "stop": 119}
    split = {"dataset": "c7o2h10", "source": "xtb", "stride": 1, "selection": "config", "train_isomers": ["iso1"],
             "val_isomers": ["iso2"], "targets": ["iso3"], "trajectories": trajs, "frames": frames,
             "trajectory_sha256": {n: sha256_file(p) for n, p in trajs.items()}}  # fmt: skip
    path = directory / "c7o2h10.json"
    path.write_text(json.dumps(split))
    return path


def test_inputs_never_read_the_future():
    pos = toy_positions(60)
    seg = Segment("ethanol", pos, ETHANOL_Z, start=4, stop=50, stride=2)
    t = 20
    clean = segment_batch(seg, np.array([t]), torch.float64)
    garbage = pos.copy()
    garbage[t + 1 :] = np.nan
    dirty = segment_batch(Segment("ethanol", garbage, ETHANOL_Z, start=4, stop=50, stride=2, graph=seg.graph),
                          np.array([t]), torch.float64)  # fmt: skip
    for key in (B.POSITIONS, B.VELOCITIES, B.ACCELERATIONS):
        torch.testing.assert_close(dirty[key], clean[key], rtol=0, atol=0)
    assert torch.isnan(dirty[B.TARGET_POSITIONS]).all()
    np.testing.assert_array_equal(clean[B.VELOCITIES].numpy(), pos[t] - pos[t - 2])
    np.testing.assert_array_equal(clean[B.ACCELERATIONS].numpy(), pos[t] - 2 * pos[t - 2] + pos[t - 4])
    np.testing.assert_array_equal(clean[B.TARGET_POSITIONS].numpy(), pos[t + 2])


def test_backward_difference_on_real_md17_ethanol():
    from ase.io import read

    frames = read(DATA / "md17_ethanol_first3.xyz", index=":")
    pos = np.stack([a.get_positions() for a in frames])
    seg = Segment("ethanol", np.concatenate([pos, pos[-1:]]), frames[0].numbers, start=2, stop=3)
    b = segment_batch(seg, np.array([2]), torch.float64)
    np.testing.assert_allclose(b[B.VELOCITIES].numpy(), pos[2] - pos[1], atol=0)
    np.testing.assert_allclose(b[B.ACCELERATIONS].numpy(), pos[2] - 2 * pos[1] + pos[0], atol=1e-15)
    assert np.abs(pos[2] - pos[1]).max() > 0  # real motion between MD17 frames


def test_batch_contract_graph_and_subsampling():
    seg = Segment("ethanol", toy_positions(40), ETHANOL_Z, start=2, stop=39)
    ds = PairDataset([seg, Segment("ethanol", toy_positions(40, 1), ETHANOL_Z, start=2, stop=39)], max_pairs=10)
    assert len(ds) == 10 and ds.frame_of[0] == 2 and ds.frame_of[-1] == 38
    b = ds.batch(np.arange(10))
    B.check_batch(b)
    assert int(b[B.NUM_ATOMS].shape[0]) == 10
    n_edges = seg.graph["edge_index"].shape[1]
    assert b[B.EDGE_INDEX].shape == (2, 10 * n_edges)
    assert (b[B.BATCH][b[B.EDGE_INDEX][0]] == b[B.BATCH][b[B.EDGE_INDEX][1]]).all()
    gen = torch.Generator().manual_seed(3)
    sizes = [int(x[B.NUM_ATOMS].shape[0]) for x in ds.batches(4, gen)]
    assert sizes == [4, 4, 2]


def test_split_segments(tmp_path):
    split = load_split(toy_md17(tmp_path))
    (train,) = split_segments(split, "train")
    assert (train.start, train.stop) == (2, 150)
    (coarse,) = split_segments(split, "train", stride=5)
    assert (coarse.start, coarse.stop) == (10, 146)  # history 2k, targets stay inside the part
    o2o = load_split(toy_c7o2h10(tmp_path))
    assert [s.name for s in split_segments(o2o, "val")] == ["iso2"]
    assert split_segments(o2o, "test", isomer="iso3")[0].name == "iso3"
    with pytest.raises(ValueError, match="target isomer"):
        split_segments(o2o, "test")


def test_bad_split_names_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "md17", "stride": 1}))
    with pytest.raises(ValueError, match="bad.json: missing key"):
        load_split(bad)
