"""Start-up checks: what must hold before the trainer, the sampler or `cals check` can do their work.

Each check returns a `Check` whose message says what is wrong and what to do, so a mistake in
deployment shows at start in one line instead of as a failed round an hour later.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cals.cvat.client import CvatSettings, connect
from cals.cvat.version import server_version
from cals.cvat.project_setup import (SetupError, find_project, find_webhook, label_problems,
                                     missing_check_attributes, ping_webhook)
from cals.errors import CalsError
from cals.schema import Schema

log = logging.getLogger(__name__)
# metadata.name in serverless/spine-pose/nuclio/function.yaml and function-gpu.yaml
FUNCTIONS = ("cals-spine-pose", "cals-spine-pose-gpu")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.name}: {self.message}"


def check_cvat(settings: CvatSettings) -> tuple[Check, object | None]:
    """CVAT reachable and the credentials accepted; returns the logged-in client when they are."""
    try:
        client = connect(settings)
    except CalsError as exc:  # unreachable, refused, or a malformed setting
        return Check("cvat", False, f"{exc} (CALS_CVAT_URL, CALS_CVAT_USER/PASSWORD or CALS_CVAT_TOKEN)"), None
    version = server_version(client, settings.url)
    return Check("cvat", True, f"{settings.url} (CVAT {version}) accepts {settings.user or 'the token'}"), client


def check_label(client, project_id: int, schema: Schema) -> Check:
    """The project has the schema's skeleton label, point for point."""
    try:
        project = find_project(client, project_id=project_id)
    except SetupError as exc:
        return Check("label", False, f"{exc}; run make setup-project")
    problems = label_problems(project.get_labels(), schema)
    if problems:
        return Check("label", False, f"project {project_id}: {'; '.join(problems)} (make setup-project adds a "
                                     "missing label; it never edits an existing one)")
    note = missing_check_attributes(project.get_labels(), schema)
    return Check("label", True, f"project {project_id} has skeleton {schema.label!r} with the schema's "
                                f"{schema.num_keypoints} points" + (f"; but its {note}" if note else ""))


def check_writable(path: str | os.PathLike, variable: str) -> Check:
    """A folder this process can create files in (the registry, the data folder)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".cals-write-check-"):
            pass
    except OSError as exc:
        return Check(variable, False, f"{path} is not writable by uid {os.getuid()}: {exc.strerror}. In docker, "
                                      f"the host folder must belong to uid 1000 (see deploy/README.md)")
    return Check(variable, True, f"{path} is writable")


def check_function(client, name: str | None, schema: Schema) -> Check:
    """The Nuclio function is deployed where CVAT sees it, and its skeleton matches the schema.

    `name` None: whichever of the CPU and GPU builds (FUNCTIONS) is deployed.
    """
    try:
        _, response = client.api_client.lambda_api.list_functions(_parse_response=False)
        functions = json.loads(response.data)
    except Exception as exc:  # noqa: BLE001 - CVAT answers 5xx when its serverless part is absent
        return Check("function", False, f"CVAT cannot list serverless functions ({_http_status(exc)}): is CVAT "
                                        "running with components/serverless/docker-compose.serverless.yml?")
    wanted = [name] if name else list(FUNCTIONS)
    found = next((f for n in wanted for f in functions if f.get("id") == n), None)
    if found is None:
        ids = ", ".join(sorted(f.get("id", "?") for f in functions)) or "none"
        return Check("function", False, f"function {' or '.join(map(repr, wanted))} is not deployed (CVAT lists: "
                                        f"{ids}); run make deploy-function (CALS_FUNCTION_NAME names another)")
    name = found["id"]
    skeletons = [lab for lab in found.get("labels_v2") or [] if lab.get("name") == schema.label]
    points = [s.get("name") for s in skeletons[0].get("sublabels") or []] if skeletons else []
    if points != schema.names:
        return Check("function", False, f"function {name!r} does not return skeleton {schema.label!r} with the "
                                        "schema's points; redeploy it from this checkout (make deploy-function)")
    if not _ui_shows_models(client):
        return Check("function", False, f"{name!r} is deployed, but CVAT's web UI hides AI Tools and automatic "
                                        "annotation: CVAT runs without CVAT_SERVERLESS=1 (start it with "
                                        "components/serverless/docker-compose.serverless.yml)")
    return Check("function", True, f"{name!r} is deployed and returns the schema's skeleton")


def _ui_shows_models(client) -> bool:
    """CVAT's UI offers functions only when /api/server/plugins says MODELS (its CVAT_SERVERLESS setting);
    the lambda API answers either way, so a REST check alone would pass."""
    _, response = client.api_client.server_api.retrieve_plugins(_parse_response=False)
    return bool(json.loads(response.data).get("MODELS"))


def _http_status(exc: Exception) -> str:
    """CVAT answers 503 without Nuclio; cvat-sdk's retries turn that into urllib3's MaxRetryError."""
    status = getattr(exc, "status", None)
    if status is None and "503" in str(getattr(exc, "reason", "")):
        status = 503
    return f"HTTP {status}" if status else type(exc).__name__


def check_webhook(client, project_id: int, target_url: str) -> Check:
    """The project's webhook exists and CVAT can deliver to the trainer (a ping answered 2xx)."""
    hook = find_webhook(client, project_id, target_url)
    if hook is None:
        return Check("webhook", False, f"project {project_id} has no webhook to {target_url}; run make setup-project")
    status, text = ping_webhook(client, hook.id)
    if status is not None and 200 <= status < 300:
        return Check("webhook", True, f"CVAT delivered a ping to {target_url} (HTTP {status})")
    hint = _proxy_hint(target_url) if status in (407, 502, 503, None) else \
        "is the trainer running with the same CALS_WEBHOOK_SECRET?"
    return Check("webhook", False, f"a ping to {target_url} got HTTP {status} {text[:120]!r}; {hint}")


def _proxy_hint(target_url: str) -> str:
    """What to allow in CVAT's smokescreen proxy: the trainer's address and port, nothing wider (CVAT's
    whole subnet would let any webhook reach every container on it, the unauthenticated Nuclio dashboard
    included)."""
    import ipaddress
    from urllib.parse import urlsplit

    url = urlsplit(target_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.hostname or "?"
    try:
        ip = ipaddress.ip_address(host)
        address = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:  # a name: the address CVAT's webhook worker resolves it to
        address = f"<address of `docker exec cvat_worker_webhooks getent hosts {host}`>"
    return (f"CVAT's webhook proxy (smokescreen) refuses private addresses: add SMOKESCREEN_OPTS=--allow-address="
            f"{address}:{port} to CVAT's .env and re-run its docker compose up -d")


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


def startup(service: str, cvat: CvatSettings, schema: Schema, *, writable: dict[str, str | os.PathLike],
            project_id: int | None, function_name: str | None = None) -> list[Check]:
    """What a service checks before it serves; raises CalsError listing every failed check.

    A missing Nuclio function is only a warning: the loop runs without it, but annotators then have
    no pre-annotation button in CVAT.
    """
    checks = [check_writable(path, var) for var, path in writable.items()]
    result, client = check_cvat(cvat)
    checks.append(result)
    warnings = []
    if client is not None:
        with client:
            if project_id is not None:
                checks.append(check_label(client, project_id, schema))
            warnings.append(check_function(client, function_name, schema))
    for check in checks + warnings:
        (log.info if check.ok else log.warning)("%s start-up check %s", service, check)
    bad = failures(checks)
    if bad:
        raise CalsError(f"{service} cannot start:\n  " + "\n  ".join(str(c) for c in bad))
    return checks + warnings
