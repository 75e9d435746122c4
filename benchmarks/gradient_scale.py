"""Share of gradient entries below Adam's eps, with the raw Å² loss against the engine's dimensionless one.

Adam divides each gradient entry by sqrt(v) + eps (eps = 1e-8): an entry much smaller than eps takes an
update ~g/eps instead of ~sign(g), so a loss in Å² (a one-step MSE is ~1e-6 Å² at 0.5 fs) leaves most of
several baselines' parameters all but frozen (issue 13). For each engine-trained model (its YAML's
size, freshly initialised, seed 0) this takes one batch of real training pairs and reports the loss and
the share of the nonzero gradient entries with |g| < eps for ``loss_scale`` = 1 (the old Å² loss) and for the
training pairs' acceleration scale (:func:`diffmd.engine.train.acceleration_scale`).

CLI::

    python -m benchmarks.gradient_scale --split data/splits/md17/ethanol.json --batch 200 \\
        --out-csv results/tables/gradient_scale.csv --out-md results/tables/gradient_scale.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/gradient_scale.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

FIELDS = ("model", "parameters", "loss_A2", "below_eps_A2", "loss_unit", "below_eps_unit", "loss_scale")
ADAM_EPS = 1e-8


def default_models() -> list[str]:
    """Models the engine trains directly (card ``fit: engine``) whose loss is the engine's default (one-step
    residual)."""
    from diffmd.cards import cards
    from diffmd.registry import TrajectoryModel, get_model_class

    return [name for name, c in sorted(cards().items())
            if c.fit == "engine" and get_model_class(name).loss is TrajectoryModel.loss]  # fmt: skip


def below_eps(model, batch, scale: float) -> tuple[float, float]:
    """(loss, share of the nonzero gradient entries with |g| < ADAM_EPS) at ``loss_scale = scale``."""
    import torch

    model.loss_scale = scale
    model.zero_grad(set_to_none=True)
    loss = model.loss(batch)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    grads = grads[grads != 0]  # exact zeros do not depend on the scale (embedding rows of absent elements, ...)
    return float(loss.detach()), float((grads.abs() < ADAM_EPS).double().mean()) if grads.numel() else 0.0


def measure(model_name: str, split: str, n_batch: int) -> dict[str, Any]:
    import torch

    from diffmd.config import resolve_model_config, split_train_overrides
    from diffmd.data.pairs import PairDataset, load_split, split_segments
    from diffmd.engine.train import acceleration_scale
    from diffmd.registry import build_model, count_parameters

    torch.manual_seed(0)
    params, _ = split_train_overrides(resolve_model_config(model_name, {}))
    params.pop("stride", None)
    model = build_model(model_name, params, source=f"{model_name} (benchmark)").train()
    data = PairDataset(split_segments(load_split(split), "train"))
    scale = acceleration_scale(data)
    batch = data.batch(np.arange(min(n_batch, len(data))))
    loss_a2, low_a2 = below_eps(model, batch, 1.0)
    loss_u, low_u = below_eps(model, batch, scale)
    return {"model": model_name, "parameters": count_parameters(model), "loss_A2": loss_a2, "below_eps_A2": low_a2,
            "loss_unit": loss_u, "below_eps_unit": low_u, "loss_scale": scale}  # fmt: skip


def render_md(rows: list[dict[str, Any]], split: str, n_batch: int) -> str:
    lines = [f"Gradient entries below Adam's eps ({ADAM_EPS:g}) on one batch of {n_batch} training pairs of "
             f"`{split}`, freshly initialised models at their YAML size (seed 0).", "",
             "| model | parameters | loss (Å²) | nonzero entries < eps (Å² loss) | loss (dimensionless) | share < eps "
             "(dimensionless) |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['loss_A2']:.3e} | {100 * r['below_eps_A2']:.1f}% | "
                     f"{r['loss_unit']:.3g} | {100 * r['below_eps_unit']:.1f}% |")  # fmt: skip
    if rows:
        scale = rows[0]["loss_scale"]
        lines += ["", f"Loss scale (RMS per-step acceleration of the training pairs): {scale:.4e} Å/step²."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", required=True)
    p.add_argument("--models", nargs="*", default=None,
                   help="default: the engine-trained models with the default loss")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    a = p.parse_args(argv)
    import torch

    from diffmd.io import write_text

    torch.set_num_threads(1)
    rows = [measure(m, a.split, a.batch) for m in (a.models or default_models())]
    for r in rows:
        print(f"{r['model']:>16}: Å² loss {r['loss_A2']:.3e}, {100 * r['below_eps_A2']:5.1f}% < eps; "
              f"dimensionless {r['loss_unit']:.3g}, {100 * r['below_eps_unit']:5.1f}% < eps", flush=True)  # fmt: skip
    csv = ",".join(FIELDS) + "\n" + "".join(",".join(str(r[f]) for f in FIELDS) + "\n" for r in rows)
    write_text(a.out_csv, csv)
    write_text(a.out_md, render_md(rows, a.split, a.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
