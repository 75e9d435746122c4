"""The simulation protocol (diffmd/engine/simulate.py): survival, kinetic-energy split, the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_engine_pairs import toy_md17, toy_positions

from diffmd.data.pairs import Segment
from diffmd.engine import simulate as S
from diffmd.engine import train as T
from diffmd.testing import ETHANOL_Z
from diffmd.units import KB_EV_PER_K

CFG = {"epochs": 1, "val_every": 1, "val_horizon": 10, "batch_size": 64, "device": "cpu"}


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()


def toy_ensemble(path, steps: int, members: int) -> None:
    """A synthetic reference ensemble on the toy split (starts 200 and 244; 0.5 fs frames): ``members`` noisy copies
    (0.01 Å) of the true frame ``steps`` frames on, for both conditionings, as ``simulate ensemble`` writes it."""
    pos = toy_positions(300)
    rng = np.random.default_rng(0)
    starts = np.array([200, 244])
    ens = {"starts": starts, "horizon_fs": np.float64(0.5 * steps), "temperature_K": np.float64(500.0),
           "data_v": pos[starts + steps][:, None] + 0.01 * rng.standard_normal((2, members, 9, 3)),
           "mb": pos[starts + steps][:, None] + 0.01 * rng.standard_normal((2, members, 9, 3))}  # fmt: skip
    np.savez(path, **ens)


def test_survival_on_a_synthetic_breaking_trajectory():
    """Three starts: one keeps its bond, one stretches it by 0.1 Å per frame (fails when > 0.5 Å), one diverges."""
    x0 = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    n = 20
    pos = np.repeat(np.repeat(x0[None, None], 3, axis=0), n + 1, axis=1).copy()
    pos[1, :, 1, 0] += 0.1 * np.arange(n + 1)  # |r - r0| = 0.1 t: > 0.5 first at t = 6
    pos[2, 9:] = np.nan
    pairs, r0 = np.array([[0, 1]]), np.array([1.0])
    failed = S.failure_frames(pos, pairs, r0, 0.5, diverged_at=np.array([-1, -1, 9]))
    np.testing.assert_array_equal(failed, [-1, 6, 9])
    curve = S.survival_curve(failed, n)
    assert curve[0] == 1.0 and curve[5] == 1.0 and curve[6] == pytest.approx(2 / 3) and curve[9] == pytest.approx(1 / 3)
    assert curve[-1] == pytest.approx(1 / 3)
    med, censored = S.median_time_to_failure(failed, n, 0.5)
    assert (med, censored) == (4.5, False)  # the curve drops to 1/3 <= 1/2 at frame 9
    med, censored = S.median_time_to_failure(np.array([-1, -1, 6]), n, 0.5)
    assert (med, censored) == (10.0, True)  # more than half survive: censored at the length


def test_kinetic_split_of_a_rigidly_rotating_and_translating_molecule_is_all_rigid_body():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(9, 3))
    axis, w, dt = np.array([0.3, -1.0, 0.5]), 0.02, 0.5  # rad/fs, fs
    drift = np.array([0.01, 0.0, -0.02])  # Å/fs
    frames = np.stack([x0 @ _rotation(axis, w * dt * t).T + drift * dt * t for t in range(12)])
    ks = S.kinetic_split(frames, ETHANOL_Z, dt)
    assert np.all(ks["total"] > 0)
    np.testing.assert_allclose(ks["internal"], 0.0, atol=1e-10 * ks["total"].max())
    np.testing.assert_allclose(ks["translation"] + ks["rotation"], ks["total"], rtol=1e-9)
    assert S.rigid_share(ks) == pytest.approx(1.0, abs=1e-9)
    still = np.repeat(x0[None], 6, axis=0) + 1e-7 * rng.normal(size=(6, 9, 3))  # float32 round-off, standing still
    assert np.isnan(S.rigid_share(S.kinetic_split(still, ETHANOL_Z, dt), 9))


def test_kinetic_split_of_a_vibration_is_internal_and_gives_its_temperature():
    """Two atoms moving apart symmetrically along their bond: no translation, no rotation, all internal; for a
    diatomic 3N-6 -> 1 degree of freedom, T = 2 KE / k_B."""
    dt, v = 0.5, 0.001  # fs, Å/fs each atom
    frames = np.stack([np.array([[-0.5 - v * dt * t, 0, 0], [0.5 + v * dt * t, 0, 0]]) for t in range(5)])
    ks = S.kinetic_split(frames, np.array([1, 1]), dt)
    np.testing.assert_allclose(ks["translation"], 0.0, atol=1e-15)
    np.testing.assert_allclose(ks["rotation"], 0.0, atol=1e-15)
    np.testing.assert_allclose(ks["internal"], ks["total"])
    np.testing.assert_allclose(ks["t_internal_K"], 2 * ks["total"] / KB_EV_PER_K)


def test_maxwell_boltzmann_velocities_have_the_bath_temperature():
    from diffmd.elements import masses
    from diffmd.units import U_A2_PER_FS2_IN_EV

    rng = np.random.default_rng(1)
    z = np.array(ETHANOL_Z)
    v = np.stack([S.maxwell_boltzmann(z, 500.0, rng) for _ in range(2000)])
    ke = 0.5 * np.einsum("a,sai,sai->s", masses(z), v, v) * U_A2_PER_FS2_IN_EV
    t = 2 * ke / ((3 * len(z) - 3) * KB_EV_PER_K)
    assert t.mean() == pytest.approx(500.0, rel=0.03)
    np.testing.assert_allclose(np.einsum("a,sai->si", masses(z), v), 0.0, atol=1e-12)


def test_simulation_metrics_of_the_reference_frames_themselves():
    """A 'model' that replays the data: every start survives, h(r) and W1 near 0, the internal temperature the
    reference's."""
    pos = toy_positions(300)
    seg = Segment("ethanol", pos, np.array(ETHANOL_Z), start=200, stop=290, source="test")
    starts = S.simulation_starts(seg, 3)
    sims = np.stack([pos[s : s + 41] for s in [200, 220, 240]])
    cfg = {"bond_deviation_A": 0.5, "energy_frames": 0, "hr": {}}
    rows, extra = S.simulation_metrics(sims, np.array([-1, -1, -1]), seg, 1, cfg, energies=False)
    by = {r["metric"]: r for r in rows}
    assert len(starts) == 3 and by["survival_fraction"]["value"] == 1.0
    assert extra["censored_median"] and by["median_ttf_fs"]["censored"]
    assert by["hr_mae"]["value"] < 0.3 and by["bond_w1"]["value"] < 0.02
    assert by["t_internal_K"]["value"] == pytest.approx(extra["reference"]["t_internal_K"], rel=0.3)
    assert by["energy_excess_kcal_mol_atom"]["value"] is None  # no reference potential asked for
    assert extra["curves"]["survival"] == [1.0] * 41


def test_simulate_cli_end_to_end_with_a_point_mass_score(tmp_path):
    """constant_velocity on the toy split: simulation.json rows, and its K copies score as a point mass against a
    synthetic ensemble (energy distance > its null; CRPS and energy score finite)."""
    split = toy_md17(tmp_path)
    run = tmp_path / "cv"
    T.main(["--split", str(split), "--model", "constant_velocity", "--train-config", json.dumps(CFG),
            "--out", str(run)])  # fmt: skip
    toy_ensemble(tmp_path / "ens.npz", steps=5, members=8)
    cfg = {"n_starts": 3, "length_fs": 20.0, "energy_frames": 0, "scores": {"samples": 3, "horizon_fs": 5.0},
           "device": "cpu"}  # fmt: skip
    meta = {"dataset": "md17", "molecule": "ethanol", "model": "constant_velocity", "seed": 1}
    out = run / "simulation.json"
    S.main(["run", "--split", str(split), "--checkpoint", str(run / "model.pt"), "--simulation-config",
            json.dumps(cfg), "--ensemble", str(tmp_path / "ens.npz"), "--meta", json.dumps(meta), "--out", str(out)])
    rec = json.loads(out.read_text())
    assert rec["model"] == "constant_velocity" and rec["dataset"] == "md17" and rec["n_starts"] == 3
    by = {r["metric"]: r for r in rec["metrics"]}
    assert set(S.SIMULATION_METRICS) <= set(by) and set(S.SCORE_METRICS) <= set(by)
    assert rec["sample_spread_A"] == 0.0  # a deterministic model's copies coincide: a point mass
    assert by["energy_distance"]["value"] > by["energy_distance_null"]["value"]
    assert np.isfinite(by["crps"]["value"]) and by["energy_score"]["value"] > 0
    assert len(rec["curves"]["survival"]) == rec["steps"] + 1


def test_simulation_config_errors_name_the_key(tmp_path):
    split = toy_md17(tmp_path)
    with pytest.raises(ValueError, match="n_start"):
        S.main(["run", "--split", str(split), "--checkpoint", "x.pt", "--simulation-config", '{"n_start": 3}',
                "--out", str(tmp_path / "s.json")])  # fmt: skip


def test_simulation_table_and_survival_figure_from_records(tmp_path):
    """The report reads simulation.json files: sections per metric, the data's reference row, censored medians,
    a point-mass note, a one-step model as '—', a plan NA with its reason; the figure is written."""
    from diffmd.reports import __main__ as cli

    def rec(model, role, survived, med, censored, scored=True, applicable=True):
        rows = [{"metric": "survival_fraction", "horizon_fs": 100.0, "value": survived, "ci_low": 0.1, "ci_high": 0.9,
                 "ci_method": "t", "ci_n": 4, "n_starts": 4, "n_diverged": 0, "unit": ""},
                {"metric": "median_ttf_fs", "horizon_fs": 100.0, "value": med, "n_starts": 4, "n_diverged": 0,
                 "unit": "fs", "censored": censored},
                {"metric": "t_internal_K", "horizon_fs": 100.0, "value": 450.0, "ci_low": 400.0, "ci_high": 500.0,
                 "ci_method": "t", "ci_n": 4, "n_starts": 4, "n_diverged": 0, "unit": "K"}]  # fmt: skip
        if scored:
            rows += [{"metric": m, "horizon_fs": 10.0, "value": v, "n_starts": 4, "n_diverged": 0, "unit": "Å"}
                     for m, v in (("energy_score", 0.1), ("energy_score_ideal", 0.05), ("energy_distance", 0.2),
                                  ("energy_distance_null", 0.01), ("crps", 0.02))]  # fmt: skip
        return {"dataset": "md17", "molecule": "ethanol", "model": model, "role": role, "seed": 1, "source": "xtb",
                "applicable": applicable, "metrics": rows if applicable else [], "stride": 1, "n_starts": 4,
                "length_fs": 100.0, "start_spacing_fs": 25.0, "bond_deviation_A": 0.5,
                "reference": {"t_internal_K": 470.0, "rigid_share": 0.1, "frames": 200},
                "curves": {"t_fs": [0.0, 50.0, 100.0], "survival": [1.0, survived, survived]},
                "sample_spread_A": 0.0 if model == "egnn" else 0.01, "scores_ensemble": "data_v" if scored else None,
                "score_samples": 4, "score_ensemble_size": 8,
                "scores_note": "" if scored else "the model's step (10 fs) does not divide the scoring horizon (5 fs)"}

    recs = [rec("xtb_nh", "oracle", 1.0, 100.0, True), rec("egnn", "baseline", 0.25, 40.0, False),
            rec("score_dynamics", "baseline", 0.5, 50.0, False, scored=False),
            rec("force_verlet", "floor", 0, 0, False, applicable=False)]  # fmt: skip
    paths = []
    for r in recs:
        p = tmp_path / f"{r['model']}.json"
        p.write_text(json.dumps(r))
        paths.append(str(p))
    out = {k: tmp_path / f"sim.{k}" for k in ("csv", "md", "html", "png", "pdf")}
    cli.main(["simulation", "--inputs", *paths, "--models", "xtb_nh", "force_verlet", "egnn", "score_dynamics", "gmn",
              "--na-reasons", json.dumps({"gmn": "not this data"}), "--csv", str(out["csv"]), "--md", str(out["md"]),
              "--html", str(out["html"]), "--png", str(out["png"]), "--pdf", str(out["pdf"])])  # fmt: skip
    md = out["md"].read_text()
    assert "≥ 100 (censored)" in md and [ln for ln in md.splitlines() if ln.startswith("| egnn") and "40</u>" in ln]
    assert "data (test segment, every frame)" in md and "470" in md
    assert "(point mass)" in md and "—" in md and "gmn: NA, not this data." in md
    assert "ideal sampler" in md and "null (two halves of the ensemble)" in md
    assert "does not divide the scoring horizon" in md
    import pandas as pd

    frame = pd.read_csv(out["csv"])
    assert {"survival_fraction", "median_ttf_fs", "energy_score", "crps"} <= set(frame["metric"])
    assert out["png"].stat().st_size > 1000 and out["pdf"].exists()


def test_simulation_table_marks_a_copy_of_static_and_does_not_rank_it():
    """A collapsed model (its proper scores static's within 1%: it stands still) is labelled '≈ static' and never
    bold, although it 'survives' every start (the quick run's diffmd); a model that moves is ranked as before."""
    from diffmd.reports import simulation as sim

    def rec(model, role, survived, t_int, scores):
        rows = [{"metric": "survival_fraction", "horizon_fs": 100.0, "value": survived, "n_starts": 4, "n_diverged": 0,
                 "unit": "", "ci_method": "Wilson"},
                {"metric": "t_internal_K", "horizon_fs": 100.0, "value": t_int, "n_starts": 4, "n_diverged": 0,
                 "unit": "K"}]  # fmt: skip
        rows += [{"metric": m, "horizon_fs": 10.0, "value": v, "n_starts": 4, "n_diverged": 0, "unit": "Å"}
                 for m, v in zip(("energy_score", "crps", "energy_distance"), scores)]  # fmt: skip
        return {"dataset": "md17", "molecule": "ethanol", "model": model, "role": role, "seed": 1, "source": "xtb",
                "metrics": rows, "stride": 1, "n_starts": 4, "length_fs": 100.0, "sample_spread_A": 0.0,
                "reference": {"t_internal_K": 470.0, "rigid_share": 0.1, "frames": 200}}  # fmt: skip

    recs = [rec("static", "reference", 1.0, 0.0, (0.4028, 0.05910, 0.6241)),
            rec("egnn", "baseline", 0.25, 700.0, (0.242, 0.0385, 0.30)),
            rec("gmn", "baseline", 0.0, 9000.0, (0.9, 0.09, 0.8)),
            rec("diffmd", "proposed", 1.0, 0.004, (0.40281, 0.059096, 0.62413))]  # fmt: skip
    report = sim.simulation_report(recs, ["static", "egnn", "gmn", "diffmd"], ["ethanol"])
    models = ["static", "egnn", "gmn", "diffmd"]
    assert sim.copies_of(report.frame, models, ["ethanol"]) == {("diffmd", "ethanol"): "static"}
    survival = next(s for s in report.sections if s.title.startswith("Survival"))
    labels = [r[0] for r in survival.rows]
    d = labels.index("diffmd (≈ static: does not move; not ranked)")
    assert (d, 0) not in survival.marks and survival.marks[(labels.index("egnn"), 0)] == "best"
    assert any(n.startswith("diffmd on ethanol: ≈ static") for n in report.notes)
    moved = [rec("static", "reference", 1.0, 0.0, (0.4028, 0.0591, 0.6241)),
             rec("diffmd", "proposed", 1.0, 30.0, (0.39, 0.0580, 0.61))]  # fmt: skip
    assert sim.copies_of(sim.simulation_report(moved).frame, ["static", "diffmd"], ["ethanol"]) == {}


def test_survival_interval_is_a_proportions():
    """Wilson score interval: inside [0, 1], not degenerate at 0 or 1 of n, and the textbook value at 2 of 4."""
    from diffmd.engine.simulate import survival_row

    half = survival_row(np.array([1.0, 0.0, 1.0, 0.0]), 100.0, 0)
    assert half["value"] == 0.5 and half["ci_method"] == "Wilson" and half["ci_n"] == 4
    # Wilson, z = 1.95996: centre (k + z^2/2)/(n + z^2), half-width z sqrt(k(n-k)/n + z^2/4)/(n + z^2)
    z = 1.959963984540054
    centre, hw = (2 + z * z / 2) / (4 + z * z), z * np.sqrt(2 * 2 / 4 + z * z / 4) / (4 + z * z)
    assert half["ci_low"] == pytest.approx(centre - hw, rel=1e-9) and half["ci_high"] == pytest.approx(centre + hw)
    for k in (0, 4):
        r = survival_row(np.array([1.0] * k + [0.0] * (4 - k)), 100.0, 0)
        assert 0.0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1.0
        assert r["ci_high"] - r["ci_low"] > 0.3  # four starts say little


@pytest.mark.parametrize("model,params", [
    ("constant_velocity", {}),
    # stochastic: its ancestral sampler draws from torch's RNG, so the simulation must start from the same seed
    ("score_dynamics", {"hidden": 8, "layers": 1, "time_features": 4, "ancestral_steps": 1, "displacement_scale": 0.01,
                        "ema_decay": 0.0, "bond_check": False, "stride": 2}),
])  # fmt: skip
def test_rollout_job_simulates_as_a_separate_simulation_job_would(tmp_path, model, params):
    """The workflow's rollout job simulates after the rollout in the same process (``--simulation-out``: one
    start-up, issue 23/25); its simulation.json is the one a separate ``simulate run`` job writes, number for
    number (the model restarts at every simulation and the RNGs are seeded again)."""
    import torch

    from diffmd.engine import rollout as R
    from diffmd.engine.common import save_torch
    from diffmd.registry import build_model

    split = toy_md17(tmp_path)
    run = tmp_path / model
    run.mkdir()
    torch.manual_seed(0)  # an untrained model's checkpoint (a training costs tens of seconds here)
    save_torch(run / "model.pt", {"model": model, "params": params,
                                  "state_dict": build_model(model, {k: v for k, v in params.items()
                                                                    if k != "stride"}).state_dict()})  # fmt: skip
    toy_ensemble(tmp_path / "ens.npz", steps=4, members=4)
    sim = ["--simulation-config", json.dumps({"n_starts": 3, "length_fs": 6.0, "energy_frames": 0,
                                              "scores": {"samples": 2, "horizon_fs": 2.0}}),
           "--ensemble", str(tmp_path / "ens.npz"),
           "--meta", json.dumps({"dataset": "md17", "molecule": "ethanol", "model": model, "seed": 3})]  # fmt: skip
    common = ["--split", str(split), "--checkpoint", str(run / "model.pt"), "--seed", "3", "--device", "cpu"]
    S.main(["run", *common, *sim, "--out", str(tmp_path / "separate.json")])
    R.main([*common, "--rollout-config", json.dumps({"horizon": 8, "n_starts": 2, "start_horizon_fs": 2.0,
                                                     "one_step_frames": 4}),
            "--out", str(run), *sim, "--simulation-out", str(tmp_path / "merged.json")])  # fmt: skip
    assert (run / "rollout.npz").exists()
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("separate.json", "merged.json"))
    for rec in (a, b):
        for key in ("provenance", "seconds", "scores_seconds"):
            rec.pop(key, None)
    assert a["metrics"] and a == b
    if model == "score_dynamics":
        assert a["sample_spread_A"] > 0  # its copies differ: the RNG was drawn from
