"""Coverage of 95% intervals for the mean of n values: the percentile bootstrap, BCa and Student's t.

Why :mod:`diffmd.stats` uses Student's t for the mean of fewer than ``SMALL_N`` values and BCa beyond:
draw ``--trials`` samples of n values from a normal and a lognormal (skewed, positive: like per-start
errors) distribution, build each interval, and count how often it contains the true mean.

    python -m benchmarks.interval_coverage --sizes 4 8 16 30 --trials 1000 --out-md coverage.md
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.interval_coverage", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 30])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out-md", default=None, help="also write the table as Markdown")
    a = p.parse_args(argv)
    if min(a.sizes) < 2 or a.trials < 1:
        p.error("--sizes must be >= 2 and --trials >= 1")
    table = coverage(a.sizes, a.trials, a.n_boot)
    md = table.to_markdown(index=False, floatfmt=".3f")
    print(md)
    if a.out_md:
        from diffmd.io import write_text

        write_text(a.out_md, f"Coverage of nominal 95% intervals for the mean ({a.trials} samples per row).\n\n{md}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
