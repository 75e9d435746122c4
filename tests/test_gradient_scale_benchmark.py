"""benchmarks/gradient_scale.py: the dimensionless loss lifts gradients above Adam's eps (issue 13 item 1)."""

from __future__ import annotations

from test_engine_pairs import toy_md17

from benchmarks import gradient_scale as G


def test_default_models_are_the_engine_trained_ones_with_the_default_loss():
    models = G.default_models()
    assert "egnn" in models
    assert not {"static", "constant_velocity", "diffmd", "score_dynamics", "sgdml", "force_verlet"} & set(models)


def test_dimensionless_loss_leaves_fewer_gradients_below_eps(tmp_path):
    split = toy_md17(tmp_path)
    out_csv, out_md = tmp_path / "g.csv", tmp_path / "g.md"
    assert G.main(["--split", str(split), "--models", "egnn", "--batch", "32",
                   "--out-csv", str(out_csv), "--out-md", str(out_md)]) == 0  # fmt: skip
    row = dict(zip(G.FIELDS, out_csv.read_text().splitlines()[1].split(",")))
    # the toy trajectory's acceleration is ~1e-3 Å/step²: the Å² loss is ~1e-6, the dimensionless one O(1)
    assert float(row["loss_A2"]) < 1e-4 and 0.05 < float(row["loss_unit"]) < 50
    assert float(row["below_eps_unit"]) < float(row["below_eps_A2"])
    assert "egnn" in out_md.read_text()
