"""Put COCO keypoints into a CVAT task or job in the form CVAT's importer accepts.

CVAT reads "COCO Keypoints 1.0" with datumaro, which requires a `segmentation` on every
annotation (CVAT 2.23: "Missing annotation field 'segmentation'") and turns a non-empty one into
a polygon that a skeleton-only task cannot hold. So every upload goes through here: people as
skeletons, boxes only as CVAT's importer drops them, nothing else.
"""
from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

COCO_FORMAT = "COCO Keypoints 1.0"


def cvat_coco(coco: dict) -> dict:
    """A copy of the document whose annotations carry exactly what CVAT's importer needs."""
    annotations = [{**ann, "segmentation": [], "iscrowd": int(ann.get("iscrowd", 0))}
                   for ann in coco["annotations"]]
    return {**coco, "annotations": annotations}


def import_coco(target, coco: dict) -> None:
    """Replace `target`'s (a cvat-sdk task or job) annotations with the document's people."""
    with tempfile.TemporaryDirectory(prefix="cals-coco-") as tmp:
        # a fresh name each time: CVAT 2.23 refuses an upload named like one it still keeps for the
        # task (409 "File with same name already exists"), e.g. a second import into a round task
        path = Path(tmp) / f"person_keypoints-{uuid.uuid4().hex[:12]}.json"
        path.write_text(json.dumps(cvat_coco(coco)))
        target.import_annotations(COCO_FORMAT, path)
