"""Annotation import (upload protocol + background request) and dataset export + download
in "COCO Keypoints 1.0", for projects, tasks and jobs."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from flask import Blueprint, request

from . import background, coco, serialize, uploads
from .annotations import Scope, all_labels, normalize_shape, replace_shapes, scope
from .errors import bad_request
from .projects import get_project
from .state import Frame, Label, Store, current_store

bp = Blueprint("datasets", __name__)
CVAT_FORMATS = {"CVAT for images 1.1", "CVAT for video 1.1", "COCO 1.0", "Datumaro 1.0",
                "YOLO 1.1", "PASCAL VOC 1.1", "Ultralytics YOLO Pose 1.0"}
SINGULAR = {"projects": "project", "tasks": "task", "jobs": "job"}


def check_format(name: str | None) -> None:
    if name == coco.FORMAT:
        return
    if name in CVAT_FORMATS:
        raise bad_request(f"Format {name!r} is not supported by the CALS test server.", "format")
    raise bad_request("Unknown format specified for the request", "format")


def _import(sc: Scope, name: str, data: bytes, fields: dict) -> None:
    document = coco.read_document(name, data)
    # like CVAT, a job matches only its own frames: an image of another job fails the import
    frame_names = {f.name: i for i, f in enumerate(sc.task.frames) if sc.contains(i)}
    found = coco.import_shapes(document, sc.labels, frame_names)
    labels = all_labels(sc)
    shapes = [normalize_shape(sc, s, labels) for s in found if sc.contains(s["frame"])]
    replace_shapes(sc, shapes, keep_existing=fields.get("import_mode") == "append")


def _import_finish(kind: str):
    def finish_for(obj_id: int) -> uploads.Finish:
        sc = scope(kind, obj_id)

        def finish(files, fields):
            check_format(fields.get("format"))
            name = fields.get("filename", "")
            if name not in files:
                raise bad_request(f"No uploaded file named {name!r}.", "filename")
            if fields.get("import_mode", "replace") not in ("replace", "append"):
                raise bad_request('"import_mode" must be "replace" or "append".', "import_mode")
            req = background.new_request("import:annotations", SINGULAR[kind], format=coco.FORMAT,
                                         task_id=sc.task.id, project_id=sc.task.project_id,
                                         job_id=obj_id if kind == "jobs" else None)
            req.id = background.request_id("import", SINGULAR[kind], obj_id, subresource="annotations")
            return background.run(req, lambda: _import(sc, name, files[name], fields))

        return finish

    return finish_for


for _kind in ("tasks", "jobs"):
    uploads.register(bp, f"/api/{_kind}/<int:obj_id>/annotations/", _kind, "annotations",
                     _import_finish(_kind))


def _export_parts(store: Store, kind: str, obj_id: int) -> tuple[list[Label], list[tuple[int, Frame]], list[dict]]:
    """Labels, (frame number, frame) pairs and shapes to export; a project's tasks in a row."""
    if kind == "projects":
        project = get_project(store, obj_id)
        frames, shapes, offset = [], [], 0
        for task in sorted((t for t in store.tasks.values() if t.project_id == obj_id), key=lambda t: t.id):
            frames += [(offset + i, f) for i, f in enumerate(task.frames)]
            shapes += [{**s, "frame": s["frame"] + offset} for s in store.shapes[task.id]]
            offset += len(task.frames)
        return project.labels, frames, shapes
    sc = scope(kind, obj_id)
    frames = [(i, sc.task.frames[i]) for i in range(sc.first, sc.last + 1)] if sc.task.frames else []
    return sc.labels, frames, sc.shapes()


def _export(kind: str, obj_id: int):
    store = current_store()
    check_format(request.args.get("format"))
    if request.args.get("location", "local") != "local":
        raise bad_request("Only local export is supported by the CALS test server.", "location")
    include_images = request.args.get("save_images", "false").lower() in ("true", "1")
    labels, frames, shapes = _export_parts(store, kind, obj_id)
    subresource = "dataset" if include_images else "annotations"
    req = background.new_request(f"export:{subresource}", SINGULAR[kind], format=coco.FORMAT)
    setattr(req, f"{SINGULAR[kind]}_id", obj_id)
    req.id = background.request_id("export", SINGULAR[kind], obj_id, subresource=subresource,
                                   format=coco.FORMAT.replace(" ", "_").replace(".", "~"),
                                   user_id=str(req.owner_id))
    stamp = datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
    req.result_filename = request.args.get("filename") or \
        f"{SINGULAR[kind]}_{obj_id}_{subresource}_{stamp}_coco keypoints 1.0.zip"
    req.result_url = serialize.url(f"/api/{kind}/{obj_id}/dataset/download?rq_id={quote(req.id)}")
    document = coco.export_document(labels, frames, shapes)
    req.result_file = coco.export_zip(document, frames, include_images)
    return background.run(req, lambda: None)


def _download(kind: str, obj_id: int):
    return background.download(request.args.get("rq_id", ""))


for _kind in SINGULAR:
    bp.add_url_rule(f"/api/{_kind}/<int:obj_id>/dataset/export", f"{_kind}_export",
                    lambda obj_id, _k=_kind: _export(_k, obj_id), methods=["POST"])
    bp.add_url_rule(f"/api/{_kind}/<int:obj_id>/dataset/download", f"{_kind}_download",
                    lambda obj_id, _k=_kind: _download(_k, obj_id), methods=["GET"])
