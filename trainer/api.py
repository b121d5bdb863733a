"""The trainer's JSON API: start runs on demand, follow them, list models, health."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from cals.cvat.probe import health_status
from cals.http_service import ApiError, require_token
from cals.training.queue import QUEUED, RUN_STATES, RUNNING, TARGET_KINDS
from trainer.state import trainer_state

bp = Blueprint("api", __name__)


@bp.post("/train")
@require_token
def start_run():
    state = trainer_state(current_app)
    run = state.queue.request_run(_targets(request.get_json(silent=True)), trigger="api")
    state.worker.wake()
    return jsonify(run.as_dict()), 202


def _targets(body) -> dict[str, list[int]]:
    """`{"projects": [...], "tasks": [...], "jobs": [...]}`: positive integer ids, at least one."""
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be a JSON object like {"jobs": [12], "tasks": [], "projects": []}')
    unknown = sorted(set(body) - set(TARGET_KINDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}; use {list(TARGET_KINDS)}")
    for kind in TARGET_KINDS:
        ids = body.get(kind, [])
        if not isinstance(ids, list) or not all(type(i) is int and i > 0 for i in ids):
            raise ApiError(400, f"{kind!r} must be a list of positive integer ids, got {ids!r}")
    if not any(body.get(kind) for kind in TARGET_KINDS):
        raise ApiError(400, f"name at least one of {list(TARGET_KINDS)} to train on")
    return {kind: body.get(kind, []) for kind in TARGET_KINDS}


@bp.get("/runs")
def list_runs():
    state = request.args.get("state")
    if state is not None and state not in RUN_STATES:
        raise ApiError(400, f"unknown state {state!r}; choose one of {list(RUN_STATES)}")
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise ApiError(400, f"limit must be an integer from 1 to 1000, got {limit!r}")
    queue = trainer_state(current_app).queue
    runs = queue.list(limit=int(limit), state=state)
    return jsonify(runs=[r.as_dict() for r in runs], pending_jobs=queue.pending_jobs())


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int):
    run = trainer_state(current_app).queue.get(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    return jsonify(run.as_dict())


@bp.get("/models")
def list_models():
    registry = trainer_state(current_app).settings.run.registry
    current = registry.current()
    versions = [{"id": v.id, "created_at": v.created_at, "parent": v.parent,
                 "metrics": {"overall": v.metrics.get("overall")} if v.metrics else None,
                 "promotion": v.meta.get("promotion"), "iterations": v.meta.get("iterations")}
                for v in registry.list()]
    return jsonify(current=current.id if current else None, versions=versions)


def health_report() -> dict:
    """What GET /health (and the older /healthz) adds to `status`."""
    state = trainer_state(current_app)
    current = state.settings.run.registry.current()
    running = state.queue.list(limit=1, state=RUNNING)
    cvat = state.cvat.report()
    return {"status": health_status(cvat), "cvat": cvat, "worker_alive": state.worker.alive, "current_model": current.id if current else None,
            "running": running[0].id if running else None,
            "queued_runs": len(state.queue.list(limit=1000, state=QUEUED)),
            "pending_jobs": len(state.queue.pending_jobs()), "catch_up": _catch_up_report(state.worker)}


def _catch_up_report(worker) -> dict | None:
    """The last catch-up and when the next is due; None when catch-up is off."""
    catch_up = worker.catch_up
    if catch_up is None:
        return None
    return {"interval_seconds": catch_up.interval, "project_id": catch_up.project_id,
            "last": catch_up.last.as_dict() if catch_up.last else None,
            "next_in_seconds": round(catch_up.seconds_to_next(), 1)}
