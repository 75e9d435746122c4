"""The yardstick's engine: batched multi-start rollouts equal per-start ones, starts spread over the
segment, one-step predictions and their floors, horizon rows and their intervals, evaluation keys."""

import numpy as np
import pytest
import torch

from diffmd import batch as B
from diffmd.data.pairs import Segment
from diffmd.engine import yardstick as Y
from diffmd.engine.evaluate import evaluate, yardstick
from diffmd.engine.rollout import one_step, one_step_frames, rollout, rollout_starts, spread_starts
from diffmd.registry import TrajectoryModel, build_model
from diffmd.rundir import MultiStart, OneStep, Rollout
from diffmd.testing.synthetic import ETHANOL_Z, vibrating_truth


@pytest.fixture(scope="module")
def seg() -> Segment:
    return Segment("ethanol", vibrating_truth(160, seed=2), ETHANOL_Z, start=10, stop=150, stride=1, dt_fs=0.5)


def egnn():
    torch.manual_seed(0)
    return build_model("egnn", {"hidden": 16, "layers": 2}).double()


def test_batched_multi_start_rollout_equals_the_per_start_rollouts(seg):
    model = egnn()
    starts = spread_starts(seg, 4, 20)
    multi = rollout_starts(model, seg, starts, 20, dtype=torch.float64)
    assert multi.positions.shape == (4, 21, 9, 3) and (multi.diverged_at == -1).all()
    for i, s in enumerate(starts):
        single = rollout(model, seg, int(s), 20, dtype=torch.float64)
        np.testing.assert_allclose(multi.positions[i], single.positions, atol=1e-10)
        np.testing.assert_array_equal(multi.frame_indices[i], single.frame_indices)


class NaNForFirst(TrajectoryModel):
    """Constant velocity, except that molecule 0 of the batch turns NaN from the 3rd call on."""

    trainable = False

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        out = batch[B.POSITIONS] + batch[B.VELOCITIES]
        if self.calls >= 3:
            out = torch.where((batch[B.BATCH] == 0)[:, None], torch.full_like(out, float("nan")), out)
        return out


def test_a_diverging_start_is_frozen_and_does_not_touch_the_others(seg):
    starts = np.array([20, 60])
    multi = rollout_starts(NaNForFirst(), seg, starts, 10, dtype=torch.float64)
    assert multi.diverged_at.tolist() == [3, -1]
    assert np.isfinite(multi.positions[0, :3]).all() and np.isnan(multi.positions[0, 3:]).all()
    alone = rollout(build_model("constant_velocity"), seg, 60, 10, dtype=torch.float64)
    np.testing.assert_allclose(multi.positions[1], alone.positions, atol=1e-12)


def test_starts_are_spread_over_the_segment_and_keep_their_horizon(seg):
    starts = spread_starts(seg, 5, 30)
    assert starts[0] == seg.start and starts[-1] == seg.stop - 1 + 1 - 30
    assert np.all(np.diff(starts) > 0)
    with pytest.raises(ValueError, match="do not fit"):
        spread_starts(seg, 5, 1000)


def test_one_step_of_constant_velocity_is_x_plus_v_and_frames_are_spread(seg):
    frames = one_step_frames(seg, 7)
    assert len(frames) == 7 and frames[0] == seg.start and frames[-1] == seg.stop - 1
    pred = one_step(build_model("constant_velocity"), seg, frames, dtype=torch.float64)
    x, xm = seg.positions[frames], seg.positions[frames - 1]
    np.testing.assert_allclose(pred, 2 * x - xm, atol=1e-12)


def test_one_step_rows_floor_values():
    rng = np.random.default_rng(0)
    cur, prev = rng.normal(size=(50, 4, 3)), rng.normal(size=(50, 4, 3))
    target = 2 * cur - prev + 0.1 * rng.normal(size=cur.shape)
    exact = Y.one_step_rows(OneStep(np.arange(50), target, target, cur, prev), 0.5)
    assert exact[0]["value"] == 0.0 and exact[1]["value"] == 1.0
    const_v = Y.one_step_rows(OneStep(np.arange(50), 2 * cur - prev, target, cur, prev), 0.5)
    rms = np.sqrt(np.mean(((2 * cur - prev - target) ** 2).sum(-1)))
    assert const_v[0]["value"] == pytest.approx(rms) and abs(const_v[1]["value"]) < 0.05
    assert const_v[0]["unit"] == "Å" and const_v[0]["horizon_fs"] == 0.5 and const_v[0]["n_starts"] == 50


def test_horizon_rows_known_offsets_and_divergence():
    ref = np.zeros((3, 11, 2, 3))
    ref[..., 1, 0] = 1.0  # two atoms 1 Å apart
    pred = ref.copy()
    pred[:, 1:, :, 0] += np.array([0.1, 0.2, 0.3])[:, None, None]  # a pure translation: aligned RMSD 0
    pred[:, 1:, 1, 1] += np.array([0.1, 0.2, 0.3])[:, None]  # atom 1 moved off the axis
    diverged = np.array([-1, -1, 6])
    pred[2, 6:] = np.nan
    multi = MultiStart(np.arange(3), pred, ref, np.tile(np.arange(11), (3, 1)), diverged, 0.0, np.zeros(10))
    rows, curve = Y.horizon_rows(multi, 0.5, [1.0, 5.0])
    by = {(r["metric"], r["horizon_fs"]): r for r in rows}
    early, late = by[("armse", 1.0)], by[("armse", 5.0)]
    assert early["n_diverged"] == 0 and late["n_diverged"] == 1 and late["n_starts"] == 3
    assert early["ci_low"] <= early["value"] <= early["ci_high"]
    assert len(curve["t_fs"]) == 10 and curve["t_fs"][0] == 0.5
    assert late["value"] < early["value"] * 2  # the diverged start left the mean


def test_literal_armse_sums_over_atoms_and_does_not_align():
    """The paper's formula as printed: a pure translation by d of an N-atom molecule is 0 aligned and sqrt(N) d
    literal (summed over atoms, unaligned)."""
    ref = np.zeros((2, 5, 4, 3))
    ref[..., np.arange(4), np.arange(4) % 3] = 1.0
    pred = ref.copy()
    pred[:, 1:, :, 2] += 0.3  # every atom moved 0.3 Å along z
    multi = MultiStart(np.arange(2), pred, ref, np.tile(np.arange(5), (2, 1)), np.array([-1, -1]), 0.0, np.zeros(4))
    rows, _ = Y.horizon_rows(multi, 1.0, [4.0])
    by = {r["metric"]: r for r in rows}
    assert by["armse"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert by["armse_literal"]["value"] == pytest.approx(np.sqrt(4) * 0.3)


def test_a_strided_model_reports_under_the_requested_horizons():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2, 6, 3, 3))
    pred = ref + 0.1 * rng.normal(size=ref.shape)
    multi = MultiStart(np.arange(2), pred, ref, np.tile(np.arange(6), (2, 1)), np.array([-1, -1]), 0.0, np.zeros(5))
    rows, _ = Y.horizon_rows(multi, 10.0, [5.0, 25.0, 50.0, 60.0])  # a 10 fs step, 5 steps
    by = {(r["metric"], r["horizon_fs"]): r for r in rows}
    assert ("armse", 5.0) not in by and ("armse", 60.0) not in by  # shorter than a step; beyond the rollout
    assert by[("armse", 25.0)]["frame_fs"] == 20.0 and by[("rmsd", 50.0)]["frame_fs"] == 50.0
    rmsd = [Y.per_start_rmsd(multi)[:, :2]]  # its frames at 10 and 20 fs are those up to 25 fs
    assert by[("armse", 25.0)]["value"] == pytest.approx(float(np.mean(np.sqrt(np.mean(rmsd[0] ** 2, axis=1)))))


def test_evaluation_of_a_run_holds_the_yardstick(seg):
    model = egnn()
    single = rollout(model, seg, seg.start, 30, dtype=torch.float64)
    starts = spread_starts(seg, 3, 20)
    multi = rollout_starts(model, seg, starts, 20, dtype=torch.float64)
    frames = one_step_frames(seg, 10)
    roll = Rollout(
        path="r.npz", positions=single.positions, reference=seg.positions[single.frame_indices],
        atomic_numbers=seg.atomic_numbers, frame_indices=single.frame_indices, stride=1, dt_fs=0.5,
        diverged=False, diverged_at=-1, seconds=single.seconds, score_evals=single.score_evals, source="synthetic",
        model="egnn", role="baseline",
        multi=MultiStart(multi.starts, multi.positions, seg.positions[multi.frame_indices], multi.frame_indices,
                         multi.diverged_at, multi.seconds, multi.score_evals),
        one_step=OneStep(frames, one_step(model, seg, frames, dtype=torch.float64), seg.positions[frames + 1],
                         seg.positions[frames], seg.positions[frames - 1]),
    )  # fmt: skip
    rec = {**evaluate(roll, {"dataset": "md17", "molecule": "ethanol", "model": "egnn", "seed": 1}),
           **yardstick(roll, {"horizons_fs": [5.0], "energy_frames": 0})}  # fmt: skip
    metrics = {(r["metric"], r["horizon_fs"]) for r in rec["metrics"]}
    assert {("armse", 5.0), ("rmsd", 5.0), ("one_step_rmse", 0.5), ("accel_r2", 0.5), ("hr_mae", 10.0),
            ("bond_w1", 10.0), ("stable_fraction", 10.0)} <= metrics  # fmt: skip
    assert rec["n_starts"] == 3 and rec["role"] == "baseline" and rec["step_fs"] == 0.5
    assert len(rec["hr"]["edges"]) == len(rec["hr"]["ref"]) + 1
    lit = next(r for r in rec["metrics"] if r["metric"] == "armse_paper_literal")
    assert lit["value"] == pytest.approx(rec["armse_literal"]) and rec["armse_literal"] >= rec["armse"]
    assert rec["start_window_fs"] == 10.0 and rec["start_spacing_fs"] == 0.5 * float(np.diff(starts).min())


@pytest.mark.parametrize("module,args", [
    ("diffmd.engine.rollout", ["--split", "nope.json", "--checkpoint", "x.pt", "--out", "run"]),
    ("diffmd.engine.evaluate", ["--rollout", "nope.npz", "--out", "run/armse.json"]),
])
def test_engine_clis_give_one_line_errors(tmp_path, module, args):
    """Issue 15 row 12: bad input to the rollout / evaluate CLIs is one `error:` line, exit 1, no traceback."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_evaluate_cli_reads_the_role_from_the_rollout_without_importing_torch(tmp_path):
    """The evaluate job is light: the rollout wrote the model's role, so the CLI needs neither the registry nor
    torch (3-4 s of every evaluate job's start before), and the record's role is the registered one; the GFN2-xTB
    energies it takes at a few frames (yardstick.energy_samples: diffmd.data.xtb_energy) need no torch either
    (issue 25: ~2 s less per evaluate job)."""
    import json as _json
    import subprocess
    import sys

    import numpy as np

    from diffmd.registry import model_role
    from diffmd.testing.synthetic import vibrating_truth, write_run

    write_run(tmp_path, "md17", "ethanol", "egnn", 1, "xtb", vibrating_truth(30, seed=2), 0.01, yardstick=False)
    rollout = tmp_path / "md17/ethanol/egnn/seed1/rollout.npz"
    assert str(np.load(rollout)["role"]) == model_role("egnn")
    out = tmp_path / "armse.json"
    check = "\n".join([
        "import runpy, sys",
        "path = sys.argv[1]",
        "sys.argv = ['evaluate', '--rollout', sys.argv[1], '--out', sys.argv[2]]",
        "try:",
        "    runpy.run_module('diffmd.engine.evaluate', run_name='__main__', alter_sys=True)",
        "except SystemExit as exc:",
        "    assert not exc.code, f'exit {exc.code}'",
        "assert 'torch' not in sys.modules, 'torch imported'",
        "import numpy as np",
        "from diffmd.data.xtb_energy import reference_energies",
        "roll = np.load(path)",
        "e = reference_energies(roll['positions'][:1], roll['atomic_numbers'])",
        "assert np.isfinite(e).all() and 'torch' not in sys.modules, e",
    ])
    proc = subprocess.run([sys.executable, "-c", check, str(rollout), str(out)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _json.loads(out.read_text())["role"] == "baseline"
