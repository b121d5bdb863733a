"""The real RTMDet-nano person detector from ../shared (skipped where it is absent)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cals.errors import CalsError
from cals.model.detector import PersonDetector

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODEL = SHARED / "models" / "rtmdet-nano-person" / "end2end.onnx"
REAL = SHARED / "data" / "real-coco4"

needs_model = pytest.mark.skipif(not MODEL.is_file(), reason="../shared detector not present")


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@needs_model
def test_finds_the_large_people_of_real_coco_images():
    detector = PersonDetector(MODEL)
    coco = json.loads((REAL / "test_coco.json").read_text())
    for image in coco["images"]:
        boxes = detector(cv2.imread(str(REAL / image["file_name"])))
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            if ann["image_id"] == image["id"] and w * h > 96 ** 2:
                assert max(_iou(b, [x, y, x + w, y + h]) for b in boxes) > 0.7, image["file_name"]


@needs_model
def test_grey_noise_has_no_people_and_bad_shapes_are_refused():
    detector = PersonDetector(MODEL)
    assert len(detector(np.full((240, 320, 3), 127, np.uint8))) == 0
    with pytest.raises(CalsError, match="BGR image"):
        detector(np.zeros((10, 10), np.uint8))


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CALS_DETECTOR", raising=False)
    with pytest.raises(CalsError, match="no person detector configured"):
        PersonDetector()
    with pytest.raises(CalsError, match="does not exist"):
        PersonDetector(tmp_path / "nope.onnx")


@needs_model
def test_predict_folder_finds_people_with_the_detector(trained):
    from collections import Counter

    from cals.model.images import predict_folder
    from cals.model.predict import Predictor

    registry, _ = trained
    results = predict_folder(Predictor.from_registry(registry), REAL, detector=PersonDetector(MODEL),
                             progress=False)
    people = Counter(r["file_name"] for r in results)
    coco = json.loads((REAL / "test_coco.json").read_text())
    for image in coco["images"]:  # every large labelled person has a detection of their own
        large = sum(1 for a in coco["annotations"] if a["image_id"] == image["id"] and a["bbox"][2] * a["bbox"][3] > 96 ** 2)
        assert people[image["file_name"]] >= large, image["file_name"]
    assert all(len(r["keypoints"]) == 26 * 3 for r in results)
