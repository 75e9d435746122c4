"""Trainer: the paper's settings for every registered model, resumable, best-validation checkpoint.

Adam (lr 5e-4, weight decay 1e-10), ReduceLROnPlateau (patience 5, factor 0.5, floor 1e-7), batch
200, 200 epochs. Shuffling is drawn from a generator seeded by (seed, epoch), so it needs no state.

Losses are dimensionless: before training the engine sets ``model.loss_scale`` to the training pairs'
per-step acceleration scale (:func:`acceleration_scale`, Å/step², stored in the checkpoint as
``loss_scale``), and the default loss divides the residual x̂(t+k) - x(t+k) by it, so constant velocity
scores ~1 and the gradients sit far above Adam's eps (with the raw Å² loss, ~1e-6, most gradient entries
of several baselines fell below it; issue 13). Predictions and the batch contract are unchanged.
``model.after_optimizer_step()`` runs after every optimiser step (an EMA of the weights, ...).

Early stopping (``train.early_stop_patience``, default 20; 0: never): training stops once the selection
number has not improved for that many epochs. The check runs before each epoch, so a resumed run stops
exactly where the uninterrupted one did.

Validation (``train.select_by`` chooses which number keeps the best checkpoint and drives the LR
schedule; the log records both):

* ``val_one_step`` (``select_by: one_step``, the default): the teacher-forced one-step loss, computed
  every epoch. For ``val_frames`` validation frames t (spread evenly over the validation segments,
  :class:`diffmd.data.pairs.PairDataset`), ``model.predict`` gives x̂(t+k) from the true history, in
  batches of ``batch_size``; the value is the RMS per-atom error (Å),
  ``sqrt(mean over frames and atoms of |x̂(t+k) - x(t+k)|²)``; a non-finite prediction scores +inf.
  It is cheap, batched, and does not reward a model for standing still. It is computed under its own
  seed (seed, epoch) with every RNG saved and restored around it, so it never changes the training.
  The scheduler then steps every epoch, so its patience counts epochs.
* ``val_loss`` (``select_by: val_loss``): the model's own (dimensionless) training loss on the same
  validation frames, every epoch, with the same noise draws each time: for generative models (Score
  Dynamics), whose sampled one-step error is bias² plus the sampler's spread and so prefers a collapsed
  sampler; the one-step loss is then logged every ``val_every`` epochs only.
* ``val_armse`` (``select_by: rollout_armse``, the paper's choice): the aligned ARMSE
  (:mod:`diffmd.metrics`) of an autoregressive rollout of ``val_horizon`` frames from the first
  validation frame (O2O: from the start of each validation isomer, averaged), every ``val_every``
  epochs and at the last; a diverged validation rollout scores +inf. Long rollouts of a chaotic
  system decorrelate from the one reference realisation, so this metric rewards damped, near-static
  models (issue 12). With this choice the one-step loss is logged on the same epochs only, and the
  training is bitwise what it was before the one-step loss existed.

Validation rollouts run only where something reads them (issue 21): every ``val_every`` epochs and at the
last with ``select_by: rollout_armse`` (the selection and the LR schedule read them); with ``one_step`` or
``val_loss`` none during training (they were logged every ``val_every`` epochs before and selected nothing),
and one for the selected checkpoint at the end, so ``model.pt`` still holds its ``val_armse``
(``--no-final-rollout`` skips it for a grid point, whose validation job rolls out what its selection needs).
The paper selects on rollout ARMSE (``select_by: rollout_armse`` reproduces that protocol unchanged); this
project's default selects on the one-step loss (issue 12), so its logs no longer carry a rollout ARMSE per
``val_every`` epochs (docs/paper_scale.md).

The hot loop is launch-light and sync-free (docs/paper_scale.md): the training pairs are resident on the device
and gathered by index (:class:`diffmd.engine.batching.DeviceData`: batches bit for bit the dataset's, so a
seed gives the same training), structures constant per molecule are built once, the step returns the loss as
a device scalar and the epoch's mean is read once at its end; the one-step loss is summed on the device.

Files in ``--out``: ``model.pt`` (best validation, written at the end; keys ``val_armse``, and
``val_metric`` with ``select_by`` naming it), ``best.pt`` (the same, kept up to date during training),
``last.pt`` (model, optimizer, scheduler, RNG states, log; written atomically after every epoch: a
rerun of a killed job resumes from it and reaches bitwise the same final checkpoint on CPU),
``train_log.csv`` (``epoch, loss, val_one_step, val_armse, lr, seconds, val_loss``; empty cells where a number was
not computed) and ``provenance.json``. Once ``model.pt`` is written, ``last.pt`` is renamed
``last.done.pt``: a finished training is never resumed, so a rerun (``--forcerun train``, which deletes
``model.pt`` first) trains afresh, while a killed job (no ``model.pt`` yet) resumes. Temporary files
a killed job left beside these outputs are removed when training starts.

Models with nothing to learn (``trainable`` False) get one log row with both validation numbers
(``val_armse`` left empty for models that cannot roll out) and ``model.pt``.

CLI::

    python -m diffmd.engine.train --split SPLIT.json --model NAME --params JSON
        --train-config JSON --seed N --out DIR

Bad arguments or input (unknown model or key, missing or malformed file, invalid JSON in ``--params``
or ``--train-config``) print one line ``error: <file or key>: <what>`` and exit with status 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from diffmd import batch as B
from diffmd import selection
from diffmd.config import deep_update, section_defaults, split_train_overrides
from diffmd.data.pairs import PairDataset, Segment, load_split, split_segments, unroll_segments
from diffmd.engine.batching import DeviceData
from diffmd.engine.capture import compile_loss, matmul_precision
from diffmd.engine.checkpoints import check_state_dict
from diffmd.engine.cli import (  # noqa: F401 (re-exported)
    OneLineArgumentParser,
    add_machine_arguments,
    json_argument,
    machine_arguments,
    model_params_argument,
    run_cli,
    section_argument,
)
from diffmd.engine.common import (
    load_torch,
    resolve_device,
    rng_state,
    save_torch,
    seed_everything,
    set_rng_state,
    set_threads,
)
from diffmd.engine.objectives import check_options, engine_loss
from diffmd.engine.rollout import DIVERGENCE_BOUND_A, n_steps_for, rollout_copies
from diffmd.io import write_text
from diffmd.metrics import armse
from diffmd.provenance import sha256_file, write_provenance
from diffmd.registry import TrajectoryModel, build_model, uses_accelerator

#: The trainer's settings when the config gives none: the schema's ``train`` defaults (the one home of
#: every default, diffmd/config.schema.yaml) plus the rollout's divergence bound for validation rollouts.
#: ``train.precision`` values (:func:`autocast`).
PRECISIONS = ("float32", "tf32", "bf16")
DEFAULTS: dict[str, Any] = {**section_defaults("train"), "divergence_bound_A": DIVERGENCE_BOUND_A}
LOG_FIELDS = ("epoch", "loss", "val_one_step", "val_armse", "lr", "seconds", "val_loss")
#: The values of ``train.select_by``: the validation number that keeps the best checkpoint and drives the LR
#: (decided once in :mod:`diffmd.selection`, which the grid search reads too).
SELECT_BY = selection.SELECT_BY
#: Files the trainer writes into ``--out`` (their leftover temporary copies are removed at the start).
OUTPUT_FILES = ("train_log.csv", "last.pt", "best.pt", "model.pt", "last.done.pt", "provenance.json")
#: The training-objective options of diffmd/engine/objectives.py (input noise, pushforward unroll).
OBJECTIVE_KEYS = ("input_noise", "unroll")
#: Offset of the one-step loss's seed from the epoch's shuffling seed (any value apart from 0 would do).
ONE_STEP_SEED_OFFSET = 500_000

_T = TypeVar("_T")


def validation_rollouts(
    model: TrajectoryModel, segs: list[Segment], horizon: int, bound: float, device: torch.device
) -> dict[str, float]:
    """Rollouts of ``horizon`` frames from each segment's start, all segments as one batch of copies
    (:func:`diffmd.engine.rollout.rollout_copies`): ``{"armse"`` (mean aligned ARMSE, Å; inf if any diverged),
    ``"frames"`` (batched model steps taken), ``"score_evals"`` (batched evaluations, summed)``}``."""
    return validation_rollouts_eps(model, segs, [None], horizon, bound, device)[0]


def validation_rollouts_eps(
    model: TrajectoryModel, segs: list[Segment], eps_values: list[float | None], horizon: int, bound: float,
    device: torch.device,
) -> list[dict[str, float]]:  # fmt: skip
    """:func:`validation_rollouts` at every eps of ``eps_values`` (None: the model's own) in one batch: one copy
    per (segment, eps), ``model.eps`` one value per copy (the ODE sampler's per-molecule eps); per eps
    ``{"armse", "frames", "score_evals"}`` (frames and evaluations: the batch's)."""
    segs = list(segs)
    steps = [n_steps_for(seg, model.stride, horizon, seg.start) for seg in segs]
    n_steps = max(steps)
    copies = [(e, seg, n) for e in eps_values for seg, n in zip(segs, steps)]
    saved = getattr(model, "eps", None)
    if any(e is not None for e in eps_values):
        model.eps = torch.tensor([float(e) for e, _, _ in copies], dtype=torch.float32, device=device)
    try:
        res = rollout_copies(model, [c[1] for c in copies], np.array([c[1].start for c in copies]), n_steps, bound,
                             device)  # fmt: skip
    finally:
        if any(e is not None for e in eps_values):
            model.eps = saved
    k = model.stride
    div = res.diverged_at
    frames = max(res.steps_taken, 0)
    evals = float(res.score_evals.sum())
    out = []
    for e in eps_values:
        values, dead = [], False
        for i, (ce, seg, n) in enumerate(copies):
            if ce is not e:
                continue
            if 0 <= div[i] <= n:
                dead = True
                break
            idx = seg.start + k * np.arange(n + 1, dtype=np.int64)
            values.append(armse(res.positions[i][: n + 1], seg.positions[idx]))
        out.append({"armse": math.inf if dead else float(np.mean(values)), "frames": frames, "score_evals": evals})
    return out


def validation_armse(
    model: TrajectoryModel, segs: list[Segment], horizon: int, bound: float, device: torch.device
) -> float:
    """Mean aligned ARMSE (Å) of rollouts of ``horizon`` frames from each segment's start; inf if any diverged."""
    return validation_rollouts(model, segs, horizon, bound, device)["armse"]


def validation_pairs(segs: list[Segment], n_frames: int) -> PairDataset:
    """The one-step loss's validation frames: ``n_frames`` (or all, when fewer) spread evenly over ``segs``."""
    return PairDataset(segs, n_frames)


def on_device(data: PairDataset | DeviceData, device: torch.device, model: TrajectoryModel | None = None) -> DeviceData:
    """``data`` resident on ``device`` (:class:`diffmd.engine.batching.DeviceData`, with ``model``'s structures);
    a :class:`DeviceData` already there is returned as it is."""
    if isinstance(data, DeviceData) and data.device == torch.device(device):
        return data
    return DeviceData(data.data if isinstance(data, DeviceData) else data, device, model)


@torch.no_grad()
def validation_one_step(model: TrajectoryModel, data: PairDataset | DeviceData, batch_size: int,
                        device: torch.device) -> float:  # fmt: skip
    """Teacher-forced one-step loss: RMS per-atom error (Å) of ``model.predict`` x̂(t+k) against the true
    x(t+k) over every pair of ``data``, ``sqrt(sum |x̂ - x|² / (frames * atoms))``; inf if any prediction is
    not finite. Stateful simulators are started afresh on every batch (``begin_rollout``). The sums stay on the
    device (float64, the same arithmetic as a host sum) and are read once at the end."""
    model.eval()
    model.rollout_stats()  # reset counters
    data = on_device(data, device, model)
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    finite = torch.ones((), dtype=torch.bool, device=data.device)
    n_atoms = 0
    for batch in data.batches(batch_size):
        target = batch[B.TARGET_POSITIONS]
        inputs = B.inputs_only(batch)
        model.begin_rollout(inputs)
        pred = model.predict(inputs)
        finite &= torch.isfinite(pred).all()
        total += ((pred.double() - target.double()) ** 2).sum()
        n_atoms += int(target.shape[0])
    model.rollout_stats()
    if not bool(finite):
        return math.inf
    return math.sqrt(float(total) / max(n_atoms, 1))


@torch.no_grad()
def validation_loss(model: TrajectoryModel, data: PairDataset | DeviceData, batch_size: int,
                    device: torch.device) -> float:  # fmt: skip
    """The model's own training loss (dimensionless) on the validation pairs, eval mode: the selection number
    of generative models (``select_by: val_loss``), whose sampled one-step error rewards a collapsed sampler
    (a sample's squared error is its bias² plus its spread). inf if not finite. Summed on the device (float64)
    and read once."""
    model.eval()
    data = on_device(data, device, model)
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    for batch in data.batches(batch_size):
        m = B.num_molecules(batch)
        total += model.loss(batch).double() * m
        count += m
    value = float(total) / max(count, 1)
    return value if math.isfinite(value) else math.inf


def select_metric(select_by: str, one: float | None, val: float | None, vloss: float | None) -> float | None:
    """The number ``select_by`` names among the one-step loss, the rollout ARMSE and the validation loss
    (:func:`diffmd.selection.metric`, shared with the grid search)."""
    return selection.metric(select_by, one, val, vloss)


def selection_val_loss(model: TrajectoryModel, data: PairDataset | DeviceData, batch_size: int,
                       device: torch.device, seed: int) -> float:  # fmt: skip
    """The validation loss a ``select_by: val_loss`` selection reads: the same noise draws at every call (every
    epoch, every grid point and eps), so the candidates compare."""
    return isolated_rng(one_step_seed(seed, 0) + 1, lambda: validation_loss(model, data, batch_size, device))


def isolated_rng(seed: int, fn: Callable[[], _T]) -> _T:
    """``fn()`` under ``seed``, with every RNG's state saved before and restored after (training is unchanged)."""
    saved = rng_state()
    try:
        seed_everything(seed)
        return fn()
    finally:
        set_rng_state(saved)


def one_step_seed(seed: int, epoch: int) -> int:
    """The seed of the one-step loss after ``epoch`` (0: reference models and the final model)."""
    return seed * 1_000_003 + ONE_STEP_SEED_OFFSET + epoch


def resolve_train_config(train_cfg: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer's settings: :data:`DEFAULTS` <- the config's ``train`` <- the model's own ``train:``."""
    cfg = deep_update(deep_update(DEFAULTS, train_cfg), overrides or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"train config: unknown key(s) {', '.join(unknown)}")
    if cfg["precision"] not in PRECISIONS:
        raise ValueError(f"train.precision: expected one of {PRECISIONS}, got {cfg['precision']!r}")
    if cfg["select_by"] not in SELECT_BY:
        raise ValueError(f"train.select_by: {cfg['select_by']!r} is not one of {', '.join(SELECT_BY)}")
    frames = cfg["val_frames"]
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"train.val_frames: must be an integer >= 1, got {frames!r}")
    check_options(cfg)  # train.input_noise, train.unroll (diffmd/engine/objectives.py)
    return cfg


def checkpoint(model: TrajectoryModel, params: dict, epoch: int, val: float | None,
               train_overrides: dict | None = None, val_metric: float | None = None,
               select_by: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``model.pt`` payload (docs/ARCHITECTURE.md); ``train_overrides``: the model's own ``train:``.

    ``val``: the validation rollout ARMSE (key ``val_armse``; None where not computed); ``val_metric``: the
    number the checkpoint was selected by, ``select_by`` naming it (default: the ARMSE itself).
    """
    state = {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    select_by = select_by or "rollout_armse"
    metric = val if select_by == "rollout_armse" and val_metric is None else val_metric
    return {"model": model.name, "params": params, "state_dict": state, "epoch": epoch, "val_armse": val,
            "val_metric": metric, "select_by": select_by, "train_overrides": dict(train_overrides or {}),
            "loss_scale": float(model.loss_scale)}  # fmt: skip


def acceleration_scale(data: PairDataset, batch_size: int = 2000) -> float:
    """The per-step acceleration scale of ``data`` (Å/step²): the RMS over every coordinate of every pair of
    x(t+k) - x(t) - v(t), the second difference constant velocity gets wrong. Losses divide their residual
    by it (:attr:`diffmd.registry.TrajectoryModel.loss_scale`), so constant velocity scores ~1 and the
    gradients sit far above Adam's eps whatever the time step. 1.0 when the data has no acceleration."""
    total, count = 0.0, 0
    for batch in data.batches(batch_size, dtype=torch.float64):
        acc = batch[B.TARGET_POSITIONS] - batch[B.POSITIONS] - batch[B.VELOCITIES]
        total += float((acc**2).sum())
        count += acc.numel()
    scale = math.sqrt(total / max(count, 1))
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def autocast(device: torch.device, precision: str):
    """The training step's autocast (``train.precision``): bf16 autocast, or none (float32; tf32 is float32
    tensors with TF32 matmuls, :func:`diffmd.engine.capture.matmul_precision`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision: expected one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def train_step(model: TrajectoryModel, opt: torch.optim.Optimizer, batch: B.Batch, device: torch.device,
               precision: str = "float32",
               loss_fn: Callable[[B.Batch], torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """One optimiser step on ``batch``: zero the gradients, the loss (``loss_fn``, default ``model.loss``; under
    ``precision``'s autocast), backward, step, ``after_optimizer_step``. Returns the loss (a device scalar: no
    host read, so the host queues the next step while the device computes this one)."""
    opt.zero_grad(set_to_none=True)
    with matmul_precision(device, precision):  # TF32 in the backward's matmuls too (autocast ends before it)
        with autocast(device, precision):
            loss = (loss_fn or model.loss)(batch).float()
        loss.backward()
    opt.step()
    model.after_optimizer_step()
    return loss.detach()


def train_epoch(
    model: TrajectoryModel, opt: torch.optim.Optimizer, data: PairDataset | DeviceData, cfg: dict, seed: int,
    epoch: int, device: torch.device, loss_fn: Callable[[B.Batch], torch.Tensor] | None = None,
) -> float:  # fmt: skip
    """One pass over the shuffled training pairs (resident on the device, gathered by index); returns the mean
    loss per molecule, read from the device once at the end of the epoch. ``loss_fn``: default ``cfg``'s objective
    (:func:`diffmd.engine.objectives.engine_loss`: ``model.loss`` unless ``train.input_noise`` / ``train.unroll``)."""
    loss_fn = loss_fn or engine_loss(model, cfg)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    model.train()
    data = on_device(data, device, model)
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    n_batches = math.ceil(len(data) / cfg["batch_size"])
    bar = tqdm(data.batches(cfg["batch_size"], gen), total=n_batches, desc=f"epoch {epoch}", leave=False,
               disable=None, mininterval=5.0)  # fmt: skip
    precision = cfg.get("precision", "float32")
    for batch in bar:
        loss = train_step(model, opt, batch, device, precision, loss_fn)
        m = B.num_molecules(batch)
        total += loss.double() * m  # float(loss) * m, summed in float64 as on the host, without reading it
        count += m
    return float(total) / max(count, 1)


def _write_log(out: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, restval="")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    write_text(out / "train_log.csv", buf.getvalue())


def _num(value: float | None, fmt: str = ".4e", width: int = 10) -> str:
    """``value`` formatted, or blanks of the same width where it was not computed."""
    return " " * width if value is None else f"{value:{width}{fmt}}"


def _clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def format_epoch_line(row: dict[str, Any], n_epochs: int, elapsed_s: float | None = None,
                      eta_s: float | None = None) -> str:  # fmt: skip
    """The printed log line of one epoch: ``epoch k/N``, the numbers (blank where not computed), times."""
    width = len(str(n_epochs))
    line = (f"epoch {row['epoch']:>{width}d}/{n_epochs}  loss {_num(row['loss'])}  "
            f"val_one_step {_num(row.get('val_one_step'))}  val_armse {_num(row.get('val_armse'))}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f}s")  # fmt: skip
    if elapsed_s is not None:
        line += f"  elapsed {_clock(elapsed_s)}"
    if eta_s is not None:
        line += f"  eta {_clock(eta_s)}"
    return line


def _log(row: dict[str, Any], n_epochs: int, rows: list[dict[str, Any]] | None = None) -> None:
    """Print one epoch's line; elapsed and ETA from the epochs' seconds in ``rows`` (this run's and resumed)."""
    elapsed = eta = None
    if rows:
        elapsed = float(sum(r["seconds"] for r in rows))
        eta = elapsed / len(rows) * max(n_epochs - int(row["epoch"]), 0)
    print(format_epoch_line(row, n_epochs, elapsed, eta), flush=True)


def remove_temporaries(out: Path) -> list[Path]:
    """Remove the temporary files (``.<name>.*``, :func:`diffmd.io.atomic_path`) a killed job left beside the
    trainer's outputs; returns them."""
    gone = []
    for name in OUTPUT_FILES:
        for tmp in out.glob(f".{name}.*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                gone.append(tmp)
    return gone


def _finish(out: Path) -> None:
    """After ``model.pt`` is written: ``last.pt`` -> ``last.done.pt``, so no later run resumes a finished one."""
    if (out / "last.pt").exists():
        os.replace(out / "last.pt", out / "last.done.pt")


def rollout_epochs(cfg: dict[str, Any], n_epochs: int | None = None) -> list[int]:
    """The epochs after which the trainer rolls the model out for validation: every ``val_every`` epochs and the
    last, when ``select_by`` is ``rollout_armse`` (the selection and the LR schedule read it); none otherwise.
    (The selected checkpoint's rollout at the end, :func:`fit`'s ``final_rollout``, comes on top.)"""
    n_epochs = int(cfg["epochs"]) if n_epochs is None else n_epochs
    if cfg["select_by"] != "rollout_armse":
        return []
    return [e for e in range(1, n_epochs + 1) if e % int(cfg["val_every"]) == 0 or e == n_epochs]


def one_step_epochs(cfg: dict[str, Any], n_epochs: int | None = None) -> list[int]:
    """The epochs after which the trainer computes the one-step loss: every epoch when it selects
    (``select_by: one_step``); else every ``val_every`` epochs and the last, for the log."""
    n_epochs = int(cfg["epochs"]) if n_epochs is None else n_epochs
    if cfg["select_by"] == "one_step":
        return list(range(1, n_epochs + 1))
    return [e for e in range(1, n_epochs + 1) if e % int(cfg["val_every"]) == 0 or e == n_epochs]


def fit(model: TrajectoryModel, params: dict, cfg: dict, data: PairDataset, val_segs: list[Segment],
        seed: int, out: Path, device: torch.device, inputs: list[str],
        overrides: dict | None = None, val_data: PairDataset | None = None,
        final_rollout: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train (resuming from ``out/last.pt`` when present) and write ``out/model.pt``.

    ``last.pt`` is only resumed when it was written for the same model, parameters, training
    settings, seed and input files (by SHA-256); otherwise training starts afresh. A finished training
    leaves ``last.done.pt`` instead, which is never resumed. ``val_data``: the one-step loss's frames
    (default: :func:`validation_pairs` of ``val_segs``). Validation rollouts run on :func:`rollout_epochs` only;
    ``final_rollout``: roll the selected checkpoint out once at the end when its epoch had none, so
    ``model.pt`` holds its ``val_armse`` (off for a grid point, whose validation job rolls out what it needs).
    The training pairs and the one-step frames live on the device for the whole run (:class:`DeviceData`).
    """
    select_by = cfg["select_by"]
    if val_data is None:
        val_data = validation_pairs(val_segs, cfg["val_frames"])
    data = on_device(data, device, model)
    val_data = on_device(val_data, device, model)
    val_epochs = set(rollout_epochs(cfg))
    log_epochs = set(one_step_epochs(cfg))
    sch = cfg["scheduler"]
    # fused (one kernel per step, capturable) on CUDA; the default (for-loop) elsewhere, as before
    fused = True if torch.device(device).type == "cuda" else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=fused)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=sch["factor"], patience=sch["patience"], min_lr=sch["min_lr"]
    )
    # the objective options (issue 24) enter the key only when set, so a run from before they existed resumes
    unset = {k for k in OBJECTIVE_KEYS if cfg.get(k, DEFAULTS[k]) == DEFAULTS[k]}
    key = json.dumps({"model": model.name, "params": params, "seed": seed, "inputs": [sha256_file(p) for p in inputs],
                      "train": {k: v for k, v in cfg.items() if k not in ("device", "compile", *unset)}},
                     sort_keys=True)  # fmt: skip
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "rows": [], "key": key}
    last = load_torch(out / "last.pt") if (out / "last.pt").exists() else None
    if last is not None and last.get("key") != key:
        print(f"{out / 'last.pt'} belongs to another configuration: starting afresh", flush=True)
        last = None
    if last is None:
        (out / "best.pt").unlink(missing_ok=True)
        (out / "last.done.pt").unlink(missing_ok=True)
    else:
        try:  # a damaged last.pt: one line naming it (diffmd.engine.checkpoints), not a traceback
            check_state_dict(model, last["model_state"], f"{out / 'last.pt'}: model_state")
            model.load_state_dict(last["model_state"])
            opt.load_state_dict(last["optimizer"])
            sched.load_state_dict(last["scheduler"])
            set_rng_state(last["rng"])
            state = {k: last[k] for k in state}
        except (KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise ValueError(f"{out / 'last.pt'}: cannot resume from it ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); delete it to start"
                             " afresh") from None
        print(f"resuming from {out / 'last.pt'} after epoch {state['epoch']}", flush=True)

    def one_step(epoch: int) -> float:
        return isolated_rng(one_step_seed(seed, epoch),
                            lambda: validation_one_step(model, val_data, cfg["batch_size"], device))  # fmt: skip

    def rollout_armse() -> float:
        return validation_armse(model, val_segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)

    def val_loss() -> float:  # the same noise draws every epoch, so epochs compare
        return selection_val_loss(model, val_data, cfg["batch_size"], device, seed)

    n_epochs, patience = cfg["epochs"], cfg["early_stop_patience"]
    for epoch in range(state["epoch"] + 1, n_epochs + 1):
        # checked before each epoch, so a resumed run stops exactly where the uninterrupted one did
        if patience and state["best_epoch"] >= 0 and state["epoch"] - state["best_epoch"] >= patience:
            print(f"early stop after epoch {state['epoch']}: no better {select_by} validation for {patience} "
                  f"epochs (best {state['best_val']:.4e} at epoch {state['best_epoch']})", flush=True)  # fmt: skip
            break
        t0 = time.perf_counter()
        loss = train_epoch(model, opt, data, cfg, seed, epoch, device)
        val = rollout_armse() if epoch in val_epochs else None
        one = one_step(epoch) if epoch in log_epochs else None
        vloss = val_loss() if selection.needs_val_loss(select_by) else None
        metric = select_metric(select_by, one, val, vloss)
        if metric is not None:
            sched.step(metric)
            if metric < state["best_val"]:
                state["best_val"], state["best_epoch"] = metric, epoch
                save_torch(out / "best.pt", checkpoint(model, params, epoch, val, overrides, metric, select_by))
        row = {"epoch": epoch, "loss": loss, "val_one_step": one, "val_armse": val, "lr": opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0, "val_loss": vloss}  # fmt: skip
        state["rows"].append(row)
        state["epoch"] = epoch
        _log(row, n_epochs, state["rows"])
        _write_log(out, state["rows"])
        save_torch(out / "last.pt", {**state, "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "rng": rng_state()})  # fmt: skip
    if not (out / "best.pt").exists():  # no finite validation: keep the final model
        val = rollout_armse() if selection.needs_rollout(select_by) or final_rollout else None
        one = one_step(0)
        metric = select_metric(select_by, one, val, val_loss() if selection.needs_val_loss(select_by) else None)
        save_torch(out / "best.pt", checkpoint(model, params, state["epoch"], val, overrides, metric, select_by))
    best = load_torch(out / "best.pt")
    if best["val_armse"] is None and final_rollout:  # selected on an epoch without a rollout: roll the best one out
        model.load_state_dict(best["state_dict"])
        best["val_armse"] = rollout_armse()
        save_torch(out / "best.pt", best)
    save_torch(out / "model.pt", best)
    _finish(out)
    return {"best_epoch": best["epoch"], "best_val_armse": best["val_armse"], "best_val_metric": best["val_metric"],
            "select_by": select_by, "epochs": state["epoch"]}  # fmt: skip


def reference_only(model: TrajectoryModel, params: dict, cfg: dict, data: PairDataset, val_segs: list[Segment],
                   out: Path, device: torch.device, overrides: dict | None = None, seed: int = 0,
                   val_data: PairDataset | None = None) -> dict[str, Any]:  # fmt: skip
    """Models with nothing to learn: one log row (training loss, both validation numbers) and model.pt.

    ``val_armse`` is None (an empty cell) for models that cannot roll out (``can_rollout`` False).
    """
    t0 = time.perf_counter()
    if val_data is None:
        val_data = validation_pairs(val_segs, cfg["val_frames"])
    try:  # a simulator (a physics oracle) has no training loss: its row leaves the cell blank
        with torch.no_grad():
            losses = [float(model.loss(B.to_device(b, device))) * B.num_molecules(b) for b in data.batches(1000)]
        train_loss = sum(losses) / len(data)
    except TypeError:
        train_loss = None
    return _single_row(model, params, cfg, val_segs, val_data, out, device, overrides, seed, t0, train_loss)


def _single_row(model: TrajectoryModel, params: dict, cfg: dict, val_segs: list[Segment], val_data: PairDataset,
                out: Path, device: torch.device, overrides: dict | None, seed: int, t0: float,
                train_loss: float | None) -> dict[str, Any]:  # fmt: skip
    """A model trained (or not trained) outside the epoch loop: both validation numbers (``val_armse`` None
    when it cannot roll out), one log row and ``model.pt``; returns the run's summary."""
    select_by = cfg["select_by"]
    val = None
    if model.can_rollout:
        val = validation_armse(model, val_segs, cfg["val_horizon"], cfg["divergence_bound_A"], device)
    one = isolated_rng(one_step_seed(seed, 0), lambda: validation_one_step(model, val_data, cfg["batch_size"], device))
    vloss = None
    if selection.needs_val_loss(select_by):
        try:  # a simulator (a physics oracle) has no loss: nothing to select by, the metric stays None
            vloss = selection_val_loss(model, val_data, cfg["batch_size"], device, seed)
        except TypeError:
            vloss = None
    metric = select_metric(select_by, one, val, vloss)
    row = {"epoch": 0, "loss": train_loss, "val_one_step": one, "val_armse": val, "lr": 0.0,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    _log(row, 0)
    _write_log(out, [row])
    save_torch(out / "model.pt", checkpoint(model, params, 0, val, overrides, metric, select_by))
    return {"best_epoch": 0, "best_val_armse": val, "best_val_metric": metric, "select_by": select_by, "epochs": 0}


def own_trainer(model: TrajectoryModel, params: dict, cfg: dict, split: dict, val_segs: list[Segment], out: Path,
                device: torch.device, overrides: dict | None, seed: int,
                val_data: PairDataset) -> dict[str, Any]:  # fmt: skip
    """Models with ``trainer = "own"`` (a force field's package): ``fit_own`` on the training and validation
    segments, then one log row with both validation numbers and model.pt (the engine's loss is not used)."""
    t0 = time.perf_counter()
    train_segs = split_segments(split, "train", stride=model.stride)
    summary = model.fit_own(train_segs, val_segs, seed, str(out))
    print(f"{model.name}: own trainer: {json.dumps(summary, default=str)}", flush=True)
    info = _single_row(model, params, cfg, val_segs, val_data, out, device, overrides, seed, t0, None)
    return {**info, "own_trainer": summary}


def data_facts(split_path: str) -> dict[str, float]:
    """The facts the split's training trajectories carry in their files (dt_fs, temperature_K): one value each, or
    a one-line error naming the split when its trajectories disagree."""
    from diffmd.cards import DATA_FACTS

    segs = split_segments(load_split(split_path), "train")
    facts: dict[str, float] = {}
    for key in DATA_FACTS:
        values = sorted({float(getattr(seg, key)) for seg in segs})
        if len(values) != 1:
            raise ValueError(f"{split_path}: its training trajectories disagree on {key} ({values}): a model that "
                             "takes it from the data cannot be trained on them together")  # fmt: skip
        facts[key] = values[0]
    return facts


def with_data_params(model_name: str, params: dict[str, Any], split_path: str) -> dict[str, Any]:
    """``params`` with the model's ``data_params`` (its card) from the training data's own file: the time step and
    temperature travel with the data, never from a config section that may describe another source."""
    from diffmd.cards import card, data_values

    if not card(model_name).data_params:
        return params
    values = data_values(model_name, data_facts(split_path))
    for key, value in values.items():
        if key in params and params[key] is not None and float(params[key]) != value:
            print(f"{model_name}: {key} = {value:g} from the training data's file (the parameters said "
                  f"{params[key]!r})", flush=True)  # fmt: skip
    return {**params, **values}


def train(split_path: str, model_name: str, params: dict, train_cfg: dict, seed: int, out: str | Path,
          final_rollout: bool = True) -> dict:  # fmt: skip
    """Build the model and data, then train (or only evaluate a reference model); see module docstring.
    ``final_rollout``: :func:`fit`'s (off for a grid point: its validation job rolls out what a selection needs)."""
    params, overrides = split_train_overrides(params)
    cfg = resolve_train_config(train_cfg, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in remove_temporaries(out):
        print(f"removed {tmp}, left by an earlier run", flush=True)
    try:
        device = resolve_device(cfg["device"])
    except RuntimeError as exc:
        raise ValueError(f"train.device: {exc}") from None
    seed_everything(seed)
    params = with_data_params(model_name, params, split_path)
    model = build_model(model_name, params, source="--params")
    if not uses_accelerator(model):  # a CPU row (reference, floor, oracle, own trainer): never on the GPU
        device = torch.device("cpu")
    model = model.to(device)
    if cfg["precision"] == "bf16" and model.bf16_refused:
        raise ValueError(f"train.precision: bf16 is refused for {model_name}: {model.bf16_refused}")
    if cfg["precision"] == "tf32" and model.tf32_refused:
        raise ValueError(f"train.precision: tf32 is refused for {model_name}: {model.tf32_refused}")
    if model.trainable and model.trainer == "engine" and compile_loss(model, device, cfg["compile"]):
        print(f"{model_name}: compiled its loss for {device} (train.compile {cfg['compile']})", flush=True)
    params = {**params, "stride": model.stride}
    split = load_split(split_path)
    unroll = int(cfg["unroll"])  # > 1: the pairs carry x(t + unroll) (diffmd/engine/objectives.py)
    data = PairDataset(unroll_segments(split_segments(split, "train", stride=model.stride), unroll),
                       cfg["max_train_pairs"], unroll)  # fmt: skip
    model.loss_scale = acceleration_scale(data)
    print(f"{model_name}: loss scale (RMS per-step acceleration of the training pairs) {model.loss_scale:.4e} "
          "Å/step²", flush=True)  # fmt: skip
    val_segs = split_segments(split, "val", stride=model.stride)
    val_data = validation_pairs(val_segs, cfg["val_frames"])
    print(f"{model_name}: {len(data)} training pairs, {len(val_segs)} validation segment(s), device {device};"
          f" selecting by {cfg['select_by']} ({len(val_data)} one-step validation frames)", flush=True)  # fmt: skip
    inputs = [split_path] + sorted({s.path for s in data.segments + val_segs})
    if model.trainer == "own":
        info = own_trainer(model, params, cfg, split, val_segs, out, device, overrides, seed, val_data)
    elif model.trainable:
        info = fit(model, params, cfg, data, val_segs, seed, out, device, inputs, overrides, val_data, final_rollout)
    else:
        info = reference_only(model, params, cfg, data, val_segs, out, device, overrides, seed, val_data)
    write_provenance(out, config={"model": model_name, "params": params, "train": cfg, "seed": seed},
                     inputs=inputs, device=str(device), extra=info)  # fmt: skip
    return info


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The train CLI (module docstring); returns the exit status."""
    p = OneLineArgumentParser(description="Train a registered model on a split (resumes from DIR/last.pt).")
    p.add_argument("--split", required=True, help="split JSON (data/splits/md17/<molecule>.json or c7o2h10.json)")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--params", default="{}", help="JSON: model hyper-parameters (+ optional 'train' overrides)")
    p.add_argument("--train-config", default="{}", help="JSON: the config's train section")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    add_machine_arguments(p, "train.compile")
    p.add_argument("--no-final-rollout", action="store_true",
                   help="no validation rollout of the selected checkpoint at the end (a grid point's validation "
                        "job rolls out what its selection needs)")  # fmt: skip
    a = p.parse_args(argv)

    def body() -> None:
        params = model_params_argument(a.params, "--params", a.model)  # types and declared choices, one line
        train_cfg = section_argument(a.train_config, "--train-config", "train", "rollout")
        train_cfg.update(machine_arguments(a, train_cfg))  # device, compile: the machine's (diffmd/stages.py)
        set_threads(a.threads)
        info = train(a.split, a.model, params, train_cfg, a.seed, a.out, not a.no_final_rollout)
        print(json.dumps(info))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
