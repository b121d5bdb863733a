"""The schema file is the single source of point names, edges, flips and sigmas."""
import re

import pytest
import yaml

from cals.model.config import build_config
from cals.schema import DEFAULT_SCHEMA, SchemaError, Schema, load_schema


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def test_default_schema_is_coco17_plus_spine(schema):
    assert schema.num_keypoints == 26
    assert schema.names[:3] == ["nose", "left_eye", "right_eye"]
    assert [schema.names[i] for i in schema.groups["spine"]] == [
        "neck_03", "neck_02", "neck", "spine_05", "spine_04", "spine_03", "spine_02", "spine_01", "hip"]
    assert schema.sigmas[schema.index("neck")] == pytest.approx(0.04)
    # spine points sit on the midline: they flip onto themselves
    assert all(schema.flip_indices[i] == i for i in schema.groups["spine"])
    assert schema.flip_indices[schema.index("left_hip")] == schema.index("right_hip")


def test_coco_category_round_trip(schema):
    cat = schema.coco_category()
    assert cat["keypoints"] == schema.names
    assert [cat["keypoints"][a - 1] for a, _ in cat["skeleton"]] == [a for a, _ in schema.edges]
    again = Schema.from_dict({"label": cat["name"], "points": [
        {"name": n, "sigma": s, "flip": p.flip, "group": p.group, "part": p.part, "xy": list(p.xy)}
        for n, s, p in zip(cat["keypoints"], schema.sigmas, schema.points)],
        "edges": [[cat["keypoints"][a - 1], cat["keypoints"][b - 1]] for a, b in cat["skeleton"]]})
    assert again == Schema.from_dict(schema.to_dict())


def test_mmpose_metainfo_parses_with_mmpose(schema):
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    meta = parse_pose_metainfo(schema.mmpose_metainfo())
    assert meta["num_keypoints"] == 26
    assert list(meta["flip_indices"]) == schema.flip_indices
    assert list(meta["sigmas"]) == pytest.approx(schema.sigmas)
    assert meta["keypoint_id2name"][17] == "neck_03"


def test_cvat_label_spec_matches_points_and_edges(schema):
    spec = schema.cvat_label()
    assert spec["type"] == "skeleton" and spec["name"] == "person"
    assert [s["name"] for s in spec["sublabels"]] == schema.names
    assert all(s["type"] == "points" for s in spec["sublabels"])
    nodes = re.findall(r'data-node-id="(\d+)" data-label-name="([^"]+)"', spec["svg"])
    assert [(int(i), n) for i, n in nodes] == [(i + 1, n) for i, n in enumerate(schema.names)]
    edges = re.findall(r'data-node-from="(\d+)" stroke-width="0.5" data-node-to="(\d+)"', spec["svg"])
    assert len(edges) == len(schema.edges)
    assert (schema.names[int(edges[0][0]) - 1], schema.names[int(edges[0][1]) - 1]) == schema.edges[0]


def test_model_config_takes_point_count_from_schema(tmp_path):
    data = yaml.safe_load(DEFAULT_SCHEMA.read_text())
    data["points"].append({"name": "tail", "group": "extra", "sigma": 0.1})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    schema = load_schema(path)
    cfg = build_config("cpu", schema)
    assert cfg.model.head.out_channels == 27
    assert cfg.train_dataloader.dataset.metainfo["keypoint_info"][26]["name"] == "tail"


def _broken(tmp_path, mutate):
    data = yaml.safe_load(DEFAULT_SCHEMA.read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["points"].append(dict(d["points"][0])), "duplicate point name 'nose'"),
    (lambda d: d["edges"].append(["nose", "tail"]), "unknown point 'tail'"),
    (lambda d: d["points"][1].update(flip="left_ear"), "flip pair mismatch: 'left_eye' flips with 'left_ear'"),
    (lambda d: d["points"][0].update(sigma=-1), "positive sigma"),
    (lambda d: d.pop("points"), "'points' must be a non-empty list"),
])
def test_invalid_schema_names_the_problem(tmp_path, mutate, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        load_schema(_broken(tmp_path, mutate))


def test_unreadable_schema_files(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: [unclosed")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(bad)
