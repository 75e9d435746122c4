"""How equilibrated is the ``xtb`` source's data? Per-bond-type kinetic temperatures over seeds or over windows.

Study (docs/data_equilibrium.md), one trajectory per seed with the profile's settings and overrides::

    python -m benchmarks.equilibration seeds --molecule ethanol --profile quick --seeds 1-8 --first 1300
    python -m benchmarks.equilibration seeds --molecule ethanol --profile quick --seeds 1-3 \\
        --set '{"n_frames": 4000}' --tdamp-fs 10 --first 1300
    python -m benchmarks.equilibration seeds --molecule ethanol --profile quick --seeds 1-8 \\
        --set '{"nose_hoover_coupling": "global", "n_frames": 1300, "equilibration_steps": 600}'
    python -m benchmarks.equilibration windows --trajectory data/md17/ethanol.npz --frames 2600

Prints one JSON line per trajectory (or window): per bond type [T_kin (K), its 95% interval by block averaging
(K), the bond-length spread over the DFT one (rMD17)], the internal temperature (``all``), the force_verlet
floor on the recorded frames (``force_floor_A``: what the thermostat moves that forces do not) and, with
``--first``, the same over the first frames alone. Simulations run on one thread; a quick ethanol trajectory
takes 20-40 s on this machine, the paper one (48,000 steps) about 5 minutes.
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
    """Per bond type: [T_kin (K), 95% interval low, high (K, block averaging), spread / DFT spread]."""
    def r0(v):
        return None if v is None else round(v)

    return {r["bond_type"]: [r0(r["T_kin_K"]), r0(r["T_lo_K"]), r0(r["T_hi_K"]),
                             None if r["std_ratio"] is None else round(r["std_ratio"], 2)] for r in rows}  # fmt: skip


def force_floor(traj) -> float:
    """RMS per atom (Å) of the force_verlet floor on the recorded frames: x(t+1) against 2x(t) - x(t-1) +
    F(t)dt²/m (the data's forces, net force removed as FixCom does): what a thermostat moves that forces do not."""
    import numpy as np

    from diffmd.units import force_step, masses

    m = masses(traj.atomic_numbers)[:, None]
    f = traj.forces - m * (traj.forces.sum(1, keepdims=True) / m.sum())  # FixCom: every atom the same acceleration
    x = traj.positions
    pred = 2 * x[1:-1] - x[:-2] + force_step(f[1:-1], traj.atomic_numbers, traj.dt_fs)
    return float(np.sqrt(((pred - x[2:]) ** 2).sum(-1).mean()))


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
    s.add_argument("--tdamp-fs", type=float, default=None,
                   help="massive Nosé-Hoover time constant (fs; default diffmd.dynamics.MASSIVE_TDAMP_FS)")
    s.add_argument("--first", type=int, default=None, help="also report the first FIRST recorded frames alone")
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
    from diffmd import dynamics as D
    from diffmd.data.xtb_md import simulate_md17

    if a.tdamp_fs is not None:
        D.MASSIVE_TDAMP_FS = a.tdamp_fs
    ref = E.references()[a.molecule]
    pairs = [(i, j) for i, j, _, _ in ref["bonds"]]
    for seed in _seeds(a.seeds):
        cfg = {**_settings(a.profile), **json.loads(a.set), "seed": seed}
        t0 = time.perf_counter()
        traj = simulate_md17(a.molecule, cfg)
        rows = E.bond_report(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, ref, pairs)
        seconds = round(time.perf_counter() - t0, 1)
        line = {"molecule": a.molecule, "seed": seed, "set": json.loads(a.set), "tdamp_fs": D.MASSIVE_TDAMP_FS,
                "seconds": seconds, "cpu_s": traj.provenance["md_seconds"], "frames": traj.n_frames,
                "force_floor_A": float(f"{force_floor(traj):.3g}"),
                "rows": _summary(rows)}  # fmt: skip
        if a.first:
            head = E.bond_report(traj.positions[: a.first], traj.atomic_numbers, traj.dt_fs, traj.temperature_K,
                                 ref, pairs)  # fmt: skip
            line["first"] = {"frames": a.first, "rows": _summary(head)}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
