"""benchmarks/simulate_probe.py's metrics on plain arrays: the data's own frames survive with h(r) MAE 0 against
themselves, a stretched bond ends survival where it leaves the tolerance, a frozen copy is cold."""

from __future__ import annotations

import numpy as np
from test_engine_pairs import toy_positions

from benchmarks.simulate_probe import simulation_metrics
from diffmd.testing import ETHANOL_Z


def test_the_data_survives_and_a_broken_bond_ends_survival():
    ref = toy_positions(400)
    same = simulation_metrics([ref[:201], ref[199:]], ref, ETHANOL_Z, 0.5)
    assert same["survived"] == same["survived_1.5x"] == 2 and same["median_horizon_fs"] == 100.0
    assert same["hr_mae"] < 0.05 and 50 < same["internal_temperature_K"] < 1e5
    broken = ref[:201].copy()
    broken[120:, 0] += np.array([0.5, 0.0, 0.0])  # atom 0 (a carbon) pulled 0.5 Å away from frame 120 on
    res = simulation_metrics([broken], ref, ETHANOL_Z, 0.5)
    assert res["survived"] == 0 and res["median_horizon_fs"] == 119 * 0.5
    assert res["valid_frames"] == 119  # only the frames before the first invalid one are pooled
    frozen = np.repeat(ref[:1], 201, axis=0)
    cold = simulation_metrics([frozen], ref, ETHANOL_Z, 0.5)
    assert cold["survived"] == 1 and cold["internal_temperature_K"] < 1e-6
