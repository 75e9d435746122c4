"""The experiment plan: what the workflow runs, decided here from the validated config (and tested).

The Snakemake rule files only name file patterns and call the package; every decision with a branch
lives in :class:`Plan`: the task of each dataset (S2L or O2O), run directories, each model's resolved
parameters (strides from the config included), the trainer and rollout settings, history frames,
the tuning points of tuned models, the cost benchmark's runs and the final targets. Models are
asked for their role, tuning and stride source through their cards (:mod:`diffmd.cards`), never
by name, and building a plan imports no torch.

The plan comes in parts, one module each, composed into :class:`Plan`:

- :mod:`.core`: the config and its checks at parse time, datasets and tasks, what each dataset offers,
  which models run where, resolved model parameters, stage argument sets, run directories;
- :mod:`.tuning`: the grids of tuned models and their successive-halving schedule;
- :mod:`.costs`: the cost-of-simulated-time benchmark's runs;
- :mod:`.simulation`: which models and data sets are simulated, the reference ensemble;
- :mod:`.rules`: what the rules call with a job's wildcards (inputs, shell arguments), the report's files and
  the final targets.
"""

from __future__ import annotations

from diffmd.config import deep_update
from diffmd.plan.core import (
    ISOMER_PATTERN,
    O2O_TRAINED,
    PAPER_TABLES,
    TASKS,
    PlanCore,
    as_json,
    fmt,
    shell_arg,
)
from diffmd.plan.costs import CostRun, CostsPlan
from diffmd.plan.rules import RulesPlan
from diffmd.plan.simulation import SimulationPlan
from diffmd.plan.tuning import GRID_SAMPLE_KEY, TUNINGS, GridSpec, TuningPlan, grid_points, point_params


class Plan(RulesPlan, SimulationPlan, CostsPlan, TuningPlan, PlanCore):
    """Everything the workflow needs, from one validated experiment config (defaults filled in)."""


__all__ = ["Plan", "CostRun", "GridSpec", "TASKS", "PAPER_TABLES", "O2O_TRAINED", "ISOMER_PATTERN", "GRID_SAMPLE_KEY",
           "TUNINGS", "grid_points", "point_params", "fmt", "as_json", "shell_arg", "deep_update"]
