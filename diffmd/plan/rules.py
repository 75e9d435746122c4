"""The rule-facing helpers: the input functions and shell arguments Snakemake calls with a job's wildcards, the
learning-curve inputs, the report's files and the final targets (rule all). Each one only asks the other parts."""

from __future__ import annotations

from typing import Any

from diffmd.plan.core import O2O_TRAINED, PAPER_TABLES, TASKS, shell_arg


class RulesPlan:
    """The plan's rule-facing part (a part of :class:`diffmd.plan.Plan`)."""

    def split_of(self, w: Any) -> str:
        return self.split_path(w.dataset, w.molecule)

    def train_inputs(self, w: Any) -> dict[str, str]:
        self.check_train_run(w.dataset, w.molecule)
        return {"split": self.split_of(w)}

    def rollout_inputs(self, w: Any) -> dict[str, str]:
        run = self.run_dir(w.dataset, self.train_run(w.dataset, w.molecule), w.model, w.seed)
        return {"split": self.split_of(w), "checkpoint": f"{run}/model.pt"}

    def rollout_target(self, w: Any) -> str:
        return "" if self.task(w.dataset) == "s2l" else f"--target {w.molecule}"

    def base_model_of(self, w: Any) -> str:
        """:meth:`base_model` of a job's ``{model}`` wildcard (a row): what ``--model`` builds."""
        return self.base_model(w.model)

    def rollout_arg(self, w: Any) -> str:
        """:meth:`rollout_args` of a job's row, one shell argument."""
        return shell_arg(self.rollout_args(w.model))

    def rows_arg(self) -> str:
        """The reports' ``--models``: every row in the config's order, a variant as ``row=model`` (its role and card are
        its model's: the tables name the row and rank it by that role)."""
        return " ".join(m if self.base_model(m) == m else f"{m}={self.base_model(m)}" for m in self.models)

    def model_params_arg(self, w: Any) -> str:
        return shell_arg(self.model_params(w.model, w.dataset))

    def run_meta(self, w: Any) -> str:
        return shell_arg({"dataset": w.dataset, "molecule": w.molecule, "model": w.model, "seed": int(w.seed)})

    def na_reasons_arg(self, w: Any) -> str:
        return shell_arg(self.na_reasons(w.dataset))

    def gpu_of(self, w: Any) -> int:
        """:meth:`gpu` of a job's ``{model}`` wildcard."""
        return self.gpu(w.model)

    def train_logs(self, dataset: str, w: Any = None) -> list[str]:
        """The learning-curve figure's inputs for ``dataset`` (per molecule for S2L, the one O2O training run;
        none when the dataset is switched off), every trained model in the config's order: the figure seed's
        ``train_log.csv`` of a model the ``train`` rule trains, the ``selection.json`` of a model tuned over a
        grid (its selected point's log sits in that point's directory, which the selection names)."""
        if not self.enabled(dataset):
            return []
        runs = self.md17_molecules if self.task(dataset) == "s2l" else [O2O_TRAINED]
        engine, tuned = set(self.engine_models()), set(self.tuned_models())
        out = []
        for run in runs:
            for model in self.models_for(dataset):
                run_dir = self.run_dir(dataset, run, model, self.figure_seed())
                if model in engine:
                    out.append(f"{run_dir}/train_log.csv")
                elif model in tuned:
                    out.append(f"{run_dir}/selection.json")
        return out

    def train_logs_of(self, w: Any) -> list[str]:
        return self.train_logs(w.dataset)

    def grid_dir(self, w: Any) -> str:
        return f"{self.run_dir(w.dataset, w.molecule, w.model, w.seed)}/grid"

    def grid_point_arg(self, w: Any) -> str:
        return shell_arg(self.point_params(w.model, w.dataset, w.point))

    def grid_arg(self, w: Any) -> str:
        return shell_arg(self.grid(w.model))

    def grid_eps_arg(self, w: Any) -> str:
        return " ".join(self.grid_eps(w.model))

    def batch_eps_arg(self, w: Any) -> str:
        return "" if self.batch_eps(w.model) else "--no-batch-eps"

    def report_rollout_arg(self, w: Any) -> str:
        """``--no-report-rollout`` for a halving rung before the last (its points cannot become the run's model,
        so no rollout for the report; diffmd.engine.grid.rollout_plan), else nothing."""
        schedule = self.halving_schedule(w.model, w.dataset)
        return "" if not schedule or int(w.rung) == schedule[-1]["rung"] else "--no-report-rollout"

    def rung(self, w: Any) -> dict[str, int]:
        """The halving rung of a job's wildcards (``{rung}``); a rung or slot outside the schedule: KeyError."""
        schedule = self.halving_schedule(w.model, w.dataset)
        r, slot = int(w.rung), getattr(w, "slot", None)
        if r >= len(schedule) or (slot is not None and int(slot) >= schedule[r]["points"]):
            raise KeyError(f"{w.model} halving: no rung {w.rung} slot {slot} in {schedule}")
        return schedule[r]

    def rung_inputs(self, w: Any) -> dict[str, str]:
        """A halving slot's inputs: the split, and from rung 1 on the ranking of the rung before."""
        self.rung(w)
        out = {"split": self.split_of(w)}
        if int(w.rung) > 0:
            out["ranking"] = f"{self.grid_dir(w)}/rung{int(w.rung) - 1}/ranking.json"
        return out

    def rung_keep(self, w: Any) -> int:
        """How many points rung ``w.rung``'s ranking keeps: the next rung's size."""
        schedule = self.halving_schedule(w.model, w.dataset)
        r = int(w.rung)
        if r + 1 >= len(schedule):
            raise KeyError(f"{w.model} halving: rung {r} is the last; nothing ranks it")
        return schedule[r + 1]["points"]

    def rung_validations(self, w: Any, rung: int | None = None) -> list[str]:
        r = int(w.rung) if rung is None else rung
        n = self.halving_schedule(w.model, w.dataset)[r]["points"]
        return [f"{self.grid_dir(w)}/rung{r}/slot{j}/validation.json" for j in range(n)]

    def grid_validations(self, w: Any) -> list[str]:
        """The validation files the selection reads: every point's (full) or the last rung's (halving)."""
        if self.search(w.model) == "full":
            return [f"{self.grid_dir(w)}/{p}/validation.json" for p in self.grid_point_names(w.model)]
        last = self.halving_schedule(w.model, w.dataset)[-1]
        return self.rung_validations(w, last["rung"])

    def simulation_config_arg(self, w: Any) -> str:
        return shell_arg(self.simulation_config(w.dataset))

    def simulation_inputs(self, w: Any) -> dict[str, str]:
        """A simulation job's inputs: the split, the model's checkpoint and, where the data set has an ensemble
        model, the reference ensemble of the molecule."""
        out = self.rollout_inputs(w)
        if self.ensemble_model(w.dataset) is not None:
            out["ensemble"] = self.ensemble_path(w.dataset, w.molecule, w.seed)
        return out

    def ensemble_inputs(self, w: Any) -> dict[str, str]:
        model = self.ensemble_model(w.dataset)
        if model is None:
            raise KeyError(f"no ensemble-role model runs on {w.dataset}: no reference ensemble")
        run = self.run_dir(w.dataset, self.train_run(w.dataset, w.molecule), model, w.seed)
        return {"split": self.split_of(w), "checkpoint": f"{run}/model.pt"}

    def ensemble_arg(self, w: Any, input: Any) -> str:
        return f"--ensemble {input.ensemble}" if "ensemble" in input.keys() else ""

    def cost_inputs_of(self, w: Any) -> list[str]:
        return self.cost_inputs()

    def cost_train_arg(self, w: Any) -> str:
        return shell_arg(self.cost_train_params(int(w.k)))

    def training_benchmarks(self, patterns: dict[str, str]) -> list[str]:
        """The benchmark TSV of every training job behind the tables' runs (the costs table's training time), from the
        rules' own ``benchmark:`` patterns: ``patterns["train"]`` (the train rule: every model without a tuning),
        ``patterns["point"]`` (each point of a full grid search) and ``patterns["rung"]`` (each slot of a halving
        search); O2O models under their one training run."""
        out = []
        for dataset in (d for d in TASKS if self.enabled(d)):
            runs = self.md17_molecules if self.task(dataset) == "s2l" else [O2O_TRAINED]
            for run, model, seed in ((r, m, s) for r in runs for m in self.models_for(dataset) for s in self.seeds):
                w = {"dataset": dataset, "molecule": run, "model": model, "seed": seed}
                if self._cards[model].tuning is None:
                    out.append(patterns["train"].format(**w))
                elif self.search(model) == "full":
                    out += [patterns["point"].format(**w, point=p) for p in self.grid_point_names(model)]
                else:
                    out += [patterns["rung"].format(**w, rung=r["rung"], slot=j)
                            for r in self.halving_schedule(model, dataset) for j in range(r["points"])]  # fmt: skip
        return out

    def report_html_targets(self) -> list[str]:
        """The HTML twins of the benchmark tables this config builds (reports.smk's table_html)."""
        names = (["cost_md17"] if self.has_cost_table() else []) + ["paper_cost"]
        return [f"results/tables/{name}.html" for name in names]

    def report_files(self) -> list[str]:
        """The report's pages and figures known at parse time (every final table's HTML and every figure)."""
        return [p for p in self.static_targets() + self.report_html_targets() if p.endswith((".html", ".png"))]

    def check_report_inputs(self, run_root: str, basedir: Any) -> None:
        """Refuse ``snakemake --report`` with one line naming the run it needs when this config's run is not built
        (before Snakemake stops at the first missing file)."""
        import os
        from pathlib import Path

        files = self.report_files()
        missing = [p for p in files if not os.path.exists(p)]
        if not missing:
            return
        where = "the repository root" if os.path.normpath(run_root) == "." else run_root
        msg = (f"snakemake --report: {len(missing)} of this config's {len(files)} report files are missing under "
               f"{where} (e.g. {missing[0]}): the report bundles a finished run of the same config, so run it first "
               "(the same command without --report)")  # fmt: skip
        if os.path.normpath(run_root) == "." and (Path(basedir) / "runs" / "quick" / "results").is_dir():
            msg += ("; for the quick profile's run (runs/quick/): "
                    "snakemake --workflow-profile profiles/quick --report results/report.html")
        raise ValueError(msg)

    def static_targets(self) -> list[str]:
        """Every final output known at parse time (the C7O2H10 targets may come from the split checkpoint:
        their files are asked for by the workflow's input functions); only the enabled ``datasets``."""
        md17 = self.md17_molecules if self.enabled("md17") else []
        on = [d for d in TASKS if self.enabled(d)]
        out = [f"data/md17/{m}.npz" for m in md17]
        out += [f"data/md17/{m}.report.{ext}" for m in md17 for ext in ("csv", "md")]  # equilibrium of the data
        out += [self.split_path("md17", m) for m in md17]
        if self.enabled("c7o2h10"):
            out += ["data/c7o2h10/index.json", self.split_path("c7o2h10", "")]
        out += self.run_files("md17", md17, "armse.json")
        if self.has_cost_table():
            out.append("results/tables/cost_md17.csv")
        out += ["results/tables/paper_cost.csv", "results/tables/paper_cost.md", "results/tables/launches.csv",
                "results/tables/launches.md"]
        kinds = ("paper_vs_ours", "validity", "one_step", "distributions")
        tables = [PAPER_TABLES[d] for d in on] + [f"{k}_{d}" for k in kinds for d in on]
        out += [f"results/tables/{name}.{ext}" for name in tables for ext in ("csv", "md", "html")]
        out += [f"results/figures/{kind}_{d}.png" for kind in ("armse_curves", "hr", "learning_curves") for d in on]
        out += [f"results/figures/snapshots_md17_{m}.png" for m in md17]
        out += [f"results/tables/costs.{ext}" for ext in ("csv", "md", "html")]
        sims = self.simulation_datasets()
        out += self.simulation_files("md17", md17)
        out += [f"results/tables/simulation_{d}.{ext}" for d in sims for ext in ("csv", "md", "html")]
        out += [f"results/figures/survival_{d}.png" for d in sims]
        return out
