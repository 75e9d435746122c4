"""Training, rollout and evaluation for every registered model: ``python -m diffmd.engine.{train,rollout,evaluate}``."""
