"""Background requests (`/api/requests`): how cvat-sdk learns that an import, export or task
creation finished. Work runs synchronously before the 202 is sent, so the SDK's first poll
already sees "finished" (or "failed" with CVAT's message) and never sleeps.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from flask import Blueprint, Response, g, jsonify, send_file

from . import listing, serialize
from .errors import ApiError, BackgroundError, not_found
from .state import Request, current_store

log = logging.getLogger(__name__)
bp = Blueprint("background", __name__)


def request_id(action: str, target: str, target_id: int, **extra: str) -> str:
    """CVAT's request ids are query strings: action=...&target=...&target_id=..."""
    return urlencode({"action": action, "target": target, "target_id": target_id, **extra})


def run(req: Request, work: Callable[[], None]) -> Response:
    """Run `work` as the request's job and answer 202 {"rq_id"} as CVAT does."""
    store = current_store()
    try:
        work()
    except BackgroundError as err:
        req.status, req.message = "failed", str(err)
        log.info("request %s failed: %s", req.id, err)
    with store.lock:
        store.requests[req.id] = req
    return jsonify({"rq_id": req.id}), 202


def new_request(type_: str, target: str, **fields) -> Request:
    return Request(id="", type=type_, target=target, owner_id=g.user.id, **fields)


@bp.get("/api/requests/<path:rq_id>")
def retrieve_request(rq_id: str):
    store = current_store()
    req = store.requests.get(rq_id)
    if req is None or req.owner_id != g.user.id:
        raise not_found()
    return jsonify(serialize.bg_request(store, req))


@bp.get("/api/requests")
def list_requests():
    store = current_store()
    items = [serialize.bg_request(store, r) for r in store.requests.values() if r.owner_id == g.user.id]
    return listing.respond(items, ["status"], default_sort="-created_date")


def download(rq_id: str) -> Response:
    """GET /api/<resource>/<id>/dataset/download?rq_id=... for a finished export."""
    req = current_store().requests.get(rq_id)
    if req is None or req.result_file is None:
        raise ApiError(400, ["Unknown export request id. Please request export first."])
    return send_file(io.BytesIO(req.result_file), mimetype="application/zip", as_attachment=True,
                     download_name=req.result_filename)
