"""Samplers of the next frame, behind a registry (DiffMD "Trajectory Sampling", Algorithm 1).

Every sampler integrates the reverse of the SDE dx = sigma^s dw (per-atom sigma) from s = 1 back to
s = eps, starting from the previous frame x(t) as the prior sample of x(t+1) (the paper's choice):

* ``ode``: the probability-flow ODE dx/ds = -1/2 sigma^(2s) score(x, s) with torchdiffeq
  (adaptive dopri5, rtol = atol = 1e-5 by default; the paper's sampler);
* ``euler_maruyama``: the reverse SDE dx = -sigma^(2s) score ds + sigma^s dw_bar, ``n_steps`` steps,
  the last one without noise;
* ``pc``: predictor-corrector of Algorithm 1, a reverse-diffusion (Euler-Maruyama) predictor and
  ``n_corrector`` Langevin corrector steps with step size 2 (snr |z| / |score|)^2 per molecule
  (Song et al. 2020b, Algorithm 4/5); the last predictor step is noise-free and no corrector follows
  it, so the denoised mean is returned (score_sde's ``denoise``).

``score_fn(x, s)`` takes positions (n_atoms, 3) Å and a scalar time tensor and returns the score
(n_atoms, 3) 1/Å. ``sde`` is the SDE object (:class:`diffmd.models.diffmd.sde.ConditionalVESDE`): the
samplers take the squared diffusion g^2 from ``sde.g2`` and never recompute it (score_sde's shape).
Each sampler returns (x(eps), number of score evaluations).

Batching over molecules and eps (the grid search validates every eps of a point in one process, the
yardstick rolls many starts out at once; issue 14):

* ``ode`` also takes ``eps`` as a tensor, one value per molecule (n_molecules,). With dopri5 (the default)
  and ``step_control: molecule`` (the default), every molecule of a batch integrates from s = 1 to its own
  eps with its own step size (:mod:`diffmd.models.diffmd.ode_batch`): each molecule's result is the one it
  gets alone (torchdiffeq's dopri5, to round-off), and the batch is compacted as molecules finish.
  ``step_control: batch`` (or another method) keeps torchdiffeq's single step size for the batch: every
  molecule on its own clock s_i(tau) = 1 - tau (1 - eps_i) (an exact change of variable per molecule), step
  control on the largest per-molecule RMS error (:func:`per_molecule_max_norm`). One molecule with a float
  ``eps`` always takes torchdiffeq's path, unchanged.
* :func:`ode_path` integrates once from s = 1 down to the smallest of several eps and returns x(eps) at
  each (the same ODE: the probability-flow trajectory from a prior passes through every s), for one-step
  predictions at every eps for the cost of the smallest one.
The code shape follows score_sde_pytorch's ``sampling.py`` (a registry of named samplers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffmd.graph import scatter_sum
from diffmd.models.diffmd.sde import ConditionalVESDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``restrict(atoms, mols)``: the score function of the sub-batch of those atoms and molecules.
Restrict = Callable[[torch.Tensor, torch.Tensor], ScoreFn]
#: Step-size control of the adaptive ODE over a batch (:func:`ode_sampler`).
STEP_CONTROLS = ("molecule", "batch")
_SAMPLERS: dict[str, Callable] = {}


def register_sampler(name: str):
    def deco(fn: Callable) -> Callable:
        _SAMPLERS[name] = fn
        return fn

    return deco


def get_sampler(name: str) -> Callable:
    if name not in _SAMPLERS:
        raise KeyError(f"unknown diffmd sampler {name!r}; known: {', '.join(sorted(_SAMPLERS))}")
    return _SAMPLERS[name]


def available_samplers() -> list[str]:
    return sorted(_SAMPLERS)


def _time(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d time on ``like``'s device, made there (a fill: no host-to-device copy, capturable)."""
    return torch.full((), value, dtype=like.dtype, device=like.device)


@register_sampler("ode")
def ode_sampler(
    score_fn: ScoreFn,
    x_init: torch.Tensor,
    sde: ConditionalVESDE,
    sigma: torch.Tensor,
    eps: float,
    batch_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    step_size: float | None = None,
    step_control: str = "molecule",
    restrict: Restrict | None = None,
    n_mol: int | None = None,
    compact: bool | None = None,
) -> tuple[torch.Tensor, int]:
    """Probability-flow ODE from s = 1 to ``eps`` (deterministic; ``generator`` unused).

    ``compact`` (per-molecule dopri5): drop finished molecules from the batch (None: on a CPU) or mask them
    (static shapes, a done-check every few iterations: the default elsewhere, e.g. CUDA);
    :func:`diffmd.models.diffmd.ode_batch.dopri5_per_molecule`.

    ``n_mol``: the molecules of ``batch_index`` (the caller knows it from the batch's shape; else it is read
    from ``batch_index``, a host sync).

    Stage times outside [eps, 1] are clamped into it (dopri5's first-step probe otherwise evaluates
    sigma^(2s) at s << 0, which overflows). ``eps`` as a tensor (n_molecules,): one eps per molecule of
    ``batch_index`` (module docstring). ``step_control`` (dopri5, more than one molecule or a tensor eps):
    ``molecule`` (default) gives every molecule its own clock and step size
    (:func:`diffmd.models.diffmd.ode_batch.dopri5_per_molecule`: each molecule's result is what it gives
    alone); ``batch`` is torchdiffeq's one step size for the batch (per-molecule clocks over a tensor eps,
    the largest per-molecule error). ``restrict(atoms, mols)``: the score function of a sub-batch, so the
    per-molecule solver evaluates only the molecules still integrating (without it, the whole batch).
    """
    if step_control not in STEP_CONTROLS:
        raise ValueError(f"ode sampler: step_control must be one of {STEP_CONTROLS}, got {step_control!r}")
    if n_mol is None:
        n_mol = 1 if batch_index is None or batch_index.numel() == 0 else int(batch_index.max()) + 1
    per_molecule = step_control == "molecule" and method == "dopri5" and step_size is None
    # one molecule with a float eps takes torchdiffeq's own path on a CPU (unchanged); where the solver masks
    # instead of compacting (off a CPU: no host reads per iteration) every batch takes the per-molecule solver
    masked = compact is False or (compact is None and x_init.device.type != "cpu")
    if per_molecule and (torch.is_tensor(eps) or n_mol > 1 or masked):
        return _ode_molecule_steps(score_fn, x_init, sde, sigma, eps, batch_index, n_mol, rtol, atol, restrict,
                                   compact)
    if torch.is_tensor(eps):
        return _ode_per_molecule_eps(score_fn, x_init, sde, sigma, eps, batch_index, rtol, atol, method, step_size,
                                     n_mol)
    from torchdiffeq import odeint

    nfe = 0
    log_sigma = torch.log(sigma)[:, None]

    def drift(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        # adaptive solvers probe stage times outside [eps, 1] (initial step selection, overshoot);
        # sigma^(2s) and the kernel variance are only meaningful inside it
        s = s.clamp(eps, 1.0)
        return -0.5 * sde.g2(s, log_sigma) * score_fn(x, s)

    times = torch.stack([_time(1.0, x_init), _time(eps, x_init)])
    options = {"step_size": step_size} if step_size is not None else None  # fixed-grid methods (rk4, euler)
    traj = odeint(drift, x_init, times, rtol=rtol, atol=atol, method=method, options=options)
    return traj[-1], nfe


def _molecule_drift(
    score_fn: ScoreFn, restrict: Restrict | None, sde: ConditionalVESDE, log_sigma: torch.Tensor,
    x_init: torch.Tensor, eps_atom: torch.Tensor,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:  # fmt: skip
    """The probability-flow drift dx/ds = -1/2 g^2 score for :func:`dopri5_per_molecule`: ``atoms`` / ``mols``
    the molecules still integrating (None: all), times clamped into [eps_atom, 1]. With ``restrict`` the score
    runs on that sub-batch; without, on the whole batch with the finished molecules at their start positions."""
    n = x_init.shape[0]

    def drift(t: torch.Tensor, x: torch.Tensor, atoms: torch.Tensor | None, mols: torch.Tensor | None) -> torch.Tensor:
        lo = eps_atom if atoms is None else eps_atom[atoms]
        s = torch.minimum(torch.maximum(t, lo), torch.ones_like(t)).to(x.dtype)
        ls = log_sigma if atoms is None else log_sigma[atoms]
        if atoms is None:
            score = score_fn(x, s)
        elif restrict is not None:
            score = restrict(atoms, mols)(x, s)
        else:
            xs = x_init.clone()
            xs[atoms] = x
            ss = torch.ones(n, dtype=x.dtype, device=x.device)
            ss[atoms] = s
            score = score_fn(xs, ss)[atoms]
        return -0.5 * sde.g2(s[:, None], ls) * score

    return drift


def _ode_molecule_steps(
    score_fn: ScoreFn, x_init: torch.Tensor, sde: ConditionalVESDE, sigma: torch.Tensor, eps: float | torch.Tensor,
    batch_index: torch.Tensor | None, n_mol: int, rtol: float, atol: float, restrict: Restrict | None,
    compact: bool | None = None,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """The probability-flow ODE from s = 1 to eps_i, every molecule on its own clock and step size."""
    from diffmd.models.diffmd.ode_batch import dopri5_per_molecule

    n = x_init.shape[0]
    if batch_index is None:
        batch_index = torch.zeros(n, dtype=torch.long, device=x_init.device)
    if not torch.is_tensor(eps) and not 0 < float(eps) < 1:  # a tensor of eps is checked where it is made
        raise ValueError(f"ode sampler: eps must lie in (0, 1), got {eps}")
    eps_mol = torch.as_tensor(eps, dtype=torch.float64, device=x_init.device).reshape(-1)
    if eps_mol.numel() == 1:
        eps_mol = eps_mol.expand(n_mol)
    if eps_mol.numel() != n_mol:
        raise ValueError(f"ode sampler: {eps_mol.numel()} eps values for {n_mol} molecules")
    drift = _molecule_drift(score_fn, restrict, sde, torch.log(sigma)[:, None], x_init, eps_mol[batch_index])
    t_start = torch.ones(n_mol, dtype=torch.float64, device=x_init.device)
    out, calls, _ = dopri5_per_molecule(drift, x_init, batch_index, t_start, eps_mol, rtol=rtol, atol=atol,
                                        compact=compact)
    return out, calls


def per_molecule_max_norm(
    batch_index: torch.Tensor, n_mol: int, n_atoms: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The solver's error norm over a batch of molecules: the largest per-molecule RMS (torchdiffeq's
    default is the RMS over the whole batch, which lets one molecule's error hide behind the others').

    torchdiffeq calls it on flattened tensors holding one or more (n_atoms, 3) blocks (the state, or
    the state and its derivative); each block is reduced per molecule, and the maximum is taken."""
    counts = scatter_sum(torch.ones(n_atoms, dtype=torch.float64, device=batch_index.device), batch_index, n_mol)

    def norm(tensor: torch.Tensor) -> torch.Tensor:
        blocks = tensor.reshape(-1, n_atoms, 3)
        sq = (blocks.to(torch.float64) ** 2).sum(-1)  # (blocks, n_atoms)
        per_mol = torch.stack([scatter_sum(b, batch_index, n_mol) for b in sq]) / (3 * counts)
        return per_mol.max().sqrt().to(tensor.dtype)

    return norm


def _ode_per_molecule_eps(
    score_fn: ScoreFn, x_init: torch.Tensor, sde: ConditionalVESDE, sigma: torch.Tensor, eps: torch.Tensor,
    batch_index: torch.Tensor | None, rtol: float, atol: float, method: str, step_size: float | None,
    n_mol: int | None = None,
) -> tuple[torch.Tensor, int]:  # fmt: skip
    """The probability-flow ODE with one eps per molecule, on the clocks s_i(tau) = 1 - tau (1 - eps_i)."""
    from torchdiffeq import odeint

    n = x_init.shape[0]
    if batch_index is None:
        batch_index = torch.zeros(n, dtype=torch.long, device=x_init.device)
    if n_mol is None:
        n_mol = int(batch_index.max()) + 1
    eps = eps.to(dtype=x_init.dtype, device=x_init.device).reshape(-1)
    if eps.numel() != n_mol:
        raise ValueError(f"ode sampler: {eps.numel()} eps values for {n_mol} molecules")
    if not bool(((eps > 0) & (eps < 1)).all()):
        raise ValueError(f"ode sampler: eps must lie in (0, 1), got {eps.tolist()}")
    span = (1.0 - eps)[batch_index]  # (n_atoms,): ds/dtau = -span
    log_sigma = torch.log(sigma)[:, None]
    nfe = 0

    def drift(tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        s = 1.0 - tau.clamp(0.0, 1.0) * span  # per atom, inside [eps_i, 1]
        # dx/dtau = dx/ds ds/dtau = (-1/2 g^2 score) (-(1 - eps_i))
        return (0.5 * span)[:, None] * sde.g2(s[:, None], log_sigma) * score_fn(x, s)

    times = torch.stack([_time(0.0, x_init), _time(1.0, x_init)])
    options: dict = {"step_size": step_size} if step_size is not None else {}
    if method in _ADAPTIVE_NORM:
        options["norm"] = per_molecule_max_norm(batch_index, n_mol, n)
    traj = odeint(drift, x_init, times, rtol=rtol, atol=atol, method=method, options=options or None)
    return traj[-1], nfe


def ode_path(
    score_fn: ScoreFn,
    x_init: torch.Tensor,
    sde: ConditionalVESDE,
    sigma: torch.Tensor,
    eps_values: list[float],
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    step_size: float | None = None,
    step_control: str = "molecule",
    batch_index: torch.Tensor | None = None,
    restrict: Restrict | None = None,
    n_mol: int | None = None,
    compact: bool | None = None,
) -> tuple[list[torch.Tensor], int]:
    """The probability-flow ODE from s = 1 down to min(``eps_values``), with x(eps) at every value (in the
    order given): one integration for every eps (module docstring); an adaptive solver is made to step onto
    every eps (``step_t``), so each value is as accurate as an integration ending there. With dopri5 and
    ``step_control: molecule`` every molecule of ``batch_index`` takes its own steps (:func:`ode_sampler`)."""
    from torchdiffeq import odeint

    values = [float(e) for e in eps_values]
    if not values or not all(0 < e < 1 for e in values):
        raise ValueError(f"ode_path: eps values must lie in (0, 1), got {values}")
    if step_control not in STEP_CONTROLS:
        raise ValueError(f"ode_path: step_control must be one of {STEP_CONTROLS}, got {step_control!r}")
    order = sorted(set(values), reverse=True)
    low = order[-1]
    nfe = 0
    log_sigma = torch.log(sigma)[:, None]
    if step_control == "molecule" and method == "dopri5" and step_size is None:
        from diffmd.models.diffmd.ode_batch import dopri5_per_molecule

        n = x_init.shape[0]
        if batch_index is None:
            batch_index = torch.zeros(n, dtype=torch.long, device=x_init.device)
        if n_mol is None:
            n_mol = int(batch_index.max()) + 1

        drift_m = _molecule_drift(score_fn, restrict, sde, log_sigma, x_init,
                                  torch.full((n,), low, dtype=torch.float64, device=x_init.device))  # fmt: skip
        ones = torch.ones(n_mol, dtype=torch.float64, device=x_init.device)
        t_out = torch.tensor(order, dtype=torch.float64, device=x_init.device).expand(n_mol, -1)
        traj, calls, _ = dopri5_per_molecule(drift_m, x_init, batch_index, ones, t_out, rtol=rtol, atol=atol,
                                             compact=compact)
        at = {e: traj[i] for i, e in enumerate(order)}
        return [at[e] for e in values], calls

    def drift(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        s = s.clamp(low, 1.0)
        return -0.5 * sde.g2(s, log_sigma) * score_fn(x, s)

    times = torch.tensor([1.0, *order], dtype=x_init.dtype, device=x_init.device)
    options: dict = {"step_size": step_size} if step_size is not None else {}
    if method in _ADAPTIVE_NORM and len(order) > 1:
        # the adaptive solver steps onto every eps, so each x(eps) is a step's end point (error-controlled),
        # not the dense-output interpolant between two (not error-controlled; off by ~4% on a stiff score)
        options["step_t"] = times[1:-1]
    traj = odeint(drift, x_init, times, rtol=rtol, atol=atol, method=method, options=options or None)
    at = {e: traj[i + 1] for i, e in enumerate(order)}
    return [at[e] for e in values], nfe


#: torchdiffeq's adaptive methods, whose step control takes a ``norm`` option.
_ADAPTIVE_NORM = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5")


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _reverse_step(
    score_fn: ScoreFn,
    x: torch.Tensor,
    s: float,
    ds: float,
    sde: ConditionalVESDE,
    log_sigma: torch.Tensor,
    generator: torch.Generator | None,
    add_noise: bool,
) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE from s to s - ds."""
    g2 = sde.g2(s, log_sigma)
    x_mean = x + g2 * score_fn(x, _time(s, x)) * ds
    if not add_noise:
        return x_mean
    return x_mean + torch.sqrt(g2 * ds) * _noise(x, generator)


@register_sampler("euler_maruyama")
def euler_maruyama_sampler(
    score_fn: ScoreFn,
    x_init: torch.Tensor,
    sde: ConditionalVESDE,
    sigma: torch.Tensor,
    eps: float,
    batch_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    n_steps: int = 100,
    n_mol: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Reverse SDE with ``n_steps`` uniform steps on [eps, 1]; the last step is noise-free (no host read)."""
    log_sigma = torch.log(sigma)[:, None]
    ds = (1.0 - eps) / n_steps
    x = x_init
    for k in range(n_steps):
        x = _reverse_step(
            score_fn, x, 1.0 - k * ds, ds, sde, log_sigma, generator, add_noise=k < n_steps - 1
        )
    return x, n_steps


def _langevin_step(
    score_fn: ScoreFn,
    x: torch.Tensor,
    s: float,
    snr: float,
    batch_index: torch.Tensor,
    generator: torch.Generator | None,
    n_mol: int | None = None,
) -> torch.Tensor:
    """Annealed Langevin corrector; step 2 (snr |z| / |score|)^2 with norms per molecule."""
    score = score_fn(x, _time(s, x))
    z = _noise(x, generator)
    if n_mol is None:
        n_mol = int(batch_index.max()) + 1
    grad_norm = scatter_sum((score * score).sum(-1), batch_index, n_mol).sqrt()
    noise_norm = scatter_sum((z * z).sum(-1), batch_index, n_mol).sqrt()
    step = (2 * (snr * noise_norm / grad_norm.clamp_min(1e-12)) ** 2)[batch_index][:, None]
    return x + step * score + torch.sqrt(2 * step) * z


@register_sampler("pc")
def pc_sampler(
    score_fn: ScoreFn,
    x_init: torch.Tensor,
    sde: ConditionalVESDE,
    sigma: torch.Tensor,
    eps: float,
    batch_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    n_steps: int = 100,
    n_corrector: int = 1,
    snr: float = 0.16,
    n_mol: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Algorithm 1: ``n_steps`` (N_P) predictor steps, each but the last followed by ``n_corrector`` correctors.

    The last predictor step (to s = ``eps``) is noise-free and no corrector follows it, so the sample
    returned is the denoised mean of the last reverse step, as score_sde's ``pc_sampler`` with
    ``denoise=True`` (it returns ``x_mean`` of its final predictor step). Before issue 13 a Langevin
    corrector ran after it and its noisy sample was returned. The count is exactly the score
    evaluations made: ``n_steps + (n_steps - 1) * n_corrector``.
    """
    if n_steps < 1 or n_corrector < 0:
        raise ValueError(f"pc sampler: need n_steps >= 1 and n_corrector >= 0, got {n_steps}, {n_corrector}")
    if batch_index is None:
        batch_index = torch.zeros(x_init.shape[0], dtype=torch.long, device=x_init.device)
    log_sigma = torch.log(sigma)[:, None]
    ds = (1.0 - eps) / n_steps
    x = x_init
    nfe = 0
    for k in range(n_steps):
        last = k == n_steps - 1
        x = _reverse_step(score_fn, x, 1.0 - k * ds, ds, sde, log_sigma, generator, add_noise=not last)
        nfe += 1
        if last:
            break  # x is the noise-free mean of the step to eps: the denoised sample
        s_next = 1.0 - (k + 1) * ds
        for _ in range(n_corrector):
            x = _langevin_step(score_fn, x, s_next, snr, batch_index, generator, n_mol)
            nfe += 1
    return x, nfe
