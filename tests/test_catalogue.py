"""The metrics catalogue (diffmd/catalogue.py): every metric row the engine writes carries the catalogue's unit, the
report tables rank, format and title their sections from it, and the stable fraction's bond-break factor is the one
the engine applies."""

from __future__ import annotations

import numpy as np
import pytest

from diffmd import catalogue as C
from diffmd.engine import yardstick as EY
from diffmd.reports import yardstick as RY
from diffmd.testing import synthetic


def test_engine_rows_take_the_catalogue_unit_and_refuse_another():
    assert EY.row("temperature_drift_K_per_ps", 10.0, [1.0, 2.0])["unit"] == "K/ps"
    assert EY.row("bond_w1", 10.0, [0.1], "Å")["unit"] == "Å"
    with pytest.raises(ValueError, match="catalogue"):
        EY.row("bond_w1", 10.0, [0.1], "nm")
    with pytest.raises(KeyError, match="not in the catalogue"):
        EY.row("no_such_metric", 10.0, [0.1])


def test_catalogue_entries_and_the_test_fixtures_agree():
    for metric in C.METRICS.values():
        assert metric.direction in C.DIRECTIONS
        format(0.123, metric.fmt)
    truth = synthetic.vibrating_truth(9)
    keys = synthetic.yardstick_keys(truth + 0.01, truth, 0.01, 1, 0.5, False, "xtb")
    assert keys["metrics"] and all(r["unit"] == C.unit(r["metric"]) for r in keys["metrics"])


def test_report_tables_read_the_catalogue():
    for name in RY.YARDSTICK_METRICS:
        m = C.metric(name)
        assert RY.DIRECTION[name] == m.direction
        assert RY.FORMATS.get(name, RY.DEFAULT_FORMAT) == m.fmt
        if m.title is not None:
            assert RY.METRIC_TITLES[name] == m.title
    assert RY._fmt("stable_fraction", 0.5) == "0.50" and RY._fmt("temperature_K", 300.04) == "300.0"


def test_stable_fraction_breaks_at_the_catalogue_factor():
    bonds = np.array([[0], [1]])
    start = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    at = lambda d: np.stack([start, np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])])  # noqa: E731
    assert EY._bonds_kept(at(C.BOND_BREAK_FACTOR * 0.999), bonds)
    assert not EY._bonds_kept(at(C.BOND_BREAK_FACTOR * 1.001), bonds)
    assert f"{C.BOND_BREAK_FACTOR:g}x" in C.metric("stable_fraction").title
