#!/usr/bin/env bash
# Prepared device check (issue 14), <= 8 minutes on a GPU: the CUDA tests, the paper-scale cost model
# (benchmarks/paper_cost.py), DiffMD's batched validation (benchmarks/batched_validation.py: 6 eps x 16
# starts in one call vs one at a time) and the batched multi-start rollouts (benchmarks/multistart.py) on the device
# at hand, summarised in one file, <out-dir>/summary.md (default results/device_check/). The cost model's measured
# unit costs stay in <out-dir>/paper_cost_units.json: `python -m benchmarks.paper_cost --units-in FILE ...`
# projects any config from them on any machine, labelled with the device they were measured on.
# Without a GPU it still runs, shortened, on CPU.
#
#   bash benchmarks/device_check.sh [OUT_DIR]
#
# Environment: PYTHON (default .venv/bin/python, else python), DEVICE_CHECK_BUDGET_S (the cost model's
# measuring budget; default 240 on a GPU, 30 on CPU), DEVICE_CHECK_SKIP_PYTEST=1 (skip the CUDA tests),
# DEVICE_CHECK_STEPS (multi-start steps; default 10 on a GPU, 3 on CPU), DEVICE_CHECK_MODELS (multi-start
# models; default "egnn diffmd"), DEVICE_CHECK_CONFIG_JSON (the cost model's --config-json; default config.yaml).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${1:-results/device_check}"
mkdir -p "$OUT"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

DEVICE=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
NAME=$("$PYTHON" -c 'import platform, torch
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})")')
if [[ "$DEVICE" == cuda ]]; then
    BUDGET="${DEVICE_CHECK_BUDGET_S:-240}"; STEPS="${DEVICE_CHECK_STEPS:-10}"; STARTS=16; BV_SIZES="quick paper"
else
    BUDGET="${DEVICE_CHECK_BUDGET_S:-30}"; STEPS="${DEVICE_CHECK_STEPS:-3}"; STARTS=4; BV_SIZES="quick"
fi
echo "device check on $NAME ($DEVICE): cost budget ${BUDGET}s, multi-start ${STARTS} starts x ${STEPS} steps -> $OUT"

T0=$(date +%s)
PYTEST_LINE="skipped (DEVICE_CHECK_SKIP_PYTEST=1)"
if [[ "${DEVICE_CHECK_SKIP_PYTEST:-0}" != 1 ]]; then
    set +e
    "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider > "$OUT/pytest_cuda.log" 2>&1
    RC=$?
    set -e
    # exit 5: nothing collected (every CUDA test deselected or skipped); anything else but 0 is a failure
    PYTEST_LINE="exit $RC: $(tail -n 1 "$OUT/pytest_cuda.log")"
    if [[ $RC -ne 0 && $RC -ne 5 ]]; then FAILED=1; fi
fi

CONFIG_ARG=()
if [[ -n "${DEVICE_CHECK_CONFIG_JSON:-}" ]]; then CONFIG_ARG=(--config-json "$DEVICE_CHECK_CONFIG_JSON"); fi
read -r -a MODELS <<< "${DEVICE_CHECK_MODELS:-egnn diffmd}"
"$PYTHON" -m benchmarks.paper_cost --device "$DEVICE" --budget-s "$BUDGET" "${CONFIG_ARG[@]}" \
    --units-out "$OUT/paper_cost_units.json" --out-csv "$OUT/paper_cost.csv" --out-md "$OUT/paper_cost.md" \
    > "$OUT/paper_cost.log" 2>&1
"$PYTHON" -m benchmarks.multistart --device "$DEVICE" --models "${MODELS[@]}" --starts "$STARTS" --steps "$STEPS" \
    --out-csv "$OUT/multistart.csv" --out-md "$OUT/multistart.md" > "$OUT/multistart.log" 2>&1
read -r -a BV <<< "$BV_SIZES"
"$PYTHON" -m benchmarks.batched_validation --device "$DEVICE" --sizes "${BV[@]}" --starts "$STARTS" --steps 2 \
    --paper-steps 1 --reference-tol 0 --out-csv "$OUT/batched_validation.csv" \
    --out-md "$OUT/batched_validation.md" > "$OUT/batched_validation.log" 2>&1
T1=$(date +%s)

{
    echo "# Device check: $NAME"
    echo
    echo "- device: $DEVICE ($NAME), torch $("$PYTHON" -c 'import torch; print(torch.__version__)'), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- wall time: $((T1 - T0)) s"
    echo "- CUDA tests (pytest -m cuda): $PYTEST_LINE"
    echo
    echo "## Multi-start rollouts (benchmarks/multistart.py, paper-size models, $STARTS starts x $STEPS steps)"
    echo
    cat "$OUT/multistart.md"
    echo
    echo "## DiffMD batched validation (benchmarks/batched_validation.py, $STARTS starts)"
    echo
    sed '1d' "$OUT/batched_validation.md"
    echo
    echo "## Paper-scale cost model (benchmarks/paper_cost.py, budget ${BUDGET} s)"
    echo
    sed '1d' "$OUT/paper_cost.md"
} > "$OUT/summary.md"
echo "wrote $OUT/summary.md"
if [[ "${FAILED:-0}" == 1 ]]; then
    echo "CUDA tests failed: see $OUT/pytest_cuda.log" >&2
    exit 1
fi
