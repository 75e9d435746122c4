"""Command line of the data layer: ``python -m diffmd.data <command> ...`` (called by workflow/rules/data.smk).

Commands::

    md17          --molecule NAME --source download|local|xtb --config-json JSON --out data/md17/NAME.npz
    c7o2h10       --source download|local|xtb --config-json JSON --out-dir data/c7o2h10
    xtb-isomer    --name xtb01 --config-json JSON --out data/c7o2h10/xtb01.npz
    split-md17    --trajectory data/md17/NAME.npz --config-json JSON --out data/splits/md17/NAME.json
    split-c7o2h10 --index data/c7o2h10/index.json --config-json JSON --out data/splits/c7o2h10.json

``--config-json`` is the config section as JSON: ``data.md17`` / ``data.c7o2h10`` for the data
commands, ``splits.md17`` / ``splits.c7o2h10`` for the split commands (plus ``checks``: the dataset's
``data.<dataset>.checks`` when the config sets it; every trajectory split must pass them, defaults
otherwise). Errors are one line (``error: <file or key>: <what>``) and exit status 1; finished outputs are
never modified.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffmd.data.download import DownloadError
from diffmd.data.splits import SplitError
from diffmd.data.trajectory import TrajectoryFormatError, load_trajectory, save_trajectory
from diffmd.io import read_json, write_json

DEFAULT_LOCK = "data/checksums.lock.json"


def _config(text: str, what: str) -> dict[str, Any]:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config-json ({what}): not valid JSON ({exc.msg})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--config-json ({what}): expected a JSON object")
    return cfg


def cmd_md17(args: argparse.Namespace) -> None:
    cfg = _config(args.config_json, "data.md17")
    if args.source == "xtb":
        from diffmd.data.xtb_md import set_threads

        set_threads(args.threads)
        from diffmd.data.xtb_md import simulate_md17

        traj = simulate_md17(args.molecule, cfg.get("xtb") or {})
    else:
        from diffmd.data.download import MD17_FILES
        from diffmd.data.md17 import check_molecule, md17_to_trajectory, obtain_md17

        check_molecule(args.molecule)
        fetched = obtain_md17(args.molecule, args.source, cfg, args.cache_dir, args.lock)
        traj = md17_to_trajectory(fetched.path, args.molecule, args.source, fetched.provenance(),
                                  check_frames=fetched.path.name == MD17_FILES[args.molecule])
    save_trajectory(args.out, traj)


def _xtb_isomer(name: str, cfg: dict[str, Any], out: Path, threads: int) -> None:
    from diffmd.data.xtb_md import set_threads

    set_threads(threads)
    from diffmd.data.xtb_md import simulate_isomer

    save_trajectory(out, simulate_isomer(name, cfg))


def cmd_xtb_isomer(args: argparse.Namespace) -> None:
    _xtb_isomer(args.name, _config(args.config_json, "data.c7o2h10").get("xtb") or {}, Path(args.out), args.threads)


def cmd_c7o2h10(args: argparse.Namespace) -> None:
    from diffmd.data.c7o2h10 import convert_folder, obtain_c7o2h10, write_index

    cfg = _config(args.config_json, "data.c7o2h10")
    out_dir = Path(args.out_dir)
    if args.source == "xtb":
        from diffmd.data.isomers import xtb_isomer_names

        xcfg = cfg.get("xtb") or {}
        files = {}
        for name in xtb_isomer_names(int(xcfg.get("n_isomers", 20)), xcfg.get("isomers")):
            path = out_dir / f"{name}.npz"
            if not path.exists():  # parallel jobs normally made it already
                _xtb_isomer(name, xcfg, path, args.threads)
            traj = load_trajectory(path)
            if traj.name != name or traj.source != "xtb":
                raise TrajectoryFormatError(
                    f"{path}: holds {traj.name!r} from {traj.source!r}, expected {name!r} from xtb"
                )
            files[name] = str(path)
        write_index(out_dir / "index.json", "xtb", files)
        return
    folder, archive = obtain_c7o2h10(args.source, cfg, Path(args.raw_dir), Path(args.lock))
    files = convert_folder(folder, out_dir, args.source, archive)
    write_index(out_dir / "index.json", args.source, files, {"archive": archive})


def _md17_molecule(args: argparse.Namespace) -> str | None:
    """``--molecule``, else the workflow's file name ``data/md17/<molecule>.npz`` when it names an MD17 molecule."""
    from diffmd.data.download import MD17_FILES

    if args.molecule:
        return str(args.molecule)
    stem = Path(args.trajectory).stem
    return stem if stem in MD17_FILES else None


def cmd_split_md17(args: argparse.Namespace) -> None:
    from diffmd.data.splits import md17_split

    cfg = _config(args.config_json, "splits.md17")
    for key in ("n_train", "n_val", "n_test"):
        if key not in cfg:
            raise KeyError(f"splits.md17.{key}: missing")
    split = md17_split(args.trajectory, int(cfg["n_train"]), int(cfg["n_val"]), int(cfg["n_test"]),
                       int(cfg.get("stride", 1)), molecule=_md17_molecule(args), checks=cfg.get("checks") or {})
    write_json(args.out, split)


def cmd_split_c7o2h10(args: argparse.Namespace) -> None:
    from diffmd.data.splits import c7o2h10_split

    index = read_json(args.index)
    if not isinstance(index, dict) or "files" not in index:
        raise TrajectoryFormatError(f"{args.index}: not a C7O2H10 index (no 'files')")
    cfg = _config(args.config_json, "splits.c7o2h10")
    write_json(args.out, c7o2h10_split(index, cfg, str(args.index), checks=cfg.get("checks") or {}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffmd.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sources = ("download", "local", "xtb")

    p = sub.add_parser("md17", help="one MD17 molecule -> canonical trajectory")
    p.add_argument("--molecule", required=True)
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("--config-json", required=True, help="config section data.md17 as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--cache-dir", default="data/raw/md17", help="where downloaded upstream files are kept")
    p.add_argument("--lock", default=DEFAULT_LOCK, help="checksum lock file")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for tblite (xtb source)")
    p.set_defaults(func=cmd_md17)

    p = sub.add_parser("c7o2h10", help="C7O2H10 isomers -> one trajectory each + index.json")
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("--config-json", required=True, help="config section data.c7o2h10 as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--raw-dir", default="data/raw/c7o2h10", help="where the archive is kept and unpacked")
    p.add_argument("--lock", default=DEFAULT_LOCK)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_c7o2h10)

    p = sub.add_parser("xtb-isomer", help="simulate one C7H10O2 isomer with GFN2-xTB")
    p.add_argument("--name", required=True, help="xtb01, xtb02, ...")
    p.add_argument("--config-json", required=True, help="config section data.c7o2h10 as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_xtb_isomer)

    p = sub.add_parser("split-md17", help="S2L split of one MD17 trajectory")
    p.add_argument("--trajectory", required=True)
    p.add_argument("--molecule", default=None,
                   help="the MD17 molecule the trajectory must hold (default: its file name, when that names one)")
    p.add_argument("--config-json", required=True, help="config section splits.md17 as JSON")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split_md17)

    p = sub.add_parser("split-c7o2h10", help="O2O split of the C7O2H10 isomers")
    p.add_argument("--index", required=True)
    p.add_argument("--config-json", required=True, help="config section splits.c7o2h10 as JSON")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split_c7o2h10)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (TrajectoryFormatError, DownloadError, SplitError, KeyError, ValueError, RuntimeError,
            FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
