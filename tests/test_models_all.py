"""Every registered model, through the registry alone: built from its YAML file, equivariant as it
declares (``symmetry``), batched output equal to per-molecule output, and a tiny overfit for every
model the engine trains. A new model is tested here without touching this file.

Sizes: each model's YAML with the quick profile's ``model_params`` (config/quick.yaml), so the tests
stay small without a per-model table here. Models that need the reference potential (role
``oracle``) or train with their own package (``trainer = "own"``) are tested in their own files
(tests/test_physics.py, tests/test_forcefield.py), because they need real molecules and a trained
force field rather than the toy batch.
"""

from pathlib import Path

import pytest
import torch
import yaml

from diffmd import batch as B
from diffmd.cards import card
from diffmd.config import load_schema, resolve_model_config, split_train_overrides
from diffmd.registry import ROLES, available_models, build_model, get_model_class
from diffmd.testing import assert_batching, assert_equivariant, overfit, toy_batch, toy_samples

QUICK = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "quick.yaml").read_text())
MODELS = available_models()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def generic(name: str) -> bool:
    c = card(name)  # built and run here unless it needs the reference potential or its own package
    return "reference_potential" not in c.needs and c.fit != "own"


def quick_params(name: str) -> dict:
    params, _ = split_train_overrides(resolve_model_config(name, QUICK.get("model_params", {}).get(name)))
    if get_model_class(name).stride_from_config:
        params["stride"] = 1
    return params


def small_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The model at quick-profile size, float64, with any lazy state initialised by one training batch."""
    torch.manual_seed(seed)
    model = build_model(name, quick_params(name), source=f"{name} (quick sizes)").double()
    if model.trainable:
        with torch.no_grad():
            model.loss(with_forces(toy_batch(2, seed=5)))
    torch.manual_seed(seed)
    return model


def with_forces(batch: B.Batch, seed: int = 0) -> B.Batch:
    """The toy batch plus a FORCE_STEP (the data's force term), as real batches carry where data has forces."""
    g = torch.Generator().manual_seed(seed)
    return {**batch, B.FORCE_STEP: 1e-3 * torch.randn(batch[B.POSITIONS].shape, generator=g, dtype=torch.float64)}


def seeded_predict(model: torch.nn.Module):
    """``model.predict`` with the RNG reseeded first, so stochastic samplers compare sample by sample."""

    def fn(batch: B.Batch) -> torch.Tensor:
        torch.manual_seed(7)
        return model.predict(batch)

    return fn


def test_schema_lists_exactly_the_registered_models():
    schema = load_schema()
    assert sorted(schema["definitions"]["model_name"]["enum"]) == MODELS  # from the cards (load_schema)
    # a row of the tables: a registered model, or a variant the config defines (validate_config adds those)
    assert sorted(schema["definitions"]["row_name"]["enum"]) == MODELS
    assert schema["properties"]["models"]["items"] == {"$ref": "#/definitions/row_name"}
    assert schema["properties"]["model_params"]["propertyNames"] == {"$ref": "#/definitions/row_name"}


@pytest.mark.parametrize("name", MODELS)
def test_registry_attributes(name):
    cls = get_model_class(name)
    assert cls.name == name and cls.role in ROLES
    assert cls.trainer in ("engine", "own") and isinstance(cls.can_rollout, bool)


@pytest.mark.parametrize("name", MODELS)
def test_build_from_yaml_and_predict(name):
    if not generic(name):
        pytest.skip(f"{name}: needs the reference potential or its own trainer (tested in its own file)")
    params, _ = split_train_overrides(resolve_model_config(name))
    model = build_model(name, params, source=f"diffmd/models/configs/{name}.yaml")
    batch = B.to_device(with_forces(toy_batch(2)), "cpu", torch.float32)
    if model.trainable:
        loss = model.loss(batch)
        loss.backward()
        assert torch.isfinite(loss)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    pred = model.predict(batch)
    assert pred.shape == batch[B.POSITIONS].shape and torch.isfinite(pred).all()


@pytest.mark.parametrize("name", MODELS)
def test_equivariance(name):
    if not generic(name):
        pytest.skip(f"{name}: needs the reference potential or its own trainer (tested in its own file)")
    model = small_model(name).eval()
    symmetry = model.symmetry
    if model.adaptive_solver:
        pytest.skip(f"{name}: symmetric only to its solver's tolerance; exact pieces tested in its own file")
    batch = with_forces(toy_batch(3))
    fn = seeded_predict(model)
    if symmetry == "none":
        with pytest.raises(AssertionError):  # declared non-equivariant: it must indeed not be
            assert_equivariant(fn, batch, kind="position", reflect=False, atol=1e-6)
        return
    kind = "position"
    if model.trainable and _stochastic(model, [batch]):
        # its predictions are samples from noise drawn in the lab frame: equivariant in law, not sample by sample;
        # its network is checked here, its sampler with the noise transformed too in the model's own file
        fn, kind = model.network_call, "vector"
    for seed in (0, 1):
        assert_equivariant(fn, batch, kind=kind, reflect=symmetry == "O3", atol=1e-7, seed=seed)
    if symmetry == "SO3":  # rotations only: a reflection must break it (else the declaration is wrong)
        with pytest.raises(AssertionError):
            assert_equivariant(fn, batch, kind=kind, reflect=True, atol=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_batching(name):
    if not generic(name):
        pytest.skip(f"{name}: needs the reference potential or its own trainer (tested in its own file)")
    model = small_model(name).eval()
    samples = [with_forces(s, i) for i, s in enumerate(toy_samples(3))]
    if model.adaptive_solver:
        # per-molecule step control (diffmd/models/diffmd/ode_batch.py): each molecule takes the steps it takes
        # alone, so the batch agrees with one molecule at a time to float round-off through the solver
        assert_batching(model.predict, samples, atol=1e-5)
        return
    if model.symmetry == "none" or model.trainable and _stochastic(model, samples):
        pytest.skip(f"{name}: predictions are samples; its batching is tested on its network in its own file")
    assert_batching(model.predict, samples, atol=1e-9)


def _stochastic(model, samples) -> bool:
    batch = B.collate(samples)
    try:
        torch.manual_seed(1)
        a = model.predict(batch)
        torch.manual_seed(2)
        b = model.predict(batch)
    except RuntimeError:  # e.g. a scale set by the first training batch
        return True
    return not torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_overfit(name):
    """The training loss on one fixed batch drops 4x, with the loss's own randomness cycled over 8 draws
    (a finite, memorisable objective). Targets come from a differently seeded copy of the model where its
    prediction is deterministic (exactly representable), else the toy batch's own."""
    cls = get_model_class(name)
    if not cls.trainable or not generic(name):
        pytest.skip(f"{name}: nothing the engine trains")
    batch = with_forces(toy_batch(2, seed=3))
    teacher = small_model(name, seed=123).eval()
    if not _stochastic(teacher, [batch]):
        with torch.no_grad():
            batch[B.TARGET_POSITIONS] = teacher.predict(batch)
    model = small_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for step in range(150):
        torch.manual_seed(step % 8)
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first / 4, f"{name}: loss {first:.3e} -> {last:.3e}"


def test_overfit_helper_still_reports_first_and_best():
    first, best = overfit(small_model("egnn"), toy_batch(2), steps=5)
    assert best <= first


def test_unknown_yaml_key_and_bad_type_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter 'hiden'"):
        build_model("rf", {"hiden": 3})
    with pytest.raises(ValueError, match="parameter 'hidden' of model 'rf' must be int"):
        build_model("rf", {"hidden": "32"})


def test_a_model_yaml_may_override_the_trainer():
    _, train = split_train_overrides(resolve_model_config("se3_transformer"))
    assert train == {"batch_size": 100}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODELS)
def test_runs_on_cuda_like_on_cpu(name):
    if not generic(name):
        pytest.skip(f"{name}: tested in its own file")
    model = small_model(name).eval()
    batch = with_forces(toy_batch(3))
    fn = seeded_predict(model)
    cpu = fn(batch)
    gpu = seeded_predict(model.to("cuda"))(B.to_device(batch, "cuda"))
    if model.symmetry != "none" and not model.adaptive_solver:
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-8, rtol=0)
    assert gpu.shape == cpu.shape and torch.isfinite(gpu).all()
