#!/usr/bin/env bash
# A short generate -> train -> evaluate -> predict pass on synthetic people.
# (The full active-learning loop with a simulated annotator replaces this later.)
set -euo pipefail
OUT=${1:-demo-output}
CALS=${CALS:-.venv/bin/cals}
ITERS=${ITERS:-600}
mkdir -p "$OUT"
echo "== generating synthetic people into $OUT"
$CALS generate --out "$OUT/train" --images 800 --seed 1
$CALS generate --out "$OUT/val" --images 150 --seed 2 --mix upright=0.2,bending=0.2,sitting=0.2,lying=0.2,twisting=0.2
echo "== training the CPU model for $ITERS iterations"
version=$($CALS train --data "$OUT/train" --registry "$OUT/registry" --iters "$ITERS" --val "$OUT/val" --promote)
echo "== evaluating $version on held-out images"
$CALS evaluate --data "$OUT/val" --registry "$OUT/registry" --out "$OUT/metrics.json" > /dev/null
.venv/bin/python -m cals.report "$OUT/metrics.json"
$CALS predict --images "$OUT/val/images" --boxes "$OUT/val/annotations.json" --registry "$OUT/registry" --out "$OUT/predictions.json"
$CALS models list --registry "$OUT/registry"
echo "== done: metrics in $OUT/metrics.json, predictions in $OUT/predictions.json"
