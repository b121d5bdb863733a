#!/usr/bin/env bash
# make benchmark-al: label efficiency in the regime users work in (README "Label efficiency").
# One `cals simulate`: a generated pool of 1000 frames (80/15/5 upright/bending/lying), a balanced
# test set of 150, 20 random labels then 5 rounds of 20 (120 labels, 12 % of the pool), the trainer's
# own split and gate. Random (the sampler's default), least confidence, typiclust and least confidence
# with a random half (the best alternatives measured) on 5 seeds with paired statistics and a verdict each; the other strategies on
# the first seed only (a survey: no verdict from one seed). A 2000-iteration body-only base model, trained once and cached. Resumable, and
# strategies, seeds or the survey may be changed on a finished run (the campaigns done are reused).
# STRESS=1: the 300-frame pool with a 100-frame test set (120 labels = 40 % of it): random and least confidence with a random half.
set -euo pipefail
CALS=${CALS:-.venv/bin/cals}
PY=${PY:-.venv/bin/python}
DEFAULT=${DEFAULT:-$($PY -c 'from cals.settings import default; print(default("CALS_SAMPLER_STRATEGY"))')}
if [[ "${STRESS:-0}" == 1 ]]; then
  OUT=${1:-bench/results/al-stress}; POOL=300; TEST=100; WANT=random,least_confidence:random_share=0.5,$DEFAULT; SURVEY=${SURVEY:-}
else
  OUT=${1:-bench/results/al}; POOL=1000; TEST=150; WANT=random,least_confidence,typiclust,least_confidence:random_share=0.5,$DEFAULT
  SURVEY=${SURVEY:-tcm,typical_uncertainty,hybrid,entropy,coreset}
fi
# each strategy once; the survey without those that run on every seed
read -r STRATEGIES SURVEY < <($PY -c 'import sys
want = list(dict.fromkeys(s for s in sys.argv[1].split(",") if s))
survey = [s for s in dict.fromkeys(sys.argv[2].split(",")) if s and s not in want]
print(",".join(want), ",".join(survey) or "-")' "$WANT" "$SURVEY")
[[ "$SURVEY" == "-" ]] && SURVEY=
start=$(date +%s)
$CALS simulate --out "$OUT" --pool-images $POOL --test-images $TEST --initial 20 --batch 20 --rounds 5 \
  --strategies "$STRATEGIES" --seeds 0,1,2,3,4 ${SURVEY:+--survey "$SURVEY"} --base-iters 2000 "${@:2}"
echo "== benchmark-al: $(( ($(date +%s) - start) / 60 )) min; $OUT/results.json, results.csv, label_efficiency.png, picks.md"
