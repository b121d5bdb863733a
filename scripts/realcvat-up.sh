# Sourced by scripts/test-real-cvat.sh and scripts/soak.sh: a CVAT to work against. With CVAT_URL,
# CVAT_USER and CVAT_PASSWORD set, that one; otherwise it sets up (once), starts, and on exit stops the
# no-Docker CVAT of REALCVAT (default ../shared/realcvat), exporting REALCVAT_STARTED=1. CVAT's lambda
# manager is pointed at a Nuclio dashboard on CVAT_NUCLIO_PORT (the tests' stand-in, or the soak's
# function workers) and may send webhooks to CVAT_WEBHOOK_HOST. UI=1 runs the harness's ui-setup.sh first.
REALCVAT=${REALCVAT:-../shared/realcvat}
export CVAT_NUCLIO_HOST=${CVAT_NUCLIO_HOST:-127.0.0.1} CVAT_NUCLIO_PORT=${CVAT_NUCLIO_PORT:-8070}
export CVAT_NUCLIO_INVOKE_METHOD=${CVAT_NUCLIO_INVOKE_METHOD:-dashboard}
# as CVAT's components/serverless/docker-compose.serverless.yml: without it the REST lambda API works,
# but the web UI hides AI Tools and "Automatic annotation" (/api/server/plugins says MODELS: false)
export CVAT_SERVERLESS=${CVAT_SERVERLESS:-1}
export CVAT_WEBHOOK_HOST=${CVAT_WEBHOOK_HOST:-127.0.0.1}

if [ -z "${CVAT_URL:-}" ]; then
    if [ ! -f "$REALCVAT/setup.sh" ]; then
        echo "$(basename "$0"): no CVAT_URL and no $REALCVAT/setup.sh: no CVAT to work against" >&2
        exit 2
    fi
    t0=$(date +%s)
    # xmlsec's build would otherwise take the newest lxml, which does not build here (the file says why)
    UV_BUILD_CONSTRAINT=${UV_BUILD_CONSTRAINT:-$PWD/scripts/realcvat-build-constraints.txt} bash "$REALCVAT/setup.sh"
    if [ "${UI:-0}" = 1 ]; then bash "$REALCVAT/ui-setup.sh"; fi
    bash "$REALCVAT/start.sh"
    trap 'bash "$REALCVAT/stop.sh" || true' EXIT
    . "$REALCVAT/env.sh"
    export REALCVAT_STARTED=1
    echo "$(basename "$0"): CVAT ready in $(( $(date +%s) - t0 )) s"
fi
