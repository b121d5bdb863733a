"""Webhooks: CRUD per project and delivery of CVAT's payload, signed with the secret.

CVAT signs `json.dumps(payload)` with HMAC-SHA256 and sends the same bytes as the body with
`X-Signature-256: sha256=<hex>`; delivery happens off the request thread, as CVAT queues it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flask import Blueprint, g, jsonify, request

from . import listing, serialize
from .errors import bad_request, json_body
from .projects import get_project
from .state import Store, User, Webhook, assign, current_store, lookup, now

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
PROJECT_EVENTS = ["create:issue", "create:job", "create:task", "delete:issue", "delete:job",
                  "delete:task", "update:issue", "update:job", "update:project", "update:task",
                  "delete:project", "create:comment", "delete:comment", "update:comment"]


def get_webhook(store: Store, webhook_id: int) -> Webhook:
    return lookup(store.webhooks, webhook_id, "Webhook")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _deliver(hook: Webhook, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if hook.secret:
        headers["X-Signature-256"] = signature(hook.secret, body)
    req = urllib.request.Request(hook.target_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, text = response.status, response.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, text = err.code, ""
    except OSError:
        status, text = 502, ""
    delivery = {"id": len(hook.deliveries) + 1, "webhook_id": hook.id, "event": payload["event"],
                "status_code": status, "redelivery": False, "created_date": serialize.date(now()),
                "updated_date": serialize.date(now()), "changed_fields":
                ",".join(payload.get("before_update", {})), "request": payload, "response": text}
    hook.deliveries.append(delivery)
    return delivery


def trigger(store: Store, event: str, resource: str, data: dict, before: dict, sender: User) -> None:
    """Send `event` to the active project webhooks subscribed to it, in the background."""
    project_id = data.get("project_id")
    for hook in list(store.webhooks.values()):
        if hook.is_active and hook.project_id == project_id and event in hook.events:
            payload = {"event": event, resource: data, "before_update": before,
                       "webhook_id": hook.id, "sender": serialize.user(sender)}
            threading.Thread(target=_deliver, args=(hook, payload), daemon=True).start()


def _valid_url(url: str) -> bool:
    """CVAT's target_url is a Django URLField: an IP, localhost, or a dotted name ending in letters."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https", "ftp", "ftps") or not host:
        return False
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return True
    tld = host.rstrip(".").rsplit(".", 1)
    return len(tld) == 2 and len(tld[1]) >= 2 and (tld[1].isalpha() or tld[1].startswith("xn--"))


def _validated(store: Store, body: dict, partial: bool) -> dict:
    if not partial and not body.get("target_url"):
        raise bad_request("This field is required.", "target_url")
    if "target_url" in body and not _valid_url(str(body["target_url"])):
        raise bad_request("Enter a valid URL.", "target_url")
    kind = body.get("type", "project" if not partial else None)
    if kind is not None and kind != "project":
        raise bad_request("Only project webhooks are supported by the CALS test server.", "type")
    if not partial:
        if body.get("project_id") is None:
            raise bad_request("project_id is required for a project webhook", "project_id")
        get_project(store, body["project_id"])
    events = body.get("events")
    if events is not None and (not isinstance(events, list) or set(events) - set(PROJECT_EVENTS)):
        raise bad_request("Unsupported event(s) for a project webhook.", "events")
    if body.get("content_type", "application/json") != "application/json":
        raise bad_request('"{}" is not a valid choice.'.format(body["content_type"]), "content_type")
    return body


@bp.post("/api/webhooks")
def create_webhook():
    store = current_store()
    body = _validated(store, json_body(), partial=False)
    hook = Webhook(id=store.next_id("webhook"), target_url=body["target_url"], type="project",
                   events=body.get("events") or [], owner_id=g.user.id,
                   project_id=body["project_id"], secret=body.get("secret", ""),
                   description=body.get("description", ""), is_active=body.get("is_active", True),
                   enable_ssl=body.get("enable_ssl", True))
    with store.lock:
        store.webhooks[hook.id] = hook
    return jsonify(serialize.webhook(store, hook)), 201


@bp.get("/api/webhooks")
def list_webhooks():
    store = current_store()
    items = [serialize.webhook(store, w) for w in store.webhooks.values()]
    return listing.respond(items, ["project_id", "type", "target_url", "owner"])


@bp.get("/api/webhooks/events")
def webhook_events():
    kind = request.args.get("type", "project")
    events = [{"key": e, "group": {"display_name": e.split(":")[1].title()}} for e in PROJECT_EVENTS]
    return jsonify({"webhook_type": kind, "events": events})


@bp.get("/api/webhooks/<int:webhook_id>")
def retrieve_webhook(webhook_id: int):
    store = current_store()
    return jsonify(serialize.webhook(store, get_webhook(store, webhook_id)))


@bp.route("/api/webhooks/<int:webhook_id>", methods=["PATCH", "PUT"])
def update_webhook(webhook_id: int):
    store = current_store()
    hook = get_webhook(store, webhook_id)
    body = _validated(store, json_body(), partial=request.method == "PATCH")
    with store.lock:
        assign(hook, body, ("target_url", "events", "secret", "description", "is_active", "enable_ssl"))
    return jsonify(serialize.webhook(store, hook))


@bp.delete("/api/webhooks/<int:webhook_id>")
def delete_webhook(webhook_id: int):
    store = current_store()
    get_webhook(store, webhook_id)
    with store.lock:
        del store.webhooks[webhook_id]
    return "", 204


@bp.get("/api/webhooks/<int:webhook_id>/deliveries")
def list_deliveries(webhook_id: int):
    hook = get_webhook(current_store(), webhook_id)
    return jsonify(serialize.paginated(list(reversed(hook.deliveries))))


@bp.post("/api/webhooks/<int:webhook_id>/ping")
def ping(webhook_id: int):
    store = current_store()
    hook = get_webhook(store, webhook_id)
    payload = {"event": "ping", "webhook": serialize.webhook(store, hook),
               "sender": serialize.user(g.user)}
    return jsonify(_deliver(hook, payload))
