"""diffmd-bench: DiffMD (Wu & Li, AAAI 2023) and its baselines on real molecular dynamics."""

__version__ = "0.1.0"
