"""Noise schedule and samplers of Score Dynamics (Hsu et al., JCTC 2024).

The diffusion runs over the *normalised* displacement z0 = (x(t+k) - x(t)) / s (s in Å, a per-model
scale), one 3-vector per atom. Everything here is network-agnostic: a sampler gets a noise predictor
``eps_fn(z, t) -> eps`` (z (n_atoms, 3), t a 0-d tensor of diffusion time) and works on tensors only.

Variance-preserving linear schedule (Song et al. 2021, the "VP SDE"; DPM-Solver, Lu et al. 2022, Eq. 2):

    log alpha(t) = -(beta_1 - beta_0) t^2 / 4 - beta_0 t / 2,   sigma(t) = sqrt(1 - alpha(t)^2),
    z_t = alpha(t) z0 + sigma(t) eps,   eps ~ N(0, I),
    lambda(t) = log alpha(t) - log sigma(t)   (half the log-SNR),

with beta_0 = 0.1, beta_1 = 20, t in [t_min, 1]. Samplers:

* :func:`dpm_solver3`: singlestep DPM-Solver (Lu et al. 2022, Algorithms 1-2, Eqs. 3.7 and the third-
  order update of Appendix), noise prediction, steps uniform in lambda, with the "DPM-Solver-fast"
  order schedule that spends exactly ``nfe`` network evaluations (orders 3,...,3 then 2,1 / 1 / 2);
* :func:`ancestral`: plain DDPM ancestral sampling on a grid uniform in lambda (posterior q(z_t | z_s, z0)
  with z0 estimated from the noise prediction); the last evaluation returns the denoised z0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class VPSchedule:
    """Variance-preserving linear schedule beta(t) = beta_0 + t (beta_1 - beta_0), t in [t_min, T]."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0,
                 label: str = "score_dynamics"):  # fmt: skip
        """``label``: the model named in error messages."""
        if not 0 < beta_min < beta_max:
            raise ValueError(f"{label}: need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        if not 0 < t_min < t_max:
            raise ValueError(f"{label}: need 0 < t_min < t_max, got {t_min}, {t_max}")
        self.b0, self.b1, self.t_min, self.t_max = float(beta_min), float(beta_max), float(t_min), float(t_max)
        # sampling grids by (points, dtype, device): built once (two host reads), then a sampler reads nothing
        self._grids: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.b1 - self.b0) - 0.5 * t * self.b0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = log(alpha / sigma)."""
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2.0 * la))

    def t_of_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`lam` (closed form for the linear schedule; DPM-Solver Appendix)."""
        tmp = 2.0 * (self.b1 - self.b0) * torch.logaddexp(-2.0 * lam, torch.zeros_like(lam))
        delta = self.b0**2 + tmp
        return tmp / (torch.sqrt(delta) + self.b0) / (self.b1 - self.b0)

    def lambda_bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda(t_max), lambda(t_min)): the smallest and largest log-SNR/2 used."""
        ends = like.new_tensor([self.t_max, self.t_min])
        lam = self.lam(ends)
        return lam[0], lam[1]

    def time_grid(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` diffusion times from t_max down to t_min (n = 1: t_min alone), uniform in lambda, in ``like``'s
        dtype and device; built on the first call for that (n, dtype, device) and kept (a fixed-step sampler then
        reads nothing from the device). The returned tensor is shared: read it, never write it."""
        key = (int(n), like.dtype, like.device)
        if key not in self._grids:
            lo, hi = self.lambda_bounds(like)
            times = self.t_of_lambda(torch.linspace(float(lo), float(hi), n, dtype=like.dtype, device=like.device))
            times[0], times[-1] = self.t_max, self.t_min
            self._grids[key] = times
        return self._grids[key]

    def sample_t(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` diffusion times with lambda(t) uniform in [lambda(t_max), lambda(t_min)] (log-SNR uniform)."""
        lo, hi = self.lambda_bounds(like)
        u = torch.rand(n, dtype=like.dtype, device=like.device)
        return self.t_of_lambda(lo + (hi - lo) * u)

    def noise(self, z0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Forward noising z_t = alpha(t) z0 + sigma(t) eps; ``t`` broadcasts against ``z0``."""
        return self.alpha(t) * z0 + self.sigma(t) * eps


# --- DPM-Solver (singlestep, noise prediction) ------------------------------------------------------


def dpm_orders(nfe: int) -> list[int]:
    """Orders of the singlestep steps that spend exactly ``nfe`` evaluations ("DPM-Solver-fast")."""
    if nfe < 1:
        raise ValueError(f"score_dynamics: sampling_steps (network evaluations) must be >= 1, got {nfe}")
    if nfe < 3:
        return [1] * nfe
    k = nfe // 3 + 1
    if nfe % 3 == 0:
        return [3] * (k - 2) + [2, 1]
    return [3] * (k - 1) + [nfe % 3]


def _dpm_step(eps_fn: EpsFn, sch: VPSchedule, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, order: int):
    """One singlestep DPM-Solver update from time s to t < s (orders 1-3, r1 = 1/3, r2 = 2/3 for order 3)."""
    lam_s, lam_t = sch.lam(s), sch.lam(t)
    h = lam_t - lam_s
    eps_s = eps_fn(x, s)
    base = torch.exp(sch.log_alpha(t) - sch.log_alpha(s)) * x - sch.sigma(t) * torch.expm1(h) * eps_s
    if order == 1:
        return base
    r1 = 0.5 if order == 2 else 1.0 / 3.0
    s1 = sch.t_of_lambda(lam_s + r1 * h)
    u1 = torch.exp(sch.log_alpha(s1) - sch.log_alpha(s)) * x - sch.sigma(s1) * torch.expm1(r1 * h) * eps_s
    d1 = eps_fn(u1, s1) - eps_s
    if order == 2:
        return base - sch.sigma(t) / (2.0 * r1) * torch.expm1(h) * d1
    r2 = 2.0 / 3.0
    s2 = sch.t_of_lambda(lam_s + r2 * h)
    phi_r2 = torch.expm1(r2 * h) / (r2 * h) - 1.0
    u2 = (
        torch.exp(sch.log_alpha(s2) - sch.log_alpha(s)) * x
        - sch.sigma(s2) * torch.expm1(r2 * h) * eps_s
        - sch.sigma(s2) * (r2 / r1) * phi_r2 * d1
    )
    d2 = eps_fn(u2, s2) - eps_s
    return base - sch.sigma(t) / r2 * (torch.expm1(h) / h - 1.0) * d2


def dpm_solver3(eps_fn: EpsFn, x_T: torch.Tensor, sch: VPSchedule, nfe: int = 20) -> torch.Tensor:
    """Integrate the probability-flow ODE from t_max to t_min with ``nfe`` network evaluations.

    Deterministic given ``x_T`` (n_atoms, 3). Step boundaries are uniform in lambda; each step's order
    comes from :func:`dpm_orders`. Returns z at t_min (alpha ~ 1, sigma ~ 1e-2 for the default schedule).
    """
    orders = dpm_orders(nfe)
    times = sch.time_grid(len(orders) + 1, x_T)
    x = x_T
    for i, order in enumerate(orders):
        x = _dpm_step(eps_fn, sch, x, times[i], times[i + 1], order)
    return x


def ancestral(
    eps_fn: EpsFn, x_T: torch.Tensor, sch: VPSchedule, steps: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DDPM ancestral sampling with ``steps`` network evaluations, t_max -> t_min uniform in lambda.

    Step s -> t: z0_hat = (z - sigma_s eps) / alpha_s, then z_t ~ q(z_t | z_s, z0_hat) (Ho et al. 2020,
    Eq. 7, in continuous time: alpha_ts = alpha_t / alpha_s, sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2
    for the forward kernel t -> s). The last evaluation returns z0_hat at t_min.
    """
    if steps < 1:
        raise ValueError(f"score_dynamics: ancestral_steps must be >= 1, got {steps}")
    times = sch.time_grid(steps, x_T)
    x = x_T
    for i in range(steps):
        s = times[i]
        eps = eps_fn(x, s)
        z0 = (x - sch.sigma(s) * eps) / sch.alpha(s)
        if i == steps - 1:
            return z0
        t = times[i + 1]
        a_s, a_t, sig_s, sig_t = sch.alpha(s), sch.alpha(t), sch.sigma(s), sch.sigma(t)
        a_st = a_s / a_t  # forward kernel t -> s
        var_st = sig_s**2 - a_st**2 * sig_t**2
        mean = (a_st * sig_t**2 / sig_s**2) * x + (a_t * var_st / sig_s**2) * z0
        std = torch.sqrt(var_st * sig_t**2 / sig_s**2)
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        x = mean + std * noise
    return x


def gaussian_eps_fn(sch: VPSchedule, mean: torch.Tensor, std: torch.Tensor) -> EpsFn:
    """The exact noise predictor E[eps | z_t] for data z0 ~ N(mean, diag(std^2)) (used by the tests).

    z_t ~ N(alpha mean, alpha^2 std^2 + sigma^2), so
    E[eps | z_t] = sigma (z_t - alpha mean) / (alpha^2 std^2 + sigma^2).
    """

    def fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = sch.alpha(t), sch.sigma(t)
        return s * (z - a * mean) / (a**2 * std**2 + s**2)

    return fn


def fourier_features(t: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Gaussian random Fourier features of the diffusion time: t (n,) -> [sin, cos](2 pi t W) (n, 2 m)."""
    arg = 2.0 * math.pi * t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
