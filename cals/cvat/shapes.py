"""People (keypoints + scores) to CVAT's detector result: skeleton shapes with point elements.

CVAT matches results to task labels by name, ignores `confidence` and drops a
skeleton whose points are all outside; so the label names come from the schema.
A point is `outside` when it lies off the image, or scores below the request's
`threshold` (default CALS_POINT_THRESHOLD, 0: none); a doubtful point is shown and
flagged with the points-to-check attributes (cals/cvat/point_checks.py), which CVAT keeps
by name where the task's label has them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cals.cvat.point_checks import LABELLED, point_attributes, skeleton_attributes
from cals.schema import Schema


def point_visible(scores: np.ndarray, threshold: float, prior: Sequence[int] = ()) -> np.ndarray:
    """(K,) bool: a point is shown when its score reaches the threshold.

    Points placed by the geometric prior (`prior` indices) carry a fixed low score; they
    are shown when the person's other points are (mean score reaches the threshold), so
    an annotator sees a spine to drag into place instead of nothing.
    """
    visible = scores >= threshold
    if len(prior):
        others = np.setdiff1d(np.arange(len(scores)), prior)
        body = float(scores[others].mean()) if len(others) else 0.0
        visible[list(prior)] = body >= threshold
    return visible


def on_image(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K,) bool: the point lies on the (width, height) image; a point off it is absent from the frame."""
    width, height = size
    x, y = np.asarray(keypoints, dtype=float)[:, 0], np.asarray(keypoints, dtype=float)[:, 1]
    return (x >= 0) & (x <= width) & (y >= 0) & (y <= height)


def skeleton_shape(schema: Schema, keypoints: np.ndarray, visible: np.ndarray, scores: np.ndarray,
                   check_below: float, *, confidence: float | None = None) -> dict[str, Any]:
    """One CVAT skeleton result; `keypoints` (K, 2) in original image pixels."""
    flag_scores = np.where(visible, scores, LABELLED)  # a hidden point is not one to check
    shape: dict[str, Any] = {
        "label": schema.label,
        "type": "skeleton",
        "attributes": skeleton_attributes(flag_scores, schema.spine, check_below),
        "elements": [
            {"label": name, "type": "points", "points": [round(float(x), 2), round(float(y), 2)],
             "outside": 0 if shown else 1, "attributes": point_attributes(float(score), check_below)}
            for name, (x, y), shown, score in zip(schema.names, keypoints, visible, flag_scores)
        ],
    }
    if confidence is not None:
        shape["confidence"] = round(float(confidence), 4)
    return shape


def cvat_skeletons(schema: Schema, people: Sequence, threshold: float, *, size: tuple[int, int],
                   check_below: float, prior: Sequence[int] = (),
                   confidences: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Skeleton shapes for `people` (objects with .keypoints, .scores) on a (width, height) image;
    all-outside ones dropped."""
    shapes = []
    for i, person in enumerate(people):
        scores = np.asarray(person.scores)
        visible = point_visible(scores, threshold, prior) & on_image(person.keypoints, size)
        if visible.any():
            conf = None if confidences is None else confidences[i]
            shapes.append(skeleton_shape(schema, person.keypoints, visible, scores, check_below, confidence=conf))
    return shapes
