"""COCO keypoint datasets on disk: one layout, loaded and checked in one place.

A CALS dataset is a folder with `annotations.json` and `images/`. Every entry
point (train, evaluate, predict, the trainer's CVAT export) validates through
`load_dataset`, so a malformed file fails early with a message naming the entry.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cals.durable import write_json_atomic
from cals.errors import CalsError
from cals.schema import Schema

ANNOTATIONS = "annotations.json"
IMAGES = "images"


class DatasetError(CalsError):
    """A COCO dataset is missing, malformed or does not match the schema."""


@dataclass(frozen=True)
class Dataset:
    root: Path
    coco: dict[str, Any]

    @property
    def ann_file(self) -> Path:
        return self.root / ANNOTATIONS

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGES

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.image_dir / image["file_name"]

    def summary(self, schema: Schema) -> dict[str, Any]:
        """Counts a registry version records as its training-data summary."""
        labelled = {g: 0 for g in schema.groups}
        for ann in self.coco["annotations"]:
            vis = ann["keypoints"][2::3]
            for group, idx in schema.groups.items():
                labelled[group] += sum(1 for i in idx if vis[i] > 0)
        return {
            "path": str(self.root),
            "images": len(self.coco["images"]),
            "annotations": len(self.coco["annotations"]),
            "labelled_points": labelled,
        }


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with path.open() as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror}") from None


def load_dataset(root: str | os.PathLike, schema: Schema, *, check_images: bool = True) -> Dataset:
    """Load `root/annotations.json` and check it against the schema and the image folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    coco = read_json(root / ANNOTATIONS)
    validate_coco(coco, schema, source=str(root / ANNOTATIONS))
    dataset = Dataset(root, coco)
    if check_images:
        missing = [im["file_name"] for im in coco["images"] if not dataset.image_path(im).is_file()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DatasetError(f"{root}: {len(missing)} image(s) missing from {IMAGES}/: "
                               f"{', '.join(missing[:3])}{more}")
    return dataset


def validate_coco(coco: Any, schema: Schema, *, source: str = "dataset") -> None:
    """Raise DatasetError naming the first entry that breaks the COCO keypoints format."""
    if not isinstance(coco, dict):
        raise DatasetError(f"{source}: expected a COCO object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise DatasetError(f"{source}: missing or invalid {key!r} list")
    image_ids = set()
    for im in coco["images"]:
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{source}: image entry {im!r:.80} needs 'id' and 'file_name'")
        image_ids.add(im["id"])
    k = schema.num_keypoints
    for ann in coco["annotations"]:
        _validate_annotation(ann, k, image_ids, source)


def _validate_annotation(ann: Any, k: int, image_ids: set, source: str) -> None:
    if not isinstance(ann, dict):
        raise DatasetError(f"{source}: annotation {ann!r:.80} is not an object")
    aid = ann.get("id", "?")
    if ann.get("image_id") not in image_ids:
        raise DatasetError(f"{source}: annotation {aid} refers to unknown image {ann.get('image_id')!r}")
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) % 3:
        raise DatasetError(f"{source}: annotation {aid} needs 'keypoints' as [x, y, v] triplets")
    if len(kps) != 3 * k:
        raise DatasetError(f"{source}: annotation {aid} has {len(kps) // 3} keypoints; schema has {k}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise DatasetError(f"{source}: annotation {aid} needs 'bbox' as [x, y, w, h]")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise DatasetError(f"{source}: annotation {aid} has an empty bbox {bbox}")


def write_coco(coco: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, coco, indent=None)
    return path


def xywh_to_xyxy(bbox: Iterable[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def annotations_by_name(coco: dict[str, Any]) -> dict[str, list[dict]]:
    """Image file name -> its annotations: how two documents of the same frames are compared."""
    names = {im["id"]: im["file_name"] for im in coco.get("images", [])}
    return {names[k]: v for k, v in annotations_by_image(coco).items()}


def annotations_by_image(coco: dict[str, Any]) -> dict[Any, list[dict]]:
    """Image id -> its annotations, in file order (images without any are absent)."""
    by_image: dict[Any, list[dict]] = {}
    for ann in coco.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image
