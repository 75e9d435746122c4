"""sGDML force-field row: trained with sGDML's own solver on a short GFN2-xTB ethanol run, run with ASE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd.data.xtb_md import set_threads

set_threads(1)  # before tblite is imported by the simulation below

from diffmd import batch as B  # noqa: E402
from diffmd.data.pairs import Segment, history_inputs, segment_batch  # noqa: E402
from diffmd.data.xtb_md import simulate_md17  # noqa: E402
from diffmd.engine.common import load_checkpoint, save_torch  # noqa: E402
from diffmd.engine.rollout import rollout  # noqa: E402
from diffmd.models.forcefield import SGDMLForceField  # noqa: E402

SIM = {"temperature_K": 500.0, "dt_fs": 0.5, "n_frames": 170, "equilibration_steps": 10,
       "friction_per_fs": 0.01, "seed": 3, "massive_langevin_steps": 20, "thermostat": "nose_hoover"}  # fmt: skip
PARAMS = {"n_train": 100, "sigma": [10, 20, 40], "n_valid": 30, "dynamics": "nve"}
TEST_FRAMES = np.arange(135, 168)


def _segments(traj, forces: bool = True) -> tuple[Segment, Segment, Segment]:
    """Train frames [2, 110), validation [110, 135), test [135, 168) of one trajectory (0.5 fs apart)."""
    common = {"name": "ethanol", "positions": traj.positions, "atomic_numbers": traj.atomic_numbers,
              "dt_fs": traj.dt_fs, "source": "xtb", "temperature_K": traj.temperature_K,
              "forces": traj.forces if forces else None, "energies": traj.energies,
              "thermostat_state": traj.chain_state}  # fmt: skip
    return (Segment(start=2, stop=110, **common), Segment(start=110, stop=135, **common),
            Segment(start=135, stop=168, **common))  # fmt: skip


@pytest.fixture(scope="module")
def ethanol():
    return simulate_md17("ethanol", SIM)


@pytest.fixture(scope="module")
def fitted(ethanol):
    train, val, test = _segments(ethanol)
    model = SGDMLForceField(**PARAMS)
    summary = model.fit_own([train], [val], seed=0, out_dir="")
    return model, summary, test


def test_force_error_well_below_spread(fitted):
    model, summary, test = fitted
    _, forces = model.energies_forces(test.positions[TEST_FRAMES])
    truth = test.forces[TEST_FRAMES]
    mae = np.abs(forces - truth).mean()
    # about 4.8 against a spread of 22 kcal/mol/Å: 100 training frames of an equilibrated 500 K run (the old
    # Langevin data, still half-cold after 5 fs of equilibration: 1.7 against 18)
    assert mae < 0.3 * truth.std()
    assert summary["n_train"] == 100 and summary["sigma"] in (10.0, 20.0, 40.0) and summary["use_E"]
    assert summary["val_force_mae"] == min(summary["val_force_mae_by_sigma"].values())
    assert summary["dt_fs"] == 0.5 and summary["temperature_K"] == 500.0  # taken from the data


def test_state_dict_round_trip_weights_only(fitted, tmp_path):
    model, _, test = fitted
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    fresh = SGDMLForceField(**PARAMS)
    fresh.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    x = test.positions[TEST_FRAMES[:5]]
    for a, b in zip(model.energies_forces(x), fresh.energies_forces(x)):
        np.testing.assert_array_equal(a, b)
    save_torch(tmp_path / "model.pt", {"model": "sgdml", "params": PARAMS, "state_dict": model.state_dict()})
    loaded, _ = load_checkpoint(tmp_path / "model.pt")  # the engine's path: weights_only=True
    batch = segment_batch(test, TEST_FRAMES[:1], dtype=torch.float64)
    np.testing.assert_array_equal(loaded.predict(batch).numpy(), model.predict(batch).numpy())


def test_one_step_much_closer_than_static(fitted):
    model, _, test = fitted
    frames = TEST_FRAMES[::6]
    x = test.positions

    def rmse(pred: np.ndarray, t: int) -> float:
        return float(np.sqrt(((pred - x[t + 1]) ** 2).mean()))

    err = np.mean([rmse(model.predict(segment_batch(test, np.array([t]), dtype=torch.float64)).numpy(), t)
                   for t in frames])  # fmt: skip
    static = np.mean([rmse(x[t], t) for t in frames])
    constant_velocity = np.mean([rmse(2 * x[t] - x[t - 1], t) for t in frames])
    assert err < 0.2 * static and err < 0.6 * constant_velocity  # about 0.09 x and 0.44 x


def test_batch_of_two_starts_equals_separate_rollouts(fitted):
    model, _, test = fitted
    starts, steps = (137, 150), 16
    single = [rollout(model, test, s, steps, dtype=torch.float64).positions for s in starts]
    batch = segment_batch(test, np.array(starts), dtype=torch.float64)
    model.begin_rollout(batch)
    prev, x = batch[B.POSITIONS] - batch[B.VELOCITIES], batch[B.POSITIONS]
    n = test.n_atoms
    for step in range(1, steps + 1):
        vel, _ = history_inputs(x, prev, prev)
        batch = dict(batch, **{B.POSITIONS: x, B.VELOCITIES: vel})
        prev, x = x, model.predict(batch)
        for i in range(2):
            np.testing.assert_allclose(x[i * n : (i + 1) * n].numpy(), single[i][step], rtol=0, atol=1e-12)
    assert model.rollout_stats()["force_evals"] > 0


def test_no_forces_or_other_molecule_is_a_one_line_error(ethanol, fitted):
    train, val, _ = _segments(ethanol, forces=False)
    with pytest.raises(ValueError, match="no forces"):
        SGDMLForceField(**PARAMS).fit_own([train], [val], seed=0, out_dir="")
    model, _, test = fitted
    batch = segment_batch(test, TEST_FRAMES[:1], dtype=torch.float64)
    batch[B.ATOMIC_NUMBERS] = batch[B.ATOMIC_NUMBERS].flip(0)
    with pytest.raises(ValueError, match="not the one the force field was trained on"):
        model.begin_rollout(batch)


def test_langevin_rollout_is_seeded(fitted):
    model, _, test = fitted

    def run(seed: int) -> np.ndarray:
        langevin = SGDMLForceField(**{**PARAMS, "dynamics": "langevin", "seed": seed})
        langevin.load_state_dict(model.state_dict())
        assert langevin.temperature_K == 500.0 and langevin.dt_fs == 0.5  # the data's, from the checkpoint
        return rollout(langevin, test, 140, 10, dtype=torch.float64).positions

    np.testing.assert_array_equal(run(0), run(0))
    assert np.abs(run(1) - run(0)).max() > 1e-6


def test_data_dynamics_one_step_error_is_the_force_error(fitted):
    """With the data's dynamics (its Nosé-Hoover chain continued, the default) the one-step error is what the
    force error predicts, |F_err|·dt²/m (issue 23: within 2x); a Langevin bath adds its noise on top."""
    from diffmd.engine.yardstick import force_rows

    model, _, test = fitted
    data = SGDMLForceField(**{k: v for k, v in PARAMS.items() if k != "dynamics"})
    assert data.dynamics == "data"
    data.load_state_dict(model.state_dict())
    batch = segment_batch(test, TEST_FRAMES, dtype=torch.float64)
    pred = data.predict(batch).numpy().reshape(len(TEST_FRAMES), -1, 3)
    target = test.positions[TEST_FRAMES + 1]
    one_step = float(np.sqrt(((pred - target) ** 2).sum(-1).mean()))
    forces = data.predict_forces(test.positions[TEST_FRAMES], test.atomic_numbers)
    rows = {r["metric"]: r["value"] for r in force_rows(forces, test.forces[TEST_FRAMES], test.atomic_numbers, 0.5)}
    assert 0.5 * rows["force_step_rmse"] < one_step < 2.0 * rows["force_step_rmse"], (one_step, rows)
    assert rows["force_mae"] < rows["force_rmse"] < 0.4 * test.forces.std()
    langevin = SGDMLForceField(**{**PARAMS, "dynamics": "langevin", "seed": 0})
    langevin.load_state_dict(model.state_dict())
    noisy = langevin.predict(batch).numpy().reshape(len(TEST_FRAMES), -1, 3)
    assert float(np.sqrt(((noisy - target) ** 2).sum(-1).mean())) > 1.2 * one_step  # + the bath's noise
