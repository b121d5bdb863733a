"""Run a predictor over a COCO dataset's person boxes and score it against the labels."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from tqdm import tqdm

from cals.data.coco import Dataset, annotations_by_image, load_dataset, xywh_to_xyxy
from cals.metrics.evaluate import evaluate


def coco_result(image_id: Any, keypoints: np.ndarray, scores: np.ndarray,
                category_id: int = 1, **extra: Any) -> dict[str, Any]:
    """One COCO keypoint result; the person score is the mean point score."""
    flat = np.concatenate([keypoints, scores[:, None]], axis=1).reshape(-1)
    return {"image_id": image_id, "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in flat],
            "score": round(float(scores.mean()), 5), **extra}


def predict_dataset(predictor, dataset: Dataset, *, progress: bool = True) -> list[dict[str, Any]]:
    """COCO results for every annotated person box, one forward pass per image."""
    by_image = annotations_by_image(dataset.coco)
    results = []
    images = [im for im in dataset.coco["images"] if im["id"] in by_image]
    for im in tqdm(images, desc="predicting", unit="img", disable=not progress):
        anns = by_image[im["id"]]
        boxes = np.array([xywh_to_xyxy(a["bbox"]) for a in anns], dtype=np.float32)
        people = predictor.predict(dataset.image_path(im), boxes, distributions=False)
        results += [coco_result(im["id"], p.keypoints, p.scores, bbox=a["bbox"])
                    for p, a in zip(people, anns)]
    return results


def evaluate_predictor(predictor, data_root: str | os.PathLike, *, progress: bool = True,
                       per_person: bool = False) -> dict[str, Any]:
    """The metrics document (overall, per group, per pose family) on ground-truth boxes;
    `per_person` adds each person's OKS (see `cals.metrics.evaluate.evaluate`)."""
    dataset = load_dataset(data_root, predictor.schema)
    results = predict_dataset(predictor, dataset, progress=progress)
    metrics = evaluate(dataset.coco, results, predictor.schema, per_person=per_person)
    metrics["version"] = predictor.version_id
    metrics["data"] = str(data_root)
    return metrics
