"""Coverage of 95% intervals for the mean of n values: the percentile bootstrap, BCa and Student's t.

Why :mod:`diffmd.stats` uses Student's t for the mean of fewer than ``SMALL_N`` values and BCa beyond:
draw ``--trials`` samples of n values from a normal and a lognormal (skewed, positive: like per-start
errors) distribution, build each interval, and count how often it contains the true mean.

    python -m benchmarks.interval_coverage --sizes 4 8 16 30 --trials 1000 --out-md coverage.md

With ``--runs DIR`` (a finished run root, e.g. runs/quick) it also prints, for every MD17 run there, the
ARMSE at ``--horizon-fs`` over its starts and the one-step RMSE over its test frames with the percentile
bootstrap (the method before) beside :func:`diffmd.stats.interval` (the method now).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

DISTRIBUTIONS = {
    "normal": (lambda rng, n: rng.normal(2.0, 1.0, n), 2.0),
    "lognormal (sigma 0.6)": (lambda rng, n: rng.lognormal(0.0, 0.6, n), float(np.exp(0.5 * 0.6**2))),
}


def coverage(sizes: Sequence[int], trials: int, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """One row per (distribution, n): the fraction of ``trials`` intervals that contain the true mean."""
    rows = []
    for name, (draw, mean) in DISTRIBUTIONS.items():
        for n in sizes:
            rng = np.random.default_rng(seed)
            hits = {"percentile": 0, "BCa": 0, "t": 0}
            for k in range(trials):
                x = draw(rng, n)
                for method in ("percentile", "BCa"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ci = st.bootstrap((x,), np.mean, n_resamples=n_boot, method=method,
                                          rng=np.random.default_rng(k)).confidence_interval  # fmt: skip
                    hits[method] += bool(ci.low <= mean <= ci.high)
                half = st.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)
                hits["t"] += bool(abs(x.mean() - mean) <= half)
            rows.append({"distribution": name, "n": n, **{k: v / trials for k, v in hits.items()}})
    return pd.DataFrame(rows)


def run_intervals(root: str, horizon_fs: float) -> pd.DataFrame:
    """Before/after intervals of every MD17 run under ``root`` (see the module docstring)."""
    from pathlib import Path

    from diffmd.engine.yardstick import _root_mean, per_start_rmsd
    from diffmd.rundir import load_rollout
    from diffmd.stats import interval

    def percentile(x, statistic=np.mean):
        if x.size < 2:
            return (np.nan, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = st.bootstrap((x,), statistic, n_resamples=2000, method="percentile",
                              rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
        return (ci.low, ci.high)

    rows = []
    for path in sorted(Path(root).glob("results/md17/*/*/seed1/rollout.npz")):
        ro = load_rollout(path)
        if ro.multi is None or ro.one_step is None:
            continue
        rmsd = per_start_rmsd(ro.multi)
        t = ro.stride * ro.dt_fs * np.arange(1, rmsd.shape[1] + 1)
        j = int(np.searchsorted(t, horizon_fs + 1e-9, side="right")) - 1
        armse = np.sqrt(np.mean(rmsd[:, : j + 1] ** 2, axis=1)) if j >= 0 else np.full(rmsd.shape[0], np.nan)
        armse = armse[np.isfinite(armse)]
        now = interval(armse)
        one = ro.one_step
        sq = ((one.predicted - one.target) ** 2).sum(-1).mean(-1)
        one_now = interval(sq, statistic=_root_mean)
        one_before = "[{:.3g}, {:.3g}]".format(*percentile(sq, _root_mean))
        rows.append({"molecule": path.parts[-4], "model": path.parts[-3], f"ARMSE @ {horizon_fs:g} fs": now.estimate,
                     "starts": now.n, "before (percentile)": "[{:.3g}, {:.3g}]".format(*percentile(armse)),
                     "now": f"[{now.low:.3g}, {now.high:.3g}] ({now.method})", "one-step RMSE": one_now.estimate,
                     "frames": one_now.n, "before (percentile) ": one_before,
                     "now ": f"[{one_now.low:.3g}, {one_now.high:.3g}] ({one_now.method})"})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.interval_coverage", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 30])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out-md", default=None, help="also write the table as Markdown")
    p.add_argument("--runs", default=None, help="a finished run root (runs/quick): its intervals before and after")
    p.add_argument("--horizon-fs", type=float, default=5.0, help="the ARMSE horizon of --runs")
    a = p.parse_args(argv)
    if min(a.sizes) < 2 or a.trials < 1:
        p.error("--sizes must be >= 2 and --trials >= 1")
    table = coverage(a.sizes, a.trials, a.n_boot)
    md = table.to_markdown(index=False, floatfmt=".3f")
    if a.runs:
        md += "\n\n" + run_intervals(a.runs, a.horizon_fs).to_markdown(index=False, floatfmt=".3g")
    print(md)
    if a.out_md:
        from diffmd.io import write_text

        write_text(a.out_md, f"Coverage of nominal 95% intervals for the mean ({a.trials} samples per row).\n\n{md}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
