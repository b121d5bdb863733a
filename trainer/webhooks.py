"""`POST /webhooks/cvat`: CVAT's signed `update:job` events become queued jobs; training never
happens in the request (answer at once, the worker does the work)."""
from __future__ import annotations

import hashlib
import json
import logging

from flask import Blueprint, current_app, jsonify, request

from trainer.auth import valid_signature
from cals.cvat.trigger import update_key
from cals.http_service import ApiError
from trainer.state import trainer_state

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/cvat")
def cvat_webhook():
    state = trainer_state(current_app)
    body = request.get_data(cache=False)
    if not valid_signature(state.settings.webhook_secret, body, request.headers.get("X-Signature-256")):
        log.warning("refused a webhook with a missing or wrong X-Signature-256 from %s", request.remote_addr)
        raise ApiError(401, "missing or invalid X-Signature-256 (HMAC-SHA256 of the body with the "
                            "webhook secret)")
    payload = _payload(body)
    event = payload.get("event")
    if event == "ping":
        return jsonify(status="pong")
    if event != "update:job":
        return jsonify(status="ignored", reason=f"event {event!r} is not 'update:job'")
    job = payload.get("job")
    if not isinstance(job, dict) or not isinstance(job.get("id"), int):
        raise ApiError(400, "'update:job' payload needs a 'job' object with an integer 'id'")
    trigger = state.settings.run.trigger
    if not trigger.reached(job, payload.get("before_update")):
        return jsonify(status="ignored", job_id=job["id"], reason=f"job did not reach {trigger}")
    outcome = state.queue.record_job_event(_event_key(job, str(trigger), body), job["id"],
                                           job.get("task_id"), job.get("project_id"))
    log.info("job %d reached %s: %s", job["id"], trigger, outcome)
    state.worker.wake()
    return jsonify(status=outcome, job_id=job["id"]), 200 if outcome == "duplicate" else 202


def _payload(body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"webhook body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "webhook body must be a JSON object")
    return payload


def _event_key(job: dict, trigger: str, body: bytes) -> str:
    """The update's key (`update_key`, shared with catch-up); a payload without a readable
    `updated_date` is keyed by its body, so only its own redelivery repeats it."""
    return update_key(job["id"], trigger, job.get("updated_date")) or \
        f"job:{job['id']}:{trigger}:{hashlib.sha256(body).hexdigest()}"
