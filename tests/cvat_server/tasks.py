"""Tasks: CRUD, data upload (frames and jobs), frames, data meta, preview."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from . import background, frames, listing, media, serialize, uploads
from .errors import ApiError, bad_request, json_body
from .labels import build_labels
from .projects import get_project
from .state import Store, Task, assign, current_store, lookup

bp = Blueprint("tasks", __name__)


def get_task(store: Store, task_id: int) -> Task:
    return lookup(store.tasks, task_id, "Task")


def _int_field(body: dict, name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, int) or value < 0):
        raise bad_request("A valid non-negative integer is required.", name)
    return value


@bp.post("/api/tasks")
def create_task():
    store, body = current_store(), json_body()
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("This field is required.", "name")
    project_id = body.get("project_id")
    if project_id is not None:
        get_project(store, project_id)
        if body.get("labels"):
            raise bad_request("Project must have only one of Label set or project_id",
                              "non_field_errors")
        labels = []
    else:
        labels = build_labels(store, body.get("labels", []))
        if not labels:
            raise bad_request("Label set or project_id must be present", "non_field_errors")
    task = Task(id=store.next_id("task"), name=body["name"], owner_id=g.user.id, labels=labels,
                project_id=project_id, segment_size=_int_field(body, "segment_size", 0),
                overlap=_int_field(body, "overlap", None), subset=body.get("subset", ""),
                bug_tracker=body.get("bug_tracker", ""), assignee_id=body.get("assignee_id"))
    with store.lock:
        store.tasks[task.id] = task
        store.shapes[task.id] = []
    return jsonify(serialize.task(store, task)), 201


@bp.get("/api/tasks")
def list_tasks():
    store = current_store()
    items = [serialize.task(store, t) for t in store.tasks.values()]
    return listing.respond(items, ["name", "owner", "assignee", "project_id", "project_name",
                                   "status", "mode", "dimension", "subset"])


@bp.get("/api/tasks/<int:task_id>")
def retrieve_task(task_id: int):
    store = current_store()
    return jsonify(serialize.task(store, get_task(store, task_id)))


@bp.patch("/api/tasks/<int:task_id>")
def update_task(task_id: int):
    store, body = current_store(), json_body()
    task = get_task(store, task_id)
    with store.lock:
        assign(task, body, ("name", "bug_tracker", "subset", "assignee_id"))
        if body.get("labels"):
            if task.project_id:
                raise bad_request("Cannot change labels of a task in a project", "labels")
            task.labels = task.labels + build_labels(store, body["labels"])
    return jsonify(serialize.task(store, task))


@bp.delete("/api/tasks/<int:task_id>")
def delete_task(task_id: int):
    store = current_store()
    get_task(store, task_id)
    store.remove_task(task_id)
    return "", 204


def _data_finish(task_id: int) -> uploads.Finish:
    store = current_store()
    task = get_task(store, task_id)

    def finish(files, fields):
        if task.frames:
            raise bad_request("Adding more data is not supported")
        fields = media.validate_fields(fields)
        req = background.new_request("create:task", "task", task_id=task.id,
                                     project_id=task.project_id, result_id=task.id)
        req.id = background.request_id("create", "task", task.id)
        return background.run(req, lambda: media.create_task_data(store, task, files, fields))

    return finish


uploads.register(bp, "/api/tasks/<int:obj_id>/data/", "tasks", "data", _data_finish)


@bp.get("/api/tasks/<int:task_id>/data/")
def task_data(task_id: int):
    task = get_task(current_store(), task_id)
    if not task.frames:
        raise bad_request("The task has no data")
    number = request.args.get("number", type=int)
    return frames.data_response(task, 0, len(task.frames) - 1, number)


@bp.get("/api/tasks/<int:task_id>/data/meta")
def task_meta(task_id: int):
    task = get_task(current_store(), task_id)
    return jsonify(frames.meta(task, 0, len(task.frames) - 1))


@bp.get("/api/tasks/<int:task_id>/preview")
def task_preview(task_id: int):
    task = get_task(current_store(), task_id)
    if not task.frames:
        raise ApiError(404, {"detail": "The task has no data."})
    return frames.preview_response(task.frames[0])
