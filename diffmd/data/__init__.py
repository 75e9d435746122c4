"""Data layer: sources (MD17 / C7O2H10 download, local files, GFN2-xTB simulation), splits, pairs.

Every source writes the canonical trajectory format of :mod:`diffmd.data.trajectory`; the CLI is
``python -m diffmd.data`` (see :mod:`diffmd.data.__main__`). Heavy imports (tblite, rdkit) happen
inside the functions that need them.
"""
