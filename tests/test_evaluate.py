"""Evaluation: OKS AP per group, PCK, pose families and input errors, on hand-built datasets."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from cals.errors import CalsError
from cals.metrics.evaluate import evaluate
from cals.schema import load_schema

SCHEMA = load_schema()
SPINE = SCHEMA.groups["spine"]
# (image id, box x, y, w, h, pose family); image 2 holds two people
PEOPLE = [(1, 10, 20, 100, 200, "upright"), (2, 0, 0, 80, 160, "upright"),
          (2, 150, 10, 90, 180, "bent"), (3, 30, 40, 120, 240, "bent")]


def _person(ann_id: int, image_id: int, box: tuple, family: str) -> dict:
    """A person whose points sit at the schema's canvas positions scaled into the box."""
    x, y, w, h = box
    kps = [[x + p.xy[0] / 100 * w, y + p.xy[1] / 100 * h, 2] for p in SCHEMA.points]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": list(box), "iscrowd": 0,
            "area": w * h * 0.6, "num_keypoints": len(kps), "keypoints": sum(kps, []),
            "pose_family": family}


def _gt() -> dict:
    return {"images": [{"id": i, "file_name": f"{i}.png", "width": 320, "height": 320} for i in (1, 2, 3)],
            "annotations": [_person(n + 1, im, (x, y, w, h), fam)
                            for n, (im, x, y, w, h, fam) in enumerate(PEOPLE)],
            "categories": [SCHEMA.coco_category(1)]}


def _perfect(gt: dict) -> list[dict]:
    preds = []
    for a in gt["annotations"]:
        kps = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        kps[:, 2] = 0.9
        preds.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kps.ravel().tolist(),
                      "score": 0.9})
    return preds


def _shift(preds: list[dict], idx: list[int], dx: float) -> list[dict]:
    out = copy.deepcopy(preds)
    for p in out:
        for i in idx:
            p["keypoints"][3 * i] += dx
    return out


def test_perfect_predictions_score_one_everywhere(capsys):
    gt = _gt()
    report = evaluate(gt, _perfect(gt), SCHEMA)
    assert capsys.readouterr().out == ""  # COCOeval's prints are silenced
    assert (report["num_images"], report["num_gt"], report["num_predictions"]) == (3, 4, 4)
    for scope in [report["overall"], *report["groups"].values()]:
        assert scope["AP"] == pytest.approx(1.0) and scope["AR"] == pytest.approx(1.0)
        assert scope["AP50"] == pytest.approx(1.0) and scope["PCK@0.05"] == 1.0
    assert set(report["families"]) == {"upright", "bent"}
    assert report["families"]["bent"] == {"AP": pytest.approx(1.0), "body_AP": pytest.approx(1.0),
                                          "spine_AP": pytest.approx(1.0), "PCK@0.05": 1.0, "num_gt": 2}
    json.dumps(report)
    assert "families" not in evaluate(gt, _perfect(gt), SCHEMA, by_family=False)


def test_shifted_spine_drops_spine_ap_only():
    gt = _gt()
    report = evaluate(gt, _shift(_perfect(gt), SPINE, 40.0), SCHEMA)
    assert report["groups"]["body"]["AP"] == pytest.approx(1.0)
    assert report["groups"]["body"]["PCK@0.05"] == 1.0
    assert report["groups"]["spine"]["AP"] < 0.2
    assert report["groups"]["spine"]["PCK@0.05"] == 0.0
    assert report["overall"]["AP"] < 1.0
    assert report["families"]["upright"]["spine_AP"] < 0.2
    assert report["families"]["upright"]["body_AP"] == pytest.approx(1.0)


def test_per_person_oks_pairs_each_person_with_its_prediction():
    """The promotion gate's paired figures: one OKS per GT person and scope, 0 for a missed person."""
    gt = _gt()
    preds = _shift(_perfect(gt), SPINE, 40.0)[:3]  # the fourth person is missed
    oks = evaluate(gt, preds, SCHEMA, per_person=True)["oks"]
    assert set(oks) == {"overall", *SCHEMA.groups} and set(oks["body"]) == {"1", "2", "3", "4"}
    assert [oks["body"][k] for k in "123"] == [pytest.approx(1.0)] * 3 and oks["body"]["4"] == 0.0
    assert all(oks["spine"][k] < 0.5 for k in "123") and oks["overall"]["1"] < 1.0
    assert "oks" not in evaluate(gt, preds, SCHEMA)


def test_group_with_unlabelled_gt_is_ignored():
    gt = _gt()
    preds = _perfect(gt)
    for i in SPINE:  # person 4: spine not annotated, and its predicted spine is far off
        gt["annotations"][3]["keypoints"][3 * i: 3 * i + 3] = [0, 0, 0]
        preds[3]["keypoints"][3 * i] += 60
    report = evaluate(gt, preds, SCHEMA)
    assert report["groups"]["spine"]["num_gt"] == 3
    assert report["groups"]["spine"]["AP"] == pytest.approx(1.0)
    assert report["groups"]["spine"]["PCK@0.05"] == 1.0
    assert report["groups"]["body"]["num_gt"] == 4
    missed = evaluate(gt, preds[:3], SCHEMA)  # nobody predicted for person 4
    assert missed["groups"]["spine"]["AR"] == pytest.approx(1.0)
    assert missed["groups"]["body"]["AR"] == pytest.approx(0.75)


def test_families_are_scored_on_their_own_people():
    gt = _gt()
    preds = _perfect(gt)
    preds[0], preds[1] = _shift(preds[:2], SPINE, 40.0)  # the upright people
    families = evaluate(gt, preds, SCHEMA)["families"]
    assert families["bent"]["spine_AP"] == pytest.approx(1.0) and families["bent"]["num_gt"] == 2
    assert families["upright"]["spine_AP"] < 0.2
    assert families["upright"]["body_AP"] == pytest.approx(1.0)


def test_no_labelled_spine_at_all_gives_none():
    gt = _gt()
    for a in gt["annotations"]:
        for i in SPINE:
            a["keypoints"][3 * i + 2] = 0
    report = evaluate(gt, _perfect(gt), SCHEMA)
    assert report["groups"]["spine"]["AP"] is None and report["groups"]["spine"]["PCK@0.05"] is None
    assert report["groups"]["body"]["AP"] == pytest.approx(1.0)


def test_pck_threshold_is_five_percent_of_the_longer_box_side():
    gt = _gt()
    everything = range(SCHEMA.num_keypoints)
    # thresholds 0.05 * max(w, h): 10, 8, 9 and 12 px for the four people
    assert evaluate(gt, _shift(_perfect(gt), everything, 7.5), SCHEMA)["overall"]["PCK@0.05"] == 1.0
    pck = evaluate(gt, _shift(_perfect(gt), everything, 10.5), SCHEMA)["overall"]["PCK@0.05"]
    assert pck == pytest.approx(0.25)  # only the person with the 240 px box stays within


def test_matching_by_annotation_id_and_missing_people():
    gt = _gt()
    preds = _perfect(gt)
    swapped = [dict(preds[1], annotation_id=3), dict(preds[2], annotation_id=2)]
    report = evaluate(gt, [preds[0], preds[3], *swapped], SCHEMA)
    assert report["overall"]["PCK@0.05"] == pytest.approx(0.5)  # the two in image 2 are swapped
    only_one = evaluate(gt, preds[:1], SCHEMA)
    assert only_one["overall"]["PCK@0.05"] == pytest.approx(0.25)
    assert only_one["overall"]["AR"] == pytest.approx(0.25)


def test_empty_predictions_give_zeros():
    report = evaluate(_gt(), [], SCHEMA)
    assert report["num_predictions"] == 0
    assert report["overall"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "PCK@0.05": 0.0,
                                 "num_gt": 4}
    assert report["families"]["bent"]["spine_AP"] == 0.0


def test_dataset_without_people_gives_none():
    gt = dict(_gt(), annotations=[])
    report = evaluate(gt, [], SCHEMA)
    assert report["num_gt"] == 0 and report["overall"]["AP"] is None and "families" not in report


def test_gt_and_predictions_from_json_files(tmp_path):
    gt = _gt()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "preds.json").write_text(json.dumps(_perfect(gt)))
    report = evaluate(tmp_path / "gt.json", str(tmp_path / "preds.json"), SCHEMA)
    assert report["overall"]["AP"] == pytest.approx(1.0)


def test_wrong_keypoint_count_is_named():
    gt = _gt()
    gt["annotations"][1]["id"] = 12
    gt["annotations"][1]["keypoints"] = gt["annotations"][1]["keypoints"][: 17 * 3]
    with pytest.raises(CalsError, match="annotation 12 has 17 keypoints; schema has 26"):
        evaluate(gt, [], SCHEMA)
    preds = _perfect(_gt())
    preds[2]["keypoints"] = preds[2]["keypoints"][: 17 * 3]
    with pytest.raises(CalsError, match=r"prediction #3 \(image 2\) has 17 keypoints; schema has 26"):
        evaluate(_gt(), preds, SCHEMA)


def test_bad_predictions_are_named():
    preds = _perfect(_gt())
    with pytest.raises(CalsError, match="prediction #1 refers to unknown image id 99"):
        evaluate(_gt(), [dict(preds[0], image_id=99)], SCHEMA)
    with pytest.raises(CalsError, match=r"prediction #2 is missing \['score'\]"):
        evaluate(_gt(), [preds[0], {k: v for k, v in preds[1].items() if k != "score"}], SCHEMA)
    with pytest.raises(CalsError, match="unknown category id 7"):
        evaluate(_gt(), [dict(preds[0], category_id=7)], SCHEMA)
    with pytest.raises(CalsError, match="names annotation 4, which is not in image 1"):
        evaluate(_gt(), [dict(preds[0], annotation_id=4)], SCHEMA)


def test_bad_json_file_names_path_and_reason(tmp_path):
    bad = tmp_path / "gt.json"
    bad.write_text('{"images": [')
    with pytest.raises(CalsError, match=r"gt\.json: not valid JSON"):
        evaluate(bad, [], SCHEMA)
    with pytest.raises(CalsError, match=r"not found: .*missing\.json"):
        evaluate(tmp_path / "missing.json", [], SCHEMA)
