"""Physics rows: the force_verlet floor (units, exactness on velocity Verlet data), the GFN2-xTB rows (equal a
direct ASE run, conserve energy, seeded noise, batched == separate; xtb_nh continues Nosé-Hoover data exactly),
ase_calculator (any ASE calculator; the tblite one is xtb_nh) and xtb.thermostat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd.data.xtb_md import set_threads

set_threads(1)  # before tblite is imported by the simulations below

import diffmd.models.physics as P  # noqa: E402  (registers force_verlet, the xtb rows, ase_calculator)
import diffmd.models.reference  # noqa: E402, F401  (registers constant_velocity)
from diffmd import batch as B  # noqa: E402
from diffmd.data.isomers import md17_start_structure  # noqa: E402
from diffmd.data.pairs import Segment, segment_batch  # noqa: E402
from diffmd.data.xtb_md import THERMOSTATS, XTBSettings, optimise, run_md, simulate_md17  # noqa: E402
from diffmd.engine.rollout import rollout  # noqa: E402
from diffmd.registry import build_model, model_role  # noqa: E402
from diffmd.units import force_step, masses  # noqa: E402

DT_FS = 0.5


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread():
    """The data simulations below share torch's OpenMP runtime with tblite: one thread (see physics.py)."""
    with P.one_openmp_thread():
        yield
# the original protocol (Langevin, no massive bath): the oracle tests below run on Langevin data
SHORT = {"temperature_K": 500.0, "dt_fs": DT_FS, "n_frames": 60, "equilibration_steps": 10,
         "friction_per_fs": 0.01, "seed": 3, "massive_langevin_steps": 0}  # fmt: skip
#: Nosé-Hoover data whose chain state is stored; tblite's accuracy 0.01 converges the SCF 100x tighter than the
#: default, so what is left between a continuation and the data is the integrator's rounding (docs: at the
#: default accuracy the SCF's starting guess moves forces by ~1e-4 eV/Å: ~3e-6 Å over 100 steps)
NH = {**SHORT, "n_frames": 140, "massive_langevin_steps": 20, "thermostat": "nose_hoover", "accuracy": 0.01}


# --- force_verlet --------------------------------------------------------------------------------


def test_force_step_units_from_first_principles():
    """1 kcal/mol/Å on hydrogen (1.008 u) over 0.5 fs, in SI: a·dt² = F/m·dt² (Avogadro cancels)."""
    f_newton_per_mol = 4184.0 / 1e-10  # 1 kcal/mol/Å in J/(m·mol) = N/mol
    m_kg_per_mol = 1.008e-3
    expected_A = f_newton_per_mol / m_kg_per_mol * (0.5e-15) ** 2 / 1e-10  # 1.0377e-4 Å
    forces = np.zeros((2, 3))
    forces[0, 0] = 1.0
    forces[1, 2] = -2.0
    got = force_step(forces, np.array([1, 8]), dt_fs=0.5, stride=1)
    assert got.shape == (2, 3)
    assert got[0, 0] == pytest.approx(expected_A, rel=1e-6) and got[0, 0] == pytest.approx(1.0377e-4, rel=1e-4)
    assert got[1, 2] == pytest.approx(-2.0 * got[0, 0] * masses([1])[0] / masses([8])[0], rel=1e-9)
    # stride 2 is twice the time step: four times the displacement; leading frame axes broadcast
    np.testing.assert_allclose(force_step(np.stack([forces] * 3), [1, 8], 0.5, 2), np.stack([4 * got] * 3))


def _harmonic_forces(x: np.ndarray, bonds, k: float, r0: float) -> np.ndarray:
    """Harmonic bonds, energy k (r - r0)² / 2 per bond: forces (n, 3) kcal/mol/Å for k in kcal/mol/Å²."""
    f = np.zeros_like(x)
    for i, j in bonds:
        d = x[i] - x[j]
        r = np.linalg.norm(d)
        fij = -k * (r - r0) * d / r
        f[i] += fij
        f[j] -= fij
    return f


def _velocity_verlet_harmonic(n_frames: int = 40):
    """A bent O-H-H-like triatomic integrated by exact velocity Verlet in Å and model steps (0.5 fs)."""
    numbers = np.array([8, 1, 1])
    bonds = [(0, 1), (0, 2)]
    x = np.array([[0.0, 0.0, 0.0], [1.05, 0.0, 0.0], [-0.3, 0.9, 0.1]])
    u = np.array([[0.0, 0.0, 0.0], [0.004, 0.002, 0.0], [-0.003, 0.004, 0.001]])  # Å per step
    frames, steps = [x.copy()], []
    f = force_step(_harmonic_forces(x, bonds, 500.0, 0.96), numbers, DT_FS)
    for _ in range(n_frames - 1):
        steps.append(f)
        x = x + u + 0.5 * f
        f_new = force_step(_harmonic_forces(x, bonds, 500.0, 0.96), numbers, DT_FS)
        u = u + 0.5 * (f + f_new)
        f = f_new
        frames.append(x.copy())
    steps.append(f)
    return numbers, np.array(frames), np.array(steps)


def test_force_verlet_is_exact_on_velocity_verlet_data():
    numbers, x, fstep = _velocity_verlet_harmonic()
    seg = Segment(name="h2o", positions=x, atomic_numbers=numbers, start=2, stop=len(x) - 1, dt_fs=DT_FS)
    frames = seg.frames()
    batch = segment_batch(seg, frames, dtype=torch.float64)
    batch[B.FORCE_STEP] = torch.as_tensor(fstep[frames].reshape(-1, 3))
    fv = build_model("force_verlet")
    assert model_role("force_verlet") == "floor" and not fv.trainable and not fv.can_rollout
    err = (fv.predict(batch) - batch[B.TARGET_POSITIONS]).abs().max().item()
    assert err < 1e-12
    cv_err = (build_model("constant_velocity").predict(batch) - batch[B.TARGET_POSITIONS]).abs().max().item()
    assert cv_err > 1e-4  # the bond vibration's acceleration, which constant velocity ignores
    del batch[B.FORCE_STEP]
    with pytest.raises(KeyError, match="no forces"):
        fv.predict(batch)


# --- GFN2-xTB oracles ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ethanol_traj():
    return simulate_md17("ethanol", SHORT)


@pytest.fixture(scope="module")
def ethanol_seg(ethanol_traj) -> Segment:
    traj = ethanol_traj
    return Segment(name="ethanol", positions=traj.positions, atomic_numbers=traj.atomic_numbers, start=2,
                   stop=traj.positions.shape[0] - 1, dt_fs=traj.dt_fs, source="xtb")  # fmt: skip


def _direct_vv(seg: Segment, start: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A direct ASE velocity Verlet run from frame ``start``: positions (n+1, atoms, 3), total energy (n+1,) eV."""
    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.verlet import VelocityVerlet

    from diffmd.data.xtb_md import _calculator

    x0, x1 = seg.positions[start], seg.positions[start - 1]
    atoms = Atoms(numbers=seg.atomic_numbers, positions=x0)
    atoms.calc = _calculator(1.0)
    atoms.set_constraint(FixCom())
    h = DT_FS * units.fs
    m = atoms.get_masses()[:, None]
    atoms.set_momenta(m * (x0 - x1) / h + atoms.get_forces() * h / 2)
    pos, etot = [atoms.get_positions()], [atoms.get_total_energy()]
    dyn = VelocityVerlet(atoms, timestep=h)
    for _ in range(n_steps):
        dyn.run(1)
        pos.append(atoms.get_positions())
        etot.append(atoms.get_total_energy())
    return np.array(pos), np.array(etot)


def test_xtb_nve_oracle_rollout_equals_direct_ase_run(ethanol_seg):
    model = build_model("xtb_nve", {"dt_fs": DT_FS})
    assert model_role("xtb_nve") == "oracle" and not model.trainable and model.can_rollout
    start, n = 20, 20
    res = rollout(model, ethanol_seg, start, n, dtype=torch.float64)
    direct, _ = _direct_vv(ethanol_seg, start, n)
    assert not res.diverged
    np.testing.assert_allclose(res.positions, direct, rtol=0, atol=1e-6)
    assert res.stats["force_evals"] == n + 1  # one per step, plus the start's force for v(t0)
    # the oracle follows the reference for a few fs (the data is Langevin, the oracle NVE)
    assert np.abs(res.positions[1] - ethanol_seg.positions[start + 1]).max() < 5e-3
    # float32 rollout: the same run to float32 precision, restarted for the new start by itself
    res32 = rollout(model, ethanol_seg, start, n)
    np.testing.assert_allclose(res32.positions, direct, rtol=0, atol=1e-4)
    assert model.rollout_stats() == {"force_evals": 0.0}


def _nve_energy_error(seg: Segment, start: int, n_steps: int, **params) -> tuple[np.ndarray, float]:
    """Total energy minus the start's (n_steps,) eV along an xtb_nve run driven by predict, and the start's KE."""
    model = build_model("xtb_nve", params)
    batch = segment_batch(seg, np.array([start]), dtype=torch.float64)
    model.begin_rollout(batch)
    e0, kinetic = model.systems[0].get_total_energy(), model.systems[0].get_kinetic_energy()
    x, etot = batch[B.POSITIONS], []
    for _ in range(n_steps):
        x = model.predict({**batch, B.POSITIONS: x})
        etot.append(model.systems[0].get_total_energy())
    return np.array(etot) - e0, kinetic


def test_xtb_nve_conserves_energy(ethanol_seg):
    """50 steps (25 fs): the energy error stays below 1% of the kinetic energy, oscillates without drift
    and is velocity Verlet's O(dt²) error (half the time step: a quarter of the error)."""
    err, kinetic = _nve_energy_error(ethanol_seg, 10, 50, dt_fs=DT_FS)
    assert kinetic > 0.1  # eV; (3N - 3) kT / 2 = 0.52 eV on average at 500 K
    assert np.abs(err).max() < 3e-3 and np.abs(err).max() < 0.01 * kinetic, np.abs(err).max()
    assert abs(np.polyfit(np.arange(err.size), err, 1)[0]) * err.size < 1e-3  # fitted drift over the run, eV
    fine, _ = _nve_energy_error(ethanol_seg, 10, 50, dt_fs=DT_FS / 2, steps_per_call=2)
    assert np.abs(fine).max() < 0.35 * np.abs(err).max()


def test_xtb_langevin_seeded(ethanol_seg):
    start, n = 10, 15
    a = rollout(build_model("xtb_langevin", {"seed": 1}), ethanol_seg, start, n, dtype=torch.float64)
    model = build_model("xtb_langevin", {"seed": 1})
    b = rollout(model, ethanol_seg, start, n, dtype=torch.float64)
    c = rollout(model, ethanol_seg, start, n, dtype=torch.float64)  # the same instance restarts its noise
    other = rollout(build_model("xtb_langevin", {"seed": 2}), ethanol_seg, start, n, dtype=torch.float64)
    # multi-threaded tblite is not bitwise reproducible (see physics.py): compare to 1e-9 Å
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.positions, c.positions, rtol=0, atol=1e-9)
    assert np.abs(other.positions[-1] - a.positions[-1]).max() > 1e-4
    assert model_role("xtb_langevin") == "ensemble"  # another dynamics, never the oracle


def _drive(model, seg: Segment, starts: list[int], n_steps: int) -> np.ndarray:
    """Roll ``model`` out from several start frames in one batch: positions (n+1, len(starts)·atoms, 3)."""
    batch = segment_batch(seg, np.array(starts), dtype=torch.float64)
    del batch[B.TARGET_POSITIONS]
    prev, x = batch[B.POSITIONS] - batch[B.VELOCITIES], batch[B.POSITIONS]
    out = [x.numpy()]
    for _ in range(n_steps):
        nxt = model.predict({**batch, B.POSITIONS: x, B.VELOCITIES: x - prev})
        prev, x = x, nxt
        out.append(x.numpy())
    return np.array(out)


def test_batched_starts_equal_separate_rollouts(ethanol_seg):
    starts, n, atoms = [10, 30], 10, ethanol_seg.n_atoms
    model = build_model("xtb_nve")
    together = _drive(model, ethanol_seg, starts, n)
    assert model.rollout_stats()["force_evals"] == 2 * (n + 1)
    for i, s in enumerate(starts):
        alone = rollout(model, ethanol_seg, s, n, dtype=torch.float64).positions
        np.testing.assert_allclose(together[:, i * atoms : (i + 1) * atoms], alone, rtol=0, atol=1e-9)
    # Langevin: molecule i of a batch draws its own noise stream (seed, i); molecule 0 is the lone run
    lang = build_model("xtb_langevin", {"seed": 5})
    together = _drive(lang, ethanol_seg, starts, n)
    alone = rollout(lang, ethanol_seg, starts[0], n, dtype=torch.float64).positions
    np.testing.assert_allclose(together[:, :atoms], alone, rtol=0, atol=1e-9)


def test_xtb_nve_one_step_is_force_verlet_with_the_data_forces(ethanol_traj, ethanol_seg):
    """Teacher-forced, the NVE oracle is x + v + F·dt²/m with GFN2-xTB's force: the force_verlet floor
    fed the data's own (same-potential) forces, up to FixCom's removal of the tiny net force."""
    frames = np.array([5, 20, 40])
    batch = segment_batch(ethanol_seg, frames, dtype=torch.float64)
    oracle = build_model("xtb_nve", {"dt_fs": DT_FS})
    oracle.begin_rollout(batch)
    pred = oracle.predict(batch)
    assert oracle.rollout_stats()["force_evals"] == 2 * len(frames)
    fstep = force_step(ethanol_traj.forces[frames], ethanol_traj.atomic_numbers, DT_FS)
    floor = build_model("force_verlet").predict({**batch, B.FORCE_STEP: torch.as_tensor(fstep.reshape(-1, 3))})
    np.testing.assert_allclose(pred.numpy(), floor.numpy(), rtol=0, atol=2e-6)  # masses: ASE's vs IUPAC (1e-3 u)
    # both beat constant velocity by far on this Langevin data, and neither is exact (thermostat noise)
    err = (pred - batch[B.TARGET_POSITIONS]).norm(dim=-1).mean().item()
    cv = (batch[B.POSITIONS] + batch[B.VELOCITIES] - batch[B.TARGET_POSITIONS]).norm(dim=-1).mean().item()
    assert 1e-6 < err < 0.7 * cv, (err, cv)


def test_frozen_start_does_not_restart_the_others(ethanol_seg):
    """A multi-start rollout freezes a diverged start at its last frame: the other molecules continue
    (a restart would redraw the Langevin noise from the start of its stream)."""
    starts, atoms = [10, 30], ethanol_seg.n_atoms
    model = build_model("xtb_langevin", {"seed": 5})
    batch = segment_batch(ethanol_seg, np.array(starts), dtype=torch.float64)
    x1 = model.predict(batch)
    frozen = x1.clone()
    frozen[atoms:] = batch[B.POSITIONS][atoms:]  # molecule 1 frozen at its input frame
    x2 = model.predict({**batch, B.POSITIONS: frozen, B.VELOCITIES: frozen - batch[B.POSITIONS]})
    alone = _drive(build_model("xtb_langevin", {"seed": 5}), ethanol_seg, starts[:1], 2)
    np.testing.assert_allclose(x2[:atoms].numpy(), alone[2], rtol=0, atol=1e-9)


def test_reference_energies_match_the_data(ethanol_seg):
    traj_e = simulate_md17("ethanol", {**SHORT, "n_frames": 3})
    x = traj_e.positions.copy()
    x[1] = np.nan
    e = P.reference_energies(x, traj_e.atomic_numbers)
    assert e.shape == (3,) and np.isnan(e[1])
    np.testing.assert_allclose(e[[0, 2]], traj_e.energies[[0, 2]], rtol=0, atol=1e-6)  # kcal/mol


# --- xtb.thermostat ------------------------------------------------------------------------------


def test_thermostat_setting_defaults_and_validation():
    s = XTBSettings.from_config(SHORT, "data.md17.xtb")
    assert s.thermostat == "langevin" and THERMOSTATS == ("langevin", "nose_hoover", "nve")
    assert XTBSettings.from_config({**SHORT, "thermostat": "nve"}, "k").thermostat == "nve"
    with pytest.raises(ValueError, match="thermostat"):
        XTBSettings.from_config({**SHORT, "thermostat": "berendsen"}, "k")


@pytest.fixture(scope="module")
def ethanol_minimum():
    z, pos = md17_start_structure("ethanol")
    return z, optimise(z, pos, 1.0).get_positions()


def _run(ethanol_minimum, thermostat: str, **kw) -> dict[str, np.ndarray]:
    from ase import Atoms

    from diffmd.data.xtb_md import _calculator

    z, pos = ethanol_minimum
    atoms = Atoms(numbers=z, positions=pos)
    atoms.calc = _calculator(1.0)
    settings = XTBSettings(**{**SHORT, "n_frames": 40, "equilibration_steps": 10, **kw}, thermostat=thermostat)
    return run_md(atoms, settings, [3, 1], desc=thermostat)


def test_nve_after_equilibration_conserves_energy_better_than_langevin(ethanol_minimum):
    nve = _run(ethanol_minimum, "nve", massive_langevin_steps=20)
    lang = _run(ethanol_minimum, "langevin", massive_langevin_steps=20)
    e_nve = nve["energies"] + nve["kinetic_energy"]
    e_lang = lang["energies"] + lang["kinetic_energy"]
    assert np.ptp(e_nve) < 5e-3 and np.ptp(e_nve) < 0.1 * np.ptp(e_lang), (np.ptp(e_nve), np.ptp(e_lang))
    assert nve["chain_state"] is None and nve["equilibration"]["equipartition_start"]["n_modes"] == 21
    assert lang["equilibration"]["equipartition_start"] is None  # a stochastic production needs none
    # NVE is deterministic after equilibration: the next frame is a function of the state
    again = _run(ethanol_minimum, "nve", massive_langevin_steps=20)
    np.testing.assert_allclose(again["positions"], nve["positions"], rtol=0, atol=1e-10)


def test_nose_hoover_runs(ethanol_minimum):
    pytest.importorskip("ase.md.nose_hoover_chain")
    nh = _run(ethanol_minimum, "nose_hoover")
    assert np.isfinite(nh["positions"]).all() and nh["positions"].shape == (40, 9, 3)
    assert 50.0 < nh["temperature"].mean() < 1500.0
    step = np.linalg.norm(np.diff(nh["positions"], axis=0), axis=-1).mean()
    assert 0.001 < step < 0.05  # Å per 0.5 fs, as the Langevin data


def test_simulate_records_the_thermostat():
    traj = simulate_md17("ethanol", {**SHORT, "n_frames": 5, "equilibration_steps": 2, "thermostat": "nve"})
    assert traj.provenance["settings"]["thermostat"] == "nve"
    assert "VelocityVerlet" in traj.provenance["integrator"]


def test_oracle_copies_drop_the_running_simulation(ethanol_seg):
    import copy

    model = build_model("xtb_nve", {"dt_fs": DT_FS, "seed": 4})
    model.begin_rollout(segment_batch(ethanol_seg, np.array([10])))
    twin = copy.deepcopy(model)
    assert twin.systems == [] and twin.seed == 4 and len(model.systems) == 1
    np.testing.assert_allclose(rollout(twin, ethanol_seg, 10, 3, dtype=torch.float64).positions,
                               rollout(model, ethanol_seg, 10, 3, dtype=torch.float64).positions, atol=1e-9)


def test_oracle_runs_tblite_on_one_thread_and_restores_torch(ethanol_seg):
    model = build_model("xtb_nve", {"dt_fs": DT_FS})
    torch.set_num_threads(2)
    try:
        res = rollout(model, ethanol_seg, 10, 3, dtype=torch.float64)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    direct, _ = _direct_vv(ethanol_seg, 10, 3)
    np.testing.assert_array_equal(res.positions, direct)  # one thread: bitwise the direct run


# --- xtb_nh: the oracle of Nosé-Hoover data -------------------------------------------------------


@pytest.fixture(scope="module")
def nh_seg(tmp_path_factory) -> Segment:
    """Nosé-Hoover ethanol with its chain state, through the trajectory file (what the pipeline reads)."""
    from diffmd.data.trajectory import load_trajectory, save_trajectory

    path = tmp_path_factory.mktemp("nh") / "ethanol.npz"
    save_trajectory(path, simulate_md17("ethanol", NH))
    traj = load_trajectory(path)
    assert traj.chain_state.shape == (140, 6) and traj.provenance["thermostat_state"]["dof"] == 21
    return Segment(name="ethanol", positions=traj.positions, atomic_numbers=traj.atomic_numbers, start=2,
                   stop=traj.n_frames - 1, dt_fs=traj.dt_fs, source="xtb", temperature_K=traj.temperature_K,
                   forces=traj.forces, thermostat_state=traj.chain_state)  # fmt: skip


def test_xtb_nh_continues_the_stored_trajectory(nh_seg):
    """From frame 20 the oracle repeats the data's next 100 steps (50 fs) to 1e-6 Å (measured: 2e-8 Å; the SCF's
    convergence is what is left), while velocity Verlet from the same state leaves it (no thermostat)."""
    oracle = build_model("xtb_nh", {"dt_fs": DT_FS, "temperature_K": 500.0, "accuracy": 0.01})
    assert model_role("xtb_nh") == "oracle" and oracle.requires == ("reference_potential", "thermostat_state")
    res = rollout(oracle, nh_seg, 20, 100, dtype=torch.float64)
    err = np.abs(res.positions - nh_seg.positions[20:121]).max()
    assert err <= 1e-6, err
    nve = rollout(build_model("xtb_nve", {"dt_fs": DT_FS, "accuracy": 0.01}), nh_seg, 20, 100, dtype=torch.float64)
    assert np.abs(nve.positions - nh_seg.positions[20:121]).max() > 100 * max(err, 1e-8)
    # teacher-forced, one step: the data's own next frame, far below the force_verlet floor (no thermostat)
    frames = np.array([10, 60, 110])
    batch = segment_batch(nh_seg, frames, dtype=torch.float64)
    one = build_model("xtb_nh", {"dt_fs": DT_FS, "temperature_K": 500.0, "accuracy": 0.01}).predict(batch)
    floor = build_model("force_verlet").predict(batch)
    target = batch[B.TARGET_POSITIONS]
    assert (one - target).abs().max() < 1e-7 < 1e-2 * (floor - target).abs().max()


def test_xtb_nh_continues_massive_chains(tmp_path):
    """Data from massive Nosé-Hoover chains (one chain per Cartesian degree of freedom, the configured production):
    the file stores every chain (2·3N·M numbers per frame), and the same xtb_nh oracle (the state's size says the
    coupling) repeats the data's next 100 steps to 1e-6 Å; the global chain from the same frames does not."""
    from diffmd.data.trajectory import load_trajectory, save_trajectory
    from diffmd.dynamics import chain_size

    path = tmp_path / "ethanol.npz"
    save_trajectory(path, simulate_md17("ethanol", {**NH, "nose_hoover_coupling": "massive"}))
    traj = load_trajectory(path)
    assert traj.chain_state.shape == (140, chain_size(9, "massive")) == (140, 144)
    assert traj.provenance["thermostat_state"]["coupling"] == "massive" and "massive" in traj.provenance["integrator"]
    seg = Segment(name="ethanol", positions=traj.positions, atomic_numbers=traj.atomic_numbers, start=2,
                  stop=traj.n_frames - 1, dt_fs=traj.dt_fs, source="xtb", temperature_K=traj.temperature_K,
                  forces=traj.forces, thermostat_state=traj.chain_state)  # fmt: skip
    oracle = build_model("xtb_nh", {"dt_fs": DT_FS, "temperature_K": 500.0, "accuracy": 0.01})
    res = rollout(oracle, seg, 20, 100, dtype=torch.float64)
    err = np.abs(res.positions - seg.positions[20:121]).max()
    assert err <= 1e-6, err
    glob = Segment(**{**seg.__dict__, "thermostat_state": traj.chain_state[:, :6]})
    other = rollout(build_model("xtb_nh", {"dt_fs": DT_FS, "temperature_K": 500.0, "accuracy": 0.01}), glob, 20,
                    100, dtype=torch.float64)  # fmt: skip
    assert np.abs(other.positions - seg.positions[20:121]).max() > 100 * max(err, 1e-8)


def test_xtb_nh_needs_the_chain_state(ethanol_seg):
    with pytest.raises(ValueError, match="no Nosé-Hoover chain"):
        rollout(build_model("xtb_nh"), ethanol_seg, 10, 2, dtype=torch.float64)  # Langevin data: no chain


def test_ase_calculator_with_tblite_is_the_xtb_rows(nh_seg, ethanol_seg):
    """ase_calculator with tblite's calculator and the data's dynamics: xtb_nh on Nosé-Hoover data (the chain
    is in the batch), xtb_nve where the data stores none; the same integrators, so the same numbers."""
    kwargs = {"method": "GFN2-xTB", "accuracy": 0.01, "verbosity": 0}
    calc = build_model("ase_calculator", {"calculator": "tblite.ase:TBLite", "calculator_kwargs": kwargs})
    assert model_role("ase_calculator") == "force_field" and calc.trainer == "own" and calc.can_rollout
    summary = calc.fit_own([nh_seg], [], seed=0, out_dir="")
    assert summary["dt_fs"] == DT_FS and summary["temperature_K"] == 500.0 and summary["dynamics"] == "data"
    a = rollout(calc, nh_seg, 30, 20, dtype=torch.float64).positions
    b = rollout(build_model("xtb_nh", {"accuracy": 0.01}), nh_seg, 30, 20, dtype=torch.float64).positions
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    c = rollout(calc, ethanol_seg, 30, 5, dtype=torch.float64).positions
    d = rollout(build_model("xtb_nve", {"accuracy": 0.01}), ethanol_seg, 30, 5, dtype=torch.float64).positions
    np.testing.assert_allclose(c, d, rtol=0, atol=1e-12)
    # the held-out force errors the rollout records: tblite's forces are the data's
    f = calc.predict_forces(nh_seg.positions[[5, 50]], nh_seg.atomic_numbers)
    assert np.abs(f - nh_seg.forces[[5, 50]]).max() < 1e-3  # kcal/mol/Å (accuracy 0.01 in both)


def test_ase_calculator_checkpoint_and_errors(nh_seg, tmp_path):
    from diffmd.engine.common import load_checkpoint, save_torch

    calc = build_model("ase_calculator", {"calculator": "ase.calculators.emt.EMT"})
    calc.fit_own([nh_seg], [], seed=0, out_dir="")
    save_torch(tmp_path / "model.pt", {"model": "ase_calculator", "params": {"calculator": "ase.calculators.emt.EMT"},
                                       "state_dict": calc.state_dict()})  # fmt: skip
    again, _ = load_checkpoint(tmp_path / "model.pt")
    assert again.dt_fs == DT_FS and again.temperature_K == 500.0 and again.calculator_path == "ase.calculators.emt.EMT"
    with pytest.raises(ValueError, match="cannot import"):
        build_model("ase_calculator", {"calculator": "no_such_package.module:Calc"})
    with pytest.raises(ValueError, match="has no"):
        build_model("ase_calculator", {"calculator": "ase.calculators.emt:NoSuchCalculator"})
    with pytest.raises(ValueError, match="dynamics must be one of"):
        build_model("ase_calculator", {"dynamics": "berendsen"})
    with pytest.raises(ValueError, match="dt_fs"):
        build_model("ase_calculator", {"dt_fs": 0.25}).fit_own([nh_seg], [], seed=0, out_dir="")


def test_nose_hoover_data_stores_its_chain(nh_seg):
    traj_nve = simulate_md17("ethanol", {**SHORT, "n_frames": 5, "thermostat": "nve"})
    assert traj_nve.nhc_eta is None and traj_nve.chain_state is None
    chain = nh_seg.thermostat_state
    assert np.isfinite(chain).all() and np.abs(chain[1:, 3:]).max() > 0  # p_eta moves
    batch = segment_batch(nh_seg, np.array([4, 9]))
    assert batch[B.THERMOSTAT_STATE].dtype == torch.float64 and batch[B.THERMOSTAT_STATE].shape == (2, 6)
    np.testing.assert_array_equal(batch[B.THERMOSTAT_STATE].numpy(), chain[[4, 9]])


def test_chain_keys_are_validated(nh_seg, tmp_path):
    from diffmd.data.trajectory import Trajectory, TrajectoryFormatError, save_trajectory

    x, z = nh_seg.positions[:5], nh_seg.atomic_numbers
    base = {"positions": x, "atomic_numbers": z, "dt_fs": 0.5, "temperature_K": 500.0, "name": "e", "dataset": "md17",
            "source": "xtb"}  # fmt: skip
    with pytest.raises(TrajectoryFormatError, match="'nhc_eta' without 'nhc_p_eta'"):
        save_trajectory(tmp_path / "a.npz", Trajectory(**base, nhc_eta=np.zeros((5, 3))))
    with pytest.raises(TrajectoryFormatError, match="'nhc_eta' has shape"):
        save_trajectory(tmp_path / "b.npz", Trajectory(**base, nhc_eta=np.zeros((4, 3)), nhc_p_eta=np.zeros((4, 3))))
    with pytest.raises(TrajectoryFormatError, match="NaN"):
        save_trajectory(tmp_path / "c.npz", Trajectory(**base, nhc_eta=np.full((5, 3), np.nan),
                                                       nhc_p_eta=np.zeros((5, 3))))  # fmt: skip
