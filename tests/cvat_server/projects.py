"""Projects: create, list, retrieve, update, delete; tasks and labels hang off them."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from . import listing, serialize
from .errors import bad_request, json_body
from .labels import build_labels
from .state import Project, Store, assign, current_store, lookup

bp = Blueprint("projects", __name__)


def get_project(store: Store, project_id: int) -> Project:
    return lookup(store.projects, project_id, "Project")


@bp.post("/api/projects")
def create_project():
    store, body = current_store(), json_body()
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("This field is required.", "name")
    labels = build_labels(store, body.get("labels", []))
    project = Project(id=store.next_id("project"), name=body["name"], owner_id=g.user.id,
                      labels=labels, bug_tracker=body.get("bug_tracker", ""),
                      assignee_id=body.get("assignee_id"))
    with store.lock:
        store.projects[project.id] = project
    return jsonify(serialize.project(store, project)), 201


@bp.get("/api/projects")
def list_projects():
    store = current_store()
    items = [serialize.project(store, p) for p in store.projects.values()]
    return listing.respond(items, ["name", "owner", "assignee", "status"])


@bp.get("/api/projects/<int:project_id>")
def retrieve_project(project_id: int):
    store = current_store()
    return jsonify(serialize.project(store, get_project(store, project_id)))


@bp.patch("/api/projects/<int:project_id>")
def update_project(project_id: int):
    store, body = current_store(), json_body()
    project = get_project(store, project_id)
    with store.lock:
        assign(project, body, ("name", "bug_tracker", "assignee_id"))
        if body.get("labels"):
            project.labels = project.labels + build_labels(store, body["labels"])
    return jsonify(serialize.project(store, project))


@bp.delete("/api/projects/<int:project_id>")
def delete_project(project_id: int):
    store = current_store()
    get_project(store, project_id)
    with store.lock:
        for task in [t for t in store.tasks.values() if t.project_id == project_id]:
            store.remove_task(task.id)
        del store.projects[project_id]
        for hook in [w for w in store.webhooks.values() if w.project_id == project_id]:
            del store.webhooks[hook.id]
    return "", 204
