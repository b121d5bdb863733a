"""The pre-annotations of a round as a COCO keypoints document (what CVAT imports and the trainer reads).

Points people already labelled in the pool are kept exactly; the model fills the rest. The
document's images carry the CVAT frame name as `file_name` and the frame index as `frame`; each
annotation carries the per-point `scores` the points to check are flagged from (cals/cvat/point_checks.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cals.cvat.point_checks import LABELLED
from cals.schema import Schema


def merge_person(predicted: dict, labelled: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3) keypoints and (K,) scores: labelled points (v > 0) as they are, with score 1 (people
    placed them), predicted points visible elsewhere with the model's score."""
    kp = np.concatenate([np.asarray(predicted["keypoints"], np.float32),
                         np.full((len(predicted["keypoints"]), 1), 2, np.float32)], axis=1)
    scores = np.asarray(predicted.get("scores", np.ones(len(kp))), np.float32).copy()
    if labelled is not None:
        keep = labelled[:, 2] > 0
        kp[keep] = labelled[keep]
        scores[keep] = LABELLED
    return kp, scores


def round_coco(frames: Sequence[dict], schema: Schema) -> dict:
    """frames: [{"name", "width", "height", "people": [cached person records], "labelled": (N,K,3)|None}].

    Image ids are frame index + 1; annotation boxes are the person boxes the model used.
    """
    images, annotations = [], []
    for frame, f in enumerate(frames):
        images.append({"id": frame + 1, "file_name": f["name"], "frame": frame,
                       "width": int(f["width"]), "height": int(f["height"])})
        labelled = f.get("labelled")
        for i, person in enumerate(f["people"]):
            kp, scores = merge_person(person, None if labelled is None or i >= len(labelled) else labelled[i])
            x1, y1, x2, y2 = person["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": frame + 1, "category_id": 1,
                                "keypoints": [round(float(v), 2) for v in kp.reshape(-1)],
                                "scores": [round(float(v), 4) for v in scores],
                                "num_keypoints": int((kp[:, 2] > 0).sum()), "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1))})
    return {"images": images, "annotations": annotations, "categories": [schema.coco_category()]}
