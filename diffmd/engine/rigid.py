"""Rigid-body motion of a step: the centre-of-mass velocity and the angular momentum of each molecule's per-step
displacement d = x(t+1) - x(t), measured and, where asked, removed (issue 24).

A learned step that does not conserve momentum lets whole-molecule translation and rotation grow along a rollout
(measured: 96% of an EGNN rollout's 3,784 K kinetic temperature). :func:`rigid_motion` splits d, per molecule,
into its rigid part V + ω × r (V the mass-weighted mean of d, ω = I⁻¹ L with L the angular momentum of d about
the centre of mass of x(t) and I the inertia tensor there; r = x(t) minus that centre) and the rest; removing the
rigid part leaves a step with zero linear and angular momentum and leaves a step that has none (an internal
motion) unchanged. The rollout records, per copy, the mean over steps of |V|, |L| and the share of the step's
kinetic energy in the rigid part, whether or not it removes it (``rollout.rigid_motion``).

Device ops only (a batched 3x3 solve without an error check: no host read), any mix of molecule sizes.
Units: d in Å/step, masses in u; |L| in u Å²/step; kinetic energies ½ Σ m d² in u Å²/step².
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Relative floor of the inertia tensor's diagonal (a linear molecule's or a single atom's I is singular): I +
#: eps * trace(I) / 3, so ω stays finite where a rotation axis has no moment of inertia.
INERTIA_FLOOR = 1e-9


@dataclass
class RigidParts:
    """One step's rigid-body motion per molecule (see :func:`rigid_motion`)."""

    com_velocity: torch.Tensor  # (M, 3) Å/step
    angular_momentum: torch.Tensor  # (M, 3) u Å²/step, about the centre of mass of x(t)
    omega: torch.Tensor  # (M, 3) rad/step
    rigid: torch.Tensor  # (N, 3) Å/step: V + ω × r per atom
    ke_rigid: torch.Tensor  # (M,) u Å²/step²: ½ Σ m |rigid|² (translation + rotation)
    ke_total: torch.Tensor  # (M,) u Å²/step²: ½ Σ m |d|²


def _per_molecule(values: torch.Tensor, mol: torch.Tensor, m: int) -> torch.Tensor:
    return torch.zeros((m,) + values.shape[1:], dtype=values.dtype, device=values.device).index_add_(0, mol, values)


def rigid_motion(x: torch.Tensor, d: torch.Tensor, mass: torch.Tensor, mol: torch.Tensor, m: int) -> RigidParts:
    """The rigid part of the displacement ``d`` (N, 3) at positions ``x`` (N, 3) for atoms of masses ``mass`` (N,)
    belonging to molecules ``mol`` (N,) of ``m``."""
    w = mass[:, None]
    total = _per_molecule(mass, mol, m)  # (M,)
    centre = _per_molecule(w * x, mol, m) / total[:, None]
    r = x - centre[mol]
    vel = _per_molecule(w * d, mol, m) / total[:, None]
    rel = d - vel[mol]
    ang = _per_molecule(w * torch.linalg.cross(r, rel), mol, m)  # (M, 3)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    rr = (r * r).sum(-1)[:, None, None] * eye - r[:, :, None] * r[:, None, :]  # (N, 3, 3)
    inertia = _per_molecule(mass[:, None, None] * rr, mol, m)  # (M, 3, 3)
    trace = inertia.diagonal(dim1=-2, dim2=-1).sum(-1)
    inertia = inertia + (INERTIA_FLOOR * trace / 3.0 + torch.finfo(x.dtype).tiny)[:, None, None] * eye
    omega = torch.linalg.solve_ex(inertia, ang.unsqueeze(-1))[0].squeeze(-1)  # no error check: no host read
    rigid = vel[mol] + torch.linalg.cross(omega[mol], r)
    ke_rigid = 0.5 * _per_molecule(mass * (rigid * rigid).sum(-1), mol, m)
    ke_total = 0.5 * _per_molecule(mass * (d * d).sum(-1), mol, m)
    return RigidParts(vel, ang, omega, rigid, ke_rigid, ke_total)


def conserves_momentum(model: object) -> bool:
    """Whether ``model``'s step conserves linear and angular momentum by construction: its class's
    ``conserves_momentum`` where it says (an energy-conserving head: True), else whether it is not a network the
    engine trains (closed-form references, physics oracles and force fields integrate forces that sum to zero)."""
    declared = getattr(model, "conserves_momentum", None)
    if declared is not None:
        return bool(declared)
    from diffmd.registry import uses_accelerator

    return not uses_accelerator(model)


def remove_rigid_motion(x: torch.Tensor, nxt: torch.Tensor, mass: torch.Tensor, mol: torch.Tensor,
                        m: int) -> tuple[torch.Tensor, RigidParts]:  # fmt: skip
    """The next positions ``nxt`` with the rigid part of the step ``nxt - x`` removed, and that part."""
    parts = rigid_motion(x, nxt - x, mass, mol, m)
    return nxt - parts.rigid, parts
