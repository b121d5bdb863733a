#!/usr/bin/env bash
# make benchmark-al: label efficiency measured long enough to decide (README "Label efficiency").
# One `cals simulate` on the demo's data set-up (pool 80/15/5 upright/bending/lying, balanced test
# set): random, least confidence and hybrid (the sampler's default) on 5 seeds and 5 rounds, with
# paired statistics and a verdict per strategy; the six other strategies on the first seed only (a
# survey: no verdict from one seed). A stronger base model than the demo's (2000 iterations, trained
# once and cached). Resumable. Measured on 2 CPU cores: 44 min.
set -euo pipefail
OUT=${1:-bench/results/al}
CALS=${CALS:-.venv/bin/cals}
start=$(date +%s)
$CALS simulate --out "$OUT" --strategies random,least_confidence,hybrid --seeds 0,1,2,3,4 --rounds 5 \
  --survey entropy,multipeak_entropy,flip,committee,pose,coreset --base-iters 2000 "${@:2}"
echo "== benchmark-al: $(( ($(date +%s) - start) / 60 )) min; $OUT/results.json, results.csv, label_efficiency.png"
