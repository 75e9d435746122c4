"""The one model registry and the one model signature.

Every model (reference models, DiffMD, the baselines, Score Dynamics) is an ``nn.Module``
subclass of :class:`TrajectoryModel` registered with ``@register_model("name")``. The engine
only ever calls three things on it:

* ``model.loss(batch) -> Tensor``: scalar training objective on a batch with targets;
* ``model.predict(batch) -> Tensor``: the next positions x(t+1), shape (n_atoms, 3), in Å;
* ``model.rollout_stats() -> dict``: counters the rollout logs (e.g. score evaluations).

``forward(batch)`` is the model's own business (next positions for deterministic models, a
score for the diffusion models). ``stride`` (frames per model step) is set from the model's
parameters by :func:`build_model`; everything else in the parameters goes to ``__init__``.

Modules are imported lazily by name (heavy imports such as e3nn stay in the files that need
them), so listing or building one model never imports the others.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from diffmd import batch as B
from diffmd.cards import RANKED_ROLES, ROLES, card, cards  # noqa: F401 (re-exported: the roles live on the cards)

#: name -> module that registers it: from the model cards (diffmd/models/cards.yaml), the one registry list.
MODEL_MODULES: dict[str, str] = {name: c.module for name, c in cards().items()}

_REGISTRY: dict[str, type[TrajectoryModel]] = {}


class TrajectoryModel(nn.Module):
    """Base class: predicts x(t+1) from the batch contract (see :mod:`diffmd.batch`)."""

    # The model's card (diffmd/models/cards.yaml) gives the class these, at registration: role, trainable,
    # trainer, tuning, requires, can_rollout, stride_from_config, source_params, bf16_refused, tf32_refused and
    # the grid_* keys of a grid model. A class body need not state them; where it does, it must agree.
    #: True for a network the engine trains (card fit engine or grid); False for rows with nothing the engine trains.
    trainable: bool = True
    #: The row's role in the tables, one of :data:`ROLES`.
    role: str = "baseline"
    #: How the model's checkpoint is chosen: ``None`` (the engine's trainer) or the name of a tuning
    #: procedure the experiment plan knows (``"diffmd_grid"``: one training per grid point, then select).
    tuning: str | None = None
    #: True when the frames per step come from the experiment config (``<name>.stride.<dataset>``)
    #: rather than being 1; the plan resolves it (Score Dynamics).
    stride_from_config: bool = False
    #: Whether a step conserves linear and angular momentum by construction (an energy-conserving head: True);
    #: None: as :func:`diffmd.engine.rigid.conserves_momentum` decides (the networks the engine trains do not).
    #: ``rollout.rigid_motion: remove`` strips the rigid-body part of the steps of models that do not.
    conserves_momentum: bool | None = None
    #: Why the model's training step must stay float32 (``train.precision: bf16`` is refused with this
    #: reason); ``None``: bf16 autocast is allowed (tests/test_precision.py checks it against float32).
    bf16_refused: str | None = None
    #: Why the model's training step must not use TF32 matmuls (``train.precision: tf32`` is refused with this
    #: reason); ``None``: allowed (tests/test_precision.py checks it against float32 with TF32 emulated).
    tf32_refused: str | None = None
    #: ``"engine"``: trained by the engine's loop on ``loss(batch)``; ``"own"``: the model trains itself
    #: with its package's own trainer through :meth:`fit_own` (machine-learned force fields).
    trainer: str = "engine"
    #: What the data must offer for the model to run: ``"forces"`` (force labels in the trajectory),
    #: ``"reference_potential"`` (a potential the pipeline can call: the ``xtb`` source), ``"one_molecule"``
    #: (a single-molecule model: S2L only). The plan leaves the model out where one is missing and the
    #: tables print NA with the reason.
    requires: tuple[str, ...] = ()
    #: Constructor parameters the plan fills from the simulated source's settings ``data.<dataset>.xtb``
    #: (a friction the trajectory file does not carry), so a re-simulation uses the data's own conditions.
    source_params: tuple[str, ...] = ()
    #: Constructor parameters the trainer sets from the training data's trajectory file (dt_fs, temperature_K).
    data_params: tuple[str, ...] = ()
    #: False for one-step-only models that need data the rollout cannot provide (e.g. the data's forces).
    can_rollout: bool = True
    #: JSON-schema fragments of constructor parameters whose values are constrained beyond their default's type
    #: (a set of choices, a range, a number or a non-empty list): :func:`check_params` validates them with the key
    #: path named, at parse time (the plan) and on every build, so a bad config value stops the dry run instead of
    #: the job. Declared next to the constructor that enforces them (tests/test_models_all.py checks that every
    #: string option a constructor refuses is declared here).
    param_schema: dict[str, dict[str, Any]] = {}
    #: Frames of the source trajectory per model step; set by :func:`build_model`.
    stride: int = 1
    #: Registry name, set by :func:`register_model`.
    name: str = ""
    #: Å per step²: the training split's per-step acceleration scale, the RMS over coordinates of
    #: x(t+k) - x(t) - v(t) (what constant velocity gets wrong). The engine sets it before training
    #: (:func:`diffmd.engine.train.acceleration_scale`) and stores it in the checkpoint; losses divide
    #: their residual by it so they, and their gradients, sit at unit scale far above Adam's eps.
    loss_scale: float = 1.0

    @property
    def symmetry(self) -> str:
        """The symmetry this instance's prediction has by construction, checked by the tests over every registered
        model: ``"O3"`` (rotations, reflections, translations, atom permutations), ``"SO3"`` (rotations only, e.g.
        right-handed local frames) or ``"none"`` (learned from augmentation). An instance fact: a model's
        parameters may change it (Score Dynamics' ``equivariant``)."""
        return "O3"

    @property
    def adaptive_solver(self) -> bool:
        """True when this instance's predictions come from an adaptive solver whose step control reads the
        coordinates' components over the whole batch: symmetry and batching then hold to the solver's tolerance
        only, and the generic tests check the model's exact pieces in its own test file instead."""
        return False

    @property
    def eps_batchable(self) -> bool:
        """True when one sampling pass gives the predictions at several smallest diffusion times ``eps``
        (:meth:`predict_eps_path`) and a rollout may run copies each with its own ``eps``: the grid search
        (:mod:`diffmd.engine.grid`) then validates every eps of a point at once. An instance fact (DiffMD: the ODE
        sampler only)."""
        return False

    def predict_eps_path(self, batch: B.Batch, eps_values: list[float]) -> list[torch.Tensor]:
        """x(t+1) at every ``eps`` of ``eps_values``, from one sampling pass (models with :attr:`eps_batchable`)."""
        raise NotImplementedError(f"{self.name}: no prediction at several eps in one pass (eps_batchable is False)")

    def loss(self, batch: B.Batch) -> torch.Tensor:
        """Mean squared error of the predicted next positions per coordinate, in units of
        :attr:`loss_scale` squared (dimensionless: constant velocity scores about 1)."""
        pred = self(batch)
        return (((pred - batch[B.TARGET_POSITIONS]) / self.loss_scale) ** 2).mean()

    def after_optimizer_step(self) -> None:
        """Called by the engine's trainer after every optimiser step (an EMA of the weights, ...); no-op by
        default. Whatever it keeps must live in buffers, so the checkpoint and a resumed run carry it."""

    @torch.no_grad()
    def predict(self, batch: B.Batch) -> torch.Tensor:
        """Next positions x(t+1), shape (n_atoms, 3), Å."""
        return self(B.inputs_only(batch))

    def rollout_stats(self) -> dict[str, float]:
        """Counters accumulated since the last call (and reset by it); empty by default."""
        return {}

    def fit_own(self, train: list, val: list, seed: int, out_dir: str) -> dict[str, Any]:
        """Train with the model's own trainer on the training and validation segments
        (:class:`diffmd.data.pairs.Segment`, with ``forces``/``energies`` where the source has them).

        Only for ``trainer = "own"``; afterwards ``state_dict()`` must hold everything needed to predict
        (tensors only: checkpoints load with ``weights_only=True``). Returns a summary for the log.
        """
        raise NotImplementedError(f"model {self.name!r} has trainer {self.trainer!r}: it has no own trainer")

    def begin_rollout(self, batch: B.Batch) -> None:
        """Called once with the start frames' batch before a rollout's first step (no-op by default).

        Simulators that keep their own state (the physics oracle, force fields integrated with ASE)
        initialise it here; every learned model is a pure function of the batch and ignores it.
        """

    @property
    def conditions_on(self) -> str:
        """What the model's next frame is conditioned on: ``"xv"`` (positions and their history: velocities)
        or ``"x"`` (positions only). A proper score compares the model's samples with physics re-simulations
        that share it (:mod:`diffmd.engine.simulate`: the data's velocities, or Maxwell-Boltzmann ones)."""
        return "xv"

    def compile_targets(self) -> list[nn.Module]:
        """The modules ``train.compile`` / ``rollout.compile`` capture (:mod:`diffmd.engine.capture`): the network,
        whose shapes are static for a batch, never a sampler's data-dependent loop. Default: the whole model
        (its ``forward`` is its network); diffusion models name their score network."""
        return [self]

    def network_call(self, batch: B.Batch) -> torch.Tensor:
        """One evaluation of the network on ``batch`` (what a sampler pays per step; the cost model's ``eval``
        unit): ``forward`` by default; a model whose ``forward`` samples overrides it."""
        return self(batch)

    def molecule_structures(self, numbers: Any, graph: dict[str, Any]) -> dict[str, Any]:
        """Index structures that are constant for one molecule and that ``forward``/``loss`` read (a complete
        graph, sticks, triplets): ``{name: (..., L) int64 numpy array of local atom indices}``, from the
        molecule's atomic numbers (n,) and its bonded graph (:func:`diffmd.graph.bonded_graph`). The engine's
        batch builders (:mod:`diffmd.engine.batching`) call it once per molecule and put each one in the batch
        under ``batch.STRUCTURE + name`` as global indices, so no step rebuilds them or reads the device to do
        so (a forward that finds one missing builds it from the batch: :func:`diffmd.batch.structure`). It may
        raise ``ValueError`` for a molecule the model cannot handle (an element it has no data for). None by
        default."""
        return {}


def register_model(name: str):
    """Class decorator: ``@register_model("egnn")``."""

    def deco(cls: type[TrajectoryModel]) -> type[TrajectoryModel]:
        if not issubclass(cls, TrajectoryModel):
            raise TypeError(f"{cls.__name__} must subclass TrajectoryModel to be registered")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice")
        apply_card(name, cls)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _declared(cls: type, attr: str) -> tuple[bool, Any]:
    """Whether a class body between ``cls`` and :class:`TrajectoryModel` states ``attr`` (values a registration
    gave a parent class from its own card do not count), and the value."""
    for klass in cls.__mro__:
        if klass is TrajectoryModel or not issubclass(klass, TrajectoryModel):
            break
        if attr in klass.__dict__ and attr not in klass.__dict__.get("_card_attributes", ()):
            return True, klass.__dict__[attr]
    return False, None


def apply_card(name: str, cls: type[TrajectoryModel]) -> None:
    """Give ``cls`` the facts of model ``name``'s card as class attributes; a class body that states one of them
    differently raises, naming both (the card is where the fact is decided: diffmd/models/cards.yaml)."""
    try:
        attrs = card(name).class_attributes()
    except KeyError:
        raise ValueError(f"model {name!r} has no card in diffmd/models/cards.yaml: add one "
                         "(docs/adding_a_model.md)") from None
    if MODEL_MODULES.get(name) != cls.__module__ and not cls.__module__.startswith(f"{MODEL_MODULES.get(name)}."):
        raise ValueError(f"model {name!r}: its card names module {MODEL_MODULES.get(name)!r}, but {cls.__name__} "
                         f"is defined in {cls.__module__!r}")  # fmt: skip
    for attr, value in attrs.items():
        declared, stated = _declared(cls, attr)
        if declared and (tuple(stated) if isinstance(stated, list | tuple) else stated) != value:
            raise ValueError(f"model {name!r}: {cls.__name__}.{attr} = {stated!r}, but its card says {value!r} "
                             "(diffmd/models/cards.yaml decides it; remove it from the class or fix the card)")
        setattr(cls, attr, value)
    cls._card_attributes = tuple(attrs)
    _check_declarations(name, cls)


def available_models() -> list[str]:
    return sorted(MODEL_MODULES)


def get_model_class(name: str) -> type[TrajectoryModel]:
    if name not in _REGISTRY:
        if name not in MODEL_MODULES:
            raise KeyError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
        importlib.import_module(MODEL_MODULES[name])
        if name not in _REGISTRY:
            raise KeyError(f"module {MODEL_MODULES[name]} did not register model {name!r}")
    return _REGISTRY[name]


def build_model(name: str, params: dict[str, Any] | None = None, source: str = "model parameters"):
    """Instantiate a registered model from its parameter dict.

    ``stride`` is taken out of ``params`` and set on the model; an unknown parameter raises a
    ``ValueError`` naming the key and ``source`` (the YAML file or config key it came from).
    """
    cls = get_model_class(name)
    params = dict(params or {})
    stride = int(params.pop("stride", 1))
    if stride < 1:
        raise ValueError(f"{source}: stride must be >= 1, got {stride}")
    check_params(name, params, source)
    model = cls(**params)
    model.stride = stride
    return model


def uses_accelerator(model: type[TrajectoryModel] | TrajectoryModel) -> bool:
    """Whether ``model``'s jobs run on the accelerator (CUDA when present): a network the engine trains
    (:attr:`diffmd.cards.Card.engine_trained`). Reference rows and floors (closed form), physics oracles (a CPU
    potential) and own-trainer force fields (their package, on a CPU) run on the CPU whatever ``device`` says, and
    their jobs never hold a GPU (the plan's ``gpu``)."""
    return card(model.name).engine_trained


def model_role(name: str) -> str:
    """The role of model ``name``, from its card (no import)."""
    return card(name).role


def check_params(name: str, params: dict[str, Any], source: str = "model parameters") -> None:
    """Constructor parameters against the model's YAML and card, without importing it (:func:`diffmd.cards.
    check_params`): an unknown key or a value of the wrong type or outside its declared choices raises one line."""
    from diffmd.cards import check_params as _check

    _check(name, params, source)


def param_types(name: str) -> dict[str, dict[str, Any]]:
    """A JSON schema per constructor parameter of model ``name`` (:func:`diffmd.cards.param_schemas`; untyped ones
    left out). Used to coerce command-line strings (:func:`diffmd.config.coerce_model_params`)."""
    from diffmd.cards import param_schemas

    return {k: v for k, v in param_schemas(name).items() if v is not None}


def _check_declarations(name: str, cls: type[TrajectoryModel]) -> None:
    """The model's YAML lists exactly its constructor's parameters (the YAML is where the plan reads them without
    importing the model), and the class's ``param_schema`` says what its card's ``params`` say."""
    import json

    from diffmd.config import load_model_file, model_config_path

    sig = inspect.signature(cls.__init__)
    params = {k for k, p in sig.parameters.items() if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    listed = set(load_model_file(name)) - {"train", "stride"}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    missing, unknown = sorted(params - listed), sorted(listed - params) if not open_ended else []
    if missing or unknown:
        raise ValueError(f"model {name!r}: {model_config_path(name)} must list every constructor parameter with its "
                         f"default: missing {missing}, not a parameter {unknown}")  # fmt: skip
    declared = card(name).params
    if json.dumps(cls.param_schema, sort_keys=True) != json.dumps(declared, sort_keys=True):
        raise ValueError(f"model {name!r}: {cls.__name__}.param_schema and the params of its card "
                         "(diffmd/models/cards.yaml) differ: make them say the same")  # fmt: skip


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
