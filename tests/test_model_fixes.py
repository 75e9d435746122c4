"""Issue 13's small model fixes that have no better home: TFN's output initialisation.

(Score Dynamics' time-feature scale is tested in tests/test_score_dynamics.py, DiffMD's PC sampler's
last step and evaluation count in tests/test_diffmd_sde.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffmd import batch as B
from diffmd.data.xyz import read_xyz
from diffmd.graph import bonded_graph
from diffmd.registry import build_model
from diffmd.testing import toy_batch

FIRST3 = Path(__file__).parent / "data" / "md17_ethanol_first3.xyz"
TFN_SMALL = {"n_layers": 2, "hidden": 16, "radial_hidden": 16, "n_basis": 8}  # config/quick.yaml's sizes


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ethanol_batch() -> B.Batch:
    """MD17 ethanol's second frame: v = x1 - x0, a = x2 - 2 x1 + x0, target x2 (Å, 0.5 fs frames)."""
    frames = read_xyz(FIRST3)
    x = torch.as_tensor(frames.positions, dtype=torch.float64)
    graph = bonded_graph(frames.positions[1], frames.atomic_numbers)
    sample: B.Batch = {
        B.POSITIONS: x[1],
        B.VELOCITIES: x[1] - x[0],
        B.ACCELERATIONS: x[2] - 2 * x[1] + x[0],
        B.TARGET_POSITIONS: x[2],
        B.ATOMIC_NUMBERS: torch.as_tensor(frames.atomic_numbers, dtype=torch.long),
        B.EDGE_INDEX: torch.as_tensor(graph["edge_index"]),
        B.EDGE_ATTR: torch.as_tensor(graph["edge_attr"], dtype=torch.float64),
        B.BOND_INDEX: torch.as_tensor(graph["bond_index"]),
    }
    return B.collate([sample])


def tfn(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tfn", {**TFN_SMALL, **kw}).double()


def rms(x: torch.Tensor) -> float:
    return float(x.detach().pow(2).mean().sqrt())


@pytest.mark.parametrize("sizes", [TFN_SMALL, {}], ids=["quick", "default"])
def test_tfn_starts_near_constant_velocity(sizes):
    """On a real MD17 ethanol frame the initial Delta is a fraction of constant velocity's error and the
    initial loss within 1.1x constant velocity's (the 1e-2 shrink gave ~190x and ~4600x)."""
    torch.manual_seed(0)
    model = build_model("tfn", sizes).double()
    real = ethanol_batch()
    cv = real[B.POSITIONS] + real[B.VELOCITIES]
    cv_error = rms(cv - real[B.TARGET_POSITIONS])
    assert rms(model(real) - cv) < 0.3 * cv_error
    assert float(model.loss(real).detach()) < 1.1 * cv_error**2


def test_tfn_without_velocity_residual_starts_near_static():
    batch = toy_batch(3)
    pred = tfn(velocity_residual=False)(batch)
    assert rms(pred - batch[B.POSITIONS]) < 0.05 * rms(batch[B.VELOCITIES])


def test_tfn_small_output_init_learns_from_the_first_step():
    """Every parameter gets a gradient at once, and still does after one optimiser step."""
    model = tfn()
    batch = toy_batch(3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(2):
        opt.zero_grad()
        model.loss(batch).backward()
        silent = [name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().max() > 0)]
        assert not silent, (step, silent)
        opt.step()
    for lin in (model.out.sc, model.out.filter.lin2):  # the output maps moved off their tiny start
        assert float(lin.weight.detach().abs().max()) > 1e-4
