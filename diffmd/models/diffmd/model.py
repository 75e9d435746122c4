"""DiffMD (Wu & Li, AAAI 2023): EGT score network + acceleration-conditioned SDE + samplers.

Training (``loss``): denoising score matching (Eq. 8) on the next frame x(t+1), noised with the
per-atom kernel of Eq. 9 whose noise base comes from a(t-1) (Eq. 6). Prediction (``predict``):
start from x(t) as the prior sample of x(t+1) and integrate the reverse process from s = 1 to
``eps`` with the configured sampler (the paper uses the probability-flow ODE).

How the network is conditioned (our reading of the paper, see docs/reproduction_notes_diffmd.md):
the EGT runs on the noised next-frame positions x~(t+1)(s) with the previous velocity v(t) as the
velocity input and node features from Z, |v(t)|, s and the atom's noise level; its output
displacement x^L - x^0 is the score, divided by the kernel std when ``score_scaling="inverse_std"``
(score_sde's ``scale_by_sigma``), used as is when ``"none"``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from diffmd import batch as B
from diffmd.models.diffmd.egt import ATTENTION_GRAPHS, EGT
from diffmd.models.diffmd.samplers import available_samplers, get_sampler, ode_path
from diffmd.models.diffmd.sde import ACCEL_NORMS, ConditionalVESDE, get_loss_fn
from diffmd.registry import TrajectoryModel, register_model

SCORE_SCALINGS = ("inverse_std", "none")
ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5")


def sampler_kwargs(name: str, options: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Keyword arguments of sampler ``name``: ``sampler_options.<name>``, checked against its signature."""
    options = options or {}
    unknown = sorted(set(options) - set(available_samplers()))
    if unknown:
        raise ValueError(f"diffmd sampler_options: unknown sampler(s) {', '.join(unknown)}")
    kwargs = dict(options.get(name) or {})
    fixed = {"score_fn", "x_init", "sde", "sigma", "eps", "batch_index", "generator", "restrict", "n_mol"}
    allowed = set(inspect.signature(get_sampler(name)).parameters) - fixed
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise ValueError(
            f"diffmd sampler_options.{name}: unknown option(s) {', '.join(bad)}; allowed: {sorted(allowed)}"
        )
    return kwargs


@register_model("diffmd")
class DiffMD(TrajectoryModel):
    """See the module docstring; every argument is a key of ``config/models/diffmd.yaml``."""

    # role proposed, fit grid (``diffmd.grid``, paper Table 3: one training per (sigma_s, a_bar, eta_sigma), each
    # validated at every ``eps``; points named ``s<sigma_s>_a<a_bar>_h<eta_sigma>``; trained with train_eps = the
    # grid's smallest eps, which the sampler never goes below): its card, diffmd/models/cards.yaml
    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same
    param_schema = {
        "sampler": {"enum": list(available_samplers())},
        "sampler_options": {"type": ["object", "null"], "propertyNames": {"enum": list(available_samplers())},
                            "additionalProperties": {"type": "object"}},
        "score_scaling": {"enum": list(SCORE_SCALINGS)},
        "attention_graph": {"enum": list(ATTENTION_GRAPHS)},
        "accel_norm": {"enum": list(ACCEL_NORMS)},
        "eps": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    }

    def __init__(
        self,
        n_layers: int = 6,
        n_heads: int = 8,
        d_model: int = 128,
        d_ffn: int = 2048,
        dropout: float = 0.1,
        cutoff: float = 1.6,
        n_degree: int = 2,
        n_root: int = 2,
        n_order: int = 2,
        attention_graph: str = "full",
        angle_eps: float = 1e-4,
        n_time_freq: int = 8,
        sigma_s: float = 1e-2,
        a_bar: float = 1.0,
        eta_sigma: float = 1.0,
        accel_norm: str = "atom",
        sigma_floor: float = 1e-30,
        noise_scale: float = 1.0,
        train_eps: float = 0.1,
        eps: float = 0.2,
        sampler: str = "ode",
        sampler_options: dict[str, Any] | None = None,
        score_scaling: str = "inverse_std",
    ):
        super().__init__()
        if score_scaling not in SCORE_SCALINGS:
            raise ValueError(f"diffmd score_scaling must be one of {SCORE_SCALINGS}, got {score_scaling!r}")
        if not 0 < eps < 1:
            raise ValueError(f"diffmd eps must lie in (0, 1), got {eps}")
        self.egt = EGT(
            n_layers,
            n_heads,
            d_model,
            d_ffn,
            dropout,
            cutoff,
            n_degree,
            n_root,
            n_order,
            attention_graph,
            angle_eps,
            n_time_freq,
        )
        self.sde = ConditionalVESDE(sigma_s, a_bar, eta_sigma, accel_norm, sigma_floor, noise_scale)
        self.loss_fn = get_loss_fn(self.sde, train_eps)
        self.sampler_name, self.eps, self.score_scaling = sampler, float(eps), score_scaling
        self.sampler = get_sampler(sampler)
        self.sampler_options = sampler_kwargs(sampler, sampler_options)
        self._score_evals = 0

    @property
    def adaptive_solver(self) -> bool:
        """Adaptive steps (the ODE sampler with an adaptive method): samples are equivariant to the ODE tolerance
        only (the step control reads coordinate components); with per-molecule step control (the default)
        batch-independent to round-off."""
        return self.sampler_name == "ode" and self.sampler_options.get("method", "dopri5") in ADAPTIVE

    @property
    def eps_batchable(self) -> bool:
        """The ODE sampler: one integration down to the smallest eps passes every larger one (:meth:`predict_eps_path`),
        and a rollout's copies may each keep their own eps (``eps`` a tensor)."""
        return self.sampler_name == "ode"

    @torch.no_grad()
    def predict_eps_path(self, batch: B.Batch, eps_values: list[float]) -> list[torch.Tensor]:
        """x(t+1) at every smallest diffusion time of ``eps_values`` from one ODE integration down to the smallest
        (:func:`~diffmd.models.diffmd.samplers.ode_path`); the score evaluations count in :meth:`rollout_stats`."""
        inputs = B.inputs_only(batch)
        sigma, n = self.sde.sigma_from_batch(inputs), inputs[B.POSITIONS].shape[0]

        def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return self.score(inputs, x, s.expand(n), sigma)

        preds, nfe = ode_path(score_fn, inputs[B.POSITIONS], self.sde, sigma, eps_values, **self.sampler_options,
                              batch_index=inputs[B.BATCH], restrict=self._restrict(inputs, sigma),
                              n_mol=B.num_molecules(inputs))  # fmt: skip
        self._score_evals += nfe
        return preds

    def compile_targets(self) -> list[torch.nn.Module]:
        """The score network (the sampler's adaptive loop stays eager)."""
        return [self.egt]

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """The EGT's complete attention graph of the molecule, built once (``attention_graph: full``)."""
        return self.egt.molecule_structures(len(numbers))

    def score(
        self, batch: B.Batch, x: torch.Tensor, s_atom: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        """Score of x(t+1) at diffusion time s: x (N, 3) Å, s_atom and sigma (N,) -> (N, 3) 1/Å."""
        std = self.sde.kernel_std(s_atom, sigma)
        disp = self.egt(
            x, batch[B.VELOCITIES], batch[B.ATOMIC_NUMBERS], batch[B.NUM_ATOMS], s_atom, torch.log(std),
            self.egt.graph_of(batch, x),
        )
        if self.score_scaling == "inverse_std":
            return disp / std[:, None]
        return disp

    def forward(
        self, batch: B.Batch, x: torch.Tensor | None = None, s: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        """The score at positions ``x`` (default: x(t)) and diffusion time ``s``, (N, 3) 1/Å."""
        x = batch[B.POSITIONS] if x is None else x
        s_atom = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand(x.shape[0])
        return self.score(batch, x, s_atom, self.sde.sigma_from_batch(batch))

    def loss(
        self, batch: B.Batch, s: torch.Tensor | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eq. 8 with lambda(s) = var(s); ``s`` (n_molecules,) and ``noise`` (N, 3) may be fixed."""
        return self.loss_fn(self.score, batch, s=s, noise=noise)

    def sample(self, batch: B.Batch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """x(t+1) by the reverse process from x(t): (positions (N, 3) Å, score evaluations)."""
        sigma = self.sde.sigma_from_batch(batch)
        n = batch[B.POSITIONS].shape[0]

        def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return self.score(batch, x, s.expand(n), sigma)

        extra = {"restrict": self._restrict(batch, sigma)} if self.sampler_name == "ode" else {}
        return self.sampler(
            score_fn,
            batch[B.POSITIONS],
            self.sde,
            sigma,
            self.eps,
            batch_index=batch[B.BATCH],
            generator=generator,
            n_mol=B.num_molecules(batch),
            **self.sampler_options,
            **extra,
        )

    def _restrict(self, batch: B.Batch, sigma: torch.Tensor):
        """``restrict(atoms, mols)`` for the ODE sampler: the score of the sub-batch of those molecules (the EGT
        graph is within molecules, so a molecule's score does not depend on the others)."""

        def restrict(atoms: torch.Tensor, mols: torch.Tensor):
            sub = {B.VELOCITIES: batch[B.VELOCITIES][atoms], B.ATOMIC_NUMBERS: batch[B.ATOMIC_NUMBERS][atoms],
                   B.NUM_ATOMS: batch[B.NUM_ATOMS][mols]}  # fmt: skip
            sub_sigma = sigma[atoms]

            def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                return self.score(sub, x, s.expand(x.shape[0]), sub_sigma)

            return score_fn

        return restrict

    @torch.no_grad()
    def predict(self, batch: B.Batch) -> torch.Tensor:
        x, nfe = self.sample(B.inputs_only(batch))
        self._score_evals += nfe
        return x

    def rollout_stats(self) -> dict[str, float]:
        out = {"score_evals": self._score_evals}
        self._score_evals = 0
        return out
