"""What the reports add to the run files (read and written only by :mod:`diffmd.rundir`): the data
source's words above every table, and the rule that a table holds one data set from one source."""

from __future__ import annotations

from diffmd.rundir import Rollout, RunRecord, load_record, load_records, load_rollout, run_identity  # noqa: F401

_SOURCE_WORDS = {
    ("md17", "download"): "MD17 download (Chmiela et al. 2017; DFT, 500 K, 0.5 fs) - the paper's data",
    ("c7o2h10", "download"): "C7O2H10 download (Brockherde et al. 2017; DFT PBE, 100 K, 1 fs) - the paper's data",
    ("md17", "local"): "MD17 from local files (data.md17.download.local_dir)",
    ("c7o2h10", "local"): "C7O2H10 from local files (data.c7o2h10.download.local_dir)",
    ("md17", "xtb"): "GFN2-xTB simulation of the MD17 molecules (tblite) - NOT the MD17 data set",
    ("c7o2h10", "xtb"): "GFN2-xTB simulation of C7O2H10 isomers (tblite) - NOT the paper's C7O2H10 data set",
}


def source_label(dataset: str, source: str) -> str:
    """Human-readable words for a (dataset, data source) pair, as printed above every table."""
    return _SOURCE_WORDS.get((dataset, source), f"{dataset} from source {source!r}")


def single_source(records: list[RunRecord], what: str) -> tuple[str, str]:
    """The one (dataset, source) of ``records``; refuse to mix data sets or data sources in one table."""
    if not records:
        raise ValueError(f"{what}: no result files given")
    pairs = sorted({(r.dataset, r.source) for r in records})
    if len(pairs) > 1:
        examples = "; ".join(
            f"{d}/{s} e.g. {next(r.path for r in records if (r.dataset, r.source) == (d, s))}" for d, s in pairs
        )
        raise ValueError(f"{what}: refusing to mix data sets or sources in one table ({examples})")
    return pairs[0]


