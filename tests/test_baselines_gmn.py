"""GMN: the stick choice from the bond graph and the length-preserving forward kinematics."""

import numpy as np
import pytest
import torch

from baselines.gmn import STICK_MODES, _rotate, choose_sticks
from diffmd import batch as B
from diffmd.graph import bonded_graph
from diffmd.registry import build_model
from diffmd.testing import ETHANOL_X, ETHANOL_Z, FORMALDEHYDE_X, FORMALDEHYDE_Z, toy_batch

CYCLOPROPANE_Z = np.array([6, 6, 6])
CYCLOPROPANE_BONDS = np.array([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])


def _pairs(sticks: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(sorted(p)) for p in sticks.T.tolist()}


def test_ethanol_and_formaldehyde_sticks():
    eth = choose_sticks(ETHANOL_Z, bonded_graph(ETHANOL_X, ETHANOL_Z)["bond_index"])
    assert _pairs(eth) == {(0, 1), (2, 8)}  # C-C and O-H; the methyl/methylene C-H stay free
    form = choose_sticks(FORMALDEHYDE_Z, bonded_graph(FORMALDEHYDE_X, FORMALDEHYDE_Z)["bond_index"])
    assert _pairs(form) == {(0, 1)}


def test_bonds_in_a_triangle_are_not_sticks():
    assert choose_sticks(CYCLOPROPANE_Z, CYCLOPROPANE_BONDS).shape == (2, 0)


def test_sticks_are_a_matching_and_follow_permutation():
    bonds = bonded_graph(ETHANOL_X, ETHANOL_Z)["bond_index"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(ETHANOL_Z))  # new atom k = old perm[k]
        inv = np.argsort(perm)
        sticks = choose_sticks(ETHANOL_Z[perm], inv[bonds])
        flat = sticks.reshape(-1)
        assert len(set(flat.tolist())) == len(flat)
        assert _pairs(perm[sticks]) == {(0, 1), (2, 8)}


def test_rotation_keeps_length_and_handles_zero_angle():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(6, 3, generator=g, dtype=torch.float64)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [[3.0], [1e-9], [0.0], [1.0], [2.0], [0.5]]
    )
    out = _rotate(w, r)
    torch.testing.assert_close(out.norm(dim=1), r.norm(dim=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out[2], r[2])  # w = 0: identity
    # about the z axis by pi/2
    z = _rotate(
        torch.tensor([[0.0, 0.0, torch.pi / 2]], dtype=torch.float64),
        torch.tensor([[1.0, 0.0, 0.0]]).double(),
    )
    torch.testing.assert_close(z, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_stick_lengths_kept_with_random_weights():
    torch.manual_seed(1)
    model = build_model("gmn", {"n_layers": 4, "hidden": 32}).double()
    for p in model.parameters():  # large random weights: big, nonlinear moves
        torch.nn.init.normal_(p, std=0.2)
    batch = toy_batch(4, seed=2)
    batch[B.VELOCITIES] = batch[B.VELOCITIES] * 3.0  # (30x sent positions to ~1e8 Å, past float64's 1e-10)
    _, sticks = model.sticks(batch)
    assert sticks.shape[1] == 2 + 1 + 2 + 1
    pred = model(batch)
    x = batch[B.POSITIONS]
    assert torch.isfinite(pred).all() and (pred - x).abs().max() > 0.5  # the atoms moved far
    before = (x[sticks[0]] - x[sticks[1]]).norm(dim=1)
    after = (pred[sticks[0]] - pred[sticks[1]]).norm(dim=1)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-10)


def test_stick_modes():
    """``sticks``: bonds (the paper), heavy (no X-H stick), none (all atoms isolated); a bad mode is one line."""
    batch = toy_batch(2)  # ethanol + formaldehyde
    z = batch[B.ATOMIC_NUMBERS]
    counts = {}
    for mode in STICK_MODES:
        iso, sticks = build_model("gmn", {"n_layers": 1, "hidden": 8, "sticks": mode}).sticks(batch)
        assert len(iso) + sticks.numel() == len(z)
        counts[mode] = sticks.shape[1]
        if mode == "heavy":
            assert bool((z[sticks] > 1).all())
    assert counts == {"bonds": 3, "heavy": 2, "none": 0}
    with pytest.raises(ValueError, match="sticks must be one of"):
        build_model("gmn", {"sticks": "all"})


@pytest.mark.parametrize("mode", STICK_MODES)
def test_velocity_residual_starts_at_constant_velocity(mode):
    """The residual form's untrained prediction is x + v up to the small gates (sticks rotate rigidly)."""
    torch.manual_seed(0)
    batch = toy_batch(2)
    model = build_model("gmn", {"n_layers": 3, "hidden": 16, "sticks": mode}).double()
    cv = batch[B.POSITIONS] + batch[B.VELOCITIES]
    v_rms = float(batch[B.VELOCITIES].pow(2).mean().sqrt())
    err = float((model.predict(batch) - cv).pow(2).mean().sqrt())
    # free atoms: x + v but for the 1e-3 gates; a rigid stick drops its atoms' (random, here) stretch velocity
    assert err < (0.3 if mode != "none" else 0.02) * v_rms
    torch.manual_seed(0)
    public = build_model("gmn", {"n_layers": 3, "hidden": 16, "sticks": mode, "velocity_residual": False}).double()
    assert float((public.predict(batch) - cv).pow(2).mean().sqrt()) > 3 * err
