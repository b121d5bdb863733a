"""Label specs (including skeletons with point sublabels) as CVAT validates and stores them."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request

from . import serialize
from .errors import bad_request, not_found
from .state import Label, Store, current_store

bp = Blueprint("labels", __name__)
LABEL_TYPES = {"any", "cuboid", "ellipse", "mask", "points", "polygon", "polyline",
               "rectangle", "skeleton", "tag"}
PALETTE = ["#33ddff", "#fa3253", "#34d1b7", "#ff007c", "#ddff33", "#24b353", "#b83df5",
           "#66ff66", "#32b7fa", "#ffcc33", "#83e070", "#fafa37", "#5986b3", "#8c78f0"]


def _make_label(store: Store, spec: Any, index: int, parent_id: int | None) -> Label:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad_request("Each label must be an object with a non-empty name.", "labels")
    kind = spec.get("type", "any")
    if kind not in LABEL_TYPES:
        raise bad_request(f'"{kind}" is not a valid choice.', "labels")
    return Label(
        id=store.next_id("label"),
        name=spec["name"],
        type=kind,
        color=spec.get("color") or PALETTE[index % len(PALETTE)],
        attributes=[dict(a, id=store.next_id("attribute")) for a in spec.get("attributes", [])],
        parent_id=parent_id,
    )


def _link_svg(svg: str, sublabels: list[Label]) -> str:
    """CVAT stores skeleton svg with `data-label-id` pointing at the created sublabels."""
    by_name = {s.name: s.id for s in sublabels}

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in by_name:
            raise bad_request(f"svg refers to unknown sublabel {name!r}", "labels")
        return f'data-label-id="{by_name[name]}"'

    return re.sub(r'data-label-name="([^"]*)"', replace, svg)


def build_labels(store: Store, specs: Any) -> list[Label]:
    """Validate label specs and give every label and sublabel an id."""
    if not isinstance(specs, list):
        raise bad_request('Expected a list of items but got type "dict".', "labels")
    names = [s.get("name") for s in specs if isinstance(s, dict)]
    if len(set(names)) != len(names):
        raise bad_request("All label names must be unique", "labels")
    labels = []
    for index, spec in enumerate(specs):
        label = _make_label(store, spec, index, None)
        subs = spec.get("sublabels") or []
        if label.type == "skeleton" and not subs:
            raise bad_request("Skeleton label must have at least one sublabel", "labels")
        made = [_make_label(store, s, i, label.id) for i, s in enumerate(subs)]
        # CVAT lists (and exports) sublabels in database order, which need not be the order they were
        # created in; listing them by name keeps code that indexes points by position from passing here.
        label.sublabels = sorted(made, key=lambda s: s.name)
        if len({s.name for s in label.sublabels}) != len(label.sublabels):
            raise bad_request(f"Sublabel names of {label.name!r} must be unique", "labels")
        label.svg = _link_svg(spec.get("svg", ""), label.sublabels) if label.sublabels else ""
        labels.append(label)
    with store.lock:
        for label in labels:
            store.labels[label.id] = label
            store.labels.update({s.id: s for s in label.sublabels})
    return labels


def _owner_of_labels(store: Store) -> tuple[list[Label], int | None, int | None]:
    """Resolve the ?project_id/?task_id/?job_id filter to labels and their owner."""
    if pid := request.args.get("project_id"):
        project = store.projects.get(int(pid)) if pid.isdigit() else None
        return (project.labels, project.id, None) if project else ([], None, None)
    task_id = request.args.get("task_id")
    if job_id := request.args.get("job_id"):
        job = store.jobs.get(int(job_id)) if job_id.isdigit() else None
        task_id = str(job.task_id) if job else "0"
    if task_id:
        task = store.tasks.get(int(task_id)) if task_id.isdigit() else None
        if task is None:
            return [], None, None
        if task.project_id:
            return store.task_labels(task), task.project_id, None
        return task.labels, None, task.id
    return [], None, None


@bp.get("/api/labels")
def list_labels():
    store = current_store()
    labels, project_id, task_id = _owner_of_labels(store)
    items = [serialize.label(lbl, project_id=project_id, task_id=task_id) for lbl in labels]
    return jsonify(serialize.paginated(items))


@bp.get("/api/labels/<int:label_id>")
def retrieve_label(label_id: int):
    store = current_store()
    label = store.labels.get(label_id)
    if label is None or label.parent_id is not None:
        raise not_found("Label")
    owner = _find_label_owner(store, label)
    return jsonify(serialize.label(label, project_id=owner[0], task_id=owner[1]))


def _find_label_owner(store: Store, label: Label) -> tuple[int | None, int | None]:
    for project in store.projects.values():
        if label in project.labels:
            return project.id, None
    for task in store.tasks.values():
        if label in task.labels:
            return None, task.id
    return None, None
