"""The batch contract, the graphs and the registry: the pieces every model relies on."""

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd import registry
from diffmd.graph import bonded_graph, full_edge_index, radius_edge_index, scatter_softmax
from diffmd.testing import ETHANOL_X, ETHANOL_Z, toy_batch, toy_samples


def test_ethanol_bonds_and_two_hop():
    g = bonded_graph(ETHANOL_X, ETHANOL_Z)
    bonds = {tuple(sorted(p)) for p in g["bond_index"].T.tolist()}
    # C0-C1, C0-O2, C0-H3, C0-H4, C1-H5, C1-H6, C1-H7, O2-H8: 8 bonds
    assert bonds == {(0, 1), (0, 2), (0, 3), (0, 4), (1, 5), (1, 6), (1, 7), (2, 8)}
    hop = g["edge_attr"][:, 0]
    assert (hop == 1).sum() == 16
    two = {tuple(p) for p, h in zip(g["edge_index"].T.tolist(), hop) if h == 2}
    assert (1, 2) in two and (8, 0) in two and (0, 8) in two and (3, 4) in two
    assert (1, 8) not in two  # three bonds apart
    np.testing.assert_array_equal(g["edge_attr"][:, 3], (hop == 1).astype(float))
    np.testing.assert_array_equal(g["edge_attr"][:, 1], ETHANOL_Z[g["edge_index"][0]])


def test_full_and_radius_graph():
    n = torch.tensor([3, 2])
    e = full_edge_index(n)
    assert e.shape == (2, 3 * 2 + 2 * 1)
    assert set(map(tuple, e.T.tolist())) >= {(0, 1), (1, 0), (3, 4), (4, 3)}
    assert not any(i < 3 <= j or j < 3 <= i for i, j in e.T.tolist())
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0], [0, 0, 0], [0.5, 0, 0]])
    r = radius_edge_index(pos, n, cutoff=1.5)
    assert set(map(tuple, r.T.tolist())) == {(0, 1), (1, 0), (3, 4), (4, 3)}


def test_scatter_softmax_sums_to_one():
    logits = torch.tensor([1.0, 2.0, 3.0, -1.0])
    idx = torch.tensor([0, 0, 1, 1])
    p = scatter_softmax(logits, idx, 2)
    torch.testing.assert_close(torch.stack([p[:2].sum(), p[2:].sum()]), torch.ones(2))
    torch.testing.assert_close(p[:2], torch.softmax(logits[:2], 0))


def test_collate_offsets_edges_and_checks():
    samples = toy_samples(3)
    batch = B.collate(samples)
    B.check_batch(batch)
    assert batch[B.NUM_ATOMS].tolist() == [9, 4, 9]
    assert batch[B.EDGE_INDEX].max() < 22 and batch[B.EDGE_INDEX][:, -1].min() >= 13
    bad = dict(batch)
    bad[B.VELOCITIES] = bad[B.VELOCITIES][:-1]
    with pytest.raises(ValueError, match="velocities"):
        B.check_batch(bad)


def test_registry_errors_name_the_model_and_key():
    with pytest.raises(KeyError, match="unknown model 'egnn_vel'"):
        registry.get_model_class("egnn_vel")
    assert "diffmd" in registry.available_models()


def test_inputs_only_drops_target():
    b = toy_batch(2)
    assert B.TARGET_POSITIONS in b and B.TARGET_POSITIONS not in B.inputs_only(b)
