#!/usr/bin/env bash
# make test-real-cvat: the CVAT-facing tests (pytest -m cvat) against a real CVAT instead of the
# in-process stand-in. With CVAT_URL/CVAT_USER/CVAT_PASSWORD set, against that CVAT; otherwise it
# sets up (once), starts and afterwards stops the no-Docker CVAT of REALCVAT (default ../shared/realcvat),
# with CVAT's lambda manager pointed at the Nuclio dashboard stand-in the tests serve on CVAT_NUCLIO_PORT
# (scripts/realcvat-up.sh).
# The browser tests (tests/test_browser.py) are among them: they run when the CVAT has its web UI
# (CVAT_UI_URL; the harness serves it once its ui-setup.sh has built it) and skip, saying why, otherwise.
# UI=1 (make test-browser) runs the harness's ui-setup.sh first (once: ~3.5 min, then seconds).
# Arguments go to pytest (make test-browser passes -m browser).
set -euo pipefail
PY=${PY:-.venv/bin/python}
. scripts/realcvat-up.sh
echo "test-real-cvat: CVAT-facing tests against $CVAT_URL (webhooks to $CVAT_WEBHOOK_HOST," \
     "Nuclio dashboard on $CVAT_NUCLIO_HOST:$CVAT_NUCLIO_PORT${CVAT_UI_URL:+, web UI $CVAT_UI_URL})"
# The harness's OPA stand-in re-activates its policy bundle every few seconds, and CVAT answers 500
# ("KeyError: 'result'" in its log) to a permission check that lands in that instant: a test failing
# with CVAT's HTTP 500 is run once more, and the rerun is reported (R in the summary).
"$PY" -m pytest -q -m cvat --reruns 1 --only-rerun "Status Code: 500" "$@"
