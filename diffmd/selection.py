"""The selection metric, decided once (torch-free): which validation number ``train.select_by`` names, which
numbers a selection must compute, and the value a checkpoint or a grid row is selected by.

The trainer (:mod:`diffmd.engine.train`: the best epoch, the LR schedule) and the grid search
(:mod:`diffmd.engine.grid`: the best point and eps) both call :func:`metric`, so a grid row labelled
``val_loss`` holds the validation loss, as a trained checkpoint labelled ``val_loss`` does
(tests/test_selection.py fails if the two ever disagree).
"""

from __future__ import annotations

#: ``train.select_by`` -> the validation number it names (the key of a log row, a checkpoint and a grid row).
NUMBERS = {"one_step": "val_one_step", "rollout_armse": "val_armse", "val_loss": "val_loss"}
#: The values of ``train.select_by``.
SELECT_BY = tuple(NUMBERS)


def check(select_by: str) -> str:
    if select_by not in NUMBERS:
        raise ValueError(f"train.select_by: {select_by!r} is not one of {', '.join(SELECT_BY)}")
    return select_by


def metric(select_by: str, one_step: float | None, rollout_armse: float | None,
           val_loss: float | None) -> float | None:  # fmt: skip
    """The number ``select_by`` names among the one-step loss (Å), the validation rollout ARMSE (Å) and the
    model's own validation loss (dimensionless); None where that number was not computed."""
    return {"one_step": one_step, "rollout_armse": rollout_armse, "val_loss": val_loss}[check(select_by)]


def needs_rollout(select_by: str) -> bool:
    """Whether selecting by ``select_by`` needs a validation rollout of every candidate (only ``rollout_armse``)."""
    return check(select_by) == "rollout_armse"


def needs_val_loss(select_by: str) -> bool:
    """Whether selecting by ``select_by`` needs the model's loss on the validation pairs."""
    return check(select_by) == "val_loss"


__all__ = ["NUMBERS", "SELECT_BY", "check", "metric", "needs_rollout", "needs_val_loss"]
