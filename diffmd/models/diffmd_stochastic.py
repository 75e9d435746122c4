"""DiffMD stochastic (``diffmd_stochastic``): DiffMD's score network as the denoiser of a conditional diffusion
over a large time step, conditioned on x(t) only (issue 24 item 3; docs/models_that_simulate.md).

Why: on the data's 0.5 fs frames the next frame is a deterministic function of x(t) and v(t), so a diffusion
there is a regressor in a diffusion's clothes (``diffmd_corrected``, docs/diffmd_corrected.md). A diffusion earns
its keep where the next frame is genuinely uncertain given what the model sees: here the displacement
dx = x(t+k) - x(t) over a stride of k frames (``diffmd_stochastic.stride.<dataset>`` in the config, 50 fs on MD17
as Score Dynamics) given x(t) and the atom types *only* (no velocity: the distribution of dx is then that of the
physics from x(t) with Maxwell-Boltzmann velocities, the regime of Hsu et al.'s Score Dynamics). Its samples are
scored by the proper scores of the simulation protocol (energy score, CRPS, energy distance against
``xtb_langevin`` re-simulations from Maxwell-Boltzmann velocities; :mod:`diffmd.engine.simulate`).

What is shared with ``score_dynamics`` (:class:`~diffmd.models.score_dynamics.DisplacementDiffusion`, one code
path): the VP schedule, z0 = dx / s with s the training pairs' RMS displacement (unit scale), the noise-prediction
loss with log-SNR-uniform times, the EMA of the weights used for sampling, the fixed-step samplers (ancestral,
DPM-Solver-3) and the bond check with resampling and back-off. What differs is the network:

* **DiffMD's EGT** (Wu & Li 2023, Eq. 10-17; :class:`~diffmd.models.diffmd.egt.EGT`) runs on the clean frame x(t)
  with the noised displacement s z_t (Å) as its vector input, so its spherical Fourier-Bessel bases see the angles
  between that displacement and every pair within ``cutoff`` (3 Å, 8 radial functions: the 1-3 Å geometry of
  ``diffmd_corrected`` and ``diffmd_energy``; the published 1.6 Å sees the bonds only), and each layer moves the
  atoms along it (Eq. 15-16). Node features: the atom type, |s z_t| and the diffusion time (its Fourier features
  and log sigma(t)). Its displacement x^L - x^0, divided by s, plus sigma(t) z_t (the Gaussian's denoiser) is the
  noise prediction eps_theta(z_t, t | x(t), Z).
  E(3)-equivariant (no rotation augmentation), batch-independent.
* Eq. 15's weights are signed (tanh, ``coord_weights: signed``) as in ``diffmd_corrected``; ``softmax`` is the
  paper's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffmd import batch as B
from diffmd.elements import covalent_radius
from diffmd.models.diffmd.egt import ATTENTION_GRAPHS, COORD_WEIGHTS, EGT
from diffmd.models.score_dynamics import SAMPLERS, DisplacementDiffusion
from diffmd.models.score_dynamics_sampling import VPSchedule
from diffmd.registry import register_model


class EGTDenoiser(nn.Module):
    """eps_theta(z_t, t | x(t), Z) (n_atoms, 3): the EGT on x(t) with vector input s z_t, output / s."""

    #: reads x(t) and the atom types only (the samples are scored against re-simulations from Maxwell-Boltzmann v)
    use_velocities = False

    def __init__(self, schedule: VPSchedule, **egt: Any):
        super().__init__()
        self.schedule = schedule
        self.egt = EGT(**egt)

    def forward(self, batch: B.Batch, z: torch.Tensor, t: torch.Tensor, scale: torch.Tensor,
                edge_index: torch.Tensor, cutoff: float | None = None) -> torch.Tensor:  # fmt: skip
        """``z`` (n_atoms, 3) noised normalised displacement; ``t`` (n_molecules,) diffusion time; ``scale`` s (Å);
        ``edge_index`` the EGT's attention graph (its SBF bases vanish beyond its own cutoff; ``cutoff`` unused).

        eps = sigma(t) z_t + (x^L - x^0) / s: the first term is E[eps | z_t] for z0 ~ N(0, I) (the displacement at
        unit scale, to second order), so the EGT learns what the data adds to a Gaussian (study ethanol, 50 fs,
        the quick size at initialisation: loss 0.50 for the first term alone, 0.83-0.96 with the EGT's)."""
        t_atom = t.to(z.dtype)[batch[B.BATCH]]
        sigma = self.schedule.sigma(t_atom)
        disp = self.egt(batch[B.POSITIONS], scale * z, batch[B.ATOMIC_NUMBERS], batch[B.NUM_ATOMS], t_atom,
                        torch.log(sigma), edge_index)  # fmt: skip
        return sigma[:, None] * z + disp / scale


@register_model("diffmd_stochastic")
class DiffMDStochastic(DisplacementDiffusion):
    """See the module docstring; every argument is a key of ``diffmd/models/configs/diffmd_stochastic.yaml``."""

    # its card (diffmd/models/cards.yaml): role proposed, fit engine, stride from the config
    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same
    param_schema = {
        "sampler": {"enum": list(SAMPLERS)},
        "attention_graph": {"enum": list(ATTENTION_GRAPHS)},
        "coord_weights": {"enum": list(COORD_WEIGHTS)},
        "cutoff": {"type": "number", "exclusiveMinimum": 0},
        "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "bond_tolerance": {"type": "number", "exclusiveMinimum": 0},
        "sampling_steps": {"type": "integer", "minimum": 1},
        "ancestral_steps": {"type": "integer", "minimum": 1},
    }

    def __init__(
        self,
        n_layers: int = 6,
        n_heads: int = 8,
        d_model: int = 128,
        d_ffn: int = 2048,
        dropout: float = 0.1,
        cutoff: float = 3.0,
        n_degree: int = 2,
        n_root: int = 4,
        n_order: int = 2,
        attention_graph: str = "full",
        angle_eps: float = 1e-4,
        n_time_freq: int = 8,
        coord_weights: str = "signed",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        t_min: float = 1e-3,
        sampler: str = "ancestral",
        sampling_steps: int = 60,
        ancestral_steps: int = 50,
        displacement_scale: float | None = None,
        ema_decay: float | None = 0.999,
        ema_warmup: bool = True,
        bond_check: bool = True,
        bond_tolerance: float = 0.3,
        max_resamples: int = 3,
        max_backoffs: int = 4,
    ):
        if not cutoff > 0 or not 0 <= dropout < 1:
            raise ValueError(f"diffmd_stochastic: need cutoff > 0 and 0 <= dropout < 1, got {cutoff}, {dropout}")
        if sampling_steps < 1 or ancestral_steps < 1:
            raise ValueError(f"diffmd_stochastic: sampling_steps and ancestral_steps must be >= 1, got "
                             f"{sampling_steps}, {ancestral_steps}")  # fmt: skip
        if not bond_tolerance > 0:
            raise ValueError(f"diffmd_stochastic: bond_tolerance must be > 0, got {bond_tolerance}")
        egt = dict(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_ffn=d_ffn, dropout=dropout, cutoff=cutoff,
                   n_degree=n_degree, n_root=n_root, n_order=n_order, attention_graph=attention_graph,
                   angle_eps=angle_eps, n_time_freq=n_time_freq, coord_weights=coord_weights)  # fmt: skip

        def build(schedule: VPSchedule) -> EGTDenoiser:
            return EGTDenoiser(schedule, **egt)

        super().__init__(
            build, cutoff=cutoff, random_rotation=False, beta_min=beta_min, beta_max=beta_max, t_min=t_min,
            sampler=sampler, sampling_steps=sampling_steps, ancestral_steps=ancestral_steps,
            displacement_scale=displacement_scale, ema_decay=ema_decay, ema_warmup=ema_warmup, bond_check=bond_check,
            bond_tolerance=bond_tolerance, max_resamples=max_resamples, max_backoffs=max_backoffs,
        )  # fmt: skip

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """The EGT's complete attention graph of the molecule (``attention_graph: full``); checks once that every
        element has a covalent radius (the bond check's)."""
        for z in set(int(k) for k in numbers):
            covalent_radius(z)
        return self.denoiser.egt.molecule_structures(len(numbers))

    def graph(self, batch: B.Batch) -> tuple[torch.Tensor, float | None]:
        """(the EGT's attention graph of x(t), None): the batch's prebuilt complete graph where it has one."""
        return self.denoiser.egt.graph_of(batch, batch[B.POSITIONS]), None


__all__ = ["DiffMDStochastic", "EGTDenoiser"]
