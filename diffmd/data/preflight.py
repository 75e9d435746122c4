"""Parse-time checks of the data files a job would refuse, so the workflow stops before Snakemake deletes anything.

Snakemake deletes a job's outputs before it runs the job. When an input was changed by hand or by accident
(another molecule's trajectory copied over ``ethanol.npz``, a NaN frame, a flipped bit, a hand-edited split),
the job reading it fails only after its finished outputs (a split, the C7O2H10 index, trained models) are gone,
and putting the file back costs every job downstream of them. The experiment plan therefore calls
:func:`check_existing_inputs` while the workflow is parsed (``snakemake -n`` too): every data file that exists
and that a job would read is checked the way that job checks it, and the first failure stops the workflow with
one line naming the file, before any job has run. What is checked:

* MD17 trajectories ``data/md17/<molecule>.npz``: long enough for ``splits.md17`` (from the headers); read in
  full (every member's zip CRC, finite positions, shapes: :func:`~diffmd.data.trajectory.load_trajectory`);
  the molecule's name, dataset and atoms; plausible (``data.md17.checks``, :mod:`diffmd.data.plausibility`).
* C7O2H10 isomers (the index's, and the simulated ones known from the config): the same, named as the isomer,
  C7H10O2, long enough for the split's stride, no two with the same frames (a duplicate leaks across the split).
* ``data/c7o2h10/index.json``: its structure, the file of every isomer it lists present and where the workflow
  puts it.
* Splits that Snakemake will not remake (their rule's input is not newer): :func:`~diffmd.data.splits.validate_split`
  (ranges, disjoint parts, the trajectories' SHA-256 present), of the molecule they are named after, pointing
  at the workflow's own trajectory files, and made from the trajectories on disk (same SHA-256). A split whose
  input changed is remade by its job, which checks what it reads; the changed trajectory passed the checks above.

Cost: a full read of a trajectory takes about a second for MD17's largest files, so the verdicts are kept in
``data/.verified.json``, keyed on each file's (size, mtime, ctime, inode): a parse re-reads a file only after
it changed. The key is as strong as Snakemake's own change detection (it reruns on mtime) and stronger: any
write to a file moves its ctime, which no user command can set back, and an atomic replacement changes its
inode, so a cached verdict is only ever reused for the untouched file it was made for. The jobs do not trust
the cache: they check what they read themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from diffmd.data.plausibility import check_plausible, resolve_checks
from diffmd.data.splits import SplitError, check_md17_identity, read_split
from diffmd.data.trajectory import REQUIRED_KEYS, Trajectory, TrajectoryFormatError, load_trajectory, npz_headers
from diffmd.io import atomic_path, sha256_of

CACHE = "data/.verified.json"
CACHE_VERSION = 1
#: atoms of every C7O2H10 isomer (downloaded or simulated)
C7H10O2 = {6: 7, 1: 10, 8: 2}
ISOMER_NAME = re.compile(r"^(iso\d+|xtb\d+)$")
NOTHING_DELETED = "checked before any job ran: nothing was deleted"


class InputError(ValueError):
    """An existing data file a job would refuse (one line naming the file, what is wrong and what to do)."""


class VerifiedCache:
    """Facts about verified files, ``{path: {"stat", "sha256", "name", "dataset", "n_frames", "checked"}}``, kept
    in ``data/.verified.json`` between parses (module docstring: the key and why it is safe)."""

    def __init__(self, root: Path) -> None:
        self.path = root / CACHE
        self.root = root
        self.dirty = False
        try:
            data = json.loads(self.path.read_text())
            ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict)
            self.files: dict[str, dict[str, Any]] = data["files"] if ok else {}
        except (OSError, ValueError):
            self.files = {}

    @staticmethod
    def stat_key(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, rel: str, path: Path) -> dict[str, Any] | None:
        rec = self.files.get(rel)
        if isinstance(rec, dict) and rec.get("stat") == self.stat_key(path):
            return rec
        return None

    def put(self, rel: str, record: dict[str, Any]) -> None:
        self.files[rel] = record
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or not self.path.parent.is_dir():
            return
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": self.files}, sort_keys=True) + "\n")
        except OSError:  # a read-only data folder: the next parse checks again, nothing else changes
            pass
        self.dirty = False


def _formula_counts(z: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for n in z:
        counts[int(n)] = counts.get(int(n), 0) + 1
    return counts


def _fail(message: str, advice: str = "restore the file, or delete it to remake it") -> InputError:
    return InputError(f"{message} ({NOTHING_DELETED}; {advice})")


class Preflight:
    """One parse's checks of the files under ``root`` (the run root) for ``plan``."""

    def __init__(self, plan: Any, root: str | os.PathLike = ".") -> None:
        self.plan = plan
        self.root = Path(root)
        self.cache = VerifiedCache(self.root)

    def run(self) -> None:
        try:
            if self.plan.enabled("md17"):
                self.md17()
            if self.plan.enabled("c7o2h10"):
                self.c7o2h10()
        finally:
            self.cache.save()

    # --- trajectories -----------------------------------------------------------------------------
    def trajectory(self, rel: str, dataset: str, name: str, min_frames: int, what: str) -> dict[str, Any]:
        """Verify one trajectory (module docstring); returns its facts (``sha256``, ``n_frames``, ...)."""
        path = self.root / rel
        facts = self.cache.get(rel, path)
        traj: Trajectory | None = None
        if facts is None:
            try:
                heads = npz_headers(path)
            except TrajectoryFormatError as exc:
                raise _fail(str(exc).replace(str(path), rel, 1)) from None
            missing = [k for k in REQUIRED_KEYS if k not in heads]
            if missing:
                raise _fail(f"{rel}: missing key(s) {', '.join(missing)}")
            n_frames = heads["positions"][0][0] if heads["positions"][0] else 0
            self._frames(rel, n_frames, min_frames, what)
            try:
                traj = load_trajectory(path)
            except TrajectoryFormatError as exc:
                raise _fail(str(exc).replace(str(path), rel, 1)) from None
            self._identity(rel, traj, dataset, name)
            frames = hashlib.sha256(np.ascontiguousarray(traj.positions, dtype=np.float64).tobytes()).hexdigest()
            facts = {"stat": self.cache.stat_key(path), "sha256": sha256_of(path), "name": traj.name,
                     "dataset": traj.dataset, "n_frames": traj.n_frames, "frames_sha256": frames, "checked": []}
        else:
            self._frames(rel, int(facts["n_frames"]), min_frames, what)
            if facts.get("name") != name or facts.get("dataset") != dataset:  # a cached verdict of another role
                raise _fail(f"{rel}: holds {facts.get('dataset')} {facts.get('name')!r}, expected {dataset} {name!r}")
        checks = resolve_checks(self.plan.config["data"][dataset].get("checks"))
        tag = json.dumps(checks, sort_keys=True)
        if tag not in facts["checked"]:
            traj = traj if traj is not None else load_trajectory(path)
            try:
                check_plausible(traj.positions, traj.atomic_numbers, traj.dt_fs, traj.temperature_K, checks, rel,
                                f"data.{dataset}.checks")
            except TrajectoryFormatError as exc:
                raise _fail(str(exc), "fix or replace the file, or relax the check in the config") from None
            facts["checked"] = [*facts["checked"], tag][-4:]
        self.cache.put(rel, facts)
        return facts

    @staticmethod
    def _frames(rel: str, n_frames: int, needed: int, what: str) -> None:
        if n_frames < needed:
            dataset = rel.split("/")[1]
            raise _fail(f"{rel}: {n_frames} frames, {what}",
                        f"make the trajectory longer (data.{dataset}.xtb.n_frames) or the split smaller, then delete"
                        " it to remake it")

    @staticmethod
    def _identity(rel: str, traj: Trajectory, dataset: str, name: str) -> None:
        if dataset == "md17":
            try:
                check_md17_identity(traj, name, rel)
            except (SplitError, TrajectoryFormatError) as exc:
                raise _fail(str(exc)) from None
            return
        if traj.name != name or traj.dataset != dataset:
            raise _fail(f"{rel}: holds {traj.dataset} {traj.name!r}, expected c7o2h10 {name!r} (a file of another"
                        " isomer copied over it?)")
        got = _formula_counts([int(z) for z in traj.atomic_numbers])
        if got != C7H10O2:
            raise _fail(f"{rel}: atoms are not C7H10O2 ({dict(sorted(got.items()))} by atomic number)")

    # --- MD17 ----------------------------------------------------------------------------------------
    def md17(self) -> None:
        cfg = self.plan.config["splits"]["md17"]
        stride = int(cfg.get("stride", 1))
        needed = 2 * stride + int(cfg["n_train"]) + int(cfg["n_val"]) + int(cfg["n_test"]) + stride
        what = f"splits.md17 needs {needed} (2*stride + n_train + n_val + n_test + stride)"
        for molecule in self.plan.md17_molecules:
            rel = f"data/md17/{molecule}.npz"
            facts = self.trajectory(rel, "md17", molecule, needed, what) if (self.root / rel).exists() else None
            split = self.plan.split_path("md17", molecule)
            if (self.root / split).exists() and not self._remade(split, [rel]):
                self.split(split, {rel: facts}, {rel: molecule}, molecule)

    # --- C7O2H10 -------------------------------------------------------------------------------------
    def c7o2h10(self) -> None:
        history = self.plan.history_frames("c7o2h10")
        stride = int(self.plan.config["splits"]["c7o2h10"].get("stride", 1))
        needed = max(2 * stride, history) + stride + 1
        what = f"the O2O split needs {needed} (history {max(2 * stride, history)} + stride {stride} + 1)"
        static = set(self.plan.static_isomers())
        names = {name: f"data/c7o2h10/{name}.npz" for name in static}
        index_rel = "data/c7o2h10/index.json"
        if (self.root / index_rel).exists():
            for name, rel in self.index(index_rel).items():
                if not (self.root / rel).exists() and name not in static:
                    raise _fail(f"{index_rel}: lists isomer {name!r} at {rel}, which is missing",
                                "delete the index to remake the isomers")
                names[name] = rel
        facts: dict[str, dict[str, Any]] = {}
        owner: dict[str, str] = {}
        for name, rel in sorted(names.items()):
            if not (self.root / rel).exists():
                continue
            facts[rel] = self.trajectory(rel, "c7o2h10", name, needed, what)
            frames = facts[rel].get("frames_sha256")
            if frames in owner:
                raise _fail(f"{rel}: the same frames as {owner[frames]}: duplicate isomers would leak across the O2O"
                            " split")
            owner[frames] = rel
        split = self.plan.split_path("c7o2h10", "")
        if (self.root / split).exists() and not self._remade(index_rel, [f"data/c7o2h10/{n}.npz" for n in static]) \
                and not self._remade(split, [index_rel]):
            self.split(split, facts, {rel: name for name, rel in names.items()}, None)

    def _remade(self, output: str, inputs: list[str]) -> bool:
        """Whether Snakemake will remake ``output`` from ``inputs`` (its rule's): one is missing or newer than it,
        or it is missing itself. A split about to be remade is not checked: its job checks what it reads."""
        out = self.root / output
        if not out.exists():
            return True
        mtime = out.stat().st_mtime_ns
        for rel in inputs:
            src = self.root / rel
            if not src.exists() or src.stat().st_mtime_ns > mtime:
                return True
        return False

    def index(self, rel: str) -> dict[str, str]:
        """``index.json``'s isomers -> their files (checked: a mapping of isomer names to data/c7o2h10/<name>.npz)."""
        advice = "delete it to remake it"
        try:
            index = json.loads((self.root / rel).read_text())
        except (OSError, ValueError) as exc:
            raise _fail(f"{rel}: not a readable JSON file ({type(exc).__name__})", advice) from None
        files = index.get("files") if isinstance(index, dict) else None
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise _fail(f"{rel}: not a C7O2H10 index (no 'files' mapping isomer names to trajectory files)", advice)
        listed = index.get("isomers", list(files))
        if not isinstance(listed, list) or [n for n in listed if n not in files]:
            raise _fail(f"{rel}: 'isomers' must list names that 'files' maps to trajectories", advice)
        out = {}
        for name, path in files.items():
            want = f"data/c7o2h10/{name}.npz"
            if not ISOMER_NAME.match(name) or os.path.normpath(path) != want:
                raise _fail(f"{rel}: isomer {name!r} at {path!r}; the workflow keeps isomer files as {want}"
                            " (a hand-edited index?)", advice)
            out[name] = want
        return out

    # --- splits -----------------------------------------------------------------------------------------
    def split(self, rel: str, facts: dict[str, dict[str, Any] | None], expected: dict[str, str],
              molecule: str | None) -> None:
        """A split file (module docstring); ``facts``: the verified trajectories it may point at (None: absent),
        ``expected``: trajectory path -> the molecule or isomer the workflow keeps there."""
        path = self.root / rel
        advice = "a hand-edited split? delete it to remake it (what was trained from it is retrained)"
        try:
            data = read_split(path, checksum=None)  # the split files' one reader (the checksums: below, cached)
        except (OSError, ValueError) as exc:
            raise _fail(str(exc), advice) from None
        if data["dataset"] == "md17":
            if data.get("molecule") != molecule:
                raise _fail(f"{rel}: is a split of {data.get('molecule')!r}, expected MD17 {molecule!r}", advice)
            pairs = {molecule: (str(data["trajectory"]), data["trajectory_sha256"])}
        else:
            names = set(data["train_isomers"]) | set(data["val_isomers"]) | set(data["targets"])
            pairs = {n: (str(data["trajectories"][n]), data["trajectory_sha256"][n]) for n in sorted(names)}
        for name, (traj, sha) in pairs.items():
            norm = os.path.normpath(traj)
            if expected.get(norm) != name:
                want = next((p for p, n in expected.items() if n == name), None)
                where = f"the workflow's file of {name!r} is {want}" if want else f"{name!r} is not in this run's data"
                raise _fail(f"{rel}: points at {traj} for {name!r}; {where}", advice)
            got = facts.get(norm)
            if got is None:
                raise _fail(f"{rel}: made from {norm}, which is missing", "delete the split to remake it")
            if got["sha256"] != sha:
                raise _fail(f"{rel}: made from {norm} with SHA-256 {sha[:16]}..., the file now has"
                            f" {got['sha256'][:16]}...; the split would not be remade and every job reading it would"
                            " refuse it", "restore the trajectory, or delete the split to remake it (what was trained"
                            " from it is retrained)")


def check_existing_inputs(plan: Any, root: str | os.PathLike = ".") -> None:
    """Check every existing data file of ``plan`` under ``root`` (module docstring); :class:`InputError` (one line)."""
    Preflight(plan, root).run()
