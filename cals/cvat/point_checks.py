"""Points to check: which pre-annotated points the model doubts, as attributes CVAT stores and shows.

The rule is one setting, `CALS_CHECK_BELOW`: a point whose model score is below it is flagged.
The function (AI Tools, automatic annotation) and the sampler's rounds write the same attributes:

  skeleton  `check` (checkbox: any point flagged), `spine_confidence` (its lowest spine score, 0-100)
  point     `check` (checkbox: this point flagged), `confidence` (its score, 0-100)

CVAT keeps a function's attribute only when the value is one it accepts (lambda manager
`check_attr_value`): a checkbox takes "true"/"false", a number an integer string ("37"; "0.37" is
dropped without a word). Doubt is never written as `occluded`: that exports as COCO v=1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# the attributes' names and their CVAT specs belong to the skeleton label, declared with it in cals/schema.py
from cals.schema import CHECK, CONFIDENCE, SPINE_CONFIDENCE, point_attribute_specs, skeleton_attribute_specs
from cals.settings import ModelEnv, default

__all__ = ["CHECK", "CONFIDENCE", "SPINE_CONFIDENCE", "DEFAULT_CHECK_BELOW", "LABELLED", "check_below", "flagged",
           "percent", "point_attributes", "skeleton_attributes", "point_attribute_specs", "skeleton_attribute_specs"]
DEFAULT_CHECK_BELOW: float = default("CALS_CHECK_BELOW")
LABELLED = 1.0  # the score of a point a person placed: never flagged


def check_below() -> float:
    """$CALS_CHECK_BELOW: points scoring below it are flagged for checking."""
    return ModelEnv.load().CHECK_BELOW


def flagged(scores: np.ndarray, threshold: float) -> np.ndarray:
    """(K,) bool: the points to check."""
    return np.asarray(scores, dtype=float) < threshold


def percent(score: float) -> str:
    """A 0..1 score as the integer string CVAT's number attribute takes."""
    return str(int(round(float(np.clip(score, 0.0, 1.0)) * 100)))


def point_attributes(score: float, threshold: float) -> list[dict[str, str]]:
    """[{name, value}] of one point, in the function's (name-keyed) form."""
    return [{"name": CHECK, "value": "true" if score < threshold else "false"},
            {"name": CONFIDENCE, "value": percent(score)}]


def skeleton_attributes(scores: np.ndarray, spine: Sequence[int], threshold: float) -> list[dict[str, str]]:
    """[{name, value}] of one skeleton: flagged when any point is; the lowest spine confidence."""
    scores = np.asarray(scores, dtype=float)
    lowest = float(scores[list(spine)].min()) if len(spine) else LABELLED
    return [{"name": CHECK, "value": "true" if flagged(scores, threshold).any() else "false"},
            {"name": SPINE_CONFIDENCE, "value": percent(lowest)}]
