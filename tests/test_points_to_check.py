"""Points to check: the attributes the function and the sampler write, as CVAT's lambda manager accepts them."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cals.cvat.point_checks import percent, point_attributes, skeleton_attributes
from cals.cvat.shapes import cvat_skeletons


def _values(attributes: list[dict]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in attributes}


def _cvat_accepts(attributes: list[dict], kinds: dict[str, str]) -> bool:
    """CVAT 2.23's lambda manager `check_attr_value`: what it keeps of a function's attribute values."""
    return all(a["value"].isnumeric() if kinds[a["name"]] == "number" else a["value"] in ("true", "false")
               for a in attributes)


@pytest.mark.parametrize("score, value", [(0.0, "0"), (0.374, "37"), (0.376, "38"), (1.0, "100"), (1.7, "100"),
                                          (-0.2, "0")])
def test_a_confidence_is_the_integer_string_cvat_keeps(score, value):
    assert percent(score) == value and value.isnumeric()


def test_a_point_is_flagged_below_the_threshold_and_its_skeleton_with_it():
    assert _values(point_attributes(0.59, 0.6)) == {"check": "true", "confidence": "59"}
    assert _values(point_attributes(0.6, 0.6)) == {"check": "false", "confidence": "60"}
    scores = np.array([0.9, 0.95, 0.7, 0.3])
    assert _values(skeleton_attributes(scores, [2, 3], 0.6)) == {"check": "true", "spine_confidence": "30"}
    assert _values(skeleton_attributes(scores, [2], 0.6)) == {"check": "true", "spine_confidence": "70"}
    assert _values(skeleton_attributes(scores[:3], [2], 0.6)) == {"check": "false", "spine_confidence": "70"}


def _person(keypoints, scores):
    return SimpleNamespace(keypoints=np.asarray(keypoints, float), scores=np.asarray(scores, float))


def test_the_function_shows_doubtful_points_flagged_and_hides_only_points_off_the_image(schema):
    k = schema.num_keypoints
    keypoints = np.tile([50.0, 60.0], (k, 1))
    keypoints[0] = [-3.0, 60.0]  # off the image: absent from the frame
    scores = np.full(k, 0.9)
    scores[[0, 5]] = 0.1  # 0 is off the image, 5 is a doubtful point on it
    spine = schema.spine
    scores[spine[0]] = 0.45
    (shape,) = cvat_skeletons(schema, [_person(keypoints, scores)], 0.0, size=(100, 80), check_below=0.6)
    elements = {e["label"]: e for e in shape["elements"]}
    names = schema.names
    assert [n for n in names if elements[n]["outside"]] == [names[0]]
    assert _values(elements[names[5]]["attributes"]) == {"check": "true", "confidence": "10"}
    assert _values(elements[names[0]]["attributes"])["check"] == "false"  # hidden: nothing to check there
    assert _values(elements[names[spine[0]]]["attributes"]) == {"check": "true", "confidence": "45"}
    assert _values(shape["attributes"]) == {"check": "true", "spine_confidence": "45"}
    kinds = {"check": "checkbox", "confidence": "number", "spine_confidence": "number"}
    assert _cvat_accepts(shape["attributes"], kinds)
    assert all(_cvat_accepts(e["attributes"], kinds) for e in shape["elements"])


def test_a_sure_skeleton_is_not_flagged_and_a_threshold_still_hides(schema):
    k = schema.num_keypoints
    scores = np.full(k, 0.8)
    scores[3] = 0.2
    person = _person(np.tile([10.0, 10.0], (k, 1)), scores)
    (sure,) = cvat_skeletons(schema, [person], 0.0, size=(20, 20), check_below=0.1)
    assert _values(sure["attributes"]) == {"check": "false", "spine_confidence": "80"}
    (hidden,) = cvat_skeletons(schema, [person], 0.3, size=(20, 20), check_below=0.6)
    assert hidden["elements"][3]["outside"] == 1
    assert _values(hidden["attributes"])["check"] == "false"  # the only doubtful point is hidden
    assert cvat_skeletons(schema, [_person(np.full((k, 2), 30.0), scores)], 0.0, size=(20, 20),
                          check_below=0.6) == []  # every point off the image: no skeleton
