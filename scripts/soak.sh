#!/usr/bin/env bash
# make soak: CALS for an hour against a real CVAT, with faults (python -m bench.soak --help). Not part
# of CI. Against CVAT_URL when set (then CVAT is not restarted by the soak: that fault is skipped), else
# against ../shared/realcvat, started here (scripts/realcvat-up.sh) and stopped afterwards.
# SOAK_MINUTES (default 60) sets the length; arguments go to bench.soak.
set -euo pipefail
PY=${PY:-.venv/bin/python}
. scripts/realcvat-up.sh
if [ "${REALCVAT_STARTED:-0}" = 1 ]; then export SOAK_REALCVAT=$REALCVAT; fi
echo "soak: against $CVAT_URL for ${SOAK_MINUTES:-60} min (results: bench/results/soak.json, docs/soak.png)"
"$PY" -m bench.soak "$@"
