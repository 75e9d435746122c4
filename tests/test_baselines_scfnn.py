"""SCFNN pieces: triplets, nearest neighbours, local frames (incl. degenerate cases), loss, Verlet step."""

import math

import torch

from baselines.scfnn import SCFNN, local_frames, nearest_ranks, species_index, triplets
from diffmd import batch as B
from diffmd.graph import full_edge_index
from diffmd.testing import toy_batch


def test_triplets_count_and_distinct_neighbours():
    n = torch.tensor([4, 3])
    edges = full_edge_index(n)
    a, b = triplets(edges, 7)
    assert len(a) == 4 * 3 * 2 + 3 * 2 * 1
    assert (edges[0, a] == edges[0, b]).all() and (edges[1, a] != edges[1, b]).all()


def test_nearest_ranks_and_frame_orthonormal():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 2.0, 0], [0.0, 0, 3.0]], dtype=torch.float64)
    edges = full_edge_index(torch.tensor([4]))
    near = nearest_ranks(edges, (pos[edges[1]] - pos[edges[0]]).norm(dim=1), 4, 3)
    assert near[0].tolist() == [1, 2, 3]
    frames = local_frames(pos, near)
    torch.testing.assert_close(frames[0], torch.eye(3, dtype=torch.float64))
    for f in frames:
        torch.testing.assert_close(f @ f.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
        assert math.isclose(float(torch.det(f)), 1.0, abs_tol=1e-12)  # right-handed


def test_degenerate_frames():
    # collinear second neighbour: the third-nearest atom defines e2
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.1, 0, 0], [0.0, 3.0, 0]], dtype=torch.float64)
    edges = full_edge_index(torch.tensor([4]))
    near = nearest_ranks(edges, (pos[edges[1]] - pos[edges[0]]).norm(dim=1), 4, 3)
    f0 = local_frames(pos, near)[0]
    torch.testing.assert_close(f0, torch.eye(3, dtype=torch.float64))
    # a linear triatomic and a diatomic: only e1 is defined
    lin = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.5, 0, 0], [0, 0, 0], [0, 0, 1.1]], dtype=torch.float64)
    edges = full_edge_index(torch.tensor([3, 2]))
    near = nearest_ranks(edges, (lin[edges[1]] - lin[edges[0]]).norm(dim=1), 5, 3)
    frames = local_frames(lin, near)
    assert torch.isfinite(frames).all()
    assert (frames[:, 1:] == 0).all()
    torch.testing.assert_close(frames[:, 0].abs().sum(1), torch.ones(5, dtype=torch.float64))


def test_species_channels():
    assert species_index(torch.tensor([1, 6, 7, 8, 16])).tolist() == [0, 1, 2, 3, 4]


def test_verlet_step_and_acceleration_loss():
    torch.manual_seed(0)
    model = SCFNN(n_layers=2, hidden=8).double()
    batch = toy_batch(2)
    x, v = batch[B.POSITIONS], batch[B.VELOCITIES]
    a = model.acceleration(batch)
    torch.testing.assert_close(model(batch), 2 * x - (x - v) + a)
    fd = batch[B.TARGET_POSITIONS] - 2 * x + (x - v)
    torch.testing.assert_close(model.loss(batch), ((a - fd) ** 2).mean())
    # the velocity enters only through x(t-1): a(t) is a function of the positions alone
    other = dict(batch)
    other[B.VELOCITIES] = 3.0 * v
    torch.testing.assert_close(model.acceleration(other), a)
