"""One card per model (diffmd/models/cards.yaml): read without torch, the class agrees with it at registration,
one ``learned`` question, instance facts as instance properties, and a plan that never imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffmd import cards as C
from diffmd.registry import (
    TrajectoryModel,
    apply_card,
    available_models,
    build_model,
    get_model_class,
    register_model,
)


def test_every_registered_model_has_a_card_the_class_agrees_with():
    assert sorted(C.cards()) == available_models()
    for name, c in C.cards().items():
        cls = get_model_class(name)  # registration checks the class against the card
        assert (cls.role, cls.tuning, tuple(cls.requires), cls.can_rollout) == (c.role, c.tuning, c.needs,
                                                                              not c.one_step_only)  # fmt: skip
        assert cls.trainable == c.engine_trained and (cls.trainer == "own") == (c.fit == "own")
        assert cls.stride_from_config == (c.stride == "config") and cls.bf16_refused == c.refuses.get("bf16")


def test_a_class_that_contradicts_its_card_is_refused():
    class Wrong(TrajectoryModel):
        role = "proposed"

    Wrong.__module__ = "diffmd.models.egnn"
    with pytest.raises(ValueError, match=r"Wrong.role = 'proposed', but its card says 'baseline'"):
        apply_card("egnn", Wrong)
    Wrong.__module__ = __name__
    with pytest.raises(ValueError, match="its card names module 'diffmd.models.egnn'"):
        apply_card("egnn", Wrong)
    with pytest.raises(ValueError, match="no card in diffmd/models/cards.yaml"):
        @register_model("not_a_model")
        class Unknown(TrajectoryModel):  # noqa: F841
            pass


def test_learned_is_the_one_question_of_the_cost_rows():
    learned = {n for n in C.cards() if C.learned(n)}
    assert {"egnn", "diffmd", "score_dynamics", "sgdml"} <= learned
    assert not learned & {"static", "constant_velocity", "force_verlet", "xtb_nve"}
    assert {n for n, c in C.cards().items() if c.engine_trained} == learned - {"sgdml", "ase_calculator"}


def test_bad_cards_are_one_line_errors():
    with pytest.raises(ValueError, match="egnn: role 'hero' is not one of"):
        C._card("egnn", {"module": "m", "role": "hero", "fit": "engine"})
    with pytest.raises(ValueError, match="a grid .* goes with fit: grid"):
        C._card("egnn", {"module": "m", "role": "baseline", "fit": "grid"})
    with pytest.raises(ValueError, match="unknown key"):
        C._card("egnn", {"module": "m", "role": "baseline", "fit": "engine", "trainable": True})


def test_params_are_checked_from_the_yaml_and_card_without_the_model():
    C.check_params("egnn", {"hidden": 8, "layers": 2})
    with pytest.raises(ValueError, match="unknown parameter 'hiden' for model 'egnn'"):
        C.check_params("egnn", {"hiden": 8}, "model_params.egnn")
    with pytest.raises(ValueError, match="parameter 'hidden' of model 'egnn' must be int, got str"):
        C.check_params("egnn", {"hidden": "8"})
    with pytest.raises(ValueError, match=r"parameter gmn.sticks must be one of"):
        C.check_params("gmn", {"sticks": "all"})


def test_instance_facts_are_instance_properties():
    assert build_model("score_dynamics", {"equivariant": False}).symmetry == "none"
    assert build_model("score_dynamics", {"equivariant": True}).symmetry == "O3"
    assert build_model("diffmd", {"sampler": "ode"}).adaptive_solver
    assert not build_model("diffmd", {"sampler": "euler_maruyama"}).adaptive_solver
    assert build_model("scfnn").symmetry == "SO3"


def test_the_plan_reads_cards_and_never_imports_torch():
    code = ("import sys, yaml; from diffmd.plan import Plan; p = Plan(yaml.safe_load(open('config.yaml'))); "
            "p.models_for('md17'); p.cost_models(); p.gpu('egnn'); p.grid_point_names('diffmd'); "
            "bad = [m for m in ('torch', 'e3nn', 'diffmd.registry') if m in sys.modules]; "
            "assert not bad, bad")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=C.CARDS_PATH.parents[2], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
