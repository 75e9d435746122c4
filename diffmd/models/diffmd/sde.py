"""The acceleration-conditioned VE SDE of DiffMD (Eq. 5-9) and its denoising score matching loss.

Forward process for the next frame, per atom ``i`` (diffusion time ``s`` in [0, 1])::

    dx_i = sigma_i^s dw                                                         (Eq. 5)
    sigma_i = sigma_s                                      if |a_i|^2 >= a_bar
            = sigma_s * eta_sigma * (|a_i|^2 - a_bar)^2    if |a_i|^2 <  a_bar    (Eq. 6)
    x_i(s) | x_i(0) ~ N(x_i(0), var_i(s) I),  var_i(s) = (sigma_i^(2s) - 1) / (2 ln sigma_i)   (Eq. 9)

``a`` is the acceleration of the previous frame, a(t-1) (Å/step²). ``var`` is positive for every
sigma > 0 and tends to ``s`` as sigma -> 1; it is evaluated as ``s * expm1(2 s ln sigma) / (2 s ln
sigma)`` with a series near zero. ``sigma`` is floored at ``sigma_floor`` (Eq. 6 is exactly zero at
|a|^2 = a_bar, where ln sigma is undefined). The shape of the code (an SDE object with
``marginal_std`` / ``diffusion`` and a loss factory returning ``loss_fn(model, batch)``) follows
score_sde_pytorch's ``sde_lib.py`` and ``losses.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffmd import batch as B
from diffmd.graph import scatter_sum

ACCEL_NORMS = ("atom", "molecule")


def expm1_over_x(x: torch.Tensor) -> torch.Tensor:
    """(exp(x) - 1) / x, with the series 1 + x/2 + x^2/6 for |x| < 1e-4 (no 0/0)."""
    small = x.abs() < 1e-4
    xs = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 + x / 2 + x * x / 6, torch.expm1(xs) / xs)


@dataclass
class ConditionalVESDE:
    """Eq. 5-6 with per-atom noise base ``sigma`` (set per batch by :meth:`sigma_from_batch`)."""

    sigma_s: float = 1e-2
    a_bar: float = 1.0
    eta_sigma: float = 1.0
    accel_norm: str = "atom"
    sigma_floor: float = 1e-30
    #: Å per unit of the SDE: x = noise_scale * y with dy = sigma^s dw (1.0 = the paper as written)
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.accel_norm not in ACCEL_NORMS:
            raise ValueError(f"diffmd accel_norm must be one of {ACCEL_NORMS}, got {self.accel_norm!r}")
        if min(self.sigma_s, self.eta_sigma, self.sigma_floor, self.noise_scale) <= 0:
            raise ValueError("diffmd sigma_s, eta_sigma, sigma_floor and noise_scale must be > 0")

    def sigma_from_accel(self, acc: torch.Tensor, batch_index: torch.Tensor, n_mol: int) -> torch.Tensor:
        """Eq. 6: per-atom sigma (n_atoms,) from a(t-1) (n_atoms, 3); per molecule uses the mean |a|^2."""
        a2 = (acc * acc).sum(-1)
        if self.accel_norm == "molecule":
            counts = scatter_sum(torch.ones_like(a2), batch_index, n_mol)
            a2 = (scatter_sum(a2, batch_index, n_mol) / counts)[batch_index]
        low = self.sigma_s * self.eta_sigma * (a2 - self.a_bar) ** 2
        sigma = torch.where(a2 < self.a_bar, low, torch.full_like(a2, self.sigma_s))
        return sigma.clamp_min(self.sigma_floor)

    def sigma_from_batch(self, batch: B.Batch) -> torch.Tensor:
        return self.sigma_from_accel(batch[B.ACCELERATIONS], batch[B.BATCH], B.num_molecules(batch))

    @staticmethod
    def marginal_var(s: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Eq. 9 variance (sigma^(2s) - 1) / (2 ln sigma), Å²; broadcasts ``s`` against ``sigma``."""
        two_s_log = 2 * s * torch.log(sigma)
        return s * expm1_over_x(two_s_log)

    @classmethod
    def marginal_std(cls, s: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(cls.marginal_var(s, sigma))

    def kernel_std(self, s: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Standard deviation of the transition kernel in Å: noise_scale * sqrt(Eq. 9 variance)."""
        return self.noise_scale * self.marginal_std(s, sigma)

    @staticmethod
    def diffusion_sq(s: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """g(s)^2 = sigma^(2s) (Eq. 5), the derivative of :meth:`marginal_var` in ``s``."""
        return torch.exp(2 * s * torch.log(sigma))

    def g2(self, s: torch.Tensor | float, log_sigma: torch.Tensor) -> torch.Tensor:
        """The samplers' squared diffusion in Å² per unit s: noise_scale² sigma^(2s), from ``log_sigma``
        = ln sigma (n_atoms, 1). The one place the samplers get the noise from (a change of noise, e.g.
        of ``noise_scale``, lives here)."""
        return torch.exp(2 * s * log_sigma + 2 * math.log(self.noise_scale))


ScoreModel = Callable[[B.Batch, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def get_loss_fn(sde: ConditionalVESDE, train_eps: float = 0.1) -> Callable:
    """Denoising score matching of Eq. 8 with lambda(s) = var(s) (Song et al. 2020b).

    Returns ``loss_fn(score_model, batch, s=None, noise=None)``: ``score_model(batch, x_noisy, s_atom,
    sigma)`` gives the score (n_atoms, 3) in 1/Å; ``s`` (n_molecules,) and ``noise`` (n_atoms, 3) can be
    fixed for tests, otherwise s ~ U[train_eps, 1] per molecule and noise ~ N(0, I). The loss is
    ``mean_atoms sum_xyz |std * score + noise|^2`` (dimensionless).
    """
    if not 0 < train_eps < 1:
        raise ValueError(f"diffmd train_eps must lie in (0, 1), got {train_eps}")

    def loss_fn(
        score_model: ScoreModel,
        batch: B.Batch,
        s: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x0 = batch[B.TARGET_POSITIONS]
        n_mol = B.num_molecules(batch)
        if s is None:
            s = train_eps + (1 - train_eps) * torch.rand(n_mol, device=x0.device, dtype=x0.dtype)
        if noise is None:
            noise = torch.randn_like(x0)
        s_atom = s[batch[B.BATCH]]
        sigma = sde.sigma_from_batch(batch)
        std = sde.kernel_std(s_atom, sigma)[:, None]
        x_noisy = x0 + std * noise
        score = score_model(batch, x_noisy, s_atom, sigma)
        return ((std * score + noise) ** 2).sum(-1).mean()

    return loss_fn
