"""Distribution metrics on hand-computed cases: h(r), W1, bond/angle W1, kinetic temperature, energy excess."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from diffmd.distributions import (
    angle_types,
    angle_w1,
    bond_length_w1,
    bond_types,
    distance_histogram,
    distribution_metrics,
    energy_excess,
    hr_mae,
    kinetic_temperature,
    temperature_drift,
    wasserstein1,
)
from diffmd.elements import masses
from diffmd.graph import find_bonds
from diffmd.testing import ETHANOL_X, ETHANOL_Z

ETHANOL_M = masses(ETHANOL_Z)


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def jittered_ethanol(frames: int = 20, scale: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ETHANOL_X[None] + scale * rng.normal(size=(frames, len(ETHANOL_Z), 3))


# ---------------------------------------------------------------------------------------------- h(r)

# Right triangle with legs 3.1 and 4.1 Å: sides 3.1, 4.1 and sqrt(3.1^2 + 4.1^2) = 5.1400 Å.
TRIANGLE = np.array([[0.0, 0.0, 0.0], [3.1, 0.0, 0.0], [0.0, 4.1, 0.0]])


def test_hr_of_a_triangle_peaks_in_the_right_bins_with_unit_area():
    moves = [rotation(np.array([1.0, 2.0, 0.5]), a) for a in (0.0, 0.4, 1.3)]
    traj = np.stack([TRIANGLE @ r.T + np.array([1.0, -2.0, 0.5]) * i for i, r in enumerate(moves)])
    edges, density = distance_histogram(traj, r_max=6.0, n_bins=12)  # 0.5 Å bins
    assert edges == pytest.approx(np.linspace(0, 6, 13))
    expected = np.zeros(12)
    expected[[6, 8, 10]] = 1.0 / (3 * 0.5)  # [3.0, 3.5), [4.0, 4.5), [5.0, 5.5): a third of the pairs each
    assert density == pytest.approx(expected)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)


def test_hr_default_range_reaches_the_longest_pair_and_skips_nan_frames():
    traj = np.stack([TRIANGLE, np.full((3, 3), np.nan), TRIANGLE])
    edges, density = distance_histogram(traj, n_bins=10)
    assert edges[-1] == pytest.approx(np.hypot(3.1, 4.1))
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    assert density[-1] > 0  # the longest side sits in the last (closed) bin
    _, clean = distance_histogram(TRIANGLE[None], n_bins=10)
    assert density == pytest.approx(clean)
    _, empty = distance_histogram(np.full((2, 3, 3), np.nan), r_max=5.0, n_bins=5)
    assert np.isnan(empty).all()


def test_hr_pairs_beyond_the_range_lose_area_instead_of_being_renormalised():
    _, density = distance_histogram(TRIANGLE[None], bins=np.array([0.0, 3.5, 4.5]))
    # 3.1 and 4.1 fall in the two bins, 5.14 in neither: a third of the mass is outside.
    assert density == pytest.approx([1 / (3 * 3.5), 1 / (3 * 1.0)])


def two_atoms(distances: list[float]) -> np.ndarray:
    return np.array([[[0.0, 0.0, 0.0], [d, 0.0, 0.0]] for d in distances])


def test_hr_mae_identical_is_zero_and_point_masses_give_hand_values():
    traj = jittered_ethanol()
    assert hr_mae(traj, traj) == 0.0
    # Default bins are 0.02 Å: a point mass at 1.01 Å against one at 2.01 Å share no bin -> 2.
    assert hr_mae(two_atoms([1.01]), two_atoms([2.01])) == pytest.approx(2.0)
    # Half the reference mass in the predicted bin: |50 - 25| + |0 - 25| per Å over 0.02 Å -> 1.
    assert hr_mae(two_atoms([1.01, 1.01]), two_atoms([1.01, 2.01])) == pytest.approx(1.0)
    # It is r_max times the mean absolute bin difference (Fu et al.'s computation).
    edges = np.linspace(0, 10.0, 501)
    _, a = distance_histogram(two_atoms([1.01, 1.31]), bins=edges)
    _, b = distance_histogram(two_atoms([1.03, 1.31, 1.31]), bins=edges)
    assert hr_mae(two_atoms([1.01, 1.31]), two_atoms([1.03, 1.31, 1.31])) == pytest.approx(10.0 * np.abs(a - b).mean())


# ---------------------------------------------------------------------------------------------- W1


def test_wasserstein_hand_values():
    assert wasserstein1([0.0, 1.0], [1.0, 2.0]) == pytest.approx(1.0)
    assert wasserstein1([0.0], [3.0]) == pytest.approx(3.0)
    assert wasserstein1([0.0, 0.0, 3.0], [0.0]) == pytest.approx(1.0)  # CDF gap 1/3 over 3 Å
    assert wasserstein1([1.0, 2.0, np.nan], [1.0, 2.0]) == 0.0
    assert np.isnan(wasserstein1([], [1.0]))
    assert np.isnan(wasserstein1([np.nan], [1.0]))


def test_wasserstein_matches_scipy_on_random_samples():
    rng = np.random.default_rng(11)
    for n, m in [(50, 50), (37, 120), (1, 9)]:
        a = rng.normal(0.0, 1.0, size=n)
        b = rng.gamma(2.0, 1.0, size=m)
        assert wasserstein1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)


# ---------------------------------------------------------------------------------------------- bonds and angles


def test_bond_and_angle_types_of_ethanol():
    bonds = find_bonds(ETHANOL_X, ETHANOL_Z)
    types = bond_types(ETHANOL_Z, bonds)
    assert {k: len(v) for k, v in types.items()} == {"C-C": 1, "C-H": 5, "C-O": 1, "H-O": 1}
    assert (types["C-O"] == [[0, 2]]).all()  # each bond once, i < j
    assert bond_types(ETHANOL_Z, bonds[:, bonds[0] < bonds[1]]).keys() == types.keys()  # one direction is enough
    angles = angle_types(ETHANOL_Z, bonds)
    assert {k: len(v) for k, v in angles.items()} == {"C-C-H": 5, "C-C-O": 1, "C-O-H": 1, "H-C-H": 4, "H-C-O": 2}
    assert (angles["C-O-H"] == [[0, 2, 8]]).all()  # centre in the middle


def test_bond_length_w1_of_c_h_bonds_stretched_by_a_tenth():
    ref = jittered_ethanol(frames=30)
    bonds = find_bonds(ref[0], ETHANOL_Z)
    pred = ref.copy()
    for c, h in bond_types(ETHANOL_Z, bonds)["C-H"]:
        u = ref[:, h] - ref[:, c]
        pred[:, h] = ref[:, h] + 0.1 * u / np.linalg.norm(u, axis=-1, keepdims=True)
    w1 = bond_length_w1(pred, ref, ETHANOL_Z, bonds)
    assert w1["C-H"] == pytest.approx(0.1, abs=1e-12)
    for other in ("C-C", "C-O", "H-O"):
        assert w1[other] == pytest.approx(0.0, abs=1e-12)
    assert w1["mean"] == pytest.approx(0.1 / 4)
    assert bond_length_w1(pred, ref, ETHANOL_Z) == w1  # bonds default to the reference's first frame


def water(angle_deg: float, r1: float = 0.96, r2: float = 0.96) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * np.cos(a), r2 * np.sin(a), 0.0]])


def test_angle_w1_of_water_bent_by_five_degrees():
    numbers = np.array([8, 1, 1])
    rng = np.random.default_rng(2)
    angles = rng.uniform(100.0, 110.0, size=25)
    lengths = rng.uniform(0.94, 0.98, size=(25, 2))
    ref = np.stack([water(t, *r) for t, r in zip(angles, lengths)])
    pred = np.stack([water(t + 5.0, *r) for t, r in zip(angles, lengths)])
    bonds = find_bonds(ref[0], numbers)
    w1 = angle_w1(pred, ref, numbers, bonds)
    assert set(w1) == {"H-O-H", "mean"}
    assert w1["H-O-H"] == pytest.approx(5.0, abs=1e-9)
    assert w1["mean"] == pytest.approx(5.0, abs=1e-9)
    assert bond_length_w1(pred, ref, numbers, bonds)["H-O"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------- temperature


def internal_velocities(seed: int, scale: float = 0.01) -> np.ndarray:
    """Random ethanol velocities (Å/fs) with no centre-of-mass motion and no angular momentum."""
    v = scale * np.random.default_rng(seed).normal(size=ETHANOL_X.shape)
    v -= (ETHANOL_M @ v) / ETHANOL_M.sum()
    r = ETHANOL_X - (ETHANOL_M @ ETHANOL_X) / ETHANOL_M.sum()
    inertia = np.einsum("a,ai,ai->", ETHANOL_M, r, r) * np.eye(3) - np.einsum("a,ai,aj->ij", ETHANOL_M, r, r)
    omega = np.linalg.solve(inertia, np.einsum("a,ai->i", ETHANOL_M, np.cross(r, v)))
    return v - np.cross(omega, r)


def half_mv2_temperature(v: np.ndarray) -> float:
    """2 * (0.5 m v^2) / (n_dof k_B) via ASE's units (independent of the module's constants)."""
    units = pytest.importorskip("ase.units")
    ke_ev = 0.5 * np.sum(ETHANOL_M[:, None] * (v / units.fs) ** 2)  # Å/fs -> Å per ASE time unit (1 fs = units.fs)
    return 2 * ke_ev / ((3 * len(ETHANOL_Z) - 6) * units.kB)


def test_kinetic_temperature_of_known_velocities():
    v = internal_velocities(seed=3)
    expected = half_mv2_temperature(v)
    assert 50 < expected < 2000  # a molecular-scale temperature
    dt_fs, stride = 0.5, 4
    t = np.arange(6) * dt_fs * stride
    traj = ETHANOL_X[None] + t[:, None, None] * v[None]
    temps = kinetic_temperature(traj, ETHANOL_Z, dt_fs, stride)
    assert temps.shape == (4,)
    assert temps == pytest.approx(np.full(4, expected), rel=0.01)
    # A uniform drift of the whole molecule is not temperature.
    drifting = traj + t[:, None, None] * np.array([0.02, -0.01, 0.03])
    assert kinetic_temperature(drifting, ETHANOL_Z, dt_fs, stride) == pytest.approx(temps, rel=1e-9)
    # A static trajectory is at 0 K; a NaN frame blanks itself and its neighbours only.
    assert kinetic_temperature(np.repeat(ETHANOL_X[None], 4, 0), ETHANOL_Z, dt_fs) == pytest.approx(np.zeros(2))
    broken = traj.copy()
    broken[3] = np.nan
    got = kinetic_temperature(broken, ETHANOL_Z, dt_fs, stride)
    assert np.isnan(got[[1, 2, 3]]).all() and got[0] == pytest.approx(expected, rel=0.01)


def test_rigid_rotation_is_removed_unless_asked_to_keep_it():
    v_int = internal_velocities(seed=5)
    centred = ETHANOL_X - (ETHANOL_M @ ETHANOL_X) / ETHANOL_M.sum()
    v_rot = np.cross(np.array([0.002, -0.001, 0.003]), centred)  # rad/fs x Å
    v = v_int + v_rot
    dt = 0.5
    traj = np.stack([ETHANOL_X - dt * v, ETHANOL_X, ETHANOL_X + dt * v])  # velocity exact at the centre frame
    (internal,) = kinetic_temperature(traj, ETHANOL_Z, dt)
    assert internal == pytest.approx(half_mv2_temperature(v_int), rel=1e-6)
    (with_rotation,) = kinetic_temperature(traj, ETHANOL_Z, dt, remove_rotation=False)
    n_dof = 3 * len(ETHANOL_Z)
    assert with_rotation == pytest.approx(half_mv2_temperature(v) * (n_dof - 6) / (n_dof - 3), rel=1e-6)


def heating_trajectory(rate_per_fs: float, frames: int, dt_fs: float, seed: int = 7) -> tuple[np.ndarray, float]:
    """Speeds grow as sqrt(1 + b t), so T(t) = T0 (1 + b t) exactly; returns (trajectory, T0)."""
    u = internal_velocities(seed)
    t = np.arange(frames) * dt_fs
    if rate_per_fs == 0:
        s = t
    else:
        s = 2.0 / (3.0 * rate_per_fs) * ((1.0 + rate_per_fs * t) ** 1.5 - 1.0)  # integral of sqrt(1 + b t)
    return ETHANOL_X[None] + s[:, None, None] * u[None], half_mv2_temperature(u)


def test_temperature_drift_sign_and_magnitude():
    dt_fs, frames = 0.5, 201  # 100 fs
    ref, t0 = heating_trajectory(0.0, frames, dt_fs)
    hot, _ = heating_trajectory(1e-3, frames, dt_fs)  # +T0 per ps
    cold, _ = heating_trajectory(-1e-3, frames, dt_fs)
    up = temperature_drift(hot, ref, ETHANOL_Z, dt_fs)
    assert up["ref_mean_K"] == pytest.approx(t0, rel=1e-6)
    assert up["drift_K_per_ps"] == pytest.approx(t0 * 1.0, rel=0.01)
    assert up["pred_mean_K"] == pytest.approx(t0 * (1 + 1e-3 * 50.0), rel=0.01)  # T at the middle, 50 fs
    down = temperature_drift(cold, ref, ETHANOL_Z, dt_fs)
    assert down["drift_K_per_ps"] == pytest.approx(-t0, rel=0.01)
    assert temperature_drift(ref, ref, ETHANOL_Z, dt_fs)["drift_K_per_ps"] == pytest.approx(0.0, abs=1e-6 * t0)
    # The same trajectory stored every 2nd frame: same drift per ps with stride 2.
    assert temperature_drift(hot[::2], ref[::2], ETHANOL_Z, dt_fs, stride=2)["drift_K_per_ps"] == pytest.approx(
        t0, rel=0.01
    )


# ---------------------------------------------------------------------------------------------- energy


def test_energy_excess_hand_values():
    assert energy_excess([-10.0, -8.0], [-12.0, -12.0, -12.0], n_atoms=4) == pytest.approx(0.75)
    assert energy_excess([-13.0, np.nan, np.inf], [-12.0, -11.0], n_atoms=2) == pytest.approx(-0.75)
    assert np.isnan(energy_excess([np.nan], [-12.0], n_atoms=3))
    assert np.isnan(energy_excess([-1.0], [], n_atoms=3))
    with pytest.raises(ValueError):
        energy_excess([1.0], [1.0], n_atoms=0)


# ---------------------------------------------------------------------------------------------- all together

KEYS = {
    "hr_mae",
    "bond_w1_mean",
    "angle_w1_mean",
    "bond_w1",
    "angle_w1",
    "temperature_pred_K",
    "temperature_ref_K",
    "temperature_drift_K_per_ps",
}


def test_distribution_metrics_of_the_reference_itself_with_a_diverged_tail():
    ref, _ = heating_trajectory(0.0, 40, 0.5)
    ref = ref + 0.01 * np.random.default_rng(1).normal(size=ref.shape)
    bonds = find_bonds(ref[0], ETHANOL_Z)
    pred = np.concatenate([ref, np.full((5,) + ref.shape[1:], np.nan)])  # the rollout blew up at the end
    out = distribution_metrics(pred, ref, ETHANOL_Z, bonds, dt_fs=0.5, stride=1)
    assert set(out) == KEYS
    assert out["hr_mae"] == 0.0 and out["bond_w1_mean"] == 0.0 and out["angle_w1_mean"] == 0.0
    assert set(out["bond_w1"]) == {"C-C", "C-H", "C-O", "H-O"} and set(out["bond_w1"].values()) == {0.0}
    assert "mean" not in out["angle_w1"] and len(out["angle_w1"]) == 5
    assert out["temperature_pred_K"] == pytest.approx(out["temperature_ref_K"])
    assert isinstance(out["temperature_drift_K_per_ps"], float)
    assert distribution_metrics(pred, ref, ETHANOL_Z, None, 0.5) == out  # bonds from the reference


def test_distribution_metrics_see_a_model_that_stands_still():
    ref, t0 = heating_trajectory(0.0, 40, 0.5)
    static = np.repeat(ref[:1], 40, axis=0)
    out = distribution_metrics(static, ref, ETHANOL_Z, None, dt_fs=0.5)
    assert out["temperature_pred_K"] == pytest.approx(0.0, abs=1e-9)
    assert out["temperature_ref_K"] == pytest.approx(t0, rel=1e-6)
    assert out["hr_mae"] > 0.1 and out["bond_w1_mean"] > 0


def test_distribution_metrics_are_none_without_two_finite_frames():
    ref = jittered_ethanol(frames=10)
    pred = np.full_like(ref, np.nan)
    pred[0] = ref[0]
    out = distribution_metrics(pred, ref, ETHANOL_Z, None, dt_fs=0.5)
    assert out == dict.fromkeys(KEYS)
    assert distribution_metrics(ref, ref[:1], ETHANOL_Z, None, dt_fs=0.5) == dict.fromkeys(KEYS)
    # Two finite frames: distributions are defined, temperatures (3 consecutive frames) are not.
    out = distribution_metrics(ref[:2], ref, ETHANOL_Z, None, dt_fs=0.5)
    assert out["hr_mae"] is not None and out["temperature_pred_K"] is None
    assert out["temperature_drift_K_per_ps"] is None and out["temperature_ref_K"] is not None
