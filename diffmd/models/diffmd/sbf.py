"""Spherical Fourier-Bessel bases of the EGT (DiffMD, Wu & Li 2023, Eq. 10-11).

For an atom pair (a, b) at distance ``d`` (Å), with the angle ``phi`` between a velocity and the
connecting line and the dihedral ``theta`` between the planes (v_a, x_ab) and (v_b, x_ab)::

    e_omn = sqrt(2 / (c^3 j_{o+1}(z_on)^2)) * j_o(z_on d / c) * Y_om(phi, theta)

``j_o`` is the spherical Bessel function of degree ``o``, ``z_on`` its n-th positive root, ``c``
the interaction cutoff, ``Y_om`` the real spherical harmonic (polar angle ``phi``, azimuth
``theta``). Degrees ``o < n_degree`` (N_CBF), roots ``n < n_root`` (N_RBF) and orders
``0 <= m < n_order`` (N_SBF) with ``m <= o``; with the paper's counts (2, 2, 2) that is 6 bases.

Reproduction choices (see docs/reproduction_notes_diffmd.md):

* only the cosine-type real harmonics (m >= 0) are used: the dihedral of Eq. 28-31 is unsigned
  (``arccos`` of the normals), so sine-type harmonics would vanish identically or break reflection
  symmetry;
* the angles enter through their cosines and sines computed from eps-regularised norms
  (``|u|_eps = sqrt(|u|^2 + eps^2)``), so a zero velocity gives finite values and gradients;
* distances beyond the cutoff are clamped to ``c`` where every radial basis is zero, so the bases
  vanish continuously at and beyond the cutoff.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special
from torch import nn


def spherical_bessel_roots(n_degree: int, n_root: int) -> np.ndarray:
    """The first ``n_root`` positive roots of j_o for o < n_degree; (n_degree, n_root)."""
    roots = np.zeros((n_degree, n_root))
    for o in range(n_degree):
        grid = np.linspace(1e-3, math.pi * (n_root + o + 2), 20000)
        vals = special.spherical_jn(o, grid)
        found = []
        for k in np.nonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)[0]:
            found.append(optimize.brentq(lambda x, o=o: special.spherical_jn(o, x), grid[k], grid[k + 1]))
            if len(found) == n_root:
                break
        roots[o] = found
    return roots


def spherical_bessel(o_max: int, x: torch.Tensor) -> list[torch.Tensor]:
    """j_0(x) .. j_{o_max}(x) for x >= 0 (upward recurrence; power series below x = 1e-2)."""
    small = x < 1e-2
    xs = torch.where(small, torch.ones_like(x), x)
    out = [torch.sin(xs) / xs]
    if o_max >= 1:
        out.append(torch.sin(xs) / xs**2 - torch.cos(xs) / xs)
    for o in range(1, o_max):
        out.append((2 * o + 1) / xs * out[o] - out[o - 1])
    series = []
    for o in range(o_max + 1):
        dfact = float(math.prod(range(2 * o + 1, 0, -2)))  # (2o+1)!!, a Python constant (traceable, no numpy)
        series.append(x**o / dfact * (1 - x**2 / (2 * (2 * o + 3))))
    return [torch.where(small, s, j) for s, j in zip(series, out)]


def associated_legendre(
    o_max: int, cos: torch.Tensor, sin: torch.Tensor
) -> dict[tuple[int, int], torch.Tensor]:
    """P_o^m(cos phi) (Condon-Shortley phase) for 0 <= m <= o <= o_max, from cos and sin of phi."""
    p: dict[tuple[int, int], torch.Tensor] = {}
    for m in range(o_max + 1):
        dfact = float(math.prod(range(2 * m - 1, 0, -2))) if m > 0 else 1.0
        p[(m, m)] = (-1) ** m * dfact * sin**m
        if m + 1 <= o_max:
            p[(m + 1, m)] = cos * (2 * m + 1) * p[(m, m)]
        for o in range(m + 2, o_max + 1):
            p[(o, m)] = ((2 * o - 1) * cos * p[(o - 1, m)] - (o + m - 1) * p[(o - 2, m)]) / (o - m)
    return p


def real_sph_harm(
    pairs: list[tuple[int, int]], cos_phi: torch.Tensor, sin_phi: torch.Tensor, cos_theta: torch.Tensor
) -> torch.Tensor:
    """Orthonormal real spherical harmonics Y_om (cosine type) for each (o, m) in ``pairs``; (E, len(pairs)).

    ``cos(m theta)`` is built from ``cos theta`` by the Chebyshev recurrence, so only the cosine of
    the dihedral is needed.
    """
    o_max = max(o for o, _ in pairs)
    leg = associated_legendre(o_max, cos_phi, sin_phi)
    cheb = [torch.ones_like(cos_theta), cos_theta]
    for m in range(2, o_max + 1):
        cheb.append(2 * cos_theta * cheb[m - 1] - cheb[m - 2])
    cols = []
    for o, m in pairs:
        norm = math.sqrt((2 * o + 1) / (4 * math.pi) * math.factorial(o - m) / math.factorial(o + m))
        if m > 0:
            norm *= math.sqrt(2.0)
        cols.append(norm * leg[(o, m)] * cheb[m])
    return torch.stack(cols, dim=-1)


def safe_norm(u: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(|u|^2 + eps^2) over the last axis: positive, smooth, finite gradient at u = 0."""
    return torch.sqrt((u * u).sum(-1) + eps * eps)


def pair_geometry(
    x: torch.Tensor, v: torch.Tensor, edge_index: torch.Tensor, eps: float
) -> dict[str, torch.Tensor]:
    """Distance and angles of each edge (i = edge_index[0], j = edge_index[1]); all (E,).

    ``x_ij = x_j - x_i`` is the connecting line seen from i. ``cos_phi1`` is the angle between v_i and
    x_ij (Eq. 28), ``cos_phi2`` between v_j and x_ji (Eq. 29); ``cos_theta`` the (unsigned) dihedral
    between the planes (v_i, x_ij) and (v_j, x_ij) via their normals. Sines come from the norm of the
    cross products, so everything is a smooth function of invariants and zero velocities are safe.
    """
    i, j = edge_index[0], edge_index[1]
    rel = x[j] - x[i]
    dist = safe_norm(rel, eps)
    unit = rel / dist[:, None]
    vi, vj = v[i], v[j]
    ni_norm, nj_norm = safe_norm(vi, eps), safe_norm(vj, eps)
    cos_phi1 = (vi * unit).sum(-1) / ni_norm
    cos_phi2 = -(vj * unit).sum(-1) / nj_norm
    ci, cj = torch.cross(vi, unit, dim=-1), torch.cross(vj, unit, dim=-1)
    sin_phi1 = safe_norm(ci, eps) / ni_norm
    sin_phi2 = safe_norm(cj, eps) / nj_norm
    cos_theta = (ci * cj).sum(-1) / (safe_norm(ci, eps) * safe_norm(cj, eps))
    return {
        "dist": dist,
        "cos_phi1": cos_phi1,
        "sin_phi1": sin_phi1,
        "cos_phi2": cos_phi2,
        "sin_phi2": sin_phi2,
        "cos_theta": cos_theta,
    }


class SphericalFourierBessel(nn.Module):
    """e_SBF1 and e_SBF2 of Eq. 10-11 for every edge: two (E, n_basis) tensors."""

    def __init__(
        self, cutoff: float, n_degree: int = 2, n_root: int = 2, n_order: int = 2, eps: float = 1e-4
    ):
        super().__init__()
        if cutoff <= 0 or min(n_degree, n_root, n_order) < 1:
            raise ValueError("SBF: cutoff must be > 0 and the degree/root/order counts >= 1")
        self.cutoff, self.eps = float(cutoff), float(eps)
        self.pairs = [(o, m) for o in range(n_degree) for m in range(min(n_order, o + 1))]
        roots = spherical_bessel_roots(n_degree, n_root)
        jnext = np.stack([special.spherical_jn(o + 1, roots[o]) for o in range(n_degree)])
        norm = np.sqrt(2.0 / (cutoff**3 * jnext**2))
        self.register_buffer("roots", torch.as_tensor(roots, dtype=torch.float64))
        self.register_buffer("norm", torch.as_tensor(norm, dtype=torch.float64))
        self.n_degree, self.n_root = n_degree, n_root

    def _constants(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The roots and norms in ``like``'s dtype and device, cast once (the float64 buffers stay the state)."""
        key = (like.dtype, like.device, self.roots.device, self.roots.data_ptr(), self.norm.data_ptr())
        cached = self.__dict__.get("_cast")
        if cached is None or cached[0] != key:
            cached = (key, self.roots.to(like.dtype), self.norm.to(like.dtype))
            self.__dict__["_cast"] = cached
        return cached[1], cached[2]

    @property
    def n_basis(self) -> int:
        return len(self.pairs) * self.n_root

    def radial(self, dist: torch.Tensor) -> torch.Tensor:
        """Normalised j_o(z_on d / c) for d clamped to the cutoff; (E, n_degree, n_root)."""
        d = dist.clamp(max=self.cutoff)[:, None]
        roots, norm = self._constants(dist)
        cols = []
        for o in range(self.n_degree):
            arg = roots[o][None, :] * d / self.cutoff
            cols.append(spherical_bessel(o, arg)[o] * norm[o][None, :])
        return torch.stack(cols, dim=1)

    def forward(
        self, x: torch.Tensor, v: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        geo = pair_geometry(x, v, edge_index, self.eps)
        rad = self.radial(geo["dist"])  # (E, O, N)
        out = []
        for k in ("1", "2"):
            ylm = real_sph_harm(self.pairs, geo["cos_phi" + k], geo["sin_phi" + k], geo["cos_theta"])
            rad_sel = torch.stack([rad[:, o, :] for o, _ in self.pairs], dim=1)  # (E, P, N)
            out.append((rad_sel * ylm[:, :, None]).flatten(1))
        return out[0], out[1]
