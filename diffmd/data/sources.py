"""What each data source offers, decided once (torch-free): the plan (which models run where), the evaluation
(reference-potential energies) and the reports (why an oracle row is NA) all ask here.

``xtb``: trajectories simulated here with GFN2-xTB (tblite), so the pipeline can call the same potential again
(oracles, energies). ``download`` and ``local``: recorded data (MD17 and the C7O2H10 archive, or files of the same
format) whose potential the pipeline cannot call. The trajectory file names its source (``source``), so a reader
of a run asks with the file's value, never the config's.
"""

from __future__ import annotations

#: Sources whose potential the pipeline can call (the ``reference_potential`` a model card may need).
REFERENCE_POTENTIAL_SOURCES = ("xtb",)
#: Sources whose files always carry force labels, whatever the dataset (recorded data: MD17 yes, C7O2H10 no).
FORCE_LABEL_SOURCES = ("xtb",)


def has_reference_potential(source: str | None) -> bool:
    return source in REFERENCE_POTENTIAL_SOURCES


def has_force_labels(source: str | None, task: str) -> bool:
    """Whether a dataset's files carry forces: every simulated one; recorded MD17 (S2L) does, the recorded C7O2H10
    archive (O2O) does not."""
    return source in FORCE_LABEL_SOURCES or task == "s2l"


__all__ = ["REFERENCE_POTENTIAL_SOURCES", "FORCE_LABEL_SOURCES", "has_reference_potential", "has_force_labels"]
