"""Cost of the yardstick's multi-start rollouts: M starts batched into one model step each, against M
single rollouts one after the other (issue: "M starts must cost well under M single rollouts").

For each model (built from its YAML, optionally with overrides, untrained: the cost of a step does not
depend on the weights) on a synthetic ethanol trajectory, this times ``steps`` rollout steps of

* one batched call of :func:`diffmd.engine.rollout.rollout_starts` with M starts, and
* M calls of :func:`diffmd.engine.rollout.rollout`, one per start,

after one untimed warm-up each, and writes seconds, frames per second and the ratio
(batched / sequential; < 1 means batching pays) to CSV and Markdown.

CLI::

    python -m benchmarks.multistart --models egnn diffmd --starts 16 --steps 20 --threads 1 \\
        --params '{"diffmd": {"n_layers": 2, ...}}' --out-csv results/tables/multistart_cost.csv \\
        --out-md results/tables/multistart_cost.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/multistart.py ...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

FIELDS = ("model", "starts", "steps", "batched_s", "sequential_s", "ratio", "speedup", "device", "threads")


def measure(model_name: str, params: dict[str, Any], n_starts: int, steps: int, device: str = "cpu") -> dict[str, Any]:
    """Time ``steps`` steps of M batched starts and of M single rollouts of one model."""
    import torch

    from diffmd.config import resolve_model_config, split_train_overrides
    from diffmd.data.pairs import Segment
    from diffmd.engine.rollout import rollout, rollout_starts, spread_starts
    from diffmd.registry import build_model
    from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth

    torch.manual_seed(0)
    model_params, _ = split_train_overrides(resolve_model_config(model_name, params))
    model_params.pop("stride", None)
    model = build_model(model_name, model_params, source=f"{model_name} (benchmark)").to(device).eval()
    n_frames = n_starts * 4 + steps + 20
    seg = Segment("ethanol", vibrating_truth(n_frames, seed=1), ETHANOL_Z, start=4, stop=n_frames - 1, dt_fs=0.5)
    starts = spread_starts(seg, n_starts, steps)
    rollout_starts(model, seg, starts[:2], 1, device=device)  # warm-up (lazy initialisation, caches)
    t0 = time.perf_counter()
    rollout_starts(model, seg, starts, steps, device=device)
    batched = time.perf_counter() - t0
    rollout(model, seg, int(starts[0]), 1, device=device)
    t0 = time.perf_counter()
    for s in starts:
        rollout(model, seg, int(s), steps, device=device)
    sequential = time.perf_counter() - t0
    return {"model": model_name, "starts": int(len(starts)), "steps": int(steps), "batched_s": batched,
            "sequential_s": sequential, "ratio": batched / sequential, "speedup": sequential / batched,
            "device": device, "threads": torch.get_num_threads()}  # fmt: skip


def render_md(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(FIELDS))
    head = (f"Multi-start rollouts: M starts batched into one model step vs M single rollouts "
            f"({platform.processor() or platform.machine()}, {rows[0]['device'] if rows else ''}). "
            "ratio = batched / sequential seconds (< 1: batching pays).\n\n")  # fmt: skip
    return head + frame.to_markdown(index=False, floatfmt=".4g") + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Batched multi-start rollouts vs one rollout per start.")
    p.add_argument("--models", nargs="+", default=["egnn", "diffmd"])
    p.add_argument("--starts", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--params", default="{}", help="JSON {model: {parameter overrides}}")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    a = p.parse_args(argv)
    import torch

    from diffmd.io import write_text

    torch.set_num_threads(a.threads)
    overrides = json.loads(a.params)
    rows = []
    for name in a.models:
        row = measure(name, overrides.get(name, {}), a.starts, a.steps, a.device)
        print(json.dumps(row), flush=True)
        rows.append(row)
    lines = [",".join(FIELDS)] + [",".join(str(r[k]) for k in FIELDS) for r in rows]
    write_text(a.out_csv, "\n".join(lines) + "\n")
    write_text(a.out_md, render_md(rows))
    ratios = ", ".join(f"{r['model']} {r['ratio']:.3f}" for r in rows)
    print(f"ratios (batched / sequential): {ratios}; mean {np.mean([r['ratio'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
