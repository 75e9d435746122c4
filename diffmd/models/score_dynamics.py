"""Score Dynamics (Hsu et al., JCTC 2024): conditional diffusion over a large time step.

The model learns the transition x(t) -> x(t + k) for a stride of k frames as a conditional denoising
diffusion over the displacement dx = x(t+k) - x(t) (Å), normalised by a scale s (Å):
z0 = dx / s, conditioned on the current positions x(t) and the atom types (velocities optional, off
by default as in the original). The noise predictor eps_theta(z_t, t | x(t), Z) is a graph network on
the radius graph of the current frame:

* ``equivariant: false`` (the original): MeshGraphNets (Pfaff et al. 2021) processor, edge MLP and
  node MLP each with a residual and LayerNorm, sum aggregation; edge inputs are the bond vector
  r_ij = x_j - x_i, its length, the noised displaced bond d_ij = r_ij + s (z_j - z_i) and its length
  (the original's 8 edge inputs); node inputs the atom-type embedding and the noised displacement z_i
  (not in the original, whose nodes see only the species: without z_i the network cannot see, hence
  cannot predict, the noise's per-molecule mean). The diffusion time enters as in the original's
  ``embed_time``: Gaussian random Fourier features [sin, cos](2 pi t W), W ~ N(0, ``time_feature_scale``^2)
  (scale 1 as in LLNL graphite's GaussianRandomFourierFeatures; this repository used 16 before, issue 13:
  sampled displacements of RMS 0.74 Å against the data's 0.031 Å), then an MLP and a LayerNorm, *added*
  to the node embedding. Not equivariant: training rotates every sample by a random orthogonal matrix.
* ``equivariant: true``: the same processor on invariant features only (lengths and dot products of
  r_ij, d_ij, z_i, z_j), and an EGNN-style vector output
  eps_i = a(h_i) z_i + sum_j [b(m_ij) r_ij / |r_ij| + c(m_ij) (z_j - z_i)], E(3)-equivariant.

Training: noise-prediction MSE with lambda = log(alpha/sigma) drawn uniformly between the schedule's
bounds (:mod:`diffmd.models.score_dynamics_sampling`), on z0 = dx / s with s the RMS displacement, so the
loss is at unit scale by construction (the engine's ``loss_scale`` is not used). An exponential moving
average of the weights (``ema_decay``, 0.999 as the original's released run; its first update copies the
weights, as torch's AveragedModel in the original) lives in buffers, is updated by
:meth:`ScoreDynamics.after_optimizer_step` and is what sampling uses; ``loss`` trains the raw weights.

Rollout: start from N(0, I), ancestral sampling (``sampler: ancestral``, the default: its displacement
distribution matches the data's after short trainings, where the original's third-order DPM-Solver is
several times too wide) or DPM-Solver-3 (``sampler: dpm3``), then x(t+k) = x(t) + s z0. The bond check
resamples a molecule with a covalent bond off its nominal length r_cov,i + r_cov,j by more than
``bond_tolerance`` (relative), up to ``max_resamples`` times; a molecule still failing is rejected and
backed off: its displacement halved toward x(t) until the check passes (up to ``max_backoffs`` halvings),
else it stays at x(t) for this step. The original instead rewinds its rollout by 8 steps when a structure
fails; a per-step model cannot rewind the engine's rollout, so the back-off is the per-step analogue that
never accepts a failing sample. Everything is counted in :meth:`ScoreDynamics.rollout_stats`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffmd import batch as B
from diffmd.elements import MAX_Z, covalent_radius
from diffmd.graph import BOND_SCALE, complete_pairs, radius_edge_index, scatter_sum
from diffmd.models.score_dynamics_sampling import VPSchedule, ancestral, dpm_solver3, fourier_features
from diffmd.nn import AtomEmbedding, mlp
from diffmd.registry import TrajectoryModel, register_model

SAMPLERS = ("dpm3", "ancestral")
LOG = logging.getLogger(__name__)
MAX_BOND_WARNINGS = 10  # the bond check logs its first firings; rollout_stats counts all of them
#: rollout_stats() keys: denoiser evaluations; molecules resampled (per resample); rejected (every one of the
#: 1 + max_resamples samples failed the bond check); of those, backed off (halved displacement passes) or
#: held at x(t); held molecules whose x(t) itself fails the check.
STAT_KEYS = ("score_evals", "resamples", "rejected", "backoffs", "held", "input_failing")


def _mlp(n_in: int, hidden: int, n_out: int, layer_norm: bool = False) -> nn.Sequential:
    """Linear-SiLU-Linear(-LayerNorm), :func:`diffmd.nn.mlp`."""
    return mlp([n_in, hidden, n_out], layer_norm=layer_norm)


class MGNLayer(nn.Module):
    """One MeshGraphNets block: e_ij += LN(MLP[e_ij, h_i, h_j]); h_i += LN(MLP[h_i, sum_j e_ij])."""

    def __init__(self, hidden: int):
        super().__init__()
        self.edge = _mlp(3 * hidden, hidden, hidden, layer_norm=True)
        self.node = _mlp(2 * hidden, hidden, hidden, layer_norm=True)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """``mask`` (E, 1): 1 for the edges of the radius graph, 0 for the complete graph's others (their
        features are computed and never summed into a node: the sums are the radius graph's exactly)."""
        i, j = edge_index
        e = e + self.edge(torch.cat([e, h[i], h[j]], dim=-1))
        h = h + self.node(torch.cat([h, scatter_sum(e if mask is None else e * mask, i, h.shape[0])], dim=-1))
        return h, e


class Denoiser(nn.Module):
    """eps_theta(z_t, t | x, Z [, v]): per-atom noise prediction (n_atoms, 3) on a radius graph."""

    def __init__(
        self,
        hidden: int,
        layers: int,
        time_features: int,
        equivariant: bool,
        use_velocities: bool,
        time_feature_scale: float = 1.0,
    ):
        """``time_feature_scale``: std of the Gaussian random Fourier frequencies W ~ N(0, scale^2) of t."""
        super().__init__()
        self.equivariant, self.use_velocities = equivariant, use_velocities
        self.embed = AtomEmbedding(hidden)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", float(time_feature_scale) * torch.randn(time_features, generator=gen))
        if equivariant:
            n_node, n_edge = 1 + (2 if use_velocities else 0), 7
        else:
            n_node, n_edge = 3 + (3 if use_velocities else 0), 8
        self.node_in = _mlp(hidden + n_node, hidden, hidden, layer_norm=True)
        # the original's embed_time: Fourier features -> MLP -> LayerNorm, added to the atom embedding
        self.time_embed = _mlp(2 * time_features, hidden, hidden, layer_norm=True)
        self.edge_in = _mlp(n_edge, hidden, hidden, layer_norm=True)
        self.blocks = nn.ModuleList(MGNLayer(hidden) for _ in range(layers))
        if equivariant:
            self.self_weight = _mlp(hidden, hidden, 1 + (1 if use_velocities else 0))
            self.edge_weight = _mlp(hidden, hidden, 2)
        else:
            self.out = _mlp(hidden, hidden, 3)

    def forward(self, batch: B.Batch, z: torch.Tensor, t: torch.Tensor, scale: torch.Tensor,
                edge_index: torch.Tensor, cutoff: float | None = None) -> torch.Tensor:  # fmt: skip
        """``z`` (n_atoms, 3) noised normalised displacement; ``t`` (n_molecules,) diffusion time.
        ``cutoff``: ``edge_index`` is the complete graph and only its pairs closer than ``cutoff`` (Å) pass
        messages (the radius graph, with static shapes and no host read); None: ``edge_index`` is the graph."""
        pos, mol = batch[B.POSITIONS], batch[B.BATCH]
        i, j = edge_index
        r = pos[j] - pos[i]
        dz = z[j] - z[i]
        d = r + scale * dz
        r_len, d_len = r.norm(dim=-1, keepdim=True), d.norm(dim=-1, keepdim=True)
        mask = None if cutoff is None else (r_len < cutoff).to(pos.dtype)
        tf = fourier_features(t.to(pos.dtype), self.freqs)[mol]
        v = batch[B.VELOCITIES] / scale if self.use_velocities else None
        if self.equivariant:
            node = [z.norm(dim=-1, keepdim=True)]
            if v is not None:
                node += [v.norm(dim=-1, keepdim=True), (v * z).sum(-1, keepdim=True)]
            zi, zj = z[i], z[j]
            edge = [r_len, d_len, (r * d).sum(-1, keepdim=True) / (r_len * d_len + 1e-12),
                    (zi * zj).sum(-1, keepdim=True), (dz * r).sum(-1, keepdim=True) / r_len,
                    (zi * r).sum(-1, keepdim=True) / r_len, (zj * r).sum(-1, keepdim=True) / r_len]
        else:
            node = [z] + ([v] if v is not None else [])
            edge = [r, r_len, d, d_len]
        h = self.node_in(torch.cat([self.embed(batch[B.ATOMIC_NUMBERS])] + node, dim=-1)) + self.time_embed(tf)
        e = self.edge_in(torch.cat(edge, dim=-1))
        for block in self.blocks:
            h, e = block(h, e, edge_index, mask)
        if not self.equivariant:
            return self.out(h)
        a = self.self_weight(h)
        w = self.edge_weight(e)
        msg = w[:, :1] * r / r_len + w[:, 1:] * dz
        out = a[:, :1] * z + scatter_sum(msg if mask is None else msg * mask, i, z.shape[0])
        if v is not None:
            out = out + a[:, 1:] * v
        return out


def _forget_mirrors(module: nn.Module, incompatible: Any) -> None:
    """After ``load_state_dict``: the buffers may have changed, so their host mirrors are read again."""
    module._scale_set = False
    module._ema_n = None


def random_rotations(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``n`` Haar-random orthogonal 3x3 matrices (rotations and reflections), (n, 3, 3)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, dtype=dtype, device=device))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


class DisplacementDiffusion(TrajectoryModel):
    """The conditional diffusion over x(t+k) - x(t) with any denoiser network (module docstring): the VP schedule,
    the unit scaling of the displacement, the noise-prediction loss, the EMA of the weights, the fixed-step samplers
    and the bond check. A subclass builds its network with ``build_denoiser(schedule)``: a module called as
    ``denoiser(batch, z, t, scale, edge_index, cutoff) -> eps`` (n_atoms, 3), with an attribute ``use_velocities``
    (whether it reads v(t)); it may override :meth:`graph` and :meth:`molecule_structures` for its own graph.
    Registered subclasses: :class:`ScoreDynamics` (Hsu et al.'s MeshGraphNets denoiser) and
    ``diffmd_stochastic`` (DiffMD's EGT, :mod:`diffmd.models.diffmd_stochastic`)."""

    def __init__(
        self,
        build_denoiser: Callable[[VPSchedule], nn.Module],
        *,
        cutoff: float,
        random_rotation: bool,
        beta_min: float,
        beta_max: float,
        t_min: float,
        sampler: str,
        sampling_steps: int,
        ancestral_steps: int,
        displacement_scale: float | None,
        ema_decay: float | None,
        ema_warmup: bool,
        bond_check: bool,
        bond_tolerance: float,
        max_resamples: int,
        max_backoffs: int,
    ):
        super().__init__()
        label = self.label
        if sampler not in SAMPLERS:
            raise ValueError(f"{label}: unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        self.schedule = VPSchedule(beta_min, beta_max, t_min, label=label)
        self.cutoff, self.sampler, self.sampling_steps = float(cutoff), sampler, int(sampling_steps)
        self.ancestral_steps, self.random_rotation = int(ancestral_steps), bool(random_rotation)
        self.bond_check, self.bond_tolerance, self.max_resamples = bond_check, float(bond_tolerance), int(max_resamples)
        if max_resamples < 0 or max_backoffs < 0:
            raise ValueError(f"{label}: max_resamples and max_backoffs must be >= 0, got "
                             f"{max_resamples}, {max_backoffs}")  # fmt: skip
        self.max_backoffs = int(max_backoffs)
        self.denoiser = build_denoiser(self.schedule)
        # Å; 0 = not yet set: estimated from the first training batch unless displacement_scale is given.
        self.register_buffer("dx_scale", torch.tensor(float(displacement_scale or 0.0)))
        if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"{label}: ema_decay must be in [0, 1) or null, got {ema_decay}")
        self.ema_decay, self.ema_warmup = float(ema_decay or 0.0), bool(ema_warmup)
        # EMA copy of the denoiser's parameters, as buffers (in the checkpoint); parameter name -> buffer name
        self._ema_names: dict[str, str] = {}
        if self.ema_decay > 0:
            for name, param in self.denoiser.named_parameters():
                self._ema_names[name] = "ema__" + name.replace(".", "__")
                self.register_buffer(self._ema_names[name], param.detach().clone())
            self.register_buffer("ema_updates", torch.tensor(0, dtype=torch.long))
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._bond_warnings = 0
        # covalent radii by atomic number on the model's device (NaN where unknown; checked per molecule)
        table = torch.full((MAX_Z + 1,), float("nan"), dtype=torch.float64)
        for zz in range(1, MAX_Z + 1):
            table[zz] = covalent_radius(zz)
        self.register_buffer("radius_table", table, persistent=False)
        # host mirrors of two buffers, so a step never reads the device for them: whether dx_scale is set,
        # and the EMA's update count (None: not known yet; read once, e.g. after a checkpoint is loaded)
        self._scale_set = False
        self._ema_n: int | None = None
        self.register_load_state_dict_post_hook(_forget_mirrors)

    @property
    def label(self) -> str:
        """The registered name (for messages)."""
        return getattr(type(self), "name", type(self).__name__)

    # --- EMA of the weights -----------------------------------------------------------------------

    @property
    def conditions_on(self) -> str:
        """``"x"``: the sampled displacement depends on x(t) only (``use_velocities`` False, the original's
        choice), so its samples are scored against re-simulations from Maxwell-Boltzmann velocities."""
        return "xv" if getattr(self.denoiser, "use_velocities", False) else "x"

    def ema_decay_at(self, n: int) -> float:
        """The decay of update ``n`` (0-based): 0 at the first (a copy, as the original's AveragedModel),
        then ``ema_decay``, capped by (1 + n) / (10 + n) with ``ema_warmup`` (score_sde's num_updates rule)."""
        if n == 0:
            return 0.0
        return min(self.ema_decay, (1.0 + n) / (10.0 + n)) if self.ema_warmup else self.ema_decay

    def _ema_count(self) -> int:
        """The EMA's update count, from its host mirror (the buffer is read once, after a load)."""
        if self._ema_n is None:
            self._ema_n = int(self.ema_updates)
        return self._ema_n

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """ema <- d ema + (1 - d) theta for every denoiser parameter (d from :meth:`ema_decay_at`): two
        multi-tensor launches (``torch._foreach_*``), the same arithmetic as one ``mul_``/``add_`` per tensor."""
        if not self._ema_names:
            return
        n = self._ema_count()
        d = self.ema_decay_at(n)
        names = [name for name, _ in self.denoiser.named_parameters()]
        bufs = [getattr(self, self._ema_names[name]) for name in names]
        params = [p.detach().to(b.dtype) for p, b in zip(self.denoiser.parameters(), bufs)]
        torch._foreach_mul_(bufs, d)
        torch._foreach_add_(bufs, params, alpha=1.0 - d)
        self.ema_updates += 1
        self._ema_n = n + 1

    def ema_active(self) -> bool:
        """True when sampling uses the EMA weights: EMA on and updated at least once (else the raw weights)."""
        return bool(self._ema_names) and self._ema_count() > 0

    def ema_parameters(self) -> dict[str, torch.Tensor]:
        """The EMA weights under the denoiser's parameter names (for :func:`torch.func.functional_call`)."""
        return {name: getattr(self, buf) for name, buf in self._ema_names.items()}

    # --- pieces -----------------------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        if not self._scale_set:  # read once (then mirrored on the host)
            if float(self.dx_scale) <= 0:
                raise RuntimeError(f"{self.label}: displacement scale not set; train first or set displacement_scale")
            self._scale_set = True
        return self.dx_scale

    def compile_targets(self) -> list[nn.Module]:
        """The denoiser (sampling and the bond check stay eager)."""
        return [self.denoiser]

    def network_call(self, batch: B.Batch) -> torch.Tensor:
        """One denoiser evaluation (its ``forward`` samples a whole step): noise z = v(t), t = 0.5."""
        t = torch.full((B.num_molecules(batch),), 0.5, dtype=batch[B.POSITIONS].dtype,
                       device=batch[B.POSITIONS].device)  # fmt: skip
        return self.eps(batch, batch[B.VELOCITIES], t)

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """The complete graph of the molecule (messages pass on its pairs within ``cutoff``: the radius graph
        with static shapes); checks once that every element has a covalent radius (the bond check's)."""
        for z in set(int(k) for k in numbers):
            covalent_radius(z)
        return {"complete": complete_pairs(len(numbers))}

    def graph(self, batch: B.Batch) -> tuple[torch.Tensor, float | None]:
        """(edges, cutoff): the batch's complete graph with the cutoff applied as a mask in the denoiser, or,
        for a batch built by hand, the radius graph itself (host reads) and no mask."""
        complete = batch.get(B.STRUCTURE + "complete")
        if complete is not None:
            return complete, self.cutoff
        return radius_edge_index(batch[B.POSITIONS], batch[B.NUM_ATOMS], self.cutoff), None

    def eps(self, batch: B.Batch, z: torch.Tensor, t: torch.Tensor,
            graph: tuple[torch.Tensor, float | None] | None = None, ema: bool = False) -> torch.Tensor:  # fmt: skip
        """Noise prediction (n_atoms, 3); ``t`` scalar or (n_molecules,); ``graph``: :meth:`graph` of the batch
        (built here when None); ``ema``: with the EMA weights (where :meth:`ema_active`), else the raw ones."""
        edge_index, cutoff = self.graph(batch) if graph is None else graph
        t = t.reshape(-1).expand(B.num_molecules(batch)) if t.numel() == 1 else t
        args = (batch, z, t, self.scale().to(z.dtype), edge_index, cutoff)
        if ema and self.ema_active():
            return torch.func.functional_call(self.denoiser, self.ema_parameters(), args)
        return self.denoiser(*args)

    def _rotate(self, batch: B.Batch) -> B.Batch:
        """Random orthogonal transform per molecule of positions, targets and velocities (augmentation)."""
        pos = batch[B.POSITIONS]
        q = random_rotations(B.num_molecules(batch), pos.dtype, pos.device)[batch[B.BATCH]]
        out = dict(batch)
        for key in (B.POSITIONS, B.TARGET_POSITIONS, B.VELOCITIES):
            if key in batch:
                out[key] = torch.einsum("nij,nj->ni", q, batch[key])
        return out

    # --- training ---------------------------------------------------------------------------------
    def loss(self, batch: B.Batch) -> torch.Tensor:
        """E_{lambda ~ U, eps} |eps_theta(alpha z0 + sigma eps, t) - eps|^2 per coordinate (dimensionless)."""
        dx = batch[B.TARGET_POSITIONS] - batch[B.POSITIONS]
        if not self._scale_set and float(self.dx_scale) <= 0:  # the first batch sets it (one host read)
            with torch.no_grad():
                self.dx_scale.fill_(float(dx.pow(2).mean().sqrt().clamp_min(1e-6)))
        self._scale_set = True
        if self.training and self.random_rotation:
            batch = self._rotate(batch)
            dx = batch[B.TARGET_POSITIONS] - batch[B.POSITIONS]
        z0 = dx / self.dx_scale
        t_mol = self.schedule.sample_t(B.num_molecules(batch), z0)
        t_atom = t_mol[batch[B.BATCH]][:, None]
        noise = torch.randn_like(z0)
        z_t = self.schedule.noise(z0, t_atom, noise)
        return (self.eps(batch, z_t, t_mol) - noise).pow(2).mean()

    # --- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_displacement(
        self, batch: B.Batch, noise: torch.Tensor | None = None, sampler: str | None = None, ema: bool = True
    ) -> torch.Tensor:
        """One draw of dx (n_atoms, 3), Å, from ``noise`` (or fresh N(0, I)) with the configured sampler,
        with the EMA weights (``ema``, where :meth:`ema_active`) as the original samples with its EMA model."""
        sampler = sampler or self.sampler
        z = torch.randn_like(batch[B.POSITIONS]) if noise is None else noise
        graph = self.graph(batch)
        evals = 0

        def eps_fn(zz: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            nonlocal evals
            evals += 1
            return self.eps(batch, zz, tt, graph, ema=ema)

        if sampler == "dpm3":
            z0 = dpm_solver3(eps_fn, z, self.schedule, self.sampling_steps)
        elif sampler == "ancestral":
            z0 = ancestral(eps_fn, z, self.schedule, self.ancestral_steps)
        else:
            raise ValueError(f"{self.label}: unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        self._stats["score_evals"] += evals
        return z0 * self.scale()

    def bonds(self, batch: B.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Covalent bonds (2, n_bonds) and their nominal lengths r_cov,i + r_cov,j (n_bonds,), Å.

        Bonds: ``BOND_INDEX`` when present (the first frame's topology), else d < 1.2 (r_i + r_j) now.
        """
        pos, z = batch[B.POSITIONS], batch[B.ATOMIC_NUMBERS]
        radii = self.radius_table[z].to(pos.dtype)  # a lookup on the device (elements checked per molecule)
        if B.BOND_INDEX in batch:
            bonds = batch[B.BOND_INDEX]
        else:
            edges = radius_edge_index(pos, batch[B.NUM_ATOMS], 3.5)
            d = (pos[edges[0]] - pos[edges[1]]).norm(dim=-1)
            bonds = edges[:, d < BOND_SCALE * (radii[edges[0]] + radii[edges[1]])]
        return bonds, radii[bonds[0]] + radii[bonds[1]]

    def bad_molecules(self, batch: B.Batch, new_pos: torch.Tensor, bonds: tuple[torch.Tensor, torch.Tensor]):
        """(n_molecules,) bool: some bond is off its nominal length by more than ``bond_tolerance`` (relative).

        An absolute check (not relative to the current frame), so a rollout cannot drift step by step.
        """
        index, nominal = bonds
        new = (new_pos[index[0]] - new_pos[index[1]]).norm(dim=-1)
        bad_bond = ((new - nominal).abs() / nominal > self.bond_tolerance).to(new_pos.dtype)
        per_mol = scatter_sum(bad_bond, batch[B.BATCH][index[0]], B.num_molecules(batch))
        return per_mol > 0

    @torch.no_grad()
    def predict(self, batch: B.Batch) -> torch.Tensor:
        """x(t+k) (n_atoms, 3), Å: one diffusion sample per molecule, resampled while the bond check fails
        (up to ``max_resamples``); a molecule still failing is rejected and backed off (:meth:`back_off`)."""
        batch = B.inputs_only(batch)
        pos = batch[B.POSITIONS]
        dx = self.sample_displacement(batch)
        if not self.bond_check:
            return pos + dx
        bonds = self.bonds(batch)
        bad = self.bad_molecules(batch, pos + dx, bonds)
        tries = 0
        while bool(bad.any()) and tries < self.max_resamples:
            tries += 1
            self._stats["resamples"] += int(bad.sum())
            again = self.sample_displacement(batch)
            dx = torch.where(bad[batch[B.BATCH]][:, None], again, dx)
            bad = bad & self.bad_molecules(batch, pos + again, bonds)
        n_rejected = int(bad.sum())
        if n_rejected:
            self._stats["rejected"] += n_rejected
            dx = self.back_off(batch, dx, bad, bonds)
        if tries and self._bond_warnings < MAX_BOND_WARNINGS:
            self._bond_warnings += 1
            LOG.warning("%s bond check: %d resample(s) this step, %d molecule(s) rejected after %d "
                        "tries and backed off", self.label, tries, n_rejected, tries)  # fmt: skip
        return pos + dx

    def back_off(self, batch: B.Batch, dx: torch.Tensor, bad: torch.Tensor,
                 bonds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:  # fmt: skip
        """The displacement of each ``bad`` molecule halved toward x(t) until the bond check passes (at most
        ``max_backoffs`` halvings), else 0 (the molecule stays at x(t) this step). Counts ``backoffs``
        (returned with a halved displacement) and ``held`` (returned at x(t)); ``input_failing`` counts held
        molecules whose x(t) itself fails the check (a start frame outside the tolerance), the only case in
        which a failing geometry is returned."""
        pos, mol = batch[B.POSITIONS], batch[B.BATCH]
        factor = torch.ones(bad.shape[0], dtype=dx.dtype, device=dx.device)
        failing = bad.clone()
        for _ in range(self.max_backoffs):
            factor = torch.where(failing, 0.5 * factor, factor)
            failing = failing & self.bad_molecules(batch, pos + factor[mol][:, None] * dx, bonds)
            if not bool(failing.any()):
                break
        factor = torch.where(failing, torch.zeros_like(factor), factor)
        self._stats["backoffs"] += int((bad & ~failing).sum())
        self._stats["held"] += int(failing.sum())
        if bool(failing.any()):
            self._stats["input_failing"] += int((failing & self.bad_molecules(batch, pos, bonds)).sum())
        return factor[mol][:, None] * dx

    def forward(self, batch: B.Batch) -> torch.Tensor:
        return self.predict(batch)

    def rollout_stats(self) -> dict[str, float]:
        """Counters since the last call (:data:`STAT_KEYS`), then reset: denoiser evaluations (whole-batch
        calls), resampled molecules, rejected molecules (every sample failed), of which backed off / held."""
        out = dict(self._stats)
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        return out


@register_model("score_dynamics")
class ScoreDynamics(DisplacementDiffusion):
    """Conditional diffusion over x(t+k) - x(t); see the module docstring. Positions in Å.

    ``time_feature_scale`` is the std of the random Fourier frequencies of the diffusion time: 1.0 as
    in the original; 16.0 was this repository's earlier value (issue 13), kept reachable for comparison.
    """

    # its card (diffmd/models/cards.yaml): stride from the config; bf16 refused (tests/test_precision.py measured
    # its denoising loss 3% off and its gradient at cosine 0.97 from float32)
    #: values checked at parse time (diffmd.registry.check_params); the constructor enforces the same
    param_schema = {"sampler": {"enum": list(SAMPLERS)}}

    @property
    def symmetry(self) -> str:
        """O3 with the equivariant denoiser; none for the original's, which learns it by random rotations."""
        return "O3" if self.equivariant else "none"

    def __init__(
        self,
        hidden: int = 128,
        layers: int = 5,
        cutoff: float = 5.0,
        time_features: int = 64,
        time_feature_scale: float = 1.0,
        equivariant: bool = False,
        use_velocities: bool = False,
        random_rotation: bool = True,
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
        if cutoff <= 0 or hidden < 1 or layers < 0:
            raise ValueError(f"score_dynamics: bad size hidden={hidden}, layers={layers}, cutoff={cutoff}")
        if time_feature_scale <= 0:
            raise ValueError(f"score_dynamics: time_feature_scale must be > 0, got {time_feature_scale}")

        def build(schedule: VPSchedule) -> Denoiser:
            return Denoiser(hidden, layers, time_features, equivariant, use_velocities, time_feature_scale)

        super().__init__(
            build, cutoff=cutoff, random_rotation=random_rotation and not equivariant, beta_min=beta_min,
            beta_max=beta_max, t_min=t_min, sampler=sampler, sampling_steps=sampling_steps,
            ancestral_steps=ancestral_steps, displacement_scale=displacement_scale, ema_decay=ema_decay,
            ema_warmup=ema_warmup, bond_check=bond_check, bond_tolerance=bond_tolerance,
            max_resamples=max_resamples, max_backoffs=max_backoffs,
        )  # fmt: skip
        self.equivariant = bool(equivariant)  # symmetry: "O3", else "none" (the original denoiser learns it)
