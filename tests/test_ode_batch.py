"""The per-molecule Dormand-Prince solver (diffmd/models/diffmd/ode_batch.py) against torchdiffeq's dopri5 run
on one molecule at a time, and the ODE sampler's batch independence with it (issue 14)."""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq import odeint

from diffmd.models.diffmd.ode_batch import CHECK_EVERY, dopri5_per_molecule


def _problem(seed: int = 0, sizes=(3, 5, 2, 4), decay: float = 1.0):
    """A stiff-ish linear-plus-nonlinear ODE per molecule with its own rate: dx/dt = -decay k_m x + sin(t x)
    (decay -1: decaying backward in time)."""
    g = torch.Generator().manual_seed(seed)
    batch_index = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)])
    rates = decay * (torch.rand(len(sizes), generator=g, dtype=torch.float64) * 40 + 1)
    y0 = torch.randn(int(sum(sizes)), 3, generator=g)

    def f_one(m: int):
        def f(t, x):
            return -rates[m].to(x.dtype) * x + torch.sin(t.to(x.dtype) * x)

        return f

    def drift(t, x, atoms, mols):
        bidx = batch_index if atoms is None else batch_index[atoms]
        return -rates[bidx].to(x.dtype)[:, None] * x + torch.sin(t.to(x.dtype)[:, None] * x)

    return batch_index, y0, f_one, drift


def _odeint_counted(f, y0, times, **kwargs):
    """torchdiffeq's dopri5 on one molecule (rtol = atol = 1e-5): (trajectory at ``times``, evaluations)."""
    nfe = 0

    def counted(t, x):
        nonlocal nfe
        nfe += 1
        return f(t, x)

    return odeint(counted, y0, times, rtol=1e-5, atol=1e-5, method="dopri5", **kwargs), nfe


@pytest.mark.parametrize("compact", [True, False], ids=["compacted", "masked"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_matches_torchdiffeq_one_molecule_at_a_time(direction, compact):
    batch_index, y0, f_one, drift = _problem(decay=1.0 if direction == "forward" else -1.0)
    n_mol = int(batch_index.max()) + 1
    if direction == "forward":
        t0 = torch.zeros(n_mol, dtype=torch.float64)
        t1 = torch.tensor([0.3, 1.0, 0.05, 0.7], dtype=torch.float64)
    else:
        t0 = torch.ones(n_mol, dtype=torch.float64)
        t1 = torch.tensor([0.1, 0.5, 0.9, 0.01], dtype=torch.float64)
    out, calls, evals = dopri5_per_molecule(drift, y0, batch_index, t0, t1, rtol=1e-5, atol=1e-5, compact=compact)
    for m in range(n_mol):
        sel = batch_index == m
        traj, nfe = _odeint_counted(f_one(m), y0[sel], torch.stack([t0[m], t1[m]]))
        ref = traj[-1]
        assert torch.allclose(out[sel], ref, rtol=1e-5, atol=1e-6), (m, (out[sel] - ref).abs().max())
        assert int(evals[m]) == nfe, (m, int(evals[m]), nfe)  # the same step sequence
    if compact:
        assert calls == int(evals.max())  # one batched call per stage of the molecule that takes longest
    else:  # every molecule every iteration, up to the next done-check (every CHECK_EVERY iterations)
        assert int(evals.max()) <= calls <= int(evals.max()) + 6 * (CHECK_EVERY - 1)


def test_converges_to_the_exact_solution():
    # dx/dt = -k x: x(t) = x0 exp(-k (t - t0)); at a tight tolerance the solver meets it for every molecule
    sizes = (2, 3, 1)
    batch_index = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)])
    rates = torch.tensor([0.5, 8.0, 30.0], dtype=torch.float64)
    y0 = torch.randn(6, 3, dtype=torch.float64)

    def drift(t, x, atoms, mols):
        bidx = batch_index if atoms is None else batch_index[atoms]
        return -rates[bidx][:, None] * x

    t1 = torch.tensor([2.0, 0.4, 0.1], dtype=torch.float64)
    out, _, _ = dopri5_per_molecule(drift, y0, batch_index, torch.zeros(3, dtype=torch.float64), t1,
                                    rtol=1e-10, atol=1e-12)  # fmt: skip
    exact = y0 * torch.exp(-rates * t1)[batch_index][:, None]
    assert torch.allclose(out, exact, rtol=1e-8, atol=1e-10)


def test_compaction_evaluates_only_active_molecules():
    batch_index, y0, _, drift = _problem()
    seen = []

    def spy(t, x, atoms, mols):
        seen.append(x.shape[0] if atoms is None else int(atoms.numel()))
        if atoms is not None:
            assert x.shape[0] == atoms.numel() and bool((torch.diff(atoms) > 0).all())
        return drift(t, x, atoms, mols)

    n_mol = int(batch_index.max()) + 1
    t1 = torch.tensor([0.01, 1.0, 0.02, 0.5], dtype=torch.float64)
    dopri5_per_molecule(spy, y0, batch_index, torch.zeros(n_mol, dtype=torch.float64), t1)
    assert seen[0] == y0.shape[0] and min(seen) < y0.shape[0]  # molecules drop out as they finish


@pytest.mark.parametrize("compact", [True, False], ids=["compacted", "masked"])
def test_a_diverging_molecule_is_nan_and_the_others_finish(compact):
    batch_index, y0, _, drift = _problem(sizes=(3, 3))

    def blowup(t, x, atoms, mols):
        out = drift(t, x, atoms, mols)
        bidx = batch_index if atoms is None else batch_index[atoms]
        return torch.where((bidx == 1)[:, None] & (t[:, None] > 0.2), torch.full_like(out, math.inf), out)

    out, _, _ = dopri5_per_molecule(blowup, y0, batch_index, torch.zeros(2, dtype=torch.float64),
                                    torch.tensor([1.0, 1.0], dtype=torch.float64), compact=compact)  # fmt: skip
    assert torch.isfinite(out[batch_index == 0]).all()
    assert torch.isnan(out[batch_index == 1]).all()


def test_rejects_bad_times():
    batch_index, y0, _, drift = _problem(sizes=(2, 2))
    with pytest.raises(ValueError, match="equals its start"):
        dopri5_per_molecule(drift, y0[:4], batch_index, torch.zeros(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="end times"):
        dopri5_per_molecule(drift, y0[:4], batch_index, torch.zeros(2), torch.tensor([1.0]))


def test_sampler_batch_independent_with_per_molecule_steps():
    """DiffMD's ODE sampler on a batch of three molecules gives what each gives alone (the torchdiffeq path),
    with one float eps and with one eps per molecule; ``step_control: batch`` is the old shared-step path."""
    from diffmd import batch as B
    from diffmd.registry import build_model
    from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

    torch.manual_seed(0)
    model = build_model("diffmd", {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_ffn": 32, "dropout": 0.0,
                                   "sampler_options": {"ode": {"rtol": 1e-4, "atol": 1e-4}}},
                        source="test").eval()  # fmt: skip
    traj = vibrating_truth(12, seed=3)
    z = torch.as_tensor(ETHANOL_Z)
    n = len(ETHANOL_Z)

    def one(t: int) -> dict:
        x = torch.as_tensor(traj[t], dtype=torch.float32)
        v = x - torch.as_tensor(traj[t - 1], dtype=torch.float32)
        a = v - (torch.as_tensor(traj[t - 1], dtype=torch.float32) - torch.as_tensor(traj[t - 2], dtype=torch.float32))
        return {B.POSITIONS: x, B.VELOCITIES: v * (1 + 0.3 * (t % 3)), B.ACCELERATIONS: a, B.ATOMIC_NUMBERS: z,
                B.NUM_ATOMS: torch.tensor([n]), B.BATCH: torch.zeros(n, dtype=torch.long)}  # fmt: skip

    frames = [one(t) for t in (4, 7, 10)]
    both = B.collate(frames)
    eps = [0.1, 0.4, 0.9]
    alone = []
    for f, e in zip(frames, eps):
        model.eps = e
        alone.append(model.predict(f))
    model.eps = torch.tensor(eps)
    batched = model.predict(both)
    assert torch.allclose(batched, torch.cat(alone), atol=2e-5), (batched - torch.cat(alone)).abs().max()
    model.eps = 0.3
    alone = torch.cat([model.predict(f) for f in frames])
    assert torch.allclose(model.predict(both), alone, atol=2e-5)
    model.sampler_options = {**model.sampler_options, "step_control": "batch"}
    shared = model.predict(both)
    assert torch.isfinite(shared).all()
    with pytest.raises(ValueError, match="step_control"):
        model.sampler_options = {**model.sampler_options, "step_control": "atom"}
        model.predict(both)


@pytest.mark.parametrize("compact", [True, False], ids=["compacted", "masked"])
def test_several_output_times_step_onto_each_as_torchdiffeq_step_t(compact):
    batch_index, y0, f_one, drift = _problem(decay=-1.0)
    n_mol = int(batch_index.max()) + 1
    times = torch.tensor([0.9, 0.5, 0.2, 0.05], dtype=torch.float64)
    out, _, evals = dopri5_per_molecule(drift, y0, batch_index, torch.ones(n_mol, dtype=torch.float64),
                                        times.expand(n_mol, -1), rtol=1e-5, atol=1e-5, compact=compact)  # fmt: skip
    assert out.shape == (4, *y0.shape)
    for m in range(n_mol):
        sel = batch_index == m
        ts = torch.cat([torch.ones(1, dtype=torch.float64), times])
        ref, nfe = _odeint_counted(f_one(m), y0[sel], ts, options={"step_t": times[:-1]})
        assert torch.allclose(out[:, sel], ref[1:], rtol=1e-5, atol=1e-6), (m, (out[:, sel] - ref[1:]).abs().max())
        assert int(evals[m]) == nfe
    with pytest.raises(ValueError, match="direction of integration"):
        dopri5_per_molecule(drift, y0, batch_index, torch.ones(n_mol, dtype=torch.float64),
                            times.flip(0).expand(n_mol, -1))  # fmt: skip


def test_masked_solver_reads_the_device_only_at_its_done_checks():
    """The masked path (the default off CPU): static shapes, no host read inside an iteration; one done-check every
    CHECK_EVERY iterations (the dispatch counter flags .item()-like reads, nonzero and boolean masks)."""
    from diffmd.profiling import count

    batch_index, y0, _, drift = _problem()
    n_mol = int(batch_index.max()) + 1
    t1 = torch.tensor([0.01, 1.0, 0.02, 0.5], dtype=torch.float64)
    result = {}

    def run():
        result["out"] = dopri5_per_molecule(drift, y0, batch_index, torch.zeros(n_mol, dtype=torch.float64), t1,
                                            compact=False)  # fmt: skip

    c = count(run, flops=False)
    calls = result["out"][1]
    iterations = (calls - 2) // 6
    assert c.syncs == iterations // CHECK_EVERY, c.sync_sites
    compacted = count(lambda: dopri5_per_molecule(drift, y0, batch_index, torch.zeros(n_mol, dtype=torch.float64),
                                                  t1, compact=True), flops=False)  # fmt: skip
    assert compacted.syncs > 5 * c.syncs
