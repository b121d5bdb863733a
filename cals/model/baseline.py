"""The mean-pose baseline: the training set's average pose, stretched into every box.

A model that does not beat this has learnt nothing from pixels; tests and
benchmarks report both on the same held-out data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cals.model.evaluation import coco_result


def fit_mean_pose(coco: dict[str, Any], num_keypoints: int) -> np.ndarray:
    """(K, 2) mean keypoint position in box-normalised coordinates over labelled points."""
    total = np.zeros((num_keypoints, 2))
    count = np.zeros(num_keypoints)
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        seen = kps[:, 2] > 0
        total[seen] += (kps[seen, :2] - [x, y]) / [w, h]
        count[seen] += 1
    return np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.5)


def predict_mean_pose(mean_pose: np.ndarray, coco: dict[str, Any]) -> list[dict[str, Any]]:
    """COCO results placing the mean pose into each ground-truth box."""
    scores = np.ones(len(mean_pose))
    return [coco_result(ann["image_id"], ann_box_pose(mean_pose, ann["bbox"]), scores)
            for ann in coco["annotations"]]


def ann_box_pose(mean_pose: np.ndarray, bbox: list[float]) -> np.ndarray:
    x, y, w, h = bbox
    return mean_pose * [w, h] + [x, y]
