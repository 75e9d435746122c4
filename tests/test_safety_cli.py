"""Engine CLIs given JSON of the wrong type answer with one ``error:`` line naming the option (issue 27, row 9).

``{"epochs": "x"}``, ``[1]``, ``--meta '[]'`` used to end in TypeError / AttributeError tracebacks deep in
the job; every JSON option of train, rollout, evaluate and tune is now checked against the config schema
(or the model's signature and declared choices) when it is parsed, before any input is read.
"""

from __future__ import annotations

import pytest

from diffmd.engine import evaluate, rollout, train
from diffmd.engine import grid as search
from diffmd.engine.cli import run_cli


def _one_error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


def _run(main, argv: list[str]) -> int:
    """The exit status of a CLI's ``main`` as its ``__main__`` runs it (train and tune return theirs)."""
    inner: list[object] = []
    try:
        outer = run_cli(lambda: inner.append(main(argv)))
    except SystemExit as exc:  # the argument parser's own one-line error
        return int(exc.code)
    return inner[0] if inner and isinstance(inner[0], int) and inner[0] else outer


TRAIN = ["--split", "nowhere.json", "--model", "egnn", "--out", "out"]
ROLLOUT = ["--split", "nowhere.json", "--checkpoint", "nowhere.pt", "--out", "out"]
EVALUATE = ["--rollout", "nowhere.npz", "--out", "armse.json"]


@pytest.mark.parametrize("main, argv, message", [
    (train.main, TRAIN + ["--train-config", '{"epochs": "x"}'], "--train-config: epochs: 'x' is not of type 'integer'"),
    (train.main, TRAIN + ["--train-config", "[1]"], "--train-config: expected a JSON object, got list"),
    (train.main, TRAIN + ["--train-config", '{"epoch": 3}'], "--train-config: unknown key 'epoch'"),
    (train.main, TRAIN + ["--params", "[1]"], "--params: expected a JSON object, got list"),
    (train.main, TRAIN + ["--params", '{"hidden": "x"}'], "--params: parameter 'hidden' of model 'egnn' must be int"),
    (train.main, TRAIN + ["--params", '{"train": [1]}'], "--params: train: expected a JSON object of trainer keys"),
    (train.main, TRAIN + ["--params", '{"train": {"lr": "fast"}}'], "--params: train: lr: 'fast' is not of type"),
    (train.main, TRAIN + ["--params", '{"stride": "2"}'], "--params: stride: must be an integer >= 1, got '2'"),
    (rollout.main, ROLLOUT + ["--rollout-config", "[1]"], "--rollout-config: expected a JSON object, got list"),
    (rollout.main, ROLLOUT + ["--rollout-config", '{"horizon": "x"}'], "--rollout-config: horizon: 'x' is not of"),
    (rollout.main, ROLLOUT + ["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (evaluate.main, EVALUATE + ["--meta", "[]"], "--meta: expected a JSON object, got list"),
    (evaluate.main, EVALUATE + ["--meta", '{"seed": "1"}'], "--meta.seed: '1' is not of type 'integer'"),
    (evaluate.main, EVALUATE + ["--rollout-config", '{"horizons_fs": 5}'], "--rollout-config: horizons_fs: 5 is not"),
    (search.main, ["select", "--validations", "v.json", "--grid", '{"eps": "x"}', "--out-model", "m", "--out-selection",
                 "s"], "--grid.eps: 'x' is not of type 'array'"),
    (search.main, ["validate", "--split", "s", "--checkpoint", "c", "--eps", "0.1", "--out", "o", "--train-config",
                 '{"val_horizon": []}'], "--train-config: val_horizon: [] is not of type 'integer'"),
])
def test_wrong_json_types_are_one_error_line_naming_the_option(tmp_path, monkeypatch, capsys, main, argv, message):
    monkeypatch.chdir(tmp_path)
    err = _one_error_line(capsys, _run(main, argv))
    assert message in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "armse.json").exists()
