"""Annotations of a task or job: read and write (GET, PUT, PATCH create|update|delete, DELETE).

Shapes are stored per task in CVAT's JSON form; a job sees and replaces only its frames.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, jsonify, request

from .errors import bad_request, json_body, not_found
from .jobs import annotations_changed
from .state import Label, Store, Task, current_store, now

bp = Blueprint("annotations", __name__)
SHAPE_TYPES = {"rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"}
SHAPE_DEFAULTS = {"occluded": False, "outside": False, "z_order": 0, "rotation": 0.0, "points": [],
                  "group": 0, "source": "manual", "attributes": []}


@dataclass
class Scope:
    """The frames an endpoint works on: a whole task or one job's segment."""

    store: Store
    task: Task
    first: int
    last: int
    kind: str
    obj_id: int

    @property
    def labels(self) -> list[Label]:
        return self.store.task_labels(self.task)

    def contains(self, frame: Any) -> bool:
        return isinstance(frame, int) and self.first <= frame <= self.last

    def shapes(self) -> list[dict[str, Any]]:
        return [s for s in self.store.shapes[self.task.id] if self.contains(s["frame"])]


def scope(kind: str, obj_id: int) -> Scope:
    store = current_store()
    if kind == "jobs":
        job = store.jobs.get(obj_id)
        if job is None:
            raise not_found("Job")
        return Scope(store, store.tasks[job.task_id], job.start_frame, job.stop_frame, kind, obj_id)
    task = store.tasks.get(obj_id)
    if task is None:
        raise not_found("Task")
    return Scope(store, task, 0, max(len(task.frames) - 1, 0), kind, obj_id)


def _labeled_data(sc: Scope, shapes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": sc.store.versions.get(sc.task.id, 0), "tags": [], "shapes": shapes,
            "tracks": []}


def normalize_shape(sc: Scope, shape: Any, labels: dict[int, Label], sub_of: int | None = None) -> dict:
    """Validate one shape as CVAT's serializer would and fill CVAT's defaults."""
    if not isinstance(shape, dict) or shape.get("type") not in SHAPE_TYPES:
        raise bad_request("Each shape needs a valid type.", "shapes")
    if not sc.contains(shape.get("frame")):
        raise bad_request(f"Frame {shape.get('frame')!r} is outside [{sc.first}, {sc.last}].", "shapes")
    label = labels.get(shape.get("label_id"))
    if label is None or (sub_of is not None and label.parent_id != sub_of):
        raise bad_request(f"Unknown label id {shape.get('label_id')!r}.", "shapes")
    out = {**SHAPE_DEFAULTS, **copy.deepcopy(shape)}
    out["attributes"] = [_attribute_value(a, label) for a in out["attributes"] or []]
    out["points"] = [float(p) for p in out["points"]]
    out["rotation"] = float(out["rotation"])
    out.setdefault("score", 1.0)
    out["id"] = out.get("id") or sc.store.next_id("shape")
    if sub_of is None:
        elements = shape.get("elements") or []
        out["elements"] = [normalize_shape(sc, e, labels, label.id) for e in elements]
    return out


def _attribute_value(value: Any, label: Label) -> dict[str, Any]:
    """CVAT keeps an attribute value only when its spec is one of the shape's own label's."""
    spec_id = value.get("spec_id") if isinstance(value, dict) else None
    if spec_id not in {a["id"] for a in label.attributes}:
        raise bad_request(f"spec_id `{spec_id}` is invalid")
    if not isinstance(value.get("value"), str):
        raise bad_request("Not a valid string.", "attributes")
    return {"spec_id": spec_id, "value": value["value"]}


def with_defaults(shape: dict[str, Any], labels: dict[int, Label]) -> dict[str, Any]:
    """A stored shape as CVAT reads it back: every attribute of its label it lacks at its default."""
    label = labels.get(shape["label_id"])
    have = {a["spec_id"] for a in shape.get("attributes", [])}
    extra = [{"spec_id": a["id"], "value": a.get("default_value", "")}
             for a in (label.attributes if label else []) if a["id"] not in have]
    out = {**shape, "attributes": [*shape.get("attributes", []), *extra]}
    if "elements" in shape:
        out["elements"] = [with_defaults(e, labels) for e in shape["elements"]]
    return out


def all_labels(sc: Scope) -> dict[int, Label]:
    return {lbl.id: lbl for top in sc.labels for lbl in [top, *top.sublabels]}


def _shapes_from(sc: Scope, data: dict[str, Any]) -> list[dict[str, Any]]:
    for unsupported in ("tags", "tracks"):
        if data.get(unsupported):
            raise bad_request("Not supported by the CALS test server.", unsupported)
    shapes = data.get("shapes", [])
    if not isinstance(shapes, list):
        raise bad_request("Expected a list of items.", "shapes")
    labels = all_labels(sc)
    return [normalize_shape(sc, s, labels) for s in shapes]


def _save(sc: Scope, shapes: list[dict[str, Any]]) -> None:
    """Store a task's shapes; like CVAT, every change bumps the annotation version."""
    with sc.store.lock:
        sc.store.shapes[sc.task.id] = shapes
        sc.store.versions[sc.task.id] = sc.store.versions.get(sc.task.id, 0) + 1
        sc.task.updated = now()
    annotations_changed(sc.store, sc.task.id, sc.first, sc.last)


def replace_shapes(sc: Scope, new: list[dict[str, Any]], *, keep_existing: bool = False) -> None:
    with sc.store.lock:
        kept = [s for s in sc.store.shapes[sc.task.id] if keep_existing or not sc.contains(s["frame"])]
        _save(sc, kept + new)


def get_annotations(kind: str, obj_id: int):
    sc = scope(kind, obj_id)
    if not sc.task.frames:  # CVAT 2.23 refuses to read a task whose data never arrived
        raise bad_request("Exporting annotations from a task without data is not allowed")
    labels = all_labels(sc)
    return jsonify(_labeled_data(sc, [with_defaults(s, labels) for s in sc.shapes()]))


def put_annotations(kind: str, obj_id: int):
    sc = scope(kind, obj_id)
    new = _shapes_from(sc, json_body())
    replace_shapes(sc, new)
    return jsonify(_labeled_data(sc, new))


def patch_annotations(kind: str, obj_id: int):
    sc = scope(kind, obj_id)
    action = request.args.get("action")
    if action not in ("create", "update", "delete"):
        raise bad_request("Please specify a correct 'action' for the request", "action")
    body = json_body()
    if action == "delete":
        ids = {s.get("id") for s in body.get("shapes", []) if isinstance(s, dict)}
        with sc.store.lock:
            _save(sc, [s for s in sc.store.shapes[sc.task.id] if s["id"] not in ids])
        return jsonify(_labeled_data(sc, []))
    shapes = _shapes_from(sc, body if action == "update" else
                          {**body, "shapes": [{**s, "id": None} for s in body.get("shapes", [])]})
    ids = {s["id"] for s in shapes}
    with sc.store.lock:
        _save(sc, [s for s in sc.store.shapes[sc.task.id] if s["id"] not in ids] + shapes)
    return jsonify(_labeled_data(sc, shapes))


def delete_annotations(kind: str, obj_id: int):
    replace_shapes(scope(kind, obj_id), [])
    return "", 204


for _kind, _single in (("tasks", "task"), ("jobs", "job")):
    _path = f"/api/{_kind}/<int:obj_id>/annotations/"
    for _method, _view in (("GET", get_annotations), ("PUT", put_annotations),
                           ("PATCH", patch_annotations), ("DELETE", delete_annotations)):
        bp.add_url_rule(_path, f"{_kind}_{_method.lower()}_annotations",
                        lambda obj_id, _v=_view, _k=_kind: _v(_k, obj_id), methods=[_method])
