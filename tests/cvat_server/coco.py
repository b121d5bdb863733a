"""CVAT's "COCO Keypoints 1.0" mapping (Datumaro coco_person_keypoints), both directions.

Export: one category per label (`keypoints` = point sublabel names in order, `skeleton` = the
svg's edges), one annotation per skeleton with `[x, y, v]` per point where v is 0 for
outside, 1 for occluded, else 2, and a bbox around the points that are not outside.
Import: categories and keypoint names map to labels and sublabels by name, images to frames
by file name (or its stem); bbox-only annotations are dropped, as CVAT does.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import PurePosixPath
from typing import Any

from .errors import BackgroundError
from .state import Frame, Label

FORMAT = "COCO Keypoints 1.0"
JSON_PATH = "annotations/person_keypoints_default.json"


class CocoError(BackgroundError):
    """An annotation file CVAT's COCO importer would reject."""


def skeleton_edges(svg: str) -> list[list[int]]:
    edges = []
    for tag in re.findall(r"<line\b[^>]*>", svg):
        ends = [re.search(rf'{attr}="(\d+)"', tag) for attr in ("data-node-from", "data-node-to")]
        if 'data-type="edge"' in tag and all(ends):
            edges.append([int(ends[0].group(1)), int(ends[1].group(1))])
    return edges


def visibility(element: dict[str, Any]) -> int:
    return 0 if element.get("outside") else 1 if element.get("occluded") else 2


def _keypoints(label: Label, shape: dict[str, Any]) -> tuple[list[float], int, list[float]]:
    by_label = {e["label_id"]: e for e in shape.get("elements", [])}
    triplets, xs, ys = [], [], []
    for sub in label.sublabels:
        element = by_label.get(sub.id, {"points": [0.0, 0.0], "outside": True})
        x, y = (list(element.get("points") or [0.0, 0.0]) + [0.0, 0.0])[:2]
        v = visibility(element)
        triplets += [x, y, v]
        if v:
            xs.append(x)
            ys.append(y)
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)] if xs else [0.0, 0.0, 0.0, 0.0]
    return triplets, len(xs), bbox


def export_document(labels: list[Label], frames: list[tuple[int, Frame]],
                    shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """A person_keypoints JSON document for `frames` (task frame number, frame)."""
    cat_ids = {lbl.id: i for i, lbl in enumerate(labels, 1)}
    image_ids = {number: i for i, (number, _) in enumerate(frames, 1)}
    by_id = {lbl.id: lbl for lbl in labels}
    annotations = []
    for shape in sorted(shapes, key=lambda s: (s["frame"], s.get("id") or 0)):
        label = by_id.get(shape["label_id"])
        if shape["type"] != "skeleton" or label is None or shape["frame"] not in image_ids:
            continue
        keypoints, count, bbox = _keypoints(label, shape)
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_ids[shape["frame"]],
            "category_id": cat_ids[label.id], "segmentation": [], "area": bbox[2] * bbox[3],
            "bbox": bbox, "iscrowd": 0, "attributes": {"occluded": bool(shape.get("occluded"))},
            "keypoints": keypoints, "num_keypoints": count,
        })
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "",
                 "version": "", "year": ""},
        "categories": [{"id": cat_ids[lbl.id], "name": lbl.name, "supercategory": "",
                        "keypoints": [s.name for s in lbl.sublabels],
                        "skeleton": skeleton_edges(lbl.svg)} for lbl in labels],
        "images": [{"id": image_ids[n], "width": f.width, "height": f.height, "file_name": f.name,
                    "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
                   for n, f in frames],
        "annotations": annotations,
    }


def export_zip(document: dict[str, Any], frames: list[tuple[int, Frame]], include_images: bool) -> bytes:
    """The archive CVAT sends: the JSON under annotations/, images under images/default/."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(JSON_PATH, json.dumps(document))
        if include_images:
            for _, frame in frames:
                archive.writestr(f"images/default/{frame.name}", frame.data)
    return out.getvalue()


def read_document(name: str, data: bytes) -> dict[str, Any]:
    """Accept a JSON file or a zip holding annotations/*.json, as CVAT's importer does."""
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [n for n in archive.namelist() if n.endswith(".json")]
                if not names:
                    raise CocoError(f"no COCO annotation JSON found in {name!r}")
                data = archive.read(sorted(names, key=lambda n: "keypoints" not in n)[0])
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise CocoError(f"failed to parse {name!r} as COCO JSON: {err}") from err
    if not isinstance(document, dict) or not all(
        isinstance(document.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise CocoError(f"{name!r} is not a COCO document: needs images, annotations, categories")
    return document


def _frame_lookup(frame_names: dict[str, int]):
    by_stem = {PurePosixPath(n).stem: i for n, i in frame_names.items()}

    def find(file_name: str) -> int:
        path = PurePosixPath(str(file_name))
        for key, table in ((str(path), frame_names), (path.name, frame_names), (path.stem, by_stem)):
            if key in table:
                return table[key]
        raise CocoError(f"Could not match item id: {path.stem!r} with any task frame")

    return find


def _category_labels(document: dict[str, Any], labels: list[Label]) -> dict[Any, tuple[Label, list[str]]]:
    by_name = {lbl.name: lbl for lbl in labels}
    result = {}
    for cat in document["categories"]:
        label = by_name.get(cat.get("name"))
        if label is None:
            continue
        names = [str(n) for n in cat.get("keypoints") or []]
        unknown = set(names) - {s.name for s in label.sublabels}
        if unknown:
            raise CocoError(f"keypoints {sorted(unknown)} of category {label.name!r} "
                            f"are not sublabels of the task's {label.name!r} label")
        result[cat.get("id")] = (label, names)
    return result


def _skeleton(ann: dict[str, Any], label: Label, names: list[str], frame: int) -> dict[str, Any]:
    values = ann.get("keypoints")
    if not isinstance(values, list) or len(values) != 3 * len(names):
        raise CocoError(f"annotation {ann.get('id')!r} has {len(values or [])} keypoint values, "
                        f"expected {3 * len(names)}")
    triplets = {n: values[3 * i : 3 * i + 3] for i, n in enumerate(names)}
    elements = []
    for sub in label.sublabels:
        x, y, v = triplets.get(sub.name, (0.0, 0.0, 0))
        elements.append({"type": "points", "label_id": sub.id, "frame": frame,
                         "points": [float(x), float(y)], "outside": v == 0,
                         "occluded": v == 1, "source": "file"})
    attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
    shape = {"type": "skeleton", "label_id": label.id, "frame": frame, "points": [],
             "occluded": bool(attributes.get("occluded", False)), "source": "file",
             "elements": elements}
    if isinstance(ann.get("score"), (int, float)):
        shape["score"] = float(ann["score"])
    return shape


# What datumaro's COCO person-keypoints reader (CVAT's importer) parses from every annotation, with the
# types it accepts; a missing one fails the import with "Missing annotation field '<name>'".
_REQUIRED = (("id", int), ("image_id", int), ("category_id", int), ("iscrowd", int),
             ("keypoints", list), ("segmentation", (list, dict)))


def _require_fields(ann: Any) -> None:
    if not isinstance(ann, dict):
        raise CocoError(f"annotation {ann!r} is not an object")
    for name, kind in _REQUIRED:
        if name not in ann:
            raise CocoError(f"Missing annotation field '{name}'")
        if not isinstance(ann[name], kind) or isinstance(ann[name], bool):
            raise CocoError(f"annotation {ann.get('id')!r}: field '{name}' has the wrong type")
    if not ann["segmentation"] and not (isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4):
        raise CocoError(f"annotation {ann['id']!r}: Bbox has wrong value count, expected 4 values")


def import_shapes(document: dict[str, Any], labels: list[Label],
                  frame_names: dict[str, int]) -> list[dict[str, Any]]:
    """Skeleton shapes (CVAT JSON, without ids) for every keypoint annotation of the document."""
    find_frame = _frame_lookup(frame_names)
    frames = {img.get("id"): find_frame(img.get("file_name", "")) for img in document["images"]}
    categories = _category_labels(document, labels)
    shapes = []
    for ann in document["annotations"]:
        _require_fields(ann)
        if ann.get("category_id") not in categories:
            raise CocoError(f"annotation {ann.get('id')!r}: category {ann.get('category_id')!r} "
                            "has no label of that name in the task")
        if ann.get("image_id") not in frames:
            raise CocoError(f"annotation {ann.get('id')!r}: unknown image_id {ann.get('image_id')!r}")
        label, names = categories[ann["category_id"]]
        shapes.append(_skeleton(ann, label, names, frames[ann["image_id"]]))
    return shapes
