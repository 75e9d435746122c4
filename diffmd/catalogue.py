"""The metrics catalogue, decided once (torch-free): every metric the yardstick and the simulations write into the run
files (``armse.json``'s and ``simulation.json``'s ``metrics`` rows), with its unit, its direction (how the tables rank
it) and its cell format, and the title of its table section.

The engine writes each row's ``unit`` from here (:mod:`diffmd.engine.yardstick`, :mod:`diffmd.engine.simulate`), the
report tables format and bold their cells from here (:mod:`diffmd.reports.yardstick`); tests/test_catalogue.py checks
that every metric the engine writes is catalogued with the unit it writes.

Directions: ``"low"`` (lower is better), ``"high"``, ``"abs"`` (closer to 0), ``"ref"`` (closer to the reference row:
the ground truth's temperature, the data's internal temperature), ``None`` (shown, never ranked).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A bond longer than this many times its start length is broken: the distributions table's ``stable_fraction``
#: (a looser rule than the validity table's, which compares every bond with its mean ground-truth length).
BOND_BREAK_FACTOR = 1.5
#: The cell format of a metric that names none.
DEFAULT_FORMAT = ".3g"
DIRECTIONS = ("low", "high", "abs", "ref", None)


@dataclass(frozen=True)
class Metric:
    """One metric: its name in the run files, unit (as the rows write it; ``""``: dimensionless), direction, cell
    format, and the title of its section in the yardstick's tables (``title``) and in the simulation table
    (``simulation_title``, where the simulations compute it, on their own protocol)."""

    name: str
    unit: str
    direction: str | None = "low"
    fmt: str = DEFAULT_FORMAT
    title: str | None = None
    simulation_title: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction {self.direction!r} is not one of {DIRECTIONS}")
        format(0.5, self.fmt)  # a bad format fails here, not in a table


def _factor(x: float) -> str:
    return f"{x:g}"


_METRICS = (
    # the paper-protocol single rollout, and the multi-start horizons (armse.json)
    Metric("armse_paper", "Å", "low", ".3f"),
    Metric("armse_paper_literal", "Å"),
    Metric("armse", "Å", "low", ".3f", "ARMSE up to the horizon (Å)"),
    Metric("rmsd", "Å", "low", ".3f", "RMSD of the frame at the horizon (Å)"),
    Metric("armse_literal", "Å"),
    # one step (teacher-forced) and forces
    Metric("one_step_rmse", "Å", "low", title="One-step (teacher-forced) RMSE (Å, RMS per atom over the test frames)"),
    Metric("accel_r2", "", "high", ".3f", "Acceleration R² (fraction of the true second-difference variance explained "
           "by x̂(t+1) − x(t) − v(t); higher is better, 1 = exact)"),
    Metric("force_mae", "kcal/mol/Å", title="Force MAE on the held-out one-step frames (kcal/mol/Å, per component)"),
    Metric("force_rmse", "kcal/mol/Å", title="Force RMSE on the held-out one-step frames (kcal/mol/Å, per component)"),
    Metric("force_step_rmse", "Å", title="One-step error the force error alone predicts, |F_err|·dt²/m (Å, RMS per "
           "atom; compare with the row's one-step RMSE)"),
    # distributions (armse.json: per start; simulation.json: all stable frames pooled)
    Metric("hr_mae", "", title="h(r) MAE (dimensionless, 0 = identical interatomic-distance distributions, "
           "2 = disjoint)", simulation_title="h(r) MAE, all stable frames of all starts pooled (Fu et al.; 0 = the "
           "test segment's distances)"),
    Metric("bond_w1", "Å", title="Bond-length Wasserstein-1, mean over bond types (Å)",
           simulation_title="Bond-length Wasserstein-1, pooled, mean over bond types (Å)"),
    Metric("angle_w1", "deg", title="Bond-angle Wasserstein-1, mean over angle types (degrees)",
           simulation_title="Bond-angle Wasserstein-1, pooled, mean over angle types (degrees)"),
    Metric("temperature_K", "K", "ref", ".1f", "Kinetic temperature of the rollout frames (K; the ground-truth row: "
           "the reference frames)"),
    Metric("temperature_ref_K", "K", None, ".1f"),
    Metric("temperature_drift_K_per_ps", "K/ps", "abs", ".1f", "Kinetic-temperature drift (K/ps, closer to 0 is "
           "better)"),
    Metric("energy_excess_kcal_mol_atom", "kcal/mol/atom", "abs",
           title="Reference-potential energy excess over the ground truth (kcal/mol/atom)",
           simulation_title="Reference-potential energy over the test segment's, stable frames (kcal/mol/atom; "
           "closer to 0)"),
    Metric("stable_fraction", "", "high", ".2f", f"Stable fraction (starts keeping every bond shorter than "
           f"{_factor(BOND_BREAK_FACTOR)}x its start length over the whole horizon; higher is better)"),
    # simulations (simulation.json)
    Metric("survival_fraction", "", "high", ".2f", simulation_title="Survival: fraction of starts keeping every bond "
           "within Δ of its length for the whole run (higher is better)"),
    Metric("median_ttf_fs", "fs", "high", ".0f", simulation_title="Median time to failure (fs; ≥ L (censored): more "
           "than half of the starts survived the run)"),
    Metric("t_internal_K", "K", "ref", ".0f", simulation_title="Internal (vibrational) kinetic temperature over the "
           "stable frames (K; closer to the data's row)"),
    Metric("rigid_share", "", "ref", ".3f", simulation_title="Rigid-body (translation + rotation) share of the kinetic "
           "energy (closer to the data's row)"),
    Metric("energy_drift_kcal_mol_atom_per_ps", "kcal/mol/atom/ps", "abs", simulation_title="Reference-potential "
           "energy drift (kcal/mol/atom per ps; closer to 0)"),
    # proper scores against the physics ensemble (simulation.json)
    Metric("energy_score", "Å", simulation_title="Energy score of K samples against the physics ensemble (Å; lower "
           "is better, proper)"),
    Metric("energy_score_ideal", "Å"),
    Metric("crps", "Å", simulation_title="CRPS per coordinate against the physics ensemble (Å; lower is better, "
           "proper)"),
    Metric("energy_distance", "Å", simulation_title="Energy distance of the samples to the physics ensemble (Å; "
           "compare with the null row)"),
    Metric("energy_distance_null", "Å"),
)  # fmt: skip
#: Every catalogued metric by name.
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}


def metric(name: str) -> Metric:
    """The catalogue's entry of ``name``; an unknown name raises with the known ones."""
    if name not in METRICS:
        raise KeyError(f"metric {name!r} is not in the catalogue (diffmd/catalogue.py): {', '.join(METRICS)}")
    return METRICS[name]


def unit(name: str) -> str:
    """The unit ``name``'s rows are written with."""
    return metric(name).unit


def directions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    return {n: metric(n).direction for n in names}


def formats(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The formats of ``names`` that differ from :data:`DEFAULT_FORMAT`."""
    return {n: metric(n).fmt for n in names if metric(n).fmt != DEFAULT_FORMAT}


def titles(names: tuple[str, ...] | list[str], simulation: bool = False) -> dict[str, str]:
    """The section titles of ``names`` (the yardstick's tables, or the simulation table's) where one is set."""
    out = {}
    for n in names:
        m = metric(n)
        title = m.simulation_title if simulation else m.title
        if title is not None:
            out[n] = title
    return out


__all__ = ["BOND_BREAK_FACTOR", "DEFAULT_FORMAT", "METRICS", "Metric", "directions", "formats", "metric", "titles",
           "unit"]
