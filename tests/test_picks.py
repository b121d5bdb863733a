"""What a strategy picked: per-frame attributes, their summary per strategy against the pool, the tables."""
from __future__ import annotations

import json

import pytest

from cals.errors import CalsError
from cals.schema import load_schema
from cals.simulate.picks import format_picks_table, frame_attributes, picks_markdown, picks_summary
from cals.synth import generate_dataset

SCHEMA = load_schema()
SPINE = SCHEMA.groups["spine"]
FAMILIES = ["upright", "lying"]


def _ann(ann_id: int, image_id: int, family: str, hidden: int, bbox: list[float], occluder: bool) -> dict:
    """A person with all points visible but the first `hidden` spine points (one unlabelled, rest occluded)."""
    vis = [2] * SCHEMA.num_keypoints
    for n, i in enumerate(SPINE[:hidden]):
        vis[i] = 0 if n == 0 else 1
    kps: list[float] = []
    for v in vis:
        kps += [0, 0, 0] if v == 0 else [10.0, 10.0, v]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, "area": 1.0, "iscrowd": 0,
            "keypoints": kps, "pose_family": family, "occluder": occluder}


def _coco() -> dict:
    """a: two people (occluded, 3 spine points hidden), blurred; b: one lying person; c: nobody."""
    images = [{"id": 1, "file_name": "a.jpg", "blur": 0.9}, {"id": 2, "file_name": "b.jpg", "blur": 0.0},
              {"id": 3, "file_name": "c.jpg", "blur": 0.0}]
    anns = [_ann(1, 1, "upright", 2, [0, 0, 10, 40], True), _ann(2, 1, "upright", 1, [0, 0, 30, 30], False),
            _ann(3, 2, "lying", 0, [5, 5, 50, 8], False)]
    return {"images": images, "annotations": anns, "categories": [SCHEMA.coco_category()]}


def test_frame_attributes():
    attrs = frame_attributes(_coco(), SCHEMA)
    assert attrs["a.jpg"] == {"people": 2, "families": ["upright", "upright"], "hidden_spine": 3,
                              "occluder": True, "blur": True, "box": 30.0}
    assert attrs["b.jpg"] == {"people": 1, "families": ["lying"], "hidden_spine": 0,
                              "occluder": False, "blur": False, "box": 20.0}
    assert attrs["c.jpg"] == {"people": 0, "families": [], "hidden_spine": 0,
                              "occluder": False, "blur": False, "box": None}


def test_user_data_without_the_generators_fields():
    """Unrecorded occluder, blur and family are None (unknown), not False; families fall back to the image's."""
    coco = _coco()
    for ann in coco["annotations"]:
        del ann["occluder"], ann["pose_family"]
    for im in coco["images"]:
        del im["blur"]
    coco["images"][0]["pose_families"] = ["upright", "upright"]
    attrs = frame_attributes(coco, SCHEMA)
    assert attrs["a.jpg"] == {"people": 2, "families": ["upright", "upright"], "hidden_spine": 3,
                              "occluder": None, "blur": None, "box": 30.0}
    assert attrs["b.jpg"]["families"] is None and attrs["c.jpg"]["occluder"] is None
    row = picks_summary({"random": ["a.jpg", "b.jpg"]}, attrs, FAMILIES)["random"]
    assert row["families"] == {"upright": 1.0, "lying": 0.0}     # b's person is left out, not counted
    assert row["occluder"] is None and row["blur"] is None and row["hidden_spine"] == 1.5
    table = format_picks_table(picks_summary({"random": ["b.jpg"]}, attrs, FAMILIES))
    assert table.splitlines()[1].split() == ["random", "1", "-", "-", "0.0", "-", "-", "20"]


def test_summary_pools_picks_and_adds_the_pool_row():
    attrs = frame_attributes(_coco(), SCHEMA)
    summary = picks_summary({"hard": ["a.jpg", "a.jpg", "b.jpg"], "easy": ["b.jpg"]}, attrs, FAMILIES)
    assert list(summary) == ["hard", "easy", "pool"]
    hard = summary["hard"]          # a picked by two seeds counts twice
    assert hard["frames"] == 3
    assert hard["families"] == pytest.approx({"upright": 0.8, "lying": 0.2})
    assert hard["hidden_spine"] == pytest.approx(2.0)
    assert hard["occluder"] == pytest.approx(2 / 3) and hard["blur"] == pytest.approx(2 / 3)
    assert hard["box"] == 30.0
    pool = summary["pool"]          # c has nobody, so no sampler can pick it
    assert pool["frames"] == 2 and pool["families"] == pytest.approx({"upright": 2 / 3, "lying": 1 / 3})
    assert pool["box"] == 25.0 and pool["occluder"] == 0.5
    assert picks_summary({}, attrs, FAMILIES, pool=["c.jpg"])["pool"]["box"] is None


@pytest.mark.parametrize("picks, words", [({"pool": []}, "'pool'"), ({"random": ["zzz.jpg"]}, "'zzz.jpg'")])
def test_summary_errors_name_the_problem(picks, words):
    with pytest.raises(CalsError, match=words):
        picks_summary(picks, frame_attributes(_coco(), SCHEMA), FAMILIES)


def test_duplicate_file_names_are_refused():
    coco = _coco()
    coco["images"][1]["file_name"] = "a.jpg"
    with pytest.raises(CalsError, match="'a.jpg'"):
        frame_attributes(coco, SCHEMA)


def test_tables():
    attrs = frame_attributes(_coco(), SCHEMA)
    summary = picks_summary({"uncertainty": ["a.jpg"], "random": ["b.jpg"]}, attrs, FAMILIES)
    text = format_picks_table(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["strategy", "frames", "upright", "lying", "hidden", "spine", "occluder",
                                "blurred", "box", "px"]
    assert lines[1].split() == ["uncertainty", "1", "100%", "0%", "3.0", "100%", "100%", "30"]
    assert lines[3].split()[0] == "pool" and len({len(line) for line in lines}) == 1   # aligned columns
    md = picks_markdown(summary).splitlines()
    assert md[0] == "| strategy | frames | upright | lying | hidden spine | occluder | blurred | box px |"
    assert md[1] == "|---|---:|---:|---:|---:|---:|---:|---:|"
    assert md[4] == "| pool | 2 | 67% | 33% | 1.5 | 50% | 50% | 25 |"


def test_reads_what_the_generator_writes(tmp_path):
    path = generate_dataset(tmp_path, 4, seed=0, image_size=(64, 48), max_people=2, workers=1, progress=False)
    coco = json.loads(path.read_text())
    attrs = frame_attributes(coco, SCHEMA)
    assert list(attrs) == [im["file_name"] for im in coco["images"]]
    for im in coco["images"]:
        a = attrs[im["file_name"]]
        assert a["families"] == im["pose_families"] and type(a["occluder"]) is bool
        assert a["blur"] == (im["blur"] > 0) and 0 <= a["hidden_spine"] <= 9 * a["people"]
