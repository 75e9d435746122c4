"""Distributional fidelity of a rollout against the reference segment (numpy, scipy, ASE's constants).

A rollout can stay close in ARMSE while sampling the wrong structures (a model that stands still
or collapses to the mean geometry), and a good chaotic simulator drifts away in ARMSE while
sampling the right ones. These metrics compare *distributions* pooled over frames instead of
frame-by-frame positions, following MLFF-simulation benchmarks:

* h(r), the distribution of all intramolecular interatomic distances, and its MAE (Fu et al. 2022,
  "Forces are not Enough: Benchmark and Critical Evaluation for Machine Learning Force Fields with
  Molecular Simulations", the MD17 "distance" metric);
* per-bond-type bond-length and per-angle-type bond-angle distributions compared with the
  Wasserstein-1 distance (as mlipaudit's bond-length / angle distribution benchmarks do);
* the instantaneous kinetic temperature from finite-difference velocities and its drift;
* the reference potential's energy of rollout frames in excess of the ground truth's, per atom
  (the energies are computed by the caller).

Conventions: positions in Å, arrays (frames, atoms, 3) of one molecule; ``numbers`` (atoms,) atomic
numbers; ``bond_index`` (2, n_bonds) as from :func:`diffmd.graph.find_bonds` (both directions; each
bond is counted once here). Frames holding any non-finite coordinate (a diverged rollout) are
dropped before pooling; :func:`distribution_metrics` reports ``None`` when fewer than 2 finite
frames remain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import wasserstein_distance

from diffmd.elements import masses, symbol
from diffmd.graph import find_bonds
from diffmd.metrics import _as_frames
from diffmd.units import KB_EV_PER_K, U_A2_PER_FS2_IN_EV

#: Default h(r) range (Å): covers every intramolecular distance of the MD17 and C7O2H10 molecules.
R_MAX = 10.0
#: Default number of h(r) bins (0.02 Å wide over [0, R_MAX]).
N_BINS = 500


def _frames(positions: np.ndarray, name: str = "positions") -> np.ndarray:
    """(frames, atoms, 3) float64 of one frame or many (:func:`diffmd.metrics._as_frames`)."""
    return _as_frames(positions, name)


def finite_frames(positions: np.ndarray) -> np.ndarray:
    """The frames of ``positions`` (frames, atoms, 3) whose coordinates are all finite -> (kept, atoms, 3)."""
    x = _frames(positions)
    return x[np.isfinite(x).all(axis=(1, 2))]


def _pair_distances(x: np.ndarray) -> np.ndarray:
    """All i < j distances of finite frames ``x`` (frames, atoms, 3) -> (frames * pairs,) Å."""
    i, j = np.triu_indices(x.shape[1], k=1)
    return np.linalg.norm(x[:, i] - x[:, j], axis=-1).reshape(-1)


def distance_histogram(
    positions: np.ndarray,
    r_max: float | None = None,
    n_bins: int = N_BINS,
    bins: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """h(r): the density of all intramolecular atom-pair distances, pooled over frames.

    ``h(r) = < (2 / (N (N - 1))) * sum_{i<j} delta(r - |x_i - x_j|) >_frames`` (Fu et al. 2022),
    estimated with a histogram.

    Args:
        positions: (frames, atoms, 3) Å (a single (atoms, 3) frame is accepted). Frames with a
            non-finite coordinate are skipped.
        r_max: upper edge of ``n_bins`` equal bins on ``[0, r_max]`` (Å). ``None``: the largest
            distance in the sample, so every pair falls in a bin.
        n_bins: number of bins when ``bins`` is not given.
        bins: explicit increasing bin edges (Å), overriding ``r_max`` and ``n_bins``; use the same
            edges for two trajectories to compare them.

    Returns:
        ``(edges, density)``: edges (n_bins + 1,) Å and density (n_bins,) in Å^-1, counts divided
        by (number of pairs x bin width). The area ``sum(density * diff(edges))`` is 1 when every
        distance lies inside the edges; pairs outside them are counted in the normaliser but in no
        bin, so a trajectory that flies apart *loses* area instead of being renormalised (Fu et
        al.'s ``np.histogram(..., density=True)`` renormalises over the pairs in range; the two
        agree whenever all distances are below ``r_max``). With no finite frame (or fewer than 2
        atoms) the density is all NaN.
    """
    x = finite_frames(positions)
    d = _pair_distances(x) if x.shape[0] else np.empty(0)
    if bins is not None:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bins must be a 1-D increasing array of at least 2 edges")
    else:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        hi = float(r_max) if r_max is not None else (float(d.max()) if d.size else 1.0)
        if not hi > 0:
            raise ValueError(f"r_max must be > 0, got {hi}")
        edges = np.linspace(0.0, hi, n_bins + 1)
    if d.size == 0:
        return edges, np.full(edges.size - 1, np.nan)
    counts, _ = np.histogram(d, bins=edges)
    return edges, counts / (d.size * np.diff(edges))


def hr_mae(pred: np.ndarray, ref: np.ndarray, n_bins: int = N_BINS, r_max: float = R_MAX) -> float:
    """MAE of h(r) between a rollout and the reference (Fu et al. 2022, MD17 "distance" metric).

    Fu et al. define it as ``integral_0^inf |<h(r)> - <h_ref(r)>| dr``, the mean absolute
    difference of the two densities over r integrated over the range. On ``n_bins`` equal bins of
    width ``dr`` on ``[0, r_max]`` (the same edges for both, see :func:`distance_histogram`) this
    is ``sum_b |h_b - h_ref,b| * dr = r_max * mean_b |h_b - h_ref,b|``.

    Units: h(r) is a density in Å^-1 and ``dr`` is in Å, so the MAE is dimensionless and lies in
    ``[0, 2]``: 0 for identical histograms, 2 for histograms with no bin in common (the plain per-bin
    mean, in Å^-1, would depend on ``r_max``; this integral does not, beyond the bin width).

    Args:
        pred, ref: (frames, atoms, 3) Å, the same molecule; non-finite frames skipped.
        n_bins, r_max: the common bins (default 500 bins of 0.02 Å on [0, 10] Å).

    Returns:
        The MAE as a float; NaN if either side has no finite frame.
    """
    edges = np.linspace(0.0, float(r_max), n_bins + 1)
    _, h_pred = distance_histogram(pred, bins=edges)
    _, h_ref = distance_histogram(ref, bins=edges)
    return float(np.sum(np.abs(h_pred - h_ref) * np.diff(edges)))


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two 1-D empirical samples (equal weights):
    ``scipy.stats.wasserstein_distance`` after dropping non-finite values.

    ``W1 = integral |F_a(x) - F_b(x)| dx`` with ``F`` the empirical CDFs. Same unit as the samples (Å for
    lengths, degrees for angles). NaN if either sample is empty once non-finite values are dropped (scipy
    would raise).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def _unique_bonds(bond_index: np.ndarray) -> np.ndarray:
    bi = np.asarray(bond_index, dtype=np.int64).reshape(2, -1)
    pairs = np.sort(bi.T, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if pairs.size else np.empty((0, 2), dtype=np.int64)


def bond_types(numbers: np.ndarray, bond_index: np.ndarray) -> dict[str, np.ndarray]:
    """Group the bonds by element pair.

    Args:
        numbers: (atoms,) atomic numbers.
        bond_index: (2, n_bonds) atom indices; both directions or one, each bond counted once.

    Returns:
        ``{name: (n, 2) int64 atom pairs (i < j)}``, sorted by name, where the name joins the two
        element symbols in alphabetical order: ``"C-H"``, ``"C-C"``, ``"C-O"``, ``"H-O"``.
    """
    z = np.asarray(numbers, dtype=np.int64)
    groups: dict[str, list[tuple[int, int]]] = {}
    for i, j in _unique_bonds(bond_index):
        name = "-".join(sorted((symbol(z[i]), symbol(z[j]))))
        groups.setdefault(name, []).append((int(i), int(j)))
    return {k: np.array(groups[k], dtype=np.int64) for k in sorted(groups)}


def angle_types(numbers: np.ndarray, bond_index: np.ndarray) -> dict[str, np.ndarray]:
    """Group the bonded angles i-j-k (j bonded to both i and k, i != k) by element triple.

    Returns:
        ``{name: (n, 3) int64 triples (i, j, k), j the centre, i < k}``, sorted by name; the name is
        ``end-centre-end`` with the two end symbols in alphabetical order: ``"H-C-H"``, ``"C-O-H"``.
    """
    z = np.asarray(numbers, dtype=np.int64)
    neighbours: dict[int, set[int]] = {}
    for i, j in _unique_bonds(bond_index):
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    groups: dict[str, list[tuple[int, int, int]]] = {}
    for j in sorted(neighbours):
        nb = sorted(neighbours[j])
        for p, i in enumerate(nb):
            for k in nb[p + 1 :]:
                a, c = sorted((symbol(z[i]), symbol(z[k])))
                groups.setdefault(f"{a}-{symbol(z[j])}-{c}", []).append((i, j, k))
    return {k: np.array(groups[k], dtype=np.int64) for k in sorted(groups)}


def bond_lengths(positions: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Lengths (Å) of the bonds ``pairs`` (n, 2) in every frame of ``positions`` -> (frames, n)."""
    x = _frames(positions)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)


def bond_angles(positions: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """Angles i-j-k (degrees, in [0, 180]) at centre j for ``triples`` (n, 3) -> (frames, n)."""
    x = _frames(positions)
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    u = x[:, t[:, 0]] - x[:, t[:, 1]]
    w = x[:, t[:, 2]] - x[:, t[:, 1]]
    cos = np.sum(u * w, axis=-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _w1_by_type(
    pred: np.ndarray,
    ref: np.ndarray,
    groups: dict[str, np.ndarray],
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict[str, float]:
    p, r = finite_frames(pred), finite_frames(ref)
    out: dict[str, float] = {}
    for name, idx in groups.items():
        if p.shape[0] == 0 or r.shape[0] == 0:
            out[name] = float("nan")
        else:
            out[name] = wasserstein1(measure(p, idx), measure(r, idx))
    out["mean"] = float(np.mean([out[k] for k in groups])) if groups else float("nan")
    return out


def bond_length_w1(
    pred: np.ndarray, ref: np.ndarray, numbers: np.ndarray, bond_index: np.ndarray | None = None
) -> dict[str, float]:
    """Wasserstein-1 distance (Å) between predicted and reference bond-length distributions, per bond type.

    Args:
        pred, ref: (frames, atoms, 3) Å; non-finite frames dropped.
        numbers: (atoms,) atomic numbers.
        bond_index: (2, n_bonds) fixed topology; ``None``: :func:`diffmd.graph.find_bonds` of the
            first finite reference frame.

    Returns:
        ``{"C-H": w1, "C-C": ..., "mean": ...}``: for each type (see :func:`bond_types`) the W1 of the
        lengths pooled over all bonds of that type and all frames; ``"mean"`` is the unweighted mean
        over types. NaN where either side has no finite frame.
    """
    numbers = np.asarray(numbers)
    if bond_index is None:
        bond_index = _reference_bonds(ref, numbers)
    return _w1_by_type(pred, ref, bond_types(numbers, bond_index), bond_lengths)


def angle_w1(
    pred: np.ndarray, ref: np.ndarray, numbers: np.ndarray, bond_index: np.ndarray | None = None
) -> dict[str, float]:
    """Wasserstein-1 distance (degrees) between predicted and reference bond-angle distributions, per angle type.

    Angles i-j-k over bonded triples (j the centre, see :func:`angle_types`), in degrees, pooled over
    all angles of a type and all frames. Returns ``{"H-C-H": w1, ..., "mean": ...}`` (unweighted mean
    over types); arguments as in :func:`bond_length_w1`.
    """
    numbers = np.asarray(numbers)
    if bond_index is None:
        bond_index = _reference_bonds(ref, numbers)
    return _w1_by_type(pred, ref, angle_types(numbers, bond_index), bond_angles)


def _reference_bonds(ref: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    r = finite_frames(ref)
    if r.shape[0] == 0:
        raise ValueError("no finite reference frame to find bonds from; pass bond_index")
    return find_bonds(r[0], numbers)


def _degrees_of_freedom(n_atoms: int, remove_rotation: bool) -> int:
    if n_atoms < 2:
        raise ValueError("a kinetic temperature needs at least 2 atoms")
    if not remove_rotation:
        return 3 * n_atoms - 3
    return 1 if n_atoms == 2 else 3 * n_atoms - 6


def kinetic_temperature(
    positions: np.ndarray,
    numbers: np.ndarray,
    dt_fs: float,
    stride: int = 1,
    remove_rotation: bool = True,
) -> np.ndarray:
    """Instantaneous kinetic temperature (K) of each interior frame from finite-difference velocities.

    Velocities are central differences ``v_t = (x_{t+1} - x_{t-1}) / (2 dt)`` with ``dt = dt_fs *
    stride`` fs between consecutive frames (Å/fs), so the result holds frames ``1 .. frames-2``.
    The centre-of-mass velocity is removed, and (``remove_rotation``, the default) so is the
    rigid-body rotation ``omega x r`` with ``omega = I^-1 L`` about the centre of mass; the
    temperature is then ``T = sum_i m_i |v_i|^2 / (n_dof k_B)`` with ``n_dof = 3N - 6`` (a nonlinear
    molecule's internal degrees of freedom; 1 for a diatomic). Removing rotation makes T the
    vibrational temperature whether or not the simulator (thermostat, model) lets the molecule
    tumble; with ``remove_rotation=False`` only the centre of mass is removed and ``n_dof = 3N - 3``.
    Masses in u from :mod:`diffmd.elements` (ASE's), k_B and the energy unit from :mod:`diffmd.units`.

    Caveat: finite differences damp fast vibrations. A mode of angular frequency w sampled every
    dt contributes ``(sin(w dt) / (w dt))^2`` of its kinetic energy: ~0.97 for a C-H stretch at
    0.5 fs, ~0.01 at 5 fs. Compare a rollout with the reference at the same frame spacing (as
    :func:`temperature_drift` does); absolute values match a thermostat's temperature only for
    frames ~0.5 fs apart.

    Args:
        positions: (frames, atoms, 3) Å, consecutive frames ``dt_fs * stride`` fs apart.
        numbers: (atoms,) atomic numbers.
        dt_fs: time step of the source frames (fs); ``stride``: source frames per stored frame.

    Returns:
        (max(frames - 2, 0),) temperatures in K; NaN where a frame or its two neighbours is non-finite.
    """
    x = _frames(positions)
    z = np.asarray(numbers, dtype=np.int64)
    if x.shape[1] != z.size:
        raise ValueError(f"positions have {x.shape[1]} atoms but numbers has {z.size}")
    dt = float(dt_fs) * int(stride)
    if not dt > 0:
        raise ValueError(f"dt_fs * stride must be > 0, got {dt}")
    n_dof = _degrees_of_freedom(z.size, remove_rotation)
    if x.shape[0] < 3:
        return np.empty(0)
    m = masses(z)
    v = (x[2:] - x[:-2]) / (2.0 * dt)  # (F-2, N, 3) Å/fs
    centre = x[1:-1]
    out = np.full(v.shape[0], np.nan)
    ok = np.isfinite(v).all(axis=(1, 2)) & np.isfinite(centre).all(axis=(1, 2))
    if not ok.any():
        return out
    v, centre = v[ok], centre[ok]
    total = m.sum()
    v = v - np.einsum("a,fai->fi", m, v)[:, None, :] / total
    if remove_rotation:
        r = centre - np.einsum("a,fai->fi", m, centre)[:, None, :] / total
        ang = np.einsum("a,fai->fi", m, np.cross(r, v))  # L (F, 3)
        r2 = np.einsum("fai,fai->fa", r, r)
        inertia = np.einsum("a,fa->f", m, r2)[:, None, None] * np.eye(3) - np.einsum("a,fai,faj->fij", m, r, r)
        omega = np.einsum("fij,fj->fi", np.linalg.pinv(inertia, hermitian=True), ang)
        v = v - np.cross(omega[:, None, :], r)
    twice_ke = np.einsum("a,fai,fai->f", m, v, v) * U_A2_PER_FS2_IN_EV  # eV
    out[ok] = twice_ke / (n_dof * KB_EV_PER_K)
    return out


def _drift_per_ps(temps: np.ndarray, dt_ps: float) -> float:
    t = (np.arange(temps.size) + 1) * dt_ps  # interior frames start at frame 1
    ok = np.isfinite(temps)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(t[ok], temps[ok], 1)[0])


def temperature_drift(
    pred_positions: np.ndarray,
    ref_positions: np.ndarray,
    numbers: np.ndarray,
    dt_fs: float,
    stride: int = 1,
) -> dict[str, float]:
    """Mean kinetic temperatures of rollout and reference, and the rollout's temperature drift.

    Both trajectories are (frames, atoms, 3) Å with the same spacing ``dt_fs * stride`` fs between
    frames, so the finite-difference damping (see :func:`kinetic_temperature`) is the same on both.

    Returns:
        ``{"pred_mean_K", "ref_mean_K", "drift_K_per_ps"}``: means over the finite per-frame
        temperatures (K), and the slope of a least-squares line through the rollout's temperature
        against time in ps (K/ps; > 0 heating, < 0 cooling). NaN where there are too few finite
        frames (3 consecutive for a temperature, 2 temperatures for a slope).
    """
    dt_ps = float(dt_fs) * int(stride) / 1000.0
    t_pred = kinetic_temperature(pred_positions, numbers, dt_fs, stride)
    t_ref = kinetic_temperature(ref_positions, numbers, dt_fs, stride)

    def mean(t: np.ndarray) -> float:
        t = t[np.isfinite(t)]
        return float(t.mean()) if t.size else float("nan")

    return {"pred_mean_K": mean(t_pred), "ref_mean_K": mean(t_ref), "drift_K_per_ps": _drift_per_ps(t_pred, dt_ps)}


def energy_excess(pred_energies: np.ndarray, ref_energies: np.ndarray, n_atoms: int) -> float:
    """Mean excess of the rollout frames' reference-potential energy over the ground truth's, per atom.

    ``(mean(E_pred) - mean(E_ref)) / n_atoms``, where ``E_pred`` are the reference potential's
    energies of (a subsample of) rollout frames and ``E_ref`` those of the ground-truth frames, in
    any energy unit (the result is that unit per atom, e.g. kcal/mol/atom). Positive: the rollout
    visits higher-energy (strained or hot) structures. Non-finite energies are dropped; NaN if
    either side is then empty.
    """
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    p = np.asarray(pred_energies, dtype=np.float64).reshape(-1)
    r = np.asarray(ref_energies, dtype=np.float64).reshape(-1)
    p, r = p[np.isfinite(p)], r[np.isfinite(r)]
    if p.size == 0 or r.size == 0:
        return float("nan")
    return float((p.mean() - r.mean()) / n_atoms)


def _or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def distribution_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    numbers: np.ndarray,
    bond_index: np.ndarray | None,
    dt_fs: float,
    stride: int = 1,
) -> dict[str, float | dict[str, float | None] | None]:
    """All distribution metrics of one rollout against its reference segment, as one flat dict.

    Args:
        pred: (frames, atoms, 3) Å rollout; frames with a non-finite coordinate are dropped from the
            pooled distributions (and give no temperature for themselves or their neighbours).
        ref: (frames, atoms, 3) Å ground-truth segment, same frame spacing as ``pred``.
        numbers: (atoms,) atomic numbers.
        bond_index: (2, n_bonds) topology, or ``None`` for the bonds of the first finite reference frame.
        dt_fs, stride: frames are ``dt_fs * stride`` fs apart.

    Returns:
        ``hr_mae`` (dimensionless, :func:`hr_mae`), ``bond_w1_mean`` (Å), ``angle_w1_mean``
        (degrees), ``bond_w1`` and ``angle_w1`` (per-type dicts, without ``"mean"``),
        ``temperature_pred_K``, ``temperature_ref_K`` (K) and ``temperature_drift_K_per_ps`` (K/ps).
        Values are Python floats, or ``None`` when not defined: every value is ``None`` when either
        side has fewer than 2 finite frames; a temperature is ``None`` without 3 consecutive finite
        frames, the drift without 2 temperatures.
    """
    pred, ref = _frames(pred, "pred"), _frames(ref, "ref")
    numbers = np.asarray(numbers, dtype=np.int64)
    keys = (
        "hr_mae",
        "bond_w1_mean",
        "angle_w1_mean",
        "bond_w1",
        "angle_w1",
        "temperature_pred_K",
        "temperature_ref_K",
        "temperature_drift_K_per_ps",
    )
    if finite_frames(pred).shape[0] < 2 or finite_frames(ref).shape[0] < 2:
        return dict.fromkeys(keys)
    if bond_index is None:
        bond_index = _reference_bonds(ref, numbers)
    bonds = bond_length_w1(pred, ref, numbers, bond_index)
    angles = angle_w1(pred, ref, numbers, bond_index)
    temps = temperature_drift(pred, ref, numbers, dt_fs, stride)
    return {
        "hr_mae": _or_none(hr_mae(pred, ref)),
        "bond_w1_mean": _or_none(bonds.pop("mean")),
        "angle_w1_mean": _or_none(angles.pop("mean")),
        "bond_w1": {k: _or_none(v) for k, v in bonds.items()},
        "angle_w1": {k: _or_none(v) for k, v in angles.items()},
        "temperature_pred_K": _or_none(temps["pred_mean_K"]),
        "temperature_ref_K": _or_none(temps["ref_mean_K"]),
        "temperature_drift_K_per_ps": _or_none(temps["drift_K_per_ps"]),
    }
