"""Emulates the bare CUDA image of issue 22 on this machine (the device check's CPU rehearsal): on ``PYTHONPATH``,
this ``sitecustomize`` makes the packages that image lacks unimportable, except where they lie in the folders of
``DEVICE_CHECK_ALLOW`` (``os.pathsep``-separated: what ``pip install --no-index --no-deps --target DIR`` of the
prepared wheels puts there). ``DEVICE_CHECK_BLOCK`` (comma-separated) overrides the blocked names.

    PYTHONPATH=benchmarks/devices/bare_image python3 -c "import ase"   # ModuleNotFoundError
"""

import importlib.machinery
import os
import sys

BLOCKED = frozenset(
    filter(None, os.environ.get("DEVICE_CHECK_BLOCK", "ase,jsonschema,rdkit,tblite,sgdml,snakemake,tabulate,markdown")
           .split(","))
)
ALLOW = [p for p in os.environ.get("DEVICE_CHECK_ALLOW", "").split(os.pathsep) if p]


class BareImage:
    """A meta-path finder in front of the others: a blocked top-level name is found only in ``ALLOW``."""

    def find_spec(self, name, path=None, target=None):
        if "." in name or name not in BLOCKED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, ALLOW) if ALLOW else None
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the bare CUDA image)", name=name)
        return spec


sys.meta_path.insert(0, BareImage())
