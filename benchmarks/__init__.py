"""Benchmarks that measure the project against the physics it imitates (see benchmarks/README.md)."""
