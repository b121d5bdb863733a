"""HTTP endpoints: health, strategies, rank, open a round, job status, the trainer's promotion notice."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

from cals.cvat.client import CvatConnectionError
from cals.errors import CalsError
from cals.cvat.probe import health_status
from cals.http_service import ApiError, require_token
from cals.sampling.strategies import STRATEGIES
from sampler.state import sampler_state

log = logging.getLogger(__name__)
bp = Blueprint("sampler", __name__)


def health_report() -> dict:
    """What GET /health adds to `status`."""
    state = sampler_state(current_app)
    current = state.sampler.registry.current()
    cvat = state.cvat.report()
    return {"status": health_status(cvat), "version": current.id if current else None,
            "auto_open": current_app.config["AUTO_OPEN"], "pool": current_app.config["POOL"], "cvat": cvat}


@bp.get("/strategies")
def strategies():
    return jsonify({name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in STRATEGIES.items()})


@bp.post("/rank")
@require_token
def rank():
    body = _json_body({"strategy", "strategies", "project_id", "limit"})
    names = [_strategy_name(body.get("strategy", current_app.config["SAMPLER_STRATEGY"]))]
    extra = body.get("strategies", [])
    if not isinstance(extra, list):
        raise ApiError(400, "'strategies' must be a list of strategy names")
    names += [_strategy_name(n) for n in extra if n != names[0]]
    limit = _positive_int(body, "limit", 50)
    project_id = _project_id(body, required=current_app.config["POOL"] == "cvat")
    return jsonify(sampler_state(current_app).sampler.rank(names, project_id=project_id, limit=limit))


@bp.post("/rounds")
@require_token
def open_round():
    body = _json_body({"project_id", "size", "job_size", "strategy"})
    args = {"project_id": _project_id(body, required=True), "size": _positive_int(body, "size", None),
            "job_size": _positive_int(body, "job_size", None),
            "strategy": _strategy_name(body["strategy"]) if "strategy" in body else None}
    return _submit_round(args, reason="request")


@bp.post("/notify/promoted")
@require_token
def promoted():
    body = _json_body({"version", "project_id"})
    version = body.get("version")
    if not isinstance(version, str) or not version:
        raise ApiError(400, "'version' must be the promoted version id (a string)")
    sampler = sampler_state(current_app).sampler
    try:
        sampler.registry.get(version)
    except CalsError as exc:
        raise ApiError(404, str(exc)) from None
    project_id = _project_id(body, required=False)
    project_id = project_id if project_id is not None else current_app.config["PROJECT_ID"]
    predicting = _submit_predictions(version, project_id)
    if not current_app.config["AUTO_OPEN"]:
        return jsonify(accepted=True, version=version, opening=False, predicting=predicting,
                       reason="auto-open is off (CALS_AUTO_OPEN=0)"), 202
    return _submit_round({"project_id": project_id}, reason=f"promotion of {version}")


def _submit_predictions(version: str, project_id: int | None) -> dict[str, Any] | None:
    """With pseudo-labels on, predict the pool with the promoted model in the background (before an
    auto-opened round, which then pre-annotates from the same predictions): the trainer's next run
    reads them from the score cache and never waits for them."""
    if not current_app.config["PSEUDO_LABELS"]:
        return None
    sampler = sampler_state(current_app).sampler
    job = sampler_state(current_app).jobs.submit("predict", lambda: sampler.predict_pool(project_id=project_id),
                                                 reason=f"promotion of {version}")
    log.info("queued pool predictions job %s (promotion of %s)", job["id"], version)
    return job


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    found = sampler_state(current_app).jobs.get(job_id)
    if found is None:
        raise ApiError(404, f"no job {job_id!r}")
    return jsonify(found)


@bp.get("/jobs")
def jobs():
    return jsonify(sampler_state(current_app).jobs.list())


def _submit_round(args: dict[str, Any], *, reason: str):
    if args.get("project_id") is None:
        raise ApiError(422, "no CVAT project: send 'project_id' or set CALS_PROJECT_ID")
    sampler = sampler_state(current_app).sampler
    job = sampler_state(current_app).jobs.submit("round", lambda: sampler.open_round(**args),
                                                        reason=reason, request=args)
    log.info("queued round job %s (%s)", job["id"], reason)
    return jsonify(accepted=True, opening=True, job=job,
                   status_url=url_for("sampler.job", job_id=job["id"])), 202


def _json_body(allowed: set[str]) -> dict[str, Any]:
    body = request.get_json(silent=True) if request.data else {}
    if body is None or not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return body


def _strategy_name(name: Any) -> str:
    if name not in STRATEGIES:
        raise ApiError(400, f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return name


def _positive_int(body: dict, key: str, default):
    value = body.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"{key!r} must be a positive integer, got {value!r}")
    return value


def _project_id(body: dict, *, required: bool) -> int | None:
    value = body.get("project_id")
    if value is None:
        value = current_app.config["PROJECT_ID"]
        if value is None and required:
            raise ApiError(400, "'project_id' is required (or set CALS_PROJECT_ID)")
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'project_id' must be a positive integer, got {value!r}")
    return value


@bp.app_errorhandler(CvatConnectionError)
def _cvat_down(exc: CvatConnectionError):
    return jsonify(error=str(exc)), 502


@bp.app_errorhandler(CalsError)
def _cals_error(exc: CalsError):
    return jsonify(error=str(exc)), 409
