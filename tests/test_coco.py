"""Bad datasets fail early with a message that names the problem."""
import json

import pytest

from cals.data.coco import DatasetError, load_dataset


def _dataset(tmp_path, schema, keypoints=None, files=True):
    (tmp_path / "images").mkdir(exist_ok=True)
    if files:
        (tmp_path / "images" / "a.jpg").write_bytes(b"\xff\xd8")
    kps = keypoints if keypoints is not None else [10.0, 10.0, 2] * schema.num_keypoints
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 40],
                             "keypoints": kps, "num_keypoints": 1}],
            "categories": [schema.coco_category()]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    return tmp_path


def test_valid_dataset_loads_and_summarises(tmp_path, schema):
    ds = load_dataset(_dataset(tmp_path, schema), schema)
    assert ds.summary(schema)["labelled_points"] == {"body": 17, "spine": 9}


def test_wrong_keypoint_count(tmp_path, schema):
    with pytest.raises(DatasetError, match="annotation 7 has 17 keypoints; schema has 26"):
        load_dataset(_dataset(tmp_path, schema, keypoints=[1.0, 1.0, 2] * 17), schema)


def test_missing_images(tmp_path, schema):
    with pytest.raises(DatasetError, match=r"1 image\(s\) missing from images/: a.jpg"):
        load_dataset(_dataset(tmp_path, schema, files=False), schema)


def test_corrupt_json(tmp_path, schema):
    _dataset(tmp_path, schema)
    (tmp_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match="annotations.json: not valid JSON"):
        load_dataset(tmp_path, schema)


def test_missing_folder(tmp_path, schema):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope", schema)
