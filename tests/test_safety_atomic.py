"""A killed atomic write leaves nothing behind for long, and the README's recovery advice is complete (issue 27,
row 12).

SIGKILL during a rollout's atomic write skips every ``finally``: the temporary ``.rollout.npz.*`` stayed beside
the run forever. Temporary files now carry the writer's host and process id; the next write of the same output
removes those whose process is gone (and, after a while, those of other hosts or older code), never one of a
write still running. After a killed Snakemake, ``--rerun-incomplete`` alone meets the stale lock: the README's
faults table says ``--unlock`` first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diffmd.io import FOREIGN_TEMP_AGE_S, atomic_path, remove_stale_temporaries, save_npz

REPO = Path(__file__).resolve().parents[1]

KILLED_WRITER = """
import os, signal, sys
import numpy as np
from diffmd.io import atomic_path
with atomic_path(sys.argv[1], suffix=".npz") as tmp:
    np.savez_compressed(tmp, positions=np.zeros((100, 9, 3)))
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write, as a node failure or the OOM killer would
"""


def _temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*"))


def test_the_temporary_file_of_a_killed_write_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "run" / "rollout.npz"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = _temps(out.parent, "rollout.npz")
    assert len(left) == 1 and not out.exists()  # what the killed job left
    save_npz(out, positions=np.ones((3, 9, 3)))  # the rerun of the job writes the same output
    assert _temps(out.parent, "rollout.npz") == [] and out.exists()


def test_a_write_still_running_keeps_its_temporary_file(tmp_path):
    out = tmp_path / "armse.json"
    with atomic_path(out) as mine:  # this process is alive: its temporary file is not stale
        mine.write_text("{}")
        assert remove_stale_temporaries(out) == [] and mine.exists()
    assert out.exists() and _temps(tmp_path, "armse.json") == []


def test_other_hosts_and_older_temporaries_are_removed_only_when_old(tmp_path):
    out = tmp_path / "model.pt"
    foreign = tmp_path / ".model.pt.tmp-othernode-123-abcd1234.pt"  # a cluster node's write
    legacy = tmp_path / ".model.pt.k2j3h4g5.pt"  # written by the code before process ids were recorded
    for f in (foreign, legacy):
        f.write_bytes(b"partial")
    assert remove_stale_temporaries(out) == []
    old = time.time() - FOREIGN_TEMP_AGE_S - 60
    for f in (foreign, legacy):
        os.utime(f, (old, old))
    assert sorted(remove_stale_temporaries(out)) == sorted([foreign, legacy])
    assert not (tmp_path / ".other.pt.k2j3h4g5.pt").exists()


def test_readme_recovery_advice_after_a_kill_says_unlock_then_rerun_incomplete():
    """The faults table (README.md, or docs/faults.md where the README sends its readers) gives the whole recovery."""
    text = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    rows = [line for line in text.splitlines() if line.startswith("|") and "killed" in line.lower()]
    advice = [r for r in rows if re.search(r"`snakemake --unlock`, then .*`--rerun-incomplete`", r)]
    assert advice, "no faults-table row tells a user to run `snakemake --unlock`, then `--rerun-incomplete`"
