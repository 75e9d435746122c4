"""The yardstick's tables and figures (diffmd.reports.yardstick, tables, figures) on synthetic run
directories whose every number is known (diffmd.testing.synthetic.yardstick_keys)."""

from __future__ import annotations

import functools
import io

import pandas as pd
import pytest

from diffmd.io import read_json, write_json
from diffmd.registry import MODEL_MODULES, RANKED_ROLES
from diffmd.reports import figures, tables
from diffmd.reports import yardstick as Y
from diffmd.reports.__main__ import main
from diffmd.rundir import role_of
from diffmd.testing.synthetic import vibrating_truth, write_run

# model -> (offset Å, role); the unranked rows have the best numbers on purpose: they must never be marked.
RUNS = {
    "static": (0.05, "reference"),
    "constant_velocity": (0.9, "reference"),
    "force_verlet": (0.01, "floor"),
    "rf": (0.5, "baseline"),
    "egnn": (0.4, "baseline"),
    "diffmd": (0.3, "proposed"),
    "sgdml": (0.02, "force_field"),
}
ORACLES = ["xtb_nve", "xtb_langevin"]  # an oracle and an ensemble reference: both need a reference potential
MODELS = list(RUNS) + ORACLES
COLUMNS = ["ethanol", "uracil"]
REQUIRED = ["dataset", "molecule", "model", "role", "metric", "horizon_fs", "value", "ci_low", "ci_high", "n_starts"]


def _write_all(root, source="download", oracles=False):
    truth = vibrating_truth(41, amplitude=0.1)
    runs = dict(RUNS) | ({"xtb_nve": (0.001, "oracle")} if oracles else {})
    for mol in COLUMNS:
        for model, (offset, role) in runs.items():
            write_run(root, "md17", mol, model, 1, source, truth, offset, role=role,
                      diverged=model == "rf" and mol == "ethanol")  # fmt: skip
    return sorted(str(p) for p in root.glob("md17/*/*/seed1/armse.json"))


@pytest.fixture
def runs(tmp_path):
    return _write_all(tmp_path / "results")


def _cli(command, paths, out, models=MODELS):
    files = {k: str(out / f"{command}.{k}") for k in ("csv", "md", "html")}
    argv = [command, "--inputs", *paths, "--models", *models, "--columns", *COLUMNS]
    assert main(argv + [x for k, v in files.items() for x in (f"--{k}", v)]) == 0
    return {k: open(v, encoding="utf-8").read() for k, v in files.items()}


def _row(md, label, table=0):
    """Stripped cells of the row starting with ``label`` in the ``table``-th Markdown table of ``md``."""
    blocks = [b for b in md.split("\n\n") if b.startswith("| Model")]
    line = next(line for line in blocks[table].splitlines() if line[2:].startswith(label))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _csv(text):
    return pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)


def test_oracles_are_registered_as_oracles():
    """The rows that continue the data's dynamics are oracles; the Langevin re-simulation is another dynamics."""
    assert {m: role_of(m) for m in ("xtb_nh", "xtb_nve", "xtb_langevin") if m in MODEL_MODULES} == {
        "xtb_nh": "oracle", "xtb_nve": "oracle", "xtb_langevin": "ensemble"}
    assert Y._registered_role("xtb_nve") == "oracle"
    assert set(Y.REFERENCE_POTENTIAL_ROLES) == {"oracle", "ensemble"}


def test_long_csv_columns_full_precision_and_empty_cells(runs, tmp_path):
    out = _cli("tables", runs, tmp_path)
    frame = _csv(out["csv"])
    assert list(frame.columns)[: len(Y.LONG_COLUMNS)] == list(Y.LONG_COLUMNS)
    assert set(REQUIRED) <= set(frame.columns)
    egnn = frame[(frame["model"] == "egnn") & (frame["molecule"] == "ethanol") & (frame["metric"] == "armse")]
    assert egnn["horizon_fs"].tolist() == ["1.0", "5.0", "10.0"]
    assert egnn["ci_low"].iloc[0] == repr(0.9 * 0.4) == "0.36000000000000004"  # full precision
    assert egnn["n_starts"].tolist() == ["4"] * 3 and egnn["unit"].iloc[0] == "Å"
    # rf diverged at frame 20 = 10 fs: the 10 fs cell is empty (not "NA", not "nan"), all 4 starts diverged
    rf = frame[(frame["model"] == "rf") & (frame["molecule"] == "ethanol") & (frame["metric"] == "armse")]
    assert rf["value"].tolist() == ["0.5", "0.5", ""] and rf["n_diverged"].tolist() == ["0", "0", "4"]
    assert rf["ci_low"].iloc[2] == "" and rf["ci_high"].iloc[2] == ""
    paper = frame[frame["metric"] == "armse_paper"].set_index(["model", "molecule"])
    assert paper.loc[("rf", "ethanol"), "value"] == "" and paper.loc[("diffmd", "uracil"), "horizon_fs"] == "20.0"
    assert set(frame["metric"]) == {"armse_paper", "armse", "rmsd", "relative_improvement", "armse_literal",
                                    "armse_paper_literal"}  # the paper's formula as printed, CSV only
    assert "nan" not in out["csv"].lower() and "<na>" not in out["csv"].lower()
    assert set(frame.loc[frame["model"] == "rf", "source"]) == {"download"}


def test_bold_underline_only_among_ranked_roles(runs, tmp_path):
    md = _cli("tables", runs, tmp_path)["md"]
    header = _row(md, "Model")
    assert header[:5] == ["Model", "ethanol", "ethanol @ 1 fs", "ethanol @ 5 fs", "ethanol @ 10 fs"]
    assert _row(md, "diffmd")[1:5] == ["**0.300**"] + ["**0.300 [0.270, 0.330]**"] * 3
    assert _row(md, "egnn")[2] == "<u>0.400 [0.360, 0.440]</u>"
    for model, (_, role) in RUNS.items():
        cells = _row(md, model)
        if role not in RANKED_ROLES:
            assert not any("**" in c or "<u>" in c for c in cells), (model, cells)
    assert _row(md, "static")[:2] == ["static (reference)", "0.050"]
    assert _row(md, "sgdml")[0] == "sgdml (force field: sees force labels the other models do not)"
    assert "sgdml is a machine-learned force field: it sees force labels the other models do not." in md
    # rf diverged in the paper rollout and at 10 fs: NA, counted; egnn is then the best baseline at 10 fs
    assert _row(md, "rf")[1] == "NA" and _row(md, "rf")[4] == "NA (4/4 div.)"
    assert _row(md, "Relative improvement")[1:5] == ["25.0%"] * 4  # (0.4 - 0.3) / 0.4
    html = _cli("tables", runs, tmp_path)["html"]
    assert "<td><b>0.300 [0.270, 0.330]</b></td>" in html and "<td><u>0.400</u></td>" in html


def test_oracle_na_with_reason_without_reference_potential(runs, tmp_path):
    out = _cli("tables", runs, tmp_path)
    for oracle in ORACLES:
        assert _row(out["md"], oracle)[0] == f"{oracle} ({Y.ROLE_WORDS[role_of(oracle)]})"
        assert set(_row(out["md"], oracle)[1:]) == {"NA"}
        assert f"{oracle}: NA, no reference potential for source 'download'." in out["md"]
    frame = _csv(out["csv"])
    rows = frame[frame["model"] == "xtb_nve"]
    assert len(rows) > 0 and set(rows["value"]) == {""} and set(rows["role"]) == {"oracle"}
    assert set(rows["note"]) == {"no reference potential for source 'download'"}
    assert set(rows["molecule"]) == set(COLUMNS)
    for command in ("one-step", "distributions"):
        res = _cli(command, runs, tmp_path)
        assert set(_row(res["md"], "xtb_nve")[1:]) == {"NA"}
        assert "xtb_nve: NA, no reference potential for source 'download'." in res["md"]


def test_missing_oracle_on_xtb_source_is_not_invented(tmp_path):
    paths = _write_all(tmp_path / "r", source="xtb", oracles=True)
    md = _cli("tables", paths, tmp_path)["md"]
    assert _row(md, "xtb_nve")[1] == "0.001" and "xtb_langevin" not in md  # ran vs not run: no NA row


def test_floor_rows_dash_and_one_step_numbers(runs, tmp_path):
    md = _cli("tables", runs, tmp_path)["md"]
    assert set(_row(md, "force_verlet")[1:]) == {"—"} and _row(md, "force_verlet")[0] == "force_verlet (floor)"
    one = _cli("one-step", runs, tmp_path)
    assert _row(one["md"], "force_verlet", 0)[1] == "0.001 [0.0009, 0.0011]"  # offset / 10
    assert _row(one["md"], "constant_velocity", 0)[1] == "0.09 [0.081, 0.099]"
    assert _row(one["md"], "diffmd", 0)[1] == "**0.03 [0.027, 0.033]**"
    assert _row(one["md"], "egnn", 0)[1] == "<u>0.04 [0.036, 0.044]</u>"
    assert _row(one["md"], "diffmd", 1)[1].startswith("**0.700")  # accel R²: 1 - offset, higher is better
    frame = _csv(one["csv"])
    assert set(frame["metric"]) == {"one_step_rmse", "accel_r2"}
    fv = frame[(frame["model"] == "force_verlet") & (frame["metric"] == "one_step_rmse")]
    assert fv["horizon_fs"].tolist() == ["0.5", "0.5"] and fv["n_starts"].tolist() == ["40", "40"]
    dist = _cli("distributions", runs, tmp_path)["md"]
    assert set(_row(dist, "force_verlet", 0)[1:]) == {"—"}


def test_distributions_known_values_and_directions(runs, tmp_path):
    out = _cli("distributions", runs, tmp_path)
    md = out["md"]
    assert _row(md, "diffmd", 0)[1] == "**0.3 [0.27, 0.33]**"  # h(r) MAE = offset
    assert _row(md, "rf", 0)[1] == "0.5 [0.45, 0.55] (4/4 div.)"
    temp = 3  # h(r), bond, angle, temperature
    assert _row(md, "ground truth", temp)[1:] == ["300.0", "300.0"]
    assert _row(md, "diffmd", temp)[1] == "**330.0 [297.0, 363.0]**"  # closest to 300 K among ranked
    assert _row(md, "static", temp)[1] == "305.0 [274.5, 335.5]"  # closer still, but a reference row
    energy = 5
    assert set(_row(md, "diffmd", energy)[1:]) == {"NA"}
    assert "Energy excess: NA, no reference potential for source 'download'." in md
    stable = 6
    assert _row(md, "rf", stable)[1].startswith("<u>0.00") and _row(md, "diffmd", stable)[1].startswith("**1.00")
    frame = _csv(out["csv"])
    assert set(frame["metric"]) == set(Y.DISTRIBUTION_METRICS)
    assert set(frame.loc[frame["metric"] == "energy_excess_kcal_mol_atom", "value"]) == {""}


def test_several_seeds_and_partial_divergence(tmp_path):
    truth = vibrating_truth(41, amplitude=0.1)
    paths = [str(tmp_path / f"md17/ethanol/egnn/seed{s}/armse.json") for s in (1, 2)]
    for seed, offset in ((1, 0.2), (2, 0.4)):
        write_run(tmp_path, "md17", "ethanol", "egnn", seed, "xtb", truth, offset)
    data = read_json(paths[1])
    row = next(m for m in data["metrics"] if m["metric"] == "armse" and m["horizon_fs"] == 5.0)
    row["n_diverged"] = 1  # one start of four diverged before 5 fs: the mean is over the other three
    write_json(paths[1], data)
    table = tables.make_table(Y.load_yardsticks(paths))
    md = tables.render_markdown(table)
    cells = _row(md, "egnn")
    assert cells[1] == "**0.300 ± 0.141**"  # paper column: mean ± sample std over seeds
    assert cells[2] == "**0.300 [0.180, 0.440] (2 seeds)**"  # mean of seeds, envelope of intervals
    assert cells[3] == "**0.300 [0.180, 0.440] (1/8 div.) (2 seeds)**"


def test_markdown_rendered_by_pandas(runs, tmp_path, monkeypatch):
    calls = []
    original = pd.DataFrame.to_markdown

    def spy(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_markdown", spy)
    md = _cli("distributions", runs, tmp_path)["md"]
    # the provenance table (made first), then one table per metric (temperature_ref_K is the ground-truth row)
    assert len(calls) == len(Y.DISTRIBUTION_METRICS) - 1 + 1
    assert calls[1 + 3] == (len(MODELS) + 1, 1 + len(COLUMNS))  # temperature: + the ground-truth row
    assert md.count("| Model") == len(calls) - 1 and md.count("| run ") == 1


def test_malformed_metrics_name_file_and_key(runs):
    data = read_json(runs[0])
    data["metrics"][0]["value"] = "fast"
    write_json(runs[0], data)
    with pytest.raises(ValueError, match=r"armse.json: key 'metrics\[0\]\.value' is 'fast'"):
        Y.load_yardsticks(runs)
    del data["metrics"][0]["value"]
    write_json(runs[0], data)
    with pytest.raises(ValueError, match=r"armse.json: key 'metrics\[0\]' lacks value"):
        Y.load_yardstick(runs[0])


def test_curves_in_fs_with_oracle_band_and_references_underneath(tmp_path):
    paths = _write_all(tmp_path / "r", source="xtb", oracles=True)
    ys = Y.load_yardsticks(paths)
    fig = figures.curves_figure(ys, "t", MODELS)
    top, bottom = fig.axes[0], fig.axes[2]  # ethanol: ARMSE, RMSD (2 x 2 grid, row major)
    assert bottom.get_xlabel() == "rollout time t (fs)" and top.get_xscale() == "log"
    bands = [c for c in bottom.collections if c.__class__.__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(bands) == 1  # only the oracle row is shaded
    lines = {ln.get_label(): ln for ln in top.get_lines() if not ln.get_label().startswith("_")}
    # references: wide pale lines underneath, so a model on the same curve stays visible on top
    assert lines["static"].get_linewidth() > 2 * lines["diffmd"].get_linewidth()
    assert lines["static"].get_zorder() < lines["diffmd"].get_zorder()
    assert "force_verlet" not in lines  # a one-step model has no curve
    x = lines["diffmd"].get_xdata()
    assert x[0] == pytest.approx(0.5) and x[-1] == pytest.approx(20.0)  # fs, not frames
    png, pdf = tmp_path / "c.png", tmp_path / "c.pdf"
    figures.save_figure(fig, png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"


def test_hr_figure_written_with_oracle_reason(runs, tmp_path):
    png, pdf = tmp_path / "hr.png", tmp_path / "hr.pdf"
    argv = ["hr", "--inputs", *runs, "--models", *MODELS, "--title", "h(r)", "--png", str(png), "--pdf", str(pdf)]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-"
    fig = figures.hr_figure(Y.load_yardsticks(runs), "t", MODELS)
    rows = [m for m in MODELS if m != "force_verlet"]  # no rollout, no h(r)
    assert len(fig.axes) == len(rows) * len(COLUMNS)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("NA: no reference potential for source 'download'") == len(ORACLES) * len(COLUMNS)
    diffmd_ax = fig.axes[rows.index("diffmd") * len(COLUMNS)]
    assert {p.get_label() for p in diffmd_ax.patches} >= {"ground truth", "diffmd"}


def test_models_the_plan_leaves_out_are_na_with_the_plans_reason(tmp_path):
    """--na-reasons (the plan's reasons for models it leaves out on this dataset) gives NA rows with the role."""
    paths = _write_all(tmp_path / "r", source="xtb", oracles=True)
    files = {k: str(tmp_path / f"na.{k}") for k in ("csv", "md", "html")}
    models = [m for m in MODELS if m != "xtb_langevin"] + ["xtb_langevin"]
    argv = ["tables", "--inputs", *paths, "--models", *models, "--columns", *COLUMNS,
            "--na-reasons", '{"xtb_langevin": "the plan says why"}']  # fmt: skip
    assert main(argv + [x for k, v in files.items() for x in (f"--{k}", v)]) == 0
    md = open(files["md"], encoding="utf-8").read()
    assert set(_row(md, "xtb_langevin")[1:]) == {"NA"} and "ensemble reference" in _row(md, "xtb_langevin")[0]
    assert "xtb_langevin: NA, the plan says why." in md
    frame = _csv(open(files["csv"], encoding="utf-8").read())
    assert set(frame[frame["model"] == "xtb_langevin"]["note"]) == {"the plan says why"}


def test_a_copy_of_static_is_not_ranked_and_gets_no_improvement(tmp_path):
    """diffmd as published is static on every metric (to 3e-4 on quick ethanol): before, Table 1 ranked it best
    and printed an improvement over the baselines (6.8% on quick ethanol)."""
    truth = vibrating_truth(41, amplitude=0.1)
    offsets = {"static": 0.05, "constant_velocity": 0.9, "egnn": 0.4, "rf": 0.5, "diffmd": 0.05001}
    for model, offset in offsets.items():
        write_run(tmp_path / "r", "md17", "ethanol", model, 1, "xtb", truth, offset)
    paths = sorted(str(p) for p in (tmp_path / "r").glob("md17/*/*/seed1/armse.json"))
    out = _cli("tables", paths, tmp_path, models=["static", "constant_velocity", "egnn", "rf", "diffmd"])
    md = out["md"]
    assert _row(md, "diffmd")[0] == "diffmd (≈ static: does not move; not ranked)"
    assert not any("**" in c or "<u>" in c for c in _row(md, "diffmd"))
    assert _row(md, "egnn")[1:3] == ["**0.400**", "**0.400 [0.360, 0.440]**"]  # the best model that moves
    assert set(_row(md, "Relative improvement")[1:]) == {"— (≈ static)"}
    assert "diffmd is within 1% of static on every ARMSE number of ethanol" in md
    frame = _csv(out["csv"])
    assert set(frame.loc[frame["metric"] == "relative_improvement", "value"]) == {""}


def test_rows_of_another_step_are_not_ranked_with_the_others(tmp_path):
    """Score Dynamics' one step (here 5 frames = 2.5 fs) is not comparable with the 0.5 fs rows: before, the
    one-step table marked it best."""
    truth = vibrating_truth(41, amplitude=0.1)
    for model, offset, stride in (("static", 0.05, 1), ("egnn", 0.4, 1), ("rf", 0.5, 1), ("score_dynamics", 0.1, 5)):
        write_run(tmp_path / "r", "md17", "ethanol", model, 1, "xtb", truth, offset, stride=stride)
    paths = sorted(str(p) for p in (tmp_path / "r").glob("md17/*/*/seed1/armse.json"))
    models = ["static", "egnn", "rf", "score_dynamics"]
    one = _cli("one-step", paths, tmp_path, models=models)["md"]
    assert _row(one, "score_dynamics")[0] == "score_dynamics (every 5th frame, 2.5 fs per step; not ranked)"
    assert _row(one, "score_dynamics")[1] == "0.01 [0.009, 0.011]"  # the lowest number, unmarked
    assert _row(one, "egnn")[1] == "**0.04 [0.036, 0.044]**" and _row(one, "rf")[1] == "<u>0.05 [0.045, 0.055]</u>"
    assert "Not ranked with the rows of the table's own step (0.5 fs): score_dynamics" in one
    sd = next(p for p in paths if "/score_dynamics/" in p)  # as the engine writes it: no row before its first step
    rec = read_json(sd)
    rec["metrics"] = [m for m in rec["metrics"] if m["horizon_fs"] is None or m["horizon_fs"] >= 2.5]
    write_json(sd, rec)
    table1 = _cli("tables", paths, tmp_path, models=models)["md"]
    assert "not ranked" in _row(table1, "score_dynamics")[0] and "**" not in "".join(_row(table1, "score_dynamics"))
    assert _row(table1, "score_dynamics")[2] == "— (one step is 2.5 fs)"  # @ 1 fs: no frame of it yet, not "not run"


def test_intervals_name_their_method_and_n(runs, tmp_path):
    out = _cli("tables", runs, tmp_path)
    assert "95% intervals over n = 4 starts: Student t" in out["md"]
    one = _cli("one-step", runs, tmp_path)["md"]
    assert "over n = 40 test frames: BCa bootstrap" in one
    frame = _csv(out["csv"])
    armse = frame[(frame["metric"] == "armse") & (frame["model"] == "egnn")]
    assert set(armse["ci_method"]) == {"t"} and set(armse["ci_n"]) == {"4"}


def test_html_renders_the_markdown_it_cites(runs, tmp_path):
    """The provenance under every table cites paths as code: before, the HTML showed literal backticks."""
    html = _cli("tables", runs, tmp_path)["html"]
    assert "`" not in html and "<code>" in html and "provenance.json</code>" in html
    assert "<table" in html and "&lt;" not in html.split("<body>")[1].split("Provenance")[0]


def test_overlap_note_says_when_the_start_windows_overlap():
    from diffmd.reports.yardstick import Yardstick, overlap_note

    apart = Yardstick(None, start_spacing_fs=60.0, start_window_fs=50.0)
    close = Yardstick(None, start_spacing_fs=17.0, start_window_fs=50.0)
    assert "do not overlap" in overlap_note([apart])
    note = overlap_note([apart, close])
    assert "overlap: starts 17 fs apart, windows of 50 fs" in note and "narrower" in note
    assert overlap_note([Yardstick(None)]) == ""


def test_rank_marks_tie_for_last_is_not_second_best():
    """One survivor and the rest failing alike: the tie for last is not underlined as second best; a genuine second
    place (one model, or a tie above the last value) still is."""
    roles = {m: "baseline" for m in "abcd"}
    marks = functools.partial(Y.rank_marks, roles=roles, tied_last_second=False)  # as the simulation table ranks
    assert marks({"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0}) == {"a": "best"}
    assert Y.rank_marks({"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0}, roles) == {"a": "best", "b": "second",
                                                                            "c": "second", "d": "second"}  # paper
    assert marks({"a": 0.0, "b": 1.0}) == {"a": "best", "b": "second"}
    assert marks({"a": 0.0, "b": 0.5, "c": 0.5, "d": 1.0}) == {"a": "best", "b": "second", "c": "second"}
    assert marks({"a": 0.0, "b": 0.0, "c": 1.0}) == {"a": "best", "b": "best", "c": "second"}
