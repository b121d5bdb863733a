"""A round's pre-annotations into its CVAT task as skeleton shapes that carry the points to check.

They go through the annotations API (`task.set_annotations`, a PUT) and not CVAT's COCO importer,
which has no place for attributes: only this way does an annotator see which points the model
doubts. The shapes are the ones the function gives for AI Tools (cals/cvat/shapes.py):
a point is `outside` only when the document has none there (v=0) or it lies off the image; a
doubtful point is shown and flagged; a hidden point is not flagged. Names are resolved to the
task's label, sublabel and attribute ids, and every shape is `source="auto"` (CVAT's mark for
machine-made annotations). The PUT replaces the task's annotations: it is meant for a round task
just created, which holds nothing of a person's.

A project made before the attributes existed still gets its rounds, without the attributes
that its label lacks (one warning says so): CALS never edits a label people work in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from cvat_sdk.api_client import models

from cals.errors import CalsError
from cals.cvat.point_checks import CHECK, CONFIDENCE, SPINE_CONFIDENCE
from cals.schema import Schema
from cals.cvat.shapes import on_image, skeleton_shape

log = logging.getLogger(__name__)
SKELETON_ATTRIBUTES = (CHECK, SPINE_CONFIDENCE)
POINT_ATTRIBUTES = (CHECK, CONFIDENCE)


def shown(ann: dict, image: dict) -> np.ndarray:
    """(K,) bool: the annotation's points that are shown in CVAT (present and on the image)."""
    kp = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
    return (kp[:, 2] > 0) & on_image(kp[:, :2], (image["width"], image["height"]))


def as_shown(coco: dict) -> dict[str, list[dict]]:
    """The document's people by frame name with only what CVAT showed: a point off the image goes in
    as absent (v 0). Effort, flags and the loop report judge the pre-annotation people saw."""
    out: dict[str, list[dict]] = {im["file_name"]: [] for im in coco["images"]}
    images = {im["id"]: im for im in coco["images"]}
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        kp = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        kp[~shown(ann, image), 2] = 0
        out[image["file_name"]].append({**ann, "keypoints": kp.reshape(-1).tolist()})
    return out


def round_shapes(coco: dict, schema: Schema, check_below: float) -> list[dict]:
    """The document's people as name-keyed skeleton shapes (the function's form) with their frame."""
    images = {im["id"]: im for im in coco["images"]}
    shapes = []
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        kp = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        scores = np.asarray(ann["scores"], dtype=float)
        shape = skeleton_shape(schema, kp[:, :2], shown(ann, image), scores, check_below)
        shapes.append({**shape, "frame": int(image["frame"])})
    return shapes


@dataclass
class LabelIds:
    """The task's ids for the schema's skeleton label, its points and their attributes (by name)."""

    skeleton: int
    attributes: dict[str, int]
    points: dict[str, int]
    point_attributes: dict[str, dict[str, int]]
    missing: list[str] = field(default_factory=list)  # what the project's label lacks, in words

    @classmethod
    def of(cls, labels, schema: Schema) -> "LabelIds":
        label = next((lab for lab in labels if lab.name == schema.label), None)
        if label is None or getattr(label, "type", None) != "skeleton":
            raise CalsError(f"the round's project has no skeleton label {schema.label!r}; "
                            "create the project with `make setup-project`")
        subs = {sub.name: sub for sub in (label.sublabels or [])}
        absent = [name for name in schema.names if name not in subs]
        if absent:
            raise CalsError(f"label {schema.label!r} of the round's project lacks the points {absent}; "
                            "create the project with `make setup-project`")
        ids = cls(label.id, _attribute_ids(label, SKELETON_ATTRIBUTES),
                  {name: subs[name].id for name in schema.names},
                  {name: _attribute_ids(subs[name], POINT_ATTRIBUTES) for name in schema.names})
        if lacking := [a for a in SKELETON_ATTRIBUTES if a not in ids.attributes]:
            ids.missing.append(f"skeleton {schema.label!r}: {', '.join(lacking)}")
        lacking = sorted({a for attrs in ids.point_attributes.values() for a in POINT_ATTRIBUTES if a not in attrs})
        if lacking:
            count = sum(any(a not in attrs for a in POINT_ATTRIBUTES) for attrs in ids.point_attributes.values())
            ids.missing.append(f"{count} of its {len(schema.names)} points: {', '.join(lacking)}")
        return ids


def _attribute_ids(label, names: tuple[str, ...]) -> dict[str, int]:
    return {a.name: a.id for a in (label.attributes or []) if a.name in names}


def _values(attributes: list[dict[str, str]], ids: dict[str, int]) -> list[models.AttributeValRequest]:
    return [models.AttributeValRequest(spec_id=ids[a["name"]], value=a["value"])
            for a in attributes if a["name"] in ids]


def cvat_shape(shape: dict, ids: LabelIds) -> models.LabeledShapeRequest:
    """One name-keyed skeleton (round_shapes) as the request CVAT's annotations API takes."""
    frame = shape["frame"]
    elements = [models.SubLabeledShapeRequest(
        type="points", frame=frame, label_id=ids.points[e["label"]], points=[float(p) for p in e["points"]],
        outside=bool(e["outside"]), source="auto",
        attributes=_values(e["attributes"], ids.point_attributes[e["label"]]))
        for e in shape["elements"]]
    return models.LabeledShapeRequest(type="skeleton", frame=frame, label_id=ids.skeleton, source="auto",
                                      attributes=_values(shape["attributes"], ids.attributes), elements=elements)


def upload_preannotations(task, coco: dict, schema: Schema, check_below: float) -> None:
    """Replace `task`'s (a new round's cvat-sdk task) annotations with the document's people.

    `check_below`: points scoring below it are flagged (the round resolves $CALS_CHECK_BELOW and records it).
    """
    ids = LabelIds.of(task.get_labels(), schema)
    if ids.missing:
        log.warning("task %d: the project's label %r lacks the points-to-check attributes (%s), so the "
                    "pre-annotations go in without them; for points to check, use a project made by "
                    "`make setup-project` (CALS never edits a label people work in)",
                    task.id, schema.label, "; ".join(ids.missing))
    shapes = [cvat_shape(s, ids) for s in round_shapes(coco, schema, check_below)]
    task.set_annotations(models.LabeledDataRequest(shapes=shapes))
