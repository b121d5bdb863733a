#!/usr/bin/env bash
# make benchmark-al: label efficiency in the regime users work in (README "Label efficiency").
# One `cals simulate`: a generated pool of 1000 frames (80/15/5 upright/bending/lying), a balanced
# test set of 150, 20 random labels then 5 rounds of 20 (120 labels, 12 % of the pool), the trainer's
# own gate. Random, least confidence and the sampler's default on 5 seeds with paired statistics and a
# verdict each; the other strategies on the first seed only (a survey: no verdict from one seed).
# A 2000-iteration body-only base model, trained once and cached. Resumable; strategies and seeds may
# be added to a finished run. STRESS=1: the 300-frame pool (120 labels = 40 % of it) instead.
set -euo pipefail
CALS=${CALS:-.venv/bin/cals}
DEFAULT=${DEFAULT:-$(.venv/bin/python -c 'from cals.settings import default; print(default("CALS_SAMPLER_STRATEGY"))')}
SURVEY=${SURVEY:-typiclust,typical_uncertainty,hybrid,entropy,coreset}
if [[ "${STRESS:-0}" == 1 ]]; then
  OUT=${1:-bench/results/al-stress}; POOL=300; TEST=100; STRATEGIES=random,$DEFAULT; SURVEY=
else
  OUT=${1:-bench/results/al}; POOL=1000; TEST=150; STRATEGIES=random,least_confidence,$DEFAULT
fi
SURVEY=$(.venv/bin/python -c 'import sys; d, s = sys.argv[1:]; print(",".join(x for x in s.split(",") if x and x != d))' "$DEFAULT" "$SURVEY")
start=$(date +%s)
$CALS simulate --out "$OUT" --pool-images $POOL --test-images $TEST --initial 20 --batch 20 --rounds 5 \
  --strategies "$STRATEGIES" --seeds 0,1,2,3,4 ${SURVEY:+--survey "$SURVEY"} --base-iters 2000 "${@:2}"
echo "== benchmark-al: $(( ($(date +%s) - start) / 60 )) min; $OUT/results.json, results.csv, label_efficiency.png, picks.md"
