"""Wheels for the device check on a bare CUDA image (issue 22): what benchmarks/device_check.py imports that the
image lacks, at the exact versions this environment runs, downloaded for the image's Python and platform into an
ignored folder (default ``.whl/``) that travels with the working tree. Run here, where the package registry answers:

    python scripts/prepare_device_wheels.py --dest .whl

On the bare machine (no network), docs/paper_scale.md ("The device check"):
``pip install --no-index --no-deps --target .devdeps .whl/*.whl`` then ``PYTHONPATH=.devdeps bash
benchmarks/device_check.sh``.

* ase (element data and units: diffmd.elements, diffmd.units), with typing-extensions at the version ase asks
  for (the image's torch may bring an older one);
* tabulate (pandas' Markdown tables in the cost model's report);
* jsonschema and its dependencies (jsonschema-specifications, referencing, attrs, rpds-py: a compiled cp312
  manylinux wheel): optional, so the config is schema-validated there as here (the check runs without them).

With ``--counts``, also the op counts of the paper config (``benchmarks.launches --units-out``: device-independent,
a minute or two here) into ``<dest>/counts.json``, so the check can skip counting on the device
(``--counts-in .whl/counts.json``): prepare them at the commit the device runs.

Versions: the ones installed beside this project (``importlib.metadata``), else the pins below (what issue 22
was built and rehearsed with). ``--dry-run`` prints the pip command without running it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Distribution -> version used when this environment does not have it.
PINS = {"ase": "3.29.0", "typing-extensions": "4.16.0", "tabulate": "0.10.0", "jsonschema": "4.26.0",
        "jsonschema-specifications": "2025.9.1", "referencing": "0.37.0", "attrs": "26.1.0",
        "rpds-py": "2026.9.1"}  # fmt: skip


def requirements() -> list[str]:
    """``name==version`` for every wheel, the version this environment has where it has one."""
    out = []
    for name, pin in PINS.items():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = pin
        out.append(f"{name}=={version}")
    return out


def command(dest: str, python_version: str, platform: str) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
            python_version, "--platform", platform, "--dest", dest, *requirements()]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Download the wheels the device check needs on a bare CUDA image.")
    p.add_argument("--dest", default=str(ROOT / ".whl"), help="folder for the wheels (default .whl/, git-ignored)")
    p.add_argument("--python-version", default="3.12", help="the image's Python (default 3.12)")
    p.add_argument("--platform", default="manylinux2014_x86_64", help="the image's platform tag")
    p.add_argument("--counts", action="store_true", help="also count the paper config's units into <dest>/counts.json")
    p.add_argument("--dry-run", action="store_true", help="print the pip command and exit")
    a = p.parse_args(argv)
    cmd = command(a.dest, a.python_version, a.platform)
    print(shlex.join(cmd), flush=True)
    if a.dry_run:
        return 0
    Path(a.dest).mkdir(parents=True, exist_ok=True)
    rc = subprocess.run(cmd).returncode
    if rc:
        print(f"pip download failed (exit {rc}): no package registry reachable? the device check then runs "
              "without ase only as far as docs/paper_scale.md says", file=sys.stderr)  # fmt: skip
        return rc
    wheels = sorted(Path(a.dest).glob("*.whl"))
    print(f"{len(wheels)} wheels in {a.dest}:\n" + "\n".join(f"  {w.name}" for w in wheels))
    if a.counts:
        dest = Path(a.dest)
        counts = [sys.executable, "-m", "benchmarks.launches", "--out-csv", str(dest / "launches.csv"), "--out-md",
                  str(dest / "launches.md"), "--units-out", str(dest / "counts.json")]  # fmt: skip
        print(shlex.join(counts), flush=True)
        rc = subprocess.run(counts, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
        if rc:
            return rc
        print(f"wrote {dest / 'counts.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
