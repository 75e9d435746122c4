"""Dormand-Prince 5(4) with one clock and one step-size controller per molecule, over a batch (issue 14).

torchdiffeq's ``dopri5`` steps a whole batch with one step size, chosen from one error norm over every
coordinate: a batch of molecules at different eps (or different start frames) then takes the steps of its
hardest member, and a molecule's result depends on which others share its batch. Here every molecule i
has its own time t_i, step h_i and accept/reject decision, and the algorithm per molecule is
torchdiffeq's ``dopri5`` as ``odeint(func, y0, [t_start_i, t_end_i])`` runs it on that molecule alone:

* the same Dormand-Prince-Shampine tableau, first-same-as-last, and 4th-order dense output at the end
  time (the last step may pass it, as in torchdiffeq, and the end value is interpolated);
* the same initial step (Hairer, Norsett & Wanner, Sec. II.4: two evaluations), error ratio
  RMS(err / (atol + rtol max(|y0|, |y1|))) over the molecule's own coordinates, and step-size update
  (safety 0.9, factors 0.2-10, exponent 1/5);
* decreasing time handled as torchdiffeq does (integrate u = -t with f_u = -f).

Each iteration evaluates the drift for the molecules still integrating only (the batch is compacted as
molecules finish), so on a device where cost grows with the number of atoms the batch costs what its
molecules cost one at a time, and where cost is a kernel-launch floor the batch takes the iterations of
its hardest molecule only. Results agree with one ``odeint`` call per molecule to floating-point
round-off (tests/test_ode_batch.py); the step sequences are the same, so the evaluation counts are too.

``drift(t, x, atoms, mols)`` is called with ``mols`` the active molecules and ``atoms`` their atoms (sorted
index tensors into the batch, or both ``None`` for the whole batch), ``x`` those atoms' positions and ``t``
one float64 time per atom; it returns dx/dt for those atoms. A molecule whose state, derivative or step
turns non-finite, whose step underflows or that takes ``max_steps`` step attempts stops with NaN positions
(a rollout counts it as diverged; torchdiffeq raises instead); the others go on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffmd.graph import scatter_sum

Drift = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

# Dormand-Prince-Shampine (torchdiffeq's _DORMAND_PRINCE_SHAMPINE_TABLEAU and DPS_C_MID).
_ALPHA = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_BETA = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_C_ERROR = (
    35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
    -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1.0 / 60.0,
)  # fmt: skip
_C_MID = (
    6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2,
)  # fmt: skip
_ORDER = 5
SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2
#: Iterations between the masked solver's host checks of whether every molecule is done.
CHECK_EVERY = 4


def _combine(k: list[torch.Tensor], coeffs: tuple[float, ...], dt_atom: torch.Tensor) -> torch.Tensor:
    """sum_j coeffs[j] k[j], times dt per atom (the k's are (n_atoms, 3) in the state's dtype)."""
    acc = None
    for c, kj in zip(coeffs, k):
        if c == 0.0:
            continue
        acc = kj * c if acc is None else acc + kj * c
    return acc * dt_atom[:, None]


def _solve_times(
    y0: torch.Tensor, t_start: torch.Tensor, t_end: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Start times (n_mol,) and output times (n_mol, n_out) as float64 on ``y0``'s device; ``flat``: ``t_end`` was
    one end time per molecule (the result is returned without the output axis)."""
    n_mol = int(t_start.numel())
    t_start = t_start.to(device=y0.device, dtype=torch.float64).reshape(-1)
    t_out = t_end.to(device=y0.device, dtype=torch.float64)
    flat = t_out.dim() == 1
    if flat:
        t_out = t_out[:, None]
    if t_out.dim() != 2 or t_out.shape[0] != n_mol or t_out.shape[1] < 1:
        raise ValueError(f"dopri5_per_molecule: {n_mol} start times but end times of shape {tuple(t_end.shape)}")
    return t_start, t_out, flat


def dopri5_per_molecule(
    drift: Drift,
    y0: torch.Tensor,
    batch_index: torch.Tensor,
    t_start: torch.Tensor,
    t_end: torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 100_000,
    compact: bool | None = None,
    check_every: int = CHECK_EVERY,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Integrate dx/dt = drift from ``t_start[i]`` to ``t_end[i]`` for every molecule i of ``batch_index``
    (module docstring). ``y0`` (n_atoms, 3); ``t_start`` (n_molecules,); ``t_end`` (n_molecules,) or
    (n_molecules, K): K output times per molecule, in the direction of integration, all but the last stepped
    onto exactly (torchdiffeq's ``step_t``), so each output is an error-controlled step's end point.

    ``compact``: drop finished molecules from the batch (the drift runs on the ones still integrating; shapes
    change, and every iteration reads the device ~10 times) or keep every molecule and mask the finished ones
    (:func:`_dopri5_masked`: static shapes, no host read but a done-check every ``check_every`` iterations).
    None: compaction on a CPU (where cost follows the atoms evaluated), masks elsewhere (a GPU, where cost is
    launches and syncs). The two take the same steps per molecule and agree to float round-off.

    Returns (y at the output times: (n_atoms, 3), or (K, n_atoms, 3) for a 2-D ``t_end``; the number of
    batched drift calls; the drift evaluations per molecule)."""
    if compact is None:
        compact = y0.device.type == "cpu"
    if not compact:
        return _dopri5_masked(drift, y0, batch_index, t_start, t_end, rtol, atol, max_steps, check_every)
    device, ydt = y0.device, y0.dtype
    n_atoms = y0.shape[0]
    f64 = torch.float64
    t_start, t_out, flat = _solve_times(y0, t_start, t_end)
    n_mol, n_out = t_out.shape
    if bool((t_out[:, 0] == t_start).any()):
        raise ValueError("dopri5_per_molecule: an end time equals its start time")
    sign = torch.where(t_out[:, 0] > t_start, 1.0, -1.0).to(f64)  # decreasing time: u = -t, f_u = -f(-u)
    u_out = sign[:, None] * t_out  # (n_mol, K), increasing along K
    if n_out > 1 and not bool((torch.diff(u_out, dim=1) > 0).all()):
        raise ValueError("dopri5_per_molecule: output times must be distinct and in the direction of integration")
    counts = scatter_sum(torch.ones(n_atoms, dtype=f64, device=device), batch_index, n_mol)
    calls = 0
    evals = torch.zeros(n_mol, dtype=torch.long, device=device)

    def f_u(u_atom: torch.Tensor, y: torch.Tensor, atoms: torch.Tensor | None, mols: torch.Tensor | None,
            sign_atom: torch.Tensor) -> torch.Tensor:  # fmt: skip
        nonlocal calls
        calls += 1
        return drift(sign_atom * u_atom, y, atoms, mols) * sign_atom.to(ydt)[:, None]

    def rms(x: torch.Tensor, bidx: torch.Tensor, cnt: torch.Tensor, m: int) -> torch.Tensor:
        """torchdiffeq's RMS norm of each molecule's coordinates: (m,) float64."""
        sq = (x.to(f64) ** 2).sum(-1)
        return (scatter_sum(sq, bidx, m) / (3 * cnt)).sqrt()

    sign_atom_all = sign[batch_index]
    u = sign * t_start  # (n_mol,) current time of each molecule
    y = y0.clone()
    # --- initial step (torchdiffeq _before_integrate + _select_initial_step, order 4) ---
    f = f_u(u[batch_index], y, None, None, sign_atom_all)
    evals += 1
    scale = atol + y.abs() * rtol
    d0 = rms(y / scale, batch_index, counts, n_mol)
    d1 = rms(f / scale, batch_index, counts, n_mol)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300)).abs()
    y1 = y + h0.to(ydt)[batch_index, None] * f
    f1 = f_u((u + h0)[batch_index], y1, None, None, sign_atom_all)
    evals += 1
    d2 = (rms((f1 - f) / scale, batch_index, counts, n_mol) / h0).abs()
    small = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = torch.where(small, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / torch.maximum(d1, d2).clamp_min(1e-300)) ** (1.0 / _ORDER)).abs()  # fmt: skip
    dt = torch.minimum(100 * h0, h1)
    # --- steps ---
    out = torch.full((n_out, *y0.shape), float("nan"), dtype=ydt, device=device)
    done = ~torch.isfinite(scatter_sum(f.to(f64).abs().sum(-1) + f1.to(f64).abs().sum(-1), batch_index, n_mol))
    next_out = torch.zeros(n_mol, dtype=torch.long, device=device)  # the next output time of each molecule
    attempts = torch.zeros(n_mol, dtype=torch.long, device=device)
    coef = [torch.zeros_like(y0) for _ in range(5)]  # dense output of each molecule's last accepted step
    t_lo = u.clone()  # that step's interval [t_lo, t_hi]
    t_hi = u.clone()
    all_atoms = torch.arange(n_atoms, device=device)
    while not bool(done.all()):
        active = (~done).nonzero().squeeze(1)
        if active.numel() == n_mol:
            atoms, bidx, cnt, m, mols = None, batch_index, counts, n_mol, None
        else:
            atoms = (~done)[batch_index].nonzero().squeeze(1)
            remap = torch.full((n_mol,), -1, dtype=torch.long, device=device)
            remap[active] = torch.arange(active.numel(), device=device)
            bidx, cnt, m, mols = remap[batch_index[atoms]], counts[active], active.numel(), active
        idx = all_atoms if atoms is None else atoms
        ya, fa = y[idx], f[idx]
        u0, h = u[active], dt[active]
        stuck = ~(u0 + h > u0)  # underflow in dt, or a non-finite step (torchdiffeq asserts): NaN, stop
        if bool(stuck.any()):
            done[active[stuck]] = True
            continue
        # step onto the next output time unless it is the last (torchdiffeq's step_t)
        grid = u_out[active, next_out[active].clamp(max=n_out - 1)]
        on_grid = (next_out[active] < n_out - 1) & (u0 < grid) & (grid < u0 + h)
        u1 = torch.where(on_grid, grid, u0 + h)
        h = torch.where(on_grid, grid - u0, h)
        sign_a = sign[active][bidx]
        h_atom = h.to(ydt)[bidx]
        k = [fa]
        yi = ya
        for alpha, beta in zip(_ALPHA, _BETA):
            ti = u1 if alpha == 1.0 else u0 + alpha * h
            yi = ya + _combine(k, beta, h_atom)
            k.append(f_u(ti[bidx], yi, atoms, mols, sign_a))
        evals[active] += 6
        attempts[active] += 1
        y_new, f_new = yi, k[-1]  # first same as last: c_sol == the last stage's beta
        err = _combine(k, _C_ERROR, h_atom)
        tol = atol + rtol * torch.maximum(ya.abs(), y_new.abs())
        ratio = rms(err / tol, bidx, cnt, m)
        finite = torch.isfinite(ratio) & torch.isfinite(scatter_sum(f_new.to(f64).abs().sum(-1), bidx, m))
        accept = (ratio <= 1) & finite
        # step-size update (torchdiffeq _optimal_step_size)
        dfac = torch.where(ratio < 1, torch.ones_like(ratio), torch.full_like(ratio, DFACTOR))
        factor = torch.minimum(torch.full_like(ratio, IFACTOR),
                               torch.maximum(SAFETY / ratio.clamp_min(1e-300) ** (1.0 / _ORDER), dfac))  # fmt: skip
        factor = torch.where(ratio == 0, torch.full_like(ratio, IFACTOR), factor)
        dt[active] = h * factor
        if bool(accept.any()):
            acc_atom = accept[bidx]
            y_mid = ya + _combine(k, _C_MID, h_atom)
            hk0, hk1 = h_atom[:, None] * k[0], h_atom[:, None] * k[-1]
            new_coef = [ya, hk0, hk1 - 4 * hk0 - 11 * ya - 5 * y_new + 16 * y_mid,
                        5 * hk0 - 3 * hk1 + 18 * ya + 14 * y_new - 32 * y_mid,
                        2 * (hk1 - hk0) - 8 * (y_new + ya) + 16 * y_mid]  # fmt: skip
            ia = idx[acc_atom]
            for j in range(5):
                coef[j][ia] = new_coef[j][acc_atom]
            y[ia] = y_new[acc_atom]
            f[ia] = f_new[acc_atom]
            acc_mols = active[accept]
            t_lo[acc_mols] = u0[accept]
            t_hi[acc_mols] = u1[accept]
            u[acc_mols] = u1[accept]
            # every output time the accepted step reached: interpolate there (4th-order dense output)
            while True:
                k_next = next_out[acc_mols]
                reach = k_next < n_out
                reach &= u[acc_mols] >= u_out[acc_mols, k_next.clamp(max=n_out - 1)]
                if not bool(reach.any()):
                    break
                mols_r = acc_mols[reach]
                rmask = torch.zeros(n_mol, dtype=torch.bool, device=device)
                rmask[mols_r] = True
                ra = rmask[batch_index].nonzero().squeeze(1)
                mol_of = batch_index[ra]
                target = u_out[mol_of, next_out[mol_of]]
                x = ((target - t_lo[mol_of]) / (t_hi[mol_of] - t_lo[mol_of])).to(ydt)[:, None]
                total = coef[0][ra] + x * coef[1][ra]
                xp = x
                for j in range(2, 5):
                    xp = xp * x
                    total = total + xp * coef[j][ra]
                out[next_out[mol_of], ra] = total
                next_out[mols_r] += 1
        done |= next_out >= n_out
        done[active[~finite]] = True  # NaN from here: the rollout counts the molecule as diverged
        done |= attempts >= max_steps
    return (out[0] if flat else out), calls, evals


def _dopri5_masked(
    drift: Drift, y0: torch.Tensor, batch_index: torch.Tensor, t_start: torch.Tensor, t_end: torch.Tensor,
    rtol: float, atol: float, max_steps: int, check_every: int,
) -> tuple[torch.Tensor, int, torch.Tensor]:  # fmt: skip
    """:func:`dopri5_per_molecule` without compaction: every iteration evaluates the drift on the whole batch
    (``atoms``/``mols`` None) and updates only the molecules still integrating (``torch.where``), so shapes are
    static and nothing reads the device but one done-check every ``check_every`` iterations (an iteration after
    the last molecule finished changes nothing). Each molecule's step sequence is the compacting solver's."""
    device, ydt = y0.device, y0.dtype
    n_atoms = y0.shape[0]
    f64 = torch.float64
    t_start, t_out, flat = _solve_times(y0, t_start, t_end)
    n_mol, n_out = t_out.shape
    sign = torch.where(t_out[:, 0] > t_start, 1.0, -1.0).to(f64)
    u_out = sign[:, None] * t_out
    counts = scatter_sum(torch.ones(n_atoms, dtype=f64, device=device), batch_index, n_mol)
    calls = 0
    evals = torch.zeros(n_mol, dtype=torch.long, device=device)
    sign_atom = sign[batch_index]
    sign_y = sign_atom.to(ydt)[:, None]

    def f_u(u_atom: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return drift(sign_atom * u_atom, y, None, None) * sign_y

    def rms(x: torch.Tensor) -> torch.Tensor:
        return (scatter_sum((x.to(f64) ** 2).sum(-1), batch_index, n_mol) / (3 * counts)).sqrt()

    u = sign * t_start
    y = y0.clone()
    f = f_u(u[batch_index], y)
    scale = atol + y.abs() * rtol
    d0, d1 = rms(y / scale), rms(f / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300)).abs()
    f1 = f_u((u + h0)[batch_index], y + h0.to(ydt)[batch_index, None] * f)
    evals += 2
    d2 = (rms((f1 - f) / scale) / h0).abs()
    small = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = torch.where(small, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / torch.maximum(d1, d2).clamp_min(1e-300)) ** (1.0 / _ORDER)).abs()  # fmt: skip
    dt = torch.minimum(100 * h0, h1)
    out = torch.full((n_out, *y0.shape), float("nan"), dtype=ydt, device=device)
    done = ~torch.isfinite(scatter_sum(f.to(f64).abs().sum(-1) + f1.to(f64).abs().sum(-1), batch_index, n_mol))
    next_out = torch.zeros(n_mol, dtype=torch.long, device=device)
    attempts = torch.zeros(n_mol, dtype=torch.long, device=device)
    coef = [torch.zeros_like(y0) for _ in range(5)]
    t_lo, t_hi = u.clone(), u.clone()
    atom_ids = torch.arange(n_atoms, device=device)
    last = n_out - 1
    iteration = 0
    while True:
        iteration += 1
        u0, h = u, dt
        done = done | (~done & ~(u0 + h > u0))  # underflow in dt, or a non-finite step: NaN, stop
        active = ~done
        grid = u_out.gather(1, next_out.clamp(max=last)[:, None]).squeeze(1)
        on_grid = (next_out < last) & (u0 < grid) & (grid < u0 + h)
        u1 = torch.where(on_grid, grid, u0 + h)
        h = torch.where(on_grid, grid - u0, h)
        h_atom = h.to(ydt)[batch_index]
        k = [f]
        yi = y
        for alpha, beta in zip(_ALPHA, _BETA):
            ti = u1 if alpha == 1.0 else u0 + alpha * h
            yi = y + _combine(k, beta, h_atom)
            k.append(f_u(ti[batch_index], yi))
        evals += 6 * active
        attempts += active
        y_new, f_new = yi, k[-1]
        err = _combine(k, _C_ERROR, h_atom)
        ratio = rms(err / (atol + rtol * torch.maximum(y.abs(), y_new.abs())))
        finite = torch.isfinite(ratio) & torch.isfinite(scatter_sum(f_new.to(f64).abs().sum(-1), batch_index, n_mol))
        accept = (ratio <= 1) & finite & active
        dfac = torch.where(ratio < 1, torch.ones_like(ratio), torch.full_like(ratio, DFACTOR))
        factor = torch.minimum(torch.full_like(ratio, IFACTOR),
                               torch.maximum(SAFETY / ratio.clamp_min(1e-300) ** (1.0 / _ORDER), dfac))  # fmt: skip
        factor = torch.where(ratio == 0, torch.full_like(ratio, IFACTOR), factor)
        dt = torch.where(active, h * factor, dt)
        acc_atom = accept[batch_index][:, None]
        y_mid = y + _combine(k, _C_MID, h_atom)
        hk0, hk1 = h_atom[:, None] * k[0], h_atom[:, None] * k[-1]
        new_coef = [y, hk0, hk1 - 4 * hk0 - 11 * y - 5 * y_new + 16 * y_mid,
                    5 * hk0 - 3 * hk1 + 18 * y + 14 * y_new - 32 * y_mid,
                    2 * (hk1 - hk0) - 8 * (y_new + y) + 16 * y_mid]  # fmt: skip
        coef = [torch.where(acc_atom, c_new, c_old) for c_new, c_old in zip(new_coef, coef)]
        y = torch.where(acc_atom, y_new, y)
        f = torch.where(acc_atom, f_new, f)
        t_lo = torch.where(accept, u0, t_lo)
        t_hi = torch.where(accept, u1, t_hi)
        u = torch.where(accept, u1, u)
        for _ in range(n_out):  # every output time the accepted step reached (at most one per pass)
            k_next = next_out.clamp(max=last)
            reach = accept & (next_out <= last) & (u >= u_out.gather(1, k_next[:, None]).squeeze(1))
            target = u_out.gather(1, k_next[:, None]).squeeze(1)
            x = ((target - t_lo) / (t_hi - t_lo)).to(ydt)[batch_index][:, None]
            total = coef[0] + x * coef[1]
            xp = x
            for j in range(2, 5):
                xp = xp * x
                total = total + xp * coef[j]
            k_atom = k_next[batch_index]
            out[k_atom, atom_ids] = torch.where(reach[batch_index][:, None], total, out[k_atom, atom_ids])
            next_out = next_out + reach.long()
        done = done | (next_out >= n_out) | (active & ~finite) | (attempts >= max_steps)
        if iteration % check_every == 0 and bool(done.all()):
            break
    return (out[0] if flat else out), calls, evals
