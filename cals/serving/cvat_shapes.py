"""People (keypoints + scores) to CVAT's detector result: skeleton shapes with point elements.

CVAT matches results to task labels by name, ignores `confidence` and drops a
skeleton whose points are all outside; so the label names come from the schema,
and low-score points are kept but marked outside (DESIGN.md, "CVAT facts").
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

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


def skeleton_shape(schema: Schema, keypoints: np.ndarray, visible: np.ndarray,
                   *, confidence: float | None = None) -> dict[str, Any]:
    """One CVAT skeleton result; `keypoints` (K, 2) in original image pixels."""
    shape: dict[str, Any] = {
        "label": schema.label,
        "type": "skeleton",
        "elements": [
            {"label": name, "type": "points", "points": [round(float(x), 2), round(float(y), 2)],
             "outside": 0 if shown else 1}
            for name, (x, y), shown in zip(schema.names, keypoints, visible)
        ],
    }
    if confidence is not None:
        shape["confidence"] = round(float(confidence), 4)
    return shape


def cvat_skeletons(schema: Schema, people: Sequence, threshold: float, *,
                   prior: Sequence[int] = (), confidences: Sequence[float] | None = None
                   ) -> list[dict[str, Any]]:
    """Skeleton shapes for `people` (objects with .keypoints, .scores); all-outside ones dropped."""
    shapes = []
    for i, person in enumerate(people):
        visible = point_visible(np.asarray(person.scores), threshold, prior)
        if visible.any():
            conf = None if confidences is None else confidences[i]
            shapes.append(skeleton_shape(schema, person.keypoints, visible, confidence=conf))
    return shapes
