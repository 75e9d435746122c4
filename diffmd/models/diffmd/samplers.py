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
The code shape follows score_sde_pytorch's ``sampling.py`` (a registry of named samplers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffmd.graph import scatter_sum
from diffmd.models.diffmd.sde import ConditionalVESDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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
    return torch.tensor(value, dtype=like.dtype, device=like.device)


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
) -> tuple[torch.Tensor, int]:
    """Probability-flow ODE from s = 1 to ``eps`` (deterministic; ``generator`` unused).

    Stage times outside [eps, 1] are clamped into it (dopri5's first-step probe otherwise evaluates
    sigma^(2s) at s << 0, which overflows).
    """
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
) -> tuple[torch.Tensor, int]:
    """Reverse SDE with ``n_steps`` uniform steps on [eps, 1]; the last step is noise-free."""
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
) -> torch.Tensor:
    """Annealed Langevin corrector; step 2 (snr |z| / |score|)^2 with norms per molecule."""
    score = score_fn(x, _time(s, x))
    z = _noise(x, generator)
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
            x = _langevin_step(score_fn, x, s_next, snr, batch_index, generator)
            nfe += 1
    return x, nfe
