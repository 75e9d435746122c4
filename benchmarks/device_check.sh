#!/usr/bin/env bash
# The device check (issue 22): every unit the cost model prices, measured on the device at hand within one hard
# deadline (default 480 s), made for a bare CUDA image (its own python3 and torch, no .venv, no network). The work
# is benchmarks/device_check.py (its docstring lists the stages); this wrapper only picks the interpreter.
#
#   bash benchmarks/device_check.sh [--out results/device_check] [--deadline-s 480] [--stages env,units,...]
#
# On a bare image, install the prepared wheels first (docs/paper_scale.md, "The device check"):
#   pip install --no-index --no-deps --target .devdeps .whl/*.whl
#   PYTHONPATH=.devdeps bash benchmarks/device_check.sh
# Writes <out>/device_check.tar.gz, <out>/summary.md and <out>/units.json (`paper_cost --units-in`); exit 0 when
# every stage ended ok or skipped. PYTHON: the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m benchmarks.device_check "$@"
