"""Synthetic people generator: valid COCO keypoints, deterministic, mix-skewable, clear errors."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from cals.data.coco import load_dataset
from cals.errors import CalsError
from cals.schema import load_schema
from cals.synth import POSE_FAMILIES, generate_dataset, parse_mix


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth"), 24, seed=3, workers=2, progress=False)


def test_loads_with_pycocotools(dataset):
    coco = COCO(str(dataset))
    assert len(coco.getImgIds()) == 24
    ann_ids = coco.getAnnIds(catIds=[1])
    assert len(ann_ids) >= 24
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == load_schema().names
    for img in coco.loadImgs(coco.getImgIds()):
        assert (dataset.parent / "images" / img["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert img["pose_families"] == [a["pose_family"] for a in anns]


def test_keypoints_visibility_and_bbox(dataset):
    data = json.loads(dataset.read_text())
    for ann in data["annotations"]:
        kps = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
        assert kps.shape == (26, 3)
        assert set(kps[:, 2]) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
        assert ann["iscrowd"] == 0 and ann["area"] > 0 and ann["pose_family"] in POSE_FAMILIES
        assert (kps[kps[:, 2] == 0, :2] == 0).all()
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240
        labelled = kps[kps[:, 2] > 0, :2]
        assert ((labelled >= [x - 0.01, y - 0.01]) & (labelled <= [x + w + 0.01, y + h + 0.01])).all()


def test_data_is_not_trivial(dataset):
    """Occluded and truncated points both occur, and people vary in scale."""
    data = json.loads(dataset.read_text())
    vis = np.concatenate([np.array(a["keypoints"]).reshape(-1, 3)[:, 2] for a in data["annotations"]])
    counts = Counter(vis.tolist())
    assert counts[1] > 0 and counts[2] > counts[1]
    heights = [a["bbox"][3] for a in data["annotations"]]
    assert max(heights) > 2 * min(heights)


def test_records_occluder_and_blur(dataset):
    """Each person says whether an occluder was drawn over it, each image its blur sigma; both vary,
    and the dataset still loads (the extra keys are COCO-compatible)."""
    data = load_dataset(dataset.parent, load_schema()).coco
    occluded = [a["occluder"] for a in data["annotations"]]
    assert all(type(o) is bool for o in occluded) and 0 < sum(occluded) < len(occluded)
    blur = [im["blur"] for im in data["images"]]
    assert all(type(b) is float for b in blur)
    assert all(b == 0.0 or 0.5 <= b <= 1.3 for b in blur) and 0 < sum(b > 0 for b in blur) < len(blur)


# sha256 (first 16 hex digits) of seed 0's images, 96x72, recorded before the generator recorded occluders
# and blur (opencv 5.1.0, numpy 2.4.6): recording them must not move a single random draw or pixel
_SEED0_IMAGES = ["6924015d7bca9433", "1176f463574a2119", "0314565663afa9de",
                 "8d013d267b2f14bf", "3707921265f075c0", "c39022b490480a94"]
_SEED0_ANNOTATIONS = "d7c1bcef95b3022ca535f2add1936a4dbc5d270751ad84ca522b217e3441b141"


def test_recording_changes_no_pixel(tmp_path):
    path = generate_dataset(tmp_path, 6, seed=0, image_size=(96, 72), max_people=3, workers=1, progress=False)
    got = [hashlib.sha256((tmp_path / "images" / f"{i:06d}.jpg").read_bytes()).hexdigest()[:16] for i in range(6)]
    assert got == _SEED0_IMAGES, "seed 0's images changed (or opencv/numpy changed how they draw or encode)"
    data = json.loads(path.read_text())
    assert [im["blur"] > 0 for im in data["images"]] == [False] * 4 + [True, False]
    assert sum(a.pop("occluder") for a in data["annotations"]) == 2
    text = json.dumps(data["annotations"], sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == _SEED0_ANNOTATIONS


def test_same_seed_same_bytes_any_workers(tmp_path):
    a = generate_dataset(tmp_path / "a", 6, seed=7, workers=1, progress=False)
    b = generate_dataset(tmp_path / "b", 6, seed=7, workers=2, progress=False)
    c = generate_dataset(tmp_path / "c", 6, seed=8, workers=1, progress=False)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    for name in ("000000.jpg", "000005.jpg"):
        assert (a.parent / "images" / name).read_bytes() == (b.parent / "images" / name).read_bytes()


def test_mix_skews_families(tmp_path):
    path = generate_dataset(tmp_path, 30, seed=1, mix=parse_mix("upright=0.9,lying=0.1"),
                            max_people=1, progress=False)
    families = Counter(a["pose_family"] for a in json.loads(path.read_text())["annotations"])
    assert families["upright"] >= 20 and set(families) <= {"upright", "lying"}


def test_parse_mix_normalises():
    mix = parse_mix("upright=7, bending=1,sitting=1,lying=0.5,twisting=0.5")
    assert set(mix) == set(POSE_FAMILIES)
    assert mix["upright"] == pytest.approx(0.7) and sum(mix.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("upright=0.5,flying=0.5", "'flying'"), ("upright=abc", "'abc'"),
    ("upright", "family=weight"), ("upright=-1", "'upright'"), ("upright=0,lying=0", "positive"),
    ("upright=nan", "finite"),
])
def test_bad_mix_is_a_clear_error(text, words):
    with pytest.raises(CalsError, match=words) as err:
        parse_mix(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n", [0, -3])
def test_bad_image_count(tmp_path, n):
    with pytest.raises(CalsError, match="n_images"):
        generate_dataset(tmp_path, n, progress=False)


def test_unknown_family_in_dict_mix(tmp_path):
    with pytest.raises(CalsError, match="'crawling'"):
        generate_dataset(tmp_path, 2, mix={"crawling": 1.0}, progress=False)


def test_rewrite_keeps_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    generate_dataset(tmp_path, 2, seed=1, workers=1, progress=False)
    generate_dataset(tmp_path, 1, seed=2, workers=1, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert len(json.loads((tmp_path / "annotations.json").read_text())["images"]) == 1
