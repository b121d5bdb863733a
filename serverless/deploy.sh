#!/usr/bin/env bash
# Deploy the CALS spine-pose function into CVAT's Nuclio project, as CVAT's own
# serverless/deploy_cpu.sh and deploy_gpu.sh do.
#
#   bash serverless/deploy.sh [--env-file deploy/.env] [--gpu]     (or: make deploy-function [GPU=1])
#
# Environment (all optional; --env-file reads them from a file, a variable set in the shell wins):
#   NUCTL                  nuctl binary (default: nuctl on PATH)
#   CALS_NUCLIO_PLATFORM   nuctl --platform (default: local)
#   CALS_NUCLIO_NETWORK    docker network of CVAT (default: cvat_cvat)
#   CALS_NUCLIO_DASHBOARD_URL  Nuclio's dashboard, whose release nuctl must match (default: http://localhost:8070)
#   CALS_REGISTRY_HOST     host folder with the model registry, shared with the trainer
#                          (default: /var/lib/cals/registry)
#   CALS_DETECTOR_URL      RTMDet-nano person ONNX SDK zip downloaded by the build (default: function.yaml's)
#   CALS_POSE_URL          RTMPose-m checkpoint (AIC+COCO, COCO's 17 points) downloaded by the build; the
#                          initial model is built from it (default: function.yaml's)
#   CALS_DETECTOR_FILE     offline install: a local detector instead (that zip, its end2end.onnx or a folder
#                          holding it)
#   CALS_POSE_FILE         offline install: a local copy of the checkpoint instead
#   CALS_DETECTOR_SHA256, CALS_POSE_SHA256   sha256 of another file than the pinned one (the pins are in
#                          cals/model/pretrained.py; the detector's is of its end2end.onnx)
#   PYTHON                 python3 that runs the checks (default: python3)
#   CALS_POINT_THRESHOLD, CALS_CHECK_BELOW, CALS_DETECTOR_SCORE, CALS_MAX_PIXELS   runtime settings (--env)
#   CALS_FUNCTION_WORKERS  Nuclio workers (concurrent requests, one process and model each): the HTTP
#                          trigger's numWorkers and the function's CALS_FUNCTION_WORKERS, which sizes each
#                          worker's threads to cores / workers (default: function.yaml's, 1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUNC="$ROOT/serverless/spine-pose/nuclio"
FILE=function.yaml

# KEY=value lines of an env file, exported unless the shell already set them (no expansion, no eval).
load_env() {
  local line key value
  [[ -f "$1" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^(CALS_[A-Z0-9_]*)=(.*)$ ]] || continue
    key="${BASH_REMATCH[1]}"; value="${BASH_REMATCH[2]}"
    value="${value%\"}"; value="${value#\"}"
    if [[ -z "${!key+x}" && -n "$value" ]]; then export "$key=$value"; fi
  done < "$1"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpu) FILE=function-gpu.yaml; shift ;;
    --env-file) load_env "${2:?--env-file needs a path}"; shift 2 ;;
    *) echo "usage: $0 [--env-file FILE] [--gpu]" >&2; exit 2 ;;
  esac
done

WORKERS="${CALS_FUNCTION_WORKERS:-}"
if [[ -n "$WORKERS" && ! "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
  echo "deploy.sh: error: CALS_FUNCTION_WORKERS must be a positive integer (Nuclio workers), got '$WORKERS'" >&2
  exit 1
fi

NUCTL="${NUCTL:-nuctl}"
if ! command -v "$NUCTL" >/dev/null 2>&1; then
  echo "deploy.sh: error: nuctl not found (set NUCTL or install the nuctl release that matches" \
       "CVAT's Nuclio: https://github.com/nuclio/nuclio/releases)" >&2
  exit 1
fi
# nuctl must be the Nuclio release (major.minor) of the dashboard CVAT uses: cals/serving/nuclio_version.py
PYTHONPATH="$ROOT" "${PYTHON:-python3}" -m cals.serving.nuclio_version --nuctl "$NUCTL" \
  --dashboard "${CALS_NUCLIO_DASHBOARD_URL:-http://localhost:8070}" || exit 1
PLATFORM="${CALS_NUCLIO_PLATFORM:-local}"
NETWORK="${CALS_NUCLIO_NETWORK:-cvat_cvat}"
REGISTRY_HOST="${CALS_REGISTRY_HOST:-/var/lib/cals/registry}"
mkdir -p "$REGISTRY_HOST"

# Build context: the function folder plus the cals sources it installs (cals-src/).
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/cals-function.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
cp "$FUNC"/main.py "$FUNC/$FILE" "$STAGE"/
mkdir "$STAGE/cals-src"
cp -r "$ROOT/cals" "$ROOT/requirements" "$ROOT/pyproject.toml" "$ROOT/README.md" "$STAGE/cals-src/"
find "$STAGE/cals-src" -name __pycache__ -prune -exec rm -rf {} +

# Pretrained files: a local one is checked against its pin now and staged in models/ (the image's
# /opt/nuclio/models), and its URL emptied so that the build downloads only the others.
STAGE_ARGS=()
for file in CALS_POSE_FILE CALS_DETECTOR_FILE; do
  url="${file%_FILE}_URL" name="${file#CALS_}"
  [[ -n "${!file:-}" ]] || continue
  if [[ -n "${!url:-}" ]]; then echo "deploy.sh: error: set $file or $url, not both" >&2; exit 1; fi
  STAGE_ARGS+=("--$(tr A-Z a-z <<< "${name%_FILE}")" "${!file}")
  sed -i "s#$url=.*#$url=#" "$STAGE/$FILE"
done
if [[ ${#STAGE_ARGS[@]} -gt 0 ]]; then
  PYTHONPATH="$STAGE/cals-src" "${PYTHON:-python3}" -m cals.model.pretrained "$STAGE/models" "${STAGE_ARGS[@]}" \
    --pose-sha256 "${CALS_POSE_SHA256:-}" --detector-sha256 "${CALS_DETECTOR_SHA256:-}"
fi

# Build-time URLs and sha256 overrides, and the registry's host folder, from the environment.
for var in CALS_DETECTOR_URL CALS_POSE_URL CALS_DETECTOR_SHA256 CALS_POSE_SHA256; do
  if [[ -n "${!var:-}" ]]; then sed -i "s#$var=.*#$var=${!var}#" "$STAGE/$FILE"; fi
done
sed -i "s#path: /var/lib/cals/registry#path: ${REGISTRY_HOST}#" "$STAGE/$FILE"

# Workers: the trigger's numWorkers and the env the function sizes its threads by, set together.
if [[ -n "$WORKERS" ]]; then
  sed -i -E "s#^( *)numWorkers: .*#\1numWorkers: $WORKERS#" "$STAGE/$FILE"
  sed -i -E "/name: CALS_FUNCTION_WORKERS/{n;s#value: .*#value: \"$WORKERS\"#}" "$STAGE/$FILE"
fi

ENV_ARGS=()
for var in CALS_POINT_THRESHOLD CALS_CHECK_BELOW CALS_DETECTOR_SCORE CALS_MAX_PIXELS; do
  if [[ -n "${!var:-}" ]]; then ENV_ARGS+=(--env "$var=${!var}"); fi
done

"$NUCTL" create project cvat --platform "$PLATFORM" 2>/dev/null || true
echo "Deploying $FILE (registry: $REGISTRY_HOST, workers: $(sed -nE 's/^ *numWorkers: *//p' "$STAGE/$FILE"))"
"$NUCTL" deploy --project-name cvat --path "$STAGE" --file "$STAGE/$FILE" \
  --platform "$PLATFORM" --platform-config "{\"attributes\": {\"network\": \"$NETWORK\"}}" \
  "${ENV_ARGS[@]}"
"$NUCTL" get function --platform "$PLATFORM"
