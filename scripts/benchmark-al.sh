#!/usr/bin/env bash
# make benchmark-al: label efficiency in the regime users work in (docs/label-efficiency.md).
# One `cals simulate`: a generated pool of 1000 frames (80/15/5 upright/bending/lying), a balanced
# test set of 150, 20 random labels then 5 rounds of 20 (120 labels, 12 % of the pool), the trainer's
# own split and gate, a 2000-iteration body-only base model (trained once and cached). On 5 seeds with
# paired statistics and a verdict each, against random order on human labels alone (the former default):
#   random@pool                   + the pool's own body labels on the frames nobody labelled
#   random@pool+pseudo            + the served model's confident spine points there (pseudo-labels)
#   least_confidence@pool+pseudo  people label what the model doubts, the pool set teaches the rest
# Resumable; strategies or seeds may be changed on a finished run (the campaigns done are reused).
# STRESS=1: the 300-frame pool with a 100-frame test set (120 labels = 40 % of it), 3 seeds.
# About 60 min for the main regime on 2 cores with the base model trained; 20 min for STRESS=1.
set -euo pipefail
CALS=${CALS:-.venv/bin/cals}
if [[ "${STRESS:-0}" == 1 ]]; then
  OUT=${1:-bench/results/al-stress}; POOL=300; TEST=100; SEEDS=${SEEDS:-0,1,2}
  STRATEGIES=${STRATEGIES:-random,random@pool,random@pool+pseudo}
else
  OUT=${1:-bench/results/al}; POOL=1000; TEST=150; SEEDS=${SEEDS:-0,1,2,3,4}
  STRATEGIES=${STRATEGIES:-random,random@pool,random@pool+pseudo,least_confidence@pool+pseudo}
fi
start=$(date +%s)
$CALS simulate --out "$OUT" --pool-images $POOL --test-images $TEST --initial 20 --batch 20 --rounds 5 \
  --strategies "$STRATEGIES" --seeds "$SEEDS" --base-iters 2000 "${@:2}"
echo "== benchmark-al: $(( ($(date +%s) - start) / 60 )) min; $OUT/results.json, results.csv, label_efficiency.png, picks.md"
