#!/usr/bin/env bash
# make demo: the active-learning loop offline (cals simulate) with its default, CPU-sized
# configuration — see docs/label-efficiency.md. Resumes when OUT holds an unfinished run.
set -euo pipefail
OUT=${1:-demo-output}
CALS=${CALS:-.venv/bin/cals}
echo "== cals simulate --out $OUT (generated pool, body-only base model, random order on human labels alone vs with the pool set (the trainer's default: the pool's labels and pseudo-labels), 3 seeds)"
$CALS simulate --out "$OUT" "${@:2}"
echo "== plot: $OUT/label_efficiency.png"
