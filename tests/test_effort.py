import numpy as np
import pytest

from cals.training.effort import correction_effort


def _person(schema, offset=0.0, drop=()):
    rng = np.random.default_rng(0)
    kps = np.c_[rng.uniform(100, 200, (schema.num_keypoints, 2)), np.full(schema.num_keypoints, 2.0)]
    kps[:, :2] += offset
    kps[list(drop), :] = 0
    return {"keypoints": kps.ravel().tolist(), "bbox": [100, 100, 100, 100], "area": 10000.0}


def test_untouched_pre_annotation_costs_nothing(schema):
    person = _person(schema)
    report = correction_effort({"f.jpg": [person]}, {"f.jpg": [person]}, schema)
    assert report["spine"]["moved"] == 0 and report["spine"]["moved_share"] == 0.0
    assert report["body"]["points"] == 17 and report["spine"]["points"] == 9


def test_moved_and_missing_points_count_as_work(schema):
    final = _person(schema)
    spine = schema.groups["spine"]
    pre = _person(schema, drop=spine[:3])
    kps = np.asarray(pre["keypoints"]).reshape(-1, 3)
    kps[spine[3], :2] += 40  # far beyond the OKS tolerance of a 100 px person
    kps[spine[4], :2] += 0.5  # a nudge inside it
    pre["keypoints"] = kps.ravel().tolist()
    report = correction_effort({1: [pre]}, {1: [final]}, schema)
    assert report["spine"]["moved"] == 4
    assert report["spine"]["moved_share"] == pytest.approx(4 / 9, abs=1e-3)
    assert report["body"]["moved"] == 0
    assert report["spine"]["mean_displacement_px"] == pytest.approx((40 * 2 ** 0.5 + 0.5 * 2 ** 0.5) / 6, abs=0.01)


def test_people_are_matched_not_paired_by_order(schema):
    a, b = _person(schema), _person(schema, offset=300)
    report = correction_effort({"f": [b, a]}, {"f": [a, b]}, schema)
    assert report["body"]["moved"] == 0
    # a person the model missed entirely: every labelled point is work
    report = correction_effort({"f": [a]}, {"f": [a, b]}, schema)
    assert report["body"]["moved"] == 17 and report["body"]["points"] == 34


def test_the_check_rule_is_scored_by_the_points_people_moved(schema):
    """Recall: moved points flagged; workload: placed points flagged; a point the pre-annotation did not
    place is not counted (the annotator sees it is missing)."""
    from cals.training.effort import check_rule_figures

    final = _person(schema)
    spine = schema.groups["spine"]
    pre = _person(schema, drop=spine[:1])
    kps = np.asarray(pre["keypoints"]).reshape(-1, 3)
    kps[spine[1:3], :2] += 40  # two moved points
    pre["keypoints"] = kps.ravel().tolist()
    scores = np.full(schema.num_keypoints, 0.9)
    scores[spine[1]] = 0.2  # moved and flagged
    scores[spine[3]] = 0.3  # flagged, not moved
    pre["scores"] = scores.tolist()
    rows = check_rule_figures({"f": [pre]}, {"f": [final]}, schema, [0.1, 0.5, 1.0])["spine"]
    assert [(r["placed"], r["moved"], r["flagged"], r["caught"]) for r in rows] == [(8, 2, 0, 0), (8, 2, 2, 1),
                                                                                   (8, 2, 8, 2)]
    assert [r["recall"] for r in rows] == [0.0, 0.5, 1.0] and rows[1]["workload"] == 0.25
    assert rows[1]["flagged_labelled"] == 2 and rows[1]["flagged_absent"] == 0
