"""The cost-of-simulated-time benchmark's runs (benchmarks/cost.py): which learned simulators it times, which extra
strides it trains, and its manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostRun:
    """One simulator of the cost-of-simulated-time benchmark (benchmarks/cost.py)."""

    label: str
    checkpoint: str
    armse_json: str | None  # the table run's armse.json, or None for a cost-only checkpoint


class CostsPlan:
    """The plan's cost part (a part of :class:`diffmd.plan.Plan`)."""

    def cost_molecules(self) -> list[str]:
        chosen = self.config["score_dynamics"].get("cost_molecules")
        return list(self.md17_molecules[:1] if chosen is None else chosen)

    def cost_models(self) -> list[str]:
        """Learned simulators of the table whose rollout the cost benchmark times (:attr:`diffmd.cards.Card.learned`:
        no reference, floor or oracle rows)."""
        return [m for m in self.models if self._cards[m].learned and m in self.models_for("md17")]

    def cost_strided_model(self) -> str | None:
        """The model the cost benchmark also trains at ``score_dynamics.cost_strides`` (its stride comes
        from the config; a registered model's own row, not a variant of it; the one whose config section holds the
        cost settings, ``score_dynamics``, before any other such row), or None."""
        strided = [m for m in self.models if self._cards[m].stride == "config" and m not in self.variants]
        strided.sort(key=lambda m: "cost_strides" not in (self.config.get(m) or {}))  # stable: config order after
        return strided[0] if strided else None

    def cost_extra_strides(self) -> list[int]:
        """Cost strides that need their own checkpoint (the one equal to the table run's reuses it)."""
        model = self.cost_strided_model()
        strides = [int(k) for k in self.config["score_dynamics"]["cost_strides"]]
        if model is None:
            return []
        reuse = self.stride(model, "md17")
        return [k for k in strides if k != reuse]

    def cost_runs(self, molecule: str) -> list[CostRun]:
        seed = self.figure_seed()
        runs = []
        for model in self.cost_models():
            run = self.run_dir("md17", molecule, model, seed)
            k = self.stride(model, "md17")
            label = f"{model} (stride {k})" if self._cards[model].stride == "config" else model
            runs.append(CostRun(label, f"{run}/model.pt", f"{run}/armse.json"))
        model = self.cost_strided_model()
        for k in self.cost_extra_strides():
            ckpt = f"results/md17/{molecule}/cost/{model}/stride{k}/seed{seed}/model.pt"
            runs.append(CostRun(f"{model} (stride {k})", ckpt, None))
        return runs

    def cost_inputs(self) -> list[str]:
        files = []
        for molecule in self.cost_molecules():
            files.append(self.split_path("md17", molecule))
            for run in self.cost_runs(molecule):
                files += [run.checkpoint] + ([run.armse_json] if run.armse_json else [])
        return files

    def cost_manifest(self) -> dict[str, Any]:
        sd = self.config["score_dynamics"]
        molecules = {m: {"split": self.split_path("md17", m),
                         "runs": [{"label": r.label, "checkpoint": r.checkpoint, "armse_json": r.armse_json}
                                  for r in self.cost_runs(m)]}
                     for m in self.cost_molecules()}  # fmt: skip
        return {"molecules": molecules, "xtb": self.config["data"]["md17"].get("xtb", {}),
                "md_steps": int(sd["cost_md_steps"]), "frames": sd["cost_frames"],
                "seed": self.figure_seed()}  # fmt: skip (device and threads: the rule's command line)

    def cost_train_params(self, stride: int) -> dict[str, Any]:
        model = self.cost_strided_model()
        return {**self.model_params(model, "md17"), "stride": int(stride)}

    def has_cost_table(self) -> bool:
        return self.enabled("md17") and bool(self.cost_extra_strides() or self.cost_models())
