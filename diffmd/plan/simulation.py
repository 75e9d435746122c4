"""Simulations (diffmd/engine/simulate.py, workflow/rules/simulation.smk): which data sets and models are simulated,
each job's settings, the reference ensemble and the ``simulation.json`` files."""

from __future__ import annotations

from typing import Any

from diffmd.plan.core import TASKS


class SimulationPlan:
    """The plan's simulation part (a part of :class:`diffmd.plan.Plan`)."""

    def simulation_section(self) -> dict[str, Any]:
        """The ``simulation`` section with its defaults (``scores`` and ``hr`` merged key by key)."""
        from diffmd.config import section_defaults

        base, given = section_defaults("simulation"), dict(self.config.get("simulation") or {})
        out = {**base, **given}
        for key in ("scores", "hr"):
            out[key] = {**base[key], **(given.get(key) or {})}
        return out

    def simulation_datasets(self) -> list[str]:
        """The enabled data sets whose test segments are simulated (``simulation.datasets``)."""
        return [d for d in TASKS if self.enabled(d) and d in self.simulation_section()["datasets"]]

    def simulation_config(self, dataset: str) -> dict[str, Any]:
        """What a simulation job of ``dataset`` reads: the section without ``datasets`` and with the scoring horizon
        of ``dataset``. No device: the job takes CUDA where its model uses it and there is one (``auto``)."""
        sec = self.simulation_section()
        horizon = sec["scores"]["horizon_fs"]
        if isinstance(horizon, dict):
            if dataset not in horizon:
                raise ValueError(f"{self.origin}: simulation.scores.horizon_fs: no value for {dataset!r}")
            horizon = horizon[dataset]
        out = {k: v for k, v in sec.items() if k != "datasets"}
        out["scores"] = {**sec["scores"], "horizon_fs": float(horizon)}
        return out

    def simulation_models(self, dataset: str) -> list[str]:
        """The models of ``dataset`` that roll out (one-step floors are '—' in the simulation table)."""
        return [m for m in self.models_for(dataset) if not self._cards[m].one_step_only]

    def ensemble_model(self, dataset: str) -> str | None:
        """The model whose re-simulations are the proper scores' reference ensemble: the first ``ensemble``-role
        model that runs on ``dataset`` (a reference potential in the data's bath), or None (no scores)."""
        found = [m for m in self.models_for(dataset) if self._cards[m].role == "ensemble"]
        return found[0] if found else None

    @staticmethod
    def ensemble_path(dataset: str, molecule: str, seed: int | str) -> str:
        return f"results/{dataset}/{molecule}/simulation_ensemble/seed{seed}.npz"

    def simulation_files(self, dataset: str, molecules: list[str], seeds: list[int] | None = None) -> list[str]:
        """``simulation.json`` of every run of ``dataset`` that simulates (none for a data set not simulated)."""
        if dataset not in self.simulation_datasets():
            return []
        return [f"{self.run_dir(dataset, mol, model, seed)}/simulation.json"
                for mol in molecules for model in self.simulation_models(dataset)
                for seed in (seeds or self.seeds)]  # fmt: skip
