"""A geometric spine prior: where the spine points lie if only the body is known.

Until a model has learnt the spine, round 0 still needs pre-annotations that an
annotator can drag into place. Each spine point is put on the body's midline by
interpolating between anchor midpoints (ears, shoulders, hips) at fixed
fractions; points the table does not know are left to the model.
"""
from __future__ import annotations

import numpy as np

from cals.schema import Schema

PRIOR_SCORE = 0.05  # low on purpose: the sampler and the UI treat these as guesses

_ANCHORS = {
    "head": ("left_ear", "right_ear"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "hips": ("left_hip", "right_hip"),
}
# point -> (from anchor, to anchor, fraction of the way)
_PLACEMENT = {
    "neck_03": ("head", "shoulders", 0.25),
    "neck_02": ("head", "shoulders", 0.55),
    "neck": ("head", "shoulders", 0.9),
    "spine_05": ("shoulders", "hips", 0.1),
    "spine_04": ("shoulders", "hips", 0.35),
    "spine_03": ("shoulders", "hips", 0.6),
    "spine_02": ("shoulders", "hips", 0.75),
    "spine_01": ("shoulders", "hips", 0.9),
    "hip": ("hips", "hips", 0.0),
}


def spine_prior(keypoints: np.ndarray, scores: np.ndarray, schema: Schema,
                group: str = "spine") -> tuple[np.ndarray, np.ndarray]:
    """Replace the group's points (K, 2) with the prior; scores become PRIOR_SCORE.

    Points whose anchors are missing from the schema keep the model's values.
    """
    keypoints, scores = keypoints.copy(), scores.copy()
    names = schema.names
    try:
        anchors = {a: keypoints[[names.index(l), names.index(r)]].mean(axis=0)
                   for a, (l, r) in _ANCHORS.items()}
    except ValueError:  # the schema lacks COCO body points
        return keypoints, scores
    for i in schema.groups.get(group, []):
        placement = _PLACEMENT.get(names[i])
        if placement is None:
            continue
        start, end, t = placement
        keypoints[i] = (1 - t) * anchors[start] + t * anchors[end]
        scores[i] = PRIOR_SCORE
    return keypoints, scores
