"""Reference predictors with nothing to learn.

* ``static``: x(t+1) = x(t), the paper's "constant prediction" (it also ranks the O2O targets);
* ``constant_velocity``: x(t+1) = x(t) + v(t) with v(t) = x(t) - x(t-1) the backward difference,
  i.e. straight-line extrapolation of the last step.
"""

from __future__ import annotations

import torch

from diffmd import batch as B
from diffmd.registry import TrajectoryModel, register_model


@register_model("static")
class Static(TrajectoryModel):
    """x(t+1) = x(t). Output (n_atoms, 3), Å."""

    # role reference, fit none: diffmd/models/cards.yaml

    def forward(self, batch: B.Batch) -> torch.Tensor:
        return batch[B.POSITIONS].clone()


@register_model("constant_velocity")
class ConstantVelocity(TrajectoryModel):
    """x(t+1) = x(t) + v(t). Output (n_atoms, 3), Å."""

    # role reference, fit none: diffmd/models/cards.yaml

    def forward(self, batch: B.Batch) -> torch.Tensor:
        return batch[B.POSITIONS] + batch[B.VELOCITIES]
