"""How equilibrated is the ``xtb`` source's data? Per-bond-type kinetic temperatures over seeds or over windows.

Study (docs/data_equilibrium.md), one trajectory per seed with the profile's settings and overrides::

    python -m benchmarks.equilibration seeds --molecule ethanol --profile quick --seeds 1-8
    python -m benchmarks.equilibration seeds --molecule ethanol --profile quick --seeds 1-8 \\
        --set '{"equipartition_start": false}'
    python -m benchmarks.equilibration windows --trajectory data/md17/ethanol.npz --frames 2600

Prints one JSON line per trajectory (or window): T_kin per bond type (K), the internal temperature (``all``)
and each type's bond-length spread over the DFT one (rMD17). Simulations run on one thread; a quick ethanol
trajectory takes 5-15 s on this machine, the paper one (48,000 steps) about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _settings(profile: str) -> dict:
    from diffmd.config import deep_update

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    if profile != "paper":
        cfg = deep_update(cfg, yaml.safe_load((REPO / "config" / f"{profile}.yaml").read_text()))
    return dict(cfg["data"]["md17"]["xtb"])


def _summary(rows: list[dict]) -> dict:
    return {r["bond_type"]: [round(r["T_kin_K"]), None if r["std_ratio"] is None else round(r["std_ratio"], 2)]
            for r in rows}  # fmt: skip


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seeds", help="simulate one trajectory per seed and report it")
    s.add_argument("--molecule", default="ethanol")
    s.add_argument("--profile", default="quick", help="quick, study or paper (config.yaml alone)")
    s.add_argument("--seeds", default="1-8")
    s.add_argument("--set", default="{}", help="JSON overrides of data.md17.xtb")
    w = sub.add_parser("windows", help="report consecutive windows of one trajectory file")
    w.add_argument("--trajectory", required=True)
    w.add_argument("--frames", type=int, default=2600, help="frames per window")
    a = p.parse_args(argv)

    from diffmd.data import equilibrium as E

    if a.command == "windows":
        from diffmd.data.trajectory import load_trajectory

        traj = load_trajectory(a.trajectory)
        ref = E.references().get(traj.name)
        pairs = None if ref is None else [(i, j) for i, j, _, _ in ref["bonds"]]
        for start in range(0, traj.n_frames - a.frames + 1, a.frames):
            x = traj.positions[start : start + a.frames]
            rows = E.bond_report(x, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, ref, pairs)
            print(json.dumps({"from_fs": start * traj.dt_fs, "rows": _summary(rows)}), flush=True)
        return

    from diffmd.data.xtb_md import set_threads

    set_threads(1)
    from diffmd.data.xtb_md import simulate_md17

    ref = E.references()[a.molecule]
    pairs = [(i, j) for i, j, _, _ in ref["bonds"]]
    for seed in _seeds(a.seeds):
        cfg = {**_settings(a.profile), **json.loads(a.set), "seed": seed}
        t0 = time.perf_counter()
        traj = simulate_md17(a.molecule, cfg)
        rows = E.bond_report(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, ref, pairs)
        seconds = round(time.perf_counter() - t0, 1)
        print(json.dumps({"molecule": a.molecule, "seed": seed, "set": json.loads(a.set), "seconds": seconds,
                          "rows": _summary(rows)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
