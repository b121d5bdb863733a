"""Jobs: list with filters, retrieve, update (assignee, stage, state only), frames and meta.

An update that changes something fires the `update:job` webhooks of the job's project.
Note: newer CVAT sources (webhooks migration 0009_remove_webhookdelivery_changed_fields) no
longer send `before_update`; consumers should read the state from `job`, not rely on it.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from . import frames, listing, serialize, webhooks
from .errors import bad_request, json_body
from .state import Job, Store, current_store, lookup, now

bp = Blueprint("jobs", __name__)
STAGES = ("annotation", "validation", "acceptance")
STATES = ("new", "in progress", "rejected", "completed")
FILTERS = ["task_id", "project_id", "state", "stage", "assignee", "type", "task_name",
           "project_name", "dimension", "mode"]


def get_job(store: Store, job_id: int) -> Job:
    return lookup(store.jobs, job_id, "Job")


@bp.get("/api/jobs")
def list_jobs():
    store = current_store()
    return listing.respond([serialize.job(store, j) for j in store.jobs.values()], FILTERS)


@bp.get("/api/jobs/<int:job_id>")
def retrieve_job(job_id: int):
    store = current_store()
    return jsonify(serialize.job(store, get_job(store, job_id)))


def _validated_update(store: Store, body: dict) -> dict:
    unknown = set(body) - {"assignee", "stage", "state"}
    if unknown:
        raise bad_request(f"Only assignee, stage and state can be changed, not {sorted(unknown)}",
                          "non_field_errors")
    if "stage" in body and body["stage"] not in STAGES:
        raise bad_request(f'"{body["stage"]}" is not a valid choice.', "stage")
    if "state" in body and body["state"] not in STATES:
        raise bad_request(f'"{body["state"]}" is not a valid choice.', "state")
    assignee = body.get("assignee")
    if assignee is not None and assignee not in store.users:
        raise bad_request(f'Invalid pk "{assignee}" - object does not exist.', "assignee")
    return body


def _apply_update(job: Job, body: dict) -> None:
    """Change the job; as in CVAT, a new stage without a state resets the state to "new"."""
    if "stage" in body and body["stage"] != job.stage and "state" not in body:
        body = {**body, "state": "new"}
    if "assignee" in body and body["assignee"] != job.assignee_id:
        job.assignee_id, job.assignee_updated = body["assignee"], now()
    job.stage = body.get("stage", job.stage)
    job.state = body.get("state", job.state)


def before_update(old: dict, new: dict) -> dict:
    """CVAT's `before_update`: old values of the serialized fields the save changed (CVAT 2.23
    lists `updated_date` too)."""
    return {k: v for k, v in old.items() if new.get(k) != v and k != "labels"}


def annotations_changed(store: Store, task_id: int, first: int, last: int) -> None:
    """Like CVAT, a change to a job's annotations saves the job: `update:job` with only
    `updated_date` in `before_update` (consumers must not take it for a state change)."""
    for job in [j for j in store.jobs.values() if j.task_id == task_id and j.start_frame <= last
                and j.stop_frame >= first]:
        with store.lock:
            old = serialize.job(store, job)
            job.updated = now()
            data = serialize.job(store, job)
        webhooks.trigger(store, "update:job", "job", data, {"updated_date": old["updated_date"]}, g.user)


@bp.patch("/api/jobs/<int:job_id>")
def update_job(job_id: int):
    store = current_store()
    job = get_job(store, job_id)
    body = _validated_update(store, json_body())
    with store.lock:
        old, old_updated = serialize.job(store, job), job.updated
        _apply_update(job, body)
        job.updated = now()
        changed = before_update(old, serialize.job(store, job))
        if set(changed) != {"updated_date"}:
            store.tasks[job.task_id].updated = job.updated
        else:
            job.updated, changed = old_updated, {}
    data = serialize.job(store, job)
    if changed:
        webhooks.trigger(store, "update:job", "job", data, changed, g.user)
    return jsonify(data)


@bp.get("/api/jobs/<int:job_id>/data")
def job_data(job_id: int):
    store = current_store()
    job = get_job(store, job_id)
    task = store.tasks[job.task_id]
    number = request.args.get("number", type=int)
    index = request.args.get("index", type=int)
    if request.args.get("type") == "frame" and number is None and index is not None:
        number = job.start_frame + index
    return frames.data_response(task, job.start_frame, job.stop_frame, number)


@bp.get("/api/jobs/<int:job_id>/data/meta")
def job_meta(job_id: int):
    store = current_store()
    job = get_job(store, job_id)
    return jsonify(frames.meta(store.tasks[job.task_id], job.start_frame, job.stop_frame))


@bp.get("/api/jobs/<int:job_id>/preview")
def job_preview(job_id: int):
    store = current_store()
    job = get_job(store, job_id)
    return frames.preview_response(store.tasks[job.task_id].frames[job.start_frame])
