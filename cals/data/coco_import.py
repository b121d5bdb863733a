"""Bring an existing COCO keypoints dataset (e.g. COCO-17 person keypoints) into the schema's layout.

Points are matched by name from the source category's `keypoints` list; schema points the source
lacks (the spine, at first) become unlabelled (v=0), source points the schema lacks are dropped.
Crowd annotations and people without a labelled point carry nothing to learn and are left out;
images without people stay (they are still frames of the pool).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cals.data.coco import ANNOTATIONS, IMAGES, DatasetError, read_json, write_coco
from cals.schema import Schema

log = logging.getLogger(__name__)


def convert(coco: Any, schema: Schema, *, source: str = "COCO file") -> dict[str, Any]:
    """The document in the schema's keypoint layout; raises DatasetError on a malformed source."""
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(
            coco.get("annotations"), list):
        raise DatasetError(f"{source}: expected a COCO object with 'images' and 'annotations' lists")
    category = _person_category(coco, schema, source)
    names = category["keypoints"]
    shared = [n for n in names if n in schema.names]
    if not shared:
        raise DatasetError(f"{source}: none of the category's keypoints {names[:5]}... is in the schema")
    src_idx = [names.index(n) for n in shared]
    dst_idx = [schema.index(n) for n in shared]
    images = [_image(im, source) for im in coco["images"]]
    known = {im["id"] for im in images}
    annotations = []
    for ann in coco["annotations"]:
        if ann.get("category_id") != category["id"] or ann.get("iscrowd"):
            continue
        kp = _keypoints(ann, len(names), known, source)
        out = np.zeros((schema.num_keypoints, 3), np.float64)
        out[dst_idx] = kp[src_idx]
        if not (out[:, 2] > 0).any():
            continue
        annotations.append({"id": len(annotations) + 1, "image_id": ann["image_id"], "category_id": 1,
                            "keypoints": [round(float(v), 2) for v in out.reshape(-1)],
                            "num_keypoints": int((out[:, 2] > 0).sum()), "iscrowd": 0,
                            "bbox": [float(v) for v in ann["bbox"]], "area": float(ann.get("area") or
                                                                                  ann["bbox"][2] * ann["bbox"][3])})
    dropped = sorted(set(names) - set(schema.names))
    if dropped:
        log.warning("%s: points not in the schema are dropped: %s", source, ", ".join(dropped))
    return {"images": images, "annotations": annotations, "categories": [schema.coco_category()]}


def import_coco(annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                schema: Schema, *, link: bool = True) -> Path:
    """Write `out/annotations.json` and `out/images/` (symlinks by default) for every image listed."""
    src_images = Path(images)
    coco = convert(read_json(annotations), schema, source=str(annotations))
    missing = [im["file_name"] for im in coco["images"] if not (src_images / im["file_name"]).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} image(s) listed in {annotations} are not in {src_images}: "
                           f"{', '.join(missing[:3])}")
    out = Path(out)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    flat = [Path(im["file_name"]).name for im in coco["images"]]
    if len(set(flat)) != len(flat):
        raise DatasetError(f"{annotations}: images in different folders share a file name; CVAT frames need "
                           "unique names")
    for im, name in zip(coco["images"], flat):
        src, dst = src_images / im["file_name"], out / IMAGES / name
        im["file_name"] = name
        if not dst.exists():
            if link:
                dst.symlink_to(src.resolve())
            else:
                shutil.copy2(src, dst)
    return write_coco(coco, out / ANNOTATIONS)


def _person_category(coco: dict, schema: Schema, source: str) -> dict:
    cats = [c for c in coco.get("categories") or [] if isinstance(c, dict) and isinstance(c.get("keypoints"), list)]
    named = [c for c in cats if c.get("name") == schema.label]
    if not (named or cats):
        raise DatasetError(f"{source}: no category with a 'keypoints' list")
    return (named or cats)[0]


def _image(im: Any, source: str) -> dict[str, Any]:
    if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
        raise DatasetError(f"{source}: image entry {im!r:.80} needs 'id' and 'file_name'")
    if Path(im["file_name"]).is_absolute() or ".." in Path(im["file_name"]).parts:
        raise DatasetError(f"{source}: image file name {im['file_name']!r} leaves the image folder")
    return {k: im[k] for k in ("id", "file_name", "width", "height") if k in im}


def _keypoints(ann: Any, k: int, known: set, source: str) -> np.ndarray:
    aid = ann.get("id", "?") if isinstance(ann, dict) else "?"
    if not isinstance(ann, dict) or ann.get("image_id") not in known:
        raise DatasetError(f"{source}: annotation {aid} refers to an unknown image")
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * k:
        raise DatasetError(f"{source}: annotation {aid} needs {k} keypoints as [x, y, v] triplets")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0):
        raise DatasetError(f"{source}: annotation {aid} needs a non-empty 'bbox' [x, y, w, h]")
    return np.asarray(kps, np.float64).reshape(k, 3)
