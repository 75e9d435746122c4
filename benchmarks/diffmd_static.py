"""Why DiffMD as published predicts a static molecule, and what one step of its machinery can do instead.

On an MD17-style split (default: the quick profile's ethanol, GFN2-xTB Langevin at 500 K, 0.5 fs) this
prints, every number from the data itself (no model is trained):

1. the one-step errors of static (x(t)), constant velocity (x(t) + v(t)) and the force floor
   (x(t) + v(t) + F dt^2/m, ``force_verlet``) on the validation pairs, and the RMS per-atom distance
   |x(t+1) - x(t)| that the paper's prior (x(t)) leaves to the reverse process;
2. the published kernel's std (Eq. 6 and 9) at the smallest diffusion time of the grid (s = eps = 0.1,
   also ``train_eps``) over the whole Table 3 grid (``diffmd.grid`` of config.yaml) and every atom of
   the training pairs: the noise the score network is trained to remove, against that distance;
3. the best any score step from x(t) along the data's own force can do: x(t) + alpha F dt^2/m with the
   alpha fitted on the training pairs (least squares), evaluated on the validation pairs. The paper's
   network sees only the noised x~(t+1) and v(t), never x(t), and sampling starts at x(t), so moving
   along the force is all a perfect score could add there, and it leaves the O(v) part of the step;
4. the probability-flow ODE dx/ds = -1/2 g_i^2(s) score with the Boltzmann score F/(k_B T) and the
   per-atom kernel variance 2 k_B T dt^2 / m_i (g_i^2 constant, var_i(s) = s 2 k_B T dt^2 / m_i),
   integrated with torchdiffeq from s = 1 to ``--eps``: from the prior x(t) + v(t) it is position
   Verlet, x(t) + v(t) + (1 - eps) F dt^2/m (the force floor); from the paper's x(t) it is
   x(t) + (1 - eps) F dt^2/m, the alpha = 1 point of item 3.

Usage (about 10 s on one core)::

    .venv/bin/python -m benchmarks.diffmd_static [--split data/splits/md17/ethanol.json] [--config config.yaml]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import torch
import yaml

from diffmd import batch as B
from diffmd.data.pairs import PairDataset, load_split, split_segments
from diffmd.models.diffmd.sde import ConditionalVESDE
from diffmd.models.diffmd_corrected import thermal_step_std


def rms_atom(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS per-atom distance (Å), sqrt(mean over atoms of |a - b|^2): the engine's ``val_one_step``."""
    return float(((a - b) ** 2).sum(-1).mean().sqrt())


def all_pairs(segs) -> B.Batch:
    data = PairDataset(segs)
    return data.batch(range(len(data)), dtype=torch.float64)


def published_min_std(batch: B.Batch, grid: dict[str, list[float]]) -> tuple[float, dict[str, float]]:
    """The smallest Eq. 9 kernel std (Å) at s = min(grid eps) over the grid's (sigma_s, a_bar, eta_sigma)
    and every atom of ``batch``, and the grid point where it occurs."""
    s = torch.tensor(min(grid["eps"]), dtype=torch.float64)
    best, where = math.inf, {}
    for sigma_s, a_bar, eta in itertools.product(grid["sigma_s"], grid["a_bar"], grid["eta_sigma"]):
        sde = ConditionalVESDE(sigma_s=sigma_s, a_bar=a_bar, eta_sigma=eta)
        std = float(sde.kernel_std(s, sde.sigma_from_batch(batch)).min())
        if std < best:
            best, where = std, {"sigma_s": sigma_s, "a_bar": a_bar, "eta_sigma": eta}
    return best, where


def boltzmann_ode(x_init: torch.Tensor, force_step: torch.Tensor, tau: torch.Tensor, eps: float) -> torch.Tensor:
    """Probability-flow ODE of the kernel var_i(s) = s tau_i^2 (tau_i^2 = 2 k_B T dt^2 / m_i) with the
    Boltzmann score F/(k_B T) = 2 force_step / tau^2 (force_step = F dt^2/m, Å), from s = 1 to ``eps``
    (dopri5, rtol = atol = 1e-10)."""
    from torchdiffeq import odeint

    score = 2.0 * force_step / (tau * tau)[:, None]
    g2 = (tau * tau)[:, None]  # d var_i / ds

    def drift(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * g2 * score

    times = torch.tensor([1.0, eps], dtype=x_init.dtype)
    return odeint(drift, x_init, times, rtol=1e-10, atol=1e-10, method="dopri5")[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="data/splits/md17/ethanol.json")
    parser.add_argument("--config", default="config.yaml", help="where diffmd.grid (Table 3) is read")
    parser.add_argument("--eps", type=float, default=1e-3, help="end of the probability-flow ODE (item 4)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        split = load_split(args.split)
        grid = (yaml.safe_load(Path(args.config).read_text()).get("diffmd") or {}).get("grid")
        if not grid or any(k not in grid for k in ("sigma_s", "a_bar", "eta_sigma", "eps")):
            raise ValueError(f"{args.config}: diffmd.grid needs sigma_s, a_bar, eta_sigma and eps")
        train_segs, val_segs = split_segments(split, "train"), split_segments(split, "val")
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seg = val_segs[0]
    if seg.forces is None or seg.temperature_K is None:
        print(f"error: {args.split}: the trajectory has no forces or no temperature", file=sys.stderr)
        return 1
    train, val = all_pairs(train_segs), all_pairs(val_segs)
    x, v, target, fstep = (val[k] for k in (B.POSITIONS, B.VELOCITIES, B.TARGET_POSITIONS, B.FORCE_STEP))
    step_fs = seg.dt_fs * seg.stride
    print(f"{args.split}: {len(train[B.NUM_ATOMS])} train / {len(val[B.NUM_ATOMS])} val pairs, "
          f"{seg.temperature_K:g} K, step {step_fs:g} fs")  # fmt: skip

    print("\n1. one-step errors on the validation pairs (RMS per atom, Å)")
    static, cv, floor = rms_atom(x, target), rms_atom(x + v, target), rms_atom(x + v + fstep, target)
    print(f"   static x(t)                      {static:.5f}   (= RMS |x(t+1) - x(t)|, what the paper's prior leaves)")
    print(f"   constant velocity x(t) + v(t)    {cv:.5f}")
    print(f"   force floor x(t) + v(t) + F dt²/m {floor:.5f}")

    print("\n2. the published kernel (Eq. 6, 9) at s = min eps of Table 3, over the whole grid and all train atoms")
    min_std, where = published_min_std(train, grid)
    print(f"   smallest kernel std {min_std:.4f} Å at {where} (eps {min(grid['eps'])}), "
          f"{min_std / static:.0f}x the x(t) -> x(t+1) distance")  # fmt: skip

    print("\n3. best step along the data's force from x(t): x(t) + alpha F dt²/m, alpha fitted on train")
    d_train = train[B.TARGET_POSITIONS] - train[B.POSITIONS]
    f_train = train[B.FORCE_STEP]
    alpha = float((d_train * f_train).sum() / (f_train * f_train).sum())
    print(f"   alpha {alpha:.3f}: val error {rms_atom(x + alpha * fstep, target):.5f} Å (static {static:.5f})")

    print(f"\n4. probability-flow ODE, Boltzmann score F/kT, per-atom variance 2kT dt²/m_i, s = 1 -> {args.eps:g}")
    tau = thermal_step_std(val[B.ATOMIC_NUMBERS], seg.temperature_K, step_fs)
    ode_cv = boltzmann_ode(x + v, fstep, tau, args.eps)
    ode_static = boltzmann_ode(x, fstep, tau, args.eps)
    verlet = x + v + (1 - args.eps) * fstep
    z = val[B.ATOMIC_NUMBERS]
    per_element = ", ".join(f"{sym} {float(tau[z == num][0]):.4f} Å" for sym, num in (("H", 1), ("C", 6), ("O", 8))
                            if bool((z == num).any()))  # fmt: skip
    print(f"   thermal std sqrt(2kT/m)·dt: {per_element}")
    print(f"   from x(t) + v(t): val error {rms_atom(ode_cv, target):.5f} Å; "
          f"max |x_ODE - (x + v + (1 - eps) F dt²/m)| = {float((ode_cv - verlet).abs().max()):.1e} Å")  # fmt: skip
    print(f"   from x(t) (the paper's prior): val error {rms_atom(ode_static, target):.5f} Å")
    return 0


if __name__ == "__main__":
    sys.exit(main())
