"""Keypoint evaluation: COCO OKS AP/AR with the schema's sigmas, per group and pose family, and PCK.

OKS AP comes from `xtcocotools` rather than pycocotools: it is the COCO API fork mmpose's own
CocoMetric uses, so the numbers the trainer compares to decide a promotion are computed exactly as
in mmpose's validation logs, and its COCOeval takes `sigmas=` directly instead of a patched
`params.kpt_oks_sigmas`.

A group (body, spine) is evaluated on its own keypoints only, with its own sigmas, by subsetting the
[x, y, v] triplets of ground truth and predictions. COCOeval ignores a ground-truth person with no
labelled point, so a person whose spine is not annotated does not count for the spine group.
A predicted point with score 0 counts as absent (COCOeval drops a prediction with no positive score).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any, Sequence

import numpy as np
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from cals.data.coco import annotations_by_image, read_json, validate_coco
from cals.errors import CalsError
from cals.schema import Schema

log = logging.getLogger(__name__)

PCK_ALPHA = 0.05
PCK_KEY = "PCK@0.05"
# COCOeval's keypoint stats: AP, AP50, AP75, AP(M), AP(L), AR, AR50, AR75, AR(M), AR(L)
_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AR": 5}


class EvaluationError(CalsError):
    """Predictions or ground truth cannot be evaluated; the message names the entry."""


def evaluate(gt: dict | str | os.PathLike, predictions: list[dict] | str | os.PathLike,
             schema: Schema, *, by_family: bool = True, per_person: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Evaluate COCO keypoint results against a COCO keypoints dataset; returns a JSON-able report.

    `predictions` are COCO results ({"image_id", "category_id", "keypoints": [x, y, score] * K,
    "score"}, optionally "annotation_id" to pin the matched person). Metrics that have no labelled
    ground truth to measure are None. `families` (AP, <group>_AP, PCK per `pose_family` field of the
    GT annotations) is present only when `by_family` and some annotation carries a family.
    `per_person` adds `oks`: {"overall" and each group: {annotation id: OKS of its matched
    prediction, 0 when none}}, the paired figures the promotion gate tests for noise.
    `quiet` logs the result at DEBUG (the loop report evaluates every round of every page view).
    """
    dataset = _load_gt(gt, schema)
    preds = _check_predictions(_load_predictions(predictions), dataset, schema)
    match = _match(dataset["annotations"], preds, np.array(schema.sigmas))
    report: dict[str, Any] = {
        "num_images": len(dataset["images"]),
        "num_gt": sum(1 for a in dataset["annotations"] if _counts(a)),
        "num_predictions": len(preds),
        "overall": _metrics(dataset, preds, match, schema, range(schema.num_keypoints)),
        "groups": {g: _metrics(dataset, preds, match, schema, idx) for g, idx in schema.groups.items()},
    }
    if per_person:
        report["oks"] = {"overall": _person_oks(dataset["annotations"], preds, match, schema, None),
                         **{g: _person_oks(dataset["annotations"], preds, match, schema, idx)
                            for g, idx in schema.groups.items()}}
    families = sorted({str(a["pose_family"]) for a in dataset["annotations"] if a.get("pose_family")})
    if by_family and families:
        report["families"] = {f: _family_metrics(dataset, preds, match, schema, f) for f in families}
    log.log(logging.DEBUG if quiet else logging.INFO, "evaluated %d predictions on %d images: AP %s, %s",
            len(preds), report["num_images"], report["overall"]["AP"], {g: m["AP"] for g, m in report["groups"].items()})
    return report


# ---- inputs ------------------------------------------------------------------
def _load_gt(gt: dict | str | os.PathLike, schema: Schema) -> dict[str, Any]:
    """Read and validate the GT; return a copy with COCOeval's optional fields filled in."""
    source = "ground truth" if isinstance(gt, dict) else str(gt)
    data = gt if isinstance(gt, dict) else read_json(gt)
    validate_coco(data, schema, source=source)
    anns = []
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "category_id"):
            if key not in ann:
                raise EvaluationError(f"{source}: annotation #{i + 1} has no {key!r}")
        w, h = ann["bbox"][2:]
        # COCO's area is the segmentation area; without one, xtcocotools' own fallback (0.53 * box)
        anns.append({**ann, "iscrowd": int(ann.get("iscrowd", 0)), "area": ann.get("area") or 0.53 * w * h})
    categories = data.get("categories") or [schema.coco_category(anns[0]["category_id"] if anns else 1)]
    return {**data, "annotations": anns, "categories": categories}


def _load_predictions(predictions: list[dict] | str | os.PathLike) -> Any:
    return predictions if isinstance(predictions, list) else read_json(predictions)


def _check_predictions(preds: Any, dataset: dict, schema: Schema) -> list[dict]:
    """Validate COCO results; return normalised copies (COCO's loadRes mutates what it gets)."""
    if not isinstance(preds, list):
        raise EvaluationError(f"predictions must be a list of COCO results, got {type(preds).__name__}")
    images = {im["id"] for im in dataset["images"]}
    categories = {c["id"] for c in dataset["categories"]}
    image_of = {a["id"]: a["image_id"] for a in dataset["annotations"]}
    k = schema.num_keypoints
    out = []
    for i, p in enumerate(preds):
        missing = [key for key in ("image_id", "category_id", "keypoints", "score")
                   if not isinstance(p, dict) or key not in p]
        if missing:
            raise EvaluationError(f"prediction #{i + 1} is missing {missing}")
        if p["image_id"] not in images:
            raise EvaluationError(f"prediction #{i + 1} refers to unknown image id {p['image_id']!r}")
        if p["category_id"] not in categories:
            raise EvaluationError(f"prediction #{i + 1} has unknown category id {p['category_id']!r}")
        kps = np.asarray(p["keypoints"], dtype=float).ravel()
        if kps.size != 3 * k:
            raise EvaluationError(f"prediction #{i + 1} (image {p['image_id']}) has "
                                  f"{kps.size / 3:g} keypoints; schema has {k}")
        ann_id = p.get("annotation_id")
        if ann_id is not None and image_of.get(ann_id) != p["image_id"]:
            raise EvaluationError(f"prediction #{i + 1} names annotation {ann_id!r}, "
                                  f"which is not in image {p['image_id']!r}")
        out.append({"image_id": p["image_id"], "category_id": p["category_id"],
                    "keypoints": kps.tolist(), "score": float(p["score"]), "annotation_id": ann_id})
    return out


# ---- matching (PCK and per-family need to know which prediction is which person) -----
def _match(anns: list[dict], preds: list[dict], sigmas: np.ndarray) -> dict[Any, int]:
    """GT annotation id -> index of its prediction: the prediction's `annotation_id` if given,
    else greedy by score, each prediction taking the free person of its image with the best OKS."""
    matched: dict[Any, int] = {}
    people = annotations_by_image({"annotations": [a for a in anns if _counts(a)]})
    for i in sorted(range(len(preds)), key=lambda i: -preds[i]["score"]):
        p = preds[i]
        if p["annotation_id"] is not None:
            matched.setdefault(p["annotation_id"], i)
            continue
        free = [a for a in people.get(p["image_id"], []) if a["id"] not in matched]
        if free:
            best = max(free, key=lambda a: oks(keypoints_array(p), keypoints_array(a), sigmas, a["area"]))
            matched[best["id"]] = i
    return matched


def oks(pred: np.ndarray, gt: np.ndarray, sigmas: np.ndarray, area: float) -> float:
    """COCO object keypoint similarity over the labelled GT points; (K, 3) arrays."""
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return 0.0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(axis=1)
    e = d2 / (2 * sigmas) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-e[labelled]).mean())


def _person_oks(anns: list[dict], preds: list[dict], match: dict[Any, int], schema: Schema,
                idx: Sequence[int] | None) -> dict[str, float]:
    """Annotation id (as a string: JSON keys) -> OKS over the points `idx` of the prediction matched
    to it (0 when none), for every GT person with a labelled point among them."""
    idx = list(range(schema.num_keypoints)) if idx is None else list(idx)
    sigmas = np.asarray(schema.sigmas, dtype=float)[idx]
    out = {}
    for ann in anns:
        if not _counts(ann, idx):
            continue
        j = match.get(ann["id"])
        out[str(ann["id"])] = 0.0 if j is None else \
            oks(keypoints_array(preds[j])[idx], keypoints_array(ann)[idx], sigmas, ann["area"])
    return out


def keypoints_array(obj: dict) -> np.ndarray:
    return np.asarray(obj["keypoints"], dtype=float).reshape(-1, 3)


def _counts(ann: dict, idx: Sequence[int] | None = None) -> bool:
    """Whether a GT person counts (not a crowd region, some point labelled) — as COCOeval decides."""
    vis = keypoints_array(ann)[:, 2] if idx is None else keypoints_array(ann)[list(idx), 2]
    return not ann.get("iscrowd") and bool((vis > 0).any())


# ---- metrics -----------------------------------------------------------------
def _metrics(dataset: dict, preds: list[dict], match: dict[Any, int], schema: Schema,
             idx: Sequence[int]) -> dict[str, Any]:
    """AP/AR and PCK over the keypoints `idx` (all of them, or one group's)."""
    idx = list(idx)
    sub_gt = {**dataset, "annotations": [_subset(a, idx) for a in dataset["annotations"]]}
    sub_preds = [_subset(p, idx) for p in preds]
    num_gt = sum(1 for a in sub_gt["annotations"] if _counts(a))
    out = _coco_ap(sub_gt, sub_preds, np.array(schema.sigmas)[idx], num_gt)
    out[PCK_KEY] = _pck(dataset["annotations"], preds, match, idx)
    out["num_gt"] = num_gt
    return out


def _family_metrics(dataset: dict, preds: list[dict], match: dict[Any, int], schema: Schema,
                    family: str) -> dict[str, Any]:
    """Metrics on one pose family's people and the predictions matched to them."""
    anns = [a for a in dataset["annotations"] if str(a.get("pose_family")) == family]
    matched = [a["id"] for a in anns if a["id"] in match]
    sub_preds = [preds[match[ann_id]] for ann_id in matched]
    sub_match = {ann_id: j for j, ann_id in enumerate(matched)}
    sub = {**dataset, "annotations": anns}
    overall = _metrics(sub, sub_preds, sub_match, schema, range(schema.num_keypoints))
    out = {"AP": overall["AP"], PCK_KEY: overall[PCK_KEY], "num_gt": overall["num_gt"]}
    for group, idx in schema.groups.items():
        out[f"{group}_AP"] = _metrics(sub, sub_preds, sub_match, schema, idx)["AP"]
    return out


def _subset(obj: dict, idx: list[int]) -> dict:
    kps = keypoints_array(obj)[idx]
    return {**obj, "keypoints": kps.ravel().tolist(), "num_keypoints": int((kps[:, 2] > 0).sum())}


def _coco_ap(gt: dict, preds: list[dict], sigmas: np.ndarray, num_gt: int) -> dict[str, Any]:
    """OKS AP/AR by xtcocotools' COCOeval (its progress prints silenced); None without GT."""
    if num_gt == 0:
        return {key: None for key in _STATS}
    if not preds:
        return {key: 0.0 for key in _STATS}
    results = [{k: v for k, v in p.items() if k != "annotation_id"} for p in preds]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "keypoints", sigmas=sigmas, use_area=True)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {key: max(0.0, float(coco_eval.stats[i])) for key, i in _STATS.items()}


def _pck(anns: list[dict], preds: list[dict], match: dict[Any, int], idx: list[int]) -> float | None:
    """Share of labelled GT points within PCK_ALPHA * max(box w, h) of their matched prediction;
    points of a person with no prediction count as missed."""
    hits = total = 0
    for ann in anns:
        if ann.get("iscrowd"):
            continue
        gt = keypoints_array(ann)[idx]
        labelled = gt[:, 2] > 0
        total += int(labelled.sum())
        if ann["id"] not in match or not labelled.any():
            continue
        pred = keypoints_array(preds[match[ann["id"]]])[idx]
        dist = np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1)
        hits += int((dist[labelled] < PCK_ALPHA * max(ann["bbox"][2:])).sum())
    return hits / total if total else None
