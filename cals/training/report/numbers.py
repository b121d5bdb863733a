"""The numbers of a set of frames people finished from CALS's pre-annotations: one definition
for a job, a round and the tests.

- counts: frames, people and labelled points per group of the final labels;
- effort: points moved beyond the tolerance and their displacement (`cals.training.effort`);
- accuracy: OKS AP of the pre-annotations against the final labels per group (`cals.metrics.evaluate`,
  the schema's sigmas), on all frames and on those picked at random (an unbiased sample of the pool);
- flags: recall and workload of the points flagged to check, at the round's threshold;
- work: points people placed or moved against every point they would place with no pre-annotation.

Pre-annotations are judged as CVAT showed them (`cals.cvat.round_upload.as_shown`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cals.metrics.evaluate import evaluate
from cals.schema import Schema
from cals.training.effort import check_rule_figures, correction_effort

People = Mapping[str, Sequence[dict]]  # frame name -> COCO annotations


def frame_numbers(pre: People, final: People, sizes: Mapping[str, tuple[int, int]], schema: Schema, *,
                  tolerance: float, threshold: float | None, at_random: Iterable[str] = ()) -> dict[str, Any]:
    """The numbers of the frames in both `pre` and `final`; `sizes`: frame name -> (width, height)."""
    frames = sorted(pre.keys() & final.keys())
    pre_f, final_f = {f: pre[f] for f in frames}, {f: final[f] for f in frames}
    effort = correction_effort(pre_f, final_f, schema, tolerance=tolerance)
    random_frames = sorted(set(at_random) & set(frames))
    every = pre_annotation_ap(pre_f, final_f, sizes, schema, frames)
    picked = every if random_frames == frames else (
        pre_annotation_ap(pre_f, final_f, sizes, schema, random_frames) if random_frames else None)
    return {
        "frames": len(frames),
        "people": sum(len(final_f[f]) for f in frames),
        "people_preannotated": sum(len(pre_f[f]) for f in frames),
        "points": {g: e["points"] for g, e in effort.items()},
        "effort": effort,
        "ap": {"all": every, "random": picked, "random_frames": len(random_frames)},
        "flags": None if threshold is None else flag_figures(pre_f, final_f, schema, threshold, tolerance),
        "work": work_saved(effort),
    }


def pre_annotation_ap(pre: People, final: People, sizes: Mapping[str, tuple[int, int]], schema: Schema,
                      frames: Sequence[str]) -> dict[str, float | None]:
    """OKS AP per group (and "overall") of the pre-annotations on `frames`, a person's score being
    the mean of its point scores; None for a group no final person has a point of."""
    if not frames:
        return {"overall": None, **{g: None for g in schema.groups}}
    images, gt, preds = [], [], []
    for image_id, name in enumerate(frames, start=1):
        w, h = sizes[name]
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        gt += [{**a, "id": len(gt) + i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0}
               for i, a in enumerate(final[name])]
        preds += [{"image_id": image_id, "category_id": 1, "keypoints": _with_scores(a),
                   "score": float(np.mean(a["scores"]))} for a in pre[name]]
    report = evaluate({"images": images, "annotations": gt, "categories": [schema.coco_category()]},
                      preds, schema, by_family=False, quiet=True)
    return {"overall": report["overall"]["AP"], **{g: m["AP"] for g, m in report["groups"].items()}}


def _with_scores(ann: dict) -> list[float]:
    """COCO results keypoints: [x, y, score] * K (a point CVAT did not show scores 0: absent)."""
    kp = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
    scores = np.where(kp[:, 2] > 0, np.asarray(ann["scores"], dtype=float), 0.0)
    return np.column_stack([kp[:, :2], scores]).reshape(-1).tolist()


def flag_figures(pre: People, final: People, schema: Schema, threshold: float, tolerance: float
                 ) -> dict[str, dict[str, Any]]:
    """Per group: shown points, flagged, moved, moved and flagged; recall and workload."""
    rows = check_rule_figures(pre, final, schema, [threshold], tolerance=tolerance)
    return {g: {"threshold": threshold, "shown": r[0]["placed"], "flagged": r[0]["flagged"],
                "moved": r[0]["moved"], "caught": r[0]["caught"], "recall": r[0]["recall"],
                "workload": r[0]["workload"]} for g, r in rows.items()}


def work_saved(effort: Mapping[str, dict]) -> dict[str, Any]:
    """Points people placed or moved (every moved point: beyond tolerance, or labelled where the
    pre-annotation had none) against the points they labelled, which from scratch they would all place."""
    done = sum(e["moved"] for e in effort.values())
    scratch = sum(e["points"] for e in effort.values())
    return {"placed_or_moved": done, "from_scratch": scratch,
            "saved_share": 1 - done / scratch if scratch else None}
