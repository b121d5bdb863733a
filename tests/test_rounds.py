"""Opening CVAT rounds against the CVAT-compatible test server, with the real trained model."""
import json
import logging
import uuid

import numpy as np
import pytest
from cvat_sdk.api_client import models
from cvat_sdk.api_client.exceptions import ApiException

from cals.sampling import preannotations
from cals.cvat.coco_upload import import_coco
from cals.cvat.pool import CvatPool
from cals.cvat.round_upload import upload_preannotations
from cals.sampling.rounds import RoundSpec, open_round, round_tasks
from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.cvat.point_checks import CHECK, CONFIDENCE, SPINE_CONFIDENCE, check_below
from cals.data.pool import LocalPool
from cals.sampling.cache import ScoreCache
from cals.sampling.scoring import Scorer
from cals.sampling.strategies import create

from tests.test_pool_scoring import blurred_pool  # noqa: F401  (module fixture: 16 frames, 8 blurred)


@pytest.fixture(scope="module")
def model(trained):
    return Predictor(trained[1].path, version_id=trained[1].id)


@pytest.fixture(scope="module")
def version_dir(trained):
    return trained[1].path


def frames_of(task):
    return [f.name for f in task.get_frames_info()]


def names_of(task) -> tuple[dict[int, str], dict[int, str]]:
    """The task's label ids → names (skeleton and points) and attribute ids → names."""
    labels, attributes = {}, {}
    for lab in task.get_labels():
        for label in (lab, *(lab.sublabels or [])):
            labels[label.id] = label.name
            attributes.update({a.id: a.name for a in label.attributes or []})
    return labels, attributes


def attrs(shape, attributes: dict[int, str]) -> dict[str, str]:
    return {attributes[a.spec_id]: a.value for a in shape.attributes}


def assert_flags_follow_the_rule(shape, labels, attributes, schema, check_below: float) -> None:
    """A skeleton's and its points' points-to-check attributes are what the rule gives."""
    points = {labels[e.label_id]: (e, attrs(e, attributes)) for e in shape.elements}
    assert set(points) == set(schema.names)
    for element, values in points.values():
        assert set(values) == {CHECK, CONFIDENCE} and element.source == "auto"
        confidence = int(values[CONFIDENCE])
        assert 0 <= confidence <= 100 and values[CHECK] in ("true", "false")
        if element.outside:  # a hidden point is not one to check
            assert (values[CHECK], confidence) == ("false", 100)
        elif abs(confidence - check_below * 100) > 0.5:  # the score itself may round either way at the edge
            assert (values[CHECK] == "true") == (confidence < check_below * 100)
    skeleton = attrs(shape, attributes)
    assert set(skeleton) == {CHECK, SPINE_CONFIDENCE} and shape.source == "auto"
    assert skeleton[CHECK] == ("true" if any(v[CHECK] == "true" for _, v in points.values()) else "false")
    spine = [int(v[CONFIDENCE]) for name, (e, v) in points.items()
             if schema.index(name) in schema.spine and not e.outside]
    assert int(skeleton[SPINE_CONFIDENCE]) == min(spine, default=100)


def test_round_opens_in_rank_order_with_mapped_jobs_and_skeletons(cvat_client, project, model, blurred_pool,
                                                                    schema, tmp_path):
    strategy = create("least_confidence", schema=schema)
    result = open_round(cvat_client, RoundSpec(project.id, size=5, job_size=2), LocalPool(blurred_pool, schema),
                        Scorer(model, cache=ScoreCache(tmp_path / "c.sqlite")), strategy,
                        data_dir=tmp_path, progress=False)
    task = cvat_client.tasks.retrieve(result.task_id)
    assert task.name == "round 1" and result.created
    assert frames_of(task) == result.frames
    scores = [r["score"] for r in result.ranking]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert sum(name.startswith("b_") for name in result.frames) >= 4  # the blurred frames come first
    jobs = sorted(cvat_client.jobs.list(task_id=task.id), key=lambda j: j.start_frame)
    assert [(j.start_frame, j.stop_frame) for j in jobs] == [(0, 1), (2, 3), (4, 4)]
    assert result.jobs == [result.frames[0:2], result.frames[2:4], result.frames[4:]]
    shapes = task.get_annotations().shapes
    recorded = preannotations.load(tmp_path / "preannotations", task.id)
    assert len(shapes) == len(recorded["annotations"]) > 0
    assert {s.type.value for s in shapes} == {"skeleton"}
    assert all(len(s.elements) == schema.num_keypoints for s in shapes)
    assert [im["file_name"] for im in recorded["images"]] == result.frames
    labels, attributes = names_of(task)
    for shape in shapes:
        assert_flags_follow_the_rule(shape, labels, attributes, schema, check_below=check_below())
    report = tmp_path / "sampler" / "rounds" / f"project-{project.id}" / "round-1" / "round.json"
    assert json.loads(report.read_text())["task_id"] == task.id


def test_reopening_is_idempotent_and_frames_never_repeat(cvat_client, project, model, version_dir, blurred_pool,
                                                         schema, tmp_path):
    pool, strategy = LocalPool(blurred_pool, schema), create("hybrid", schema=schema)  # features + entropy
    spec = RoundSpec(project.id, size=6, job_size=3)
    first = open_round(cvat_client, spec, pool, Scorer(model), strategy, data_dir=tmp_path, progress=False)
    again = open_round(cvat_client, spec, pool, Scorer(model), strategy, data_dir=tmp_path, progress=False)
    assert (again.task_id, again.created, again.frames) == (first.task_id, False, first.frames)
    assert list(round_tasks(cvat_client, project.id)) == [1]
    newer = Predictor(version_dir, version_id="v9999-20990101T000000")
    rounds = [first]
    for _ in range(2):  # 6 + 6 + 4 frames: the pool runs out exactly
        rounds.append(open_round(cvat_client, spec, pool, Scorer(newer), strategy, data_dir=tmp_path,
                                 progress=False))
        newer = Predictor(version_dir, version_id=newer.version_id[:-1] + str(len(rounds)))
    names = [n for r in rounds for n in r.frames]
    assert len(names) == len(set(names)) == 16
    assert [r.number for r in rounds] == [1, 2, 3]
    with pytest.raises(CalsError, match="already in a round"):
        open_round(cvat_client, spec, pool, Scorer(newer), strategy, data_dir=tmp_path, progress=False)


def test_a_failure_after_the_task_exists_leaves_no_round(cvat_client, project, model, blurred_pool, schema,
                                                         tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise CalsError("pre-annotations could not be built")

    monkeypatch.setattr("cals.sampling.rounds.round_coco", broken)  # fault injection after task creation
    with pytest.raises(CalsError, match="could not be built"):
        open_round(cvat_client, RoundSpec(project.id, size=3, job_size=3), LocalPool(blurred_pool, schema),
                   Scorer(model), create("entropy", schema=schema), data_dir=tmp_path, progress=False)
    assert round_tasks(cvat_client, project.id) == {}
    assert not list((tmp_path / "sampler" / "rounds").rglob("round.json"))
    assert not (tmp_path / "preannotations").exists()


def make_pool_task(client, project, pool_root, schema, n, tmp_path, *, label=True):
    """A "pool" task of n frames; with label, each person has two body points a person placed."""
    coco = json.loads((pool_root / "annotations.json").read_text())
    images = coco["images"][:n]
    anns = []
    for ann in (a for a in coco["annotations"] if a["image_id"] in {im["id"] for im in images}):
        x, y, w, h = ann["bbox"]
        kp = np.zeros((schema.num_keypoints, 3))
        kp[schema.index("left_shoulder")] = (round(x + 0.3 * w, 1), round(y + 0.2 * h, 1), 2)
        kp[schema.index("right_ankle")] = (round(x + 0.7 * w, 1), round(y + 0.9 * h, 1), 2)
        anns.append({**ann, "keypoints": kp.reshape(-1).tolist(), "num_keypoints": 2})
    task = client.tasks.create_from_data(models.TaskWriteRequest(name="pool", project_id=project.id),
                                         [pool_root / "images" / im["file_name"] for im in images])
    if label:
        import_coco(task, {**coco, "images": images, "annotations": anns})
    return task, {im["file_name"]: [a for a in anns if a["image_id"] == im["id"]] for im in images}


def test_cvat_pool_round_keeps_the_body_points_people_labelled(cvat_client, project, model, blurred_pool,
                                                                schema, tmp_path):
    pool_task, labelled = make_pool_task(cvat_client, project, blurred_pool, schema, 4, tmp_path)
    before = pool_task.get_annotations().shapes
    pool = CvatPool(cvat_client, project.id, schema)
    assert len(pool) == 4 and all(i.boxes is not None for i in pool.items())
    result = open_round(cvat_client, RoundSpec(project.id, size=3, job_size=2), pool, Scorer(model),
                        create("entropy", schema=schema), data_dir=tmp_path, progress=False)
    task = cvat_client.tasks.retrieve(result.task_id)
    names = {lab.id: lab.name for lab in task.get_labels()}
    for sub in (s for lab in task.get_labels() for s in (lab.sublabels or [])):
        names[sub.id] = sub.name
    shapes = task.get_annotations().shapes
    assert len(shapes) == sum(len(labelled[n]) for n in result.frames)
    _, attributes = names_of(task)
    for shape in shapes:
        points = {names[e.label_id]: e.points for e in shape.elements}
        person = [a for a in labelled[result.frames[shape.frame]]]
        wanted = [np.asarray(a["keypoints"]).reshape(-1, 3) for a in person]
        assert any(points["left_shoulder"] == pytest.approx(list(w[schema.index("left_shoulder"), :2]))
                   and points["right_ankle"] == pytest.approx(list(w[schema.index("right_ankle"), :2]))
                   for w in wanted)
        placed = [e for e in shape.elements if names[e.label_id] in ("left_shoulder", "right_ankle")]
        assert all(not e.outside and attrs(e, attributes) == {CHECK: "false", CONFIDENCE: "100"} for e in placed)
        assert_flags_follow_the_rule(shape, names, attributes, schema, check_below=check_below())
    assert len(pool_task.get_annotations().shapes) == len(before)  # the pool task is untouched


def test_cvat_pool_frames_without_boxes_need_the_detector(cvat_client, project, model, blurred_pool, schema,
                                                          tmp_path):
    make_pool_task(cvat_client, project, blurred_pool, schema, 1, tmp_path, label=False)
    with pytest.raises(CalsError, match="CALS_DETECTOR"):
        open_round(cvat_client, RoundSpec(project.id, size=1, job_size=1), CvatPool(cvat_client, project.id, schema),
                   Scorer(model), create("entropy", schema=schema), data_dir=tmp_path, progress=False)
    assert round_tasks(cvat_client, project.id) == {}


def shown_points(shapes, labels, attributes, frames) -> dict[str, list[tuple]]:
    """Frame name → sorted (point, x, y, check, confidence) of every shown point."""
    out: dict[str, list[tuple]] = {}
    for shape in shapes:
        for e in shape.elements:
            if not e.outside:
                values = attrs(e, attributes)
                out.setdefault(frames[shape.frame], []).append(
                    (labels[e.label_id], round(e.points[0], 2), round(e.points[1], 2), values[CHECK],
                     int(values[CONFIDENCE])))
    return {name: sorted(points) for name, points in out.items()}


def expected_points(coco, schema, check_below: float) -> dict[str, list[tuple]]:
    """shown_points as the rule gives them from a round document: shown where v > 0 and on the image."""
    images = {im["id"]: im for im in coco["images"]}
    out: dict[str, list[tuple]] = {}
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        for name, (x, y, v), score in zip(schema.names, np.asarray(ann["keypoints"]).reshape(-1, 3), ann["scores"]):
            if v > 0 and 0 <= x <= image["width"] and 0 <= y <= image["height"]:
                out.setdefault(image["file_name"], []).append(
                    (name, round(x, 2), round(y, 2), "true" if score < check_below else "false",
                     int(round(score * 100))))
    return {name: sorted(points) for name, points in out.items()}


def test_round_points_are_flagged_from_the_recorded_scores(cvat_client, project, model, blurred_pool, schema,
                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("CALS_CHECK_BELOW", "0.5")
    result = open_round(cvat_client, RoundSpec(project.id, size=4, job_size=4), LocalPool(blurred_pool, schema),
                        Scorer(model), create("entropy", schema=schema), data_dir=tmp_path, progress=False)
    task = cvat_client.tasks.retrieve(result.task_id)
    labels, attributes = names_of(task)
    recorded = preannotations.load(tmp_path / "preannotations", task.id)
    shapes = task.get_annotations().shapes
    for shape in shapes:
        assert_flags_follow_the_rule(shape, labels, attributes, schema, check_below=0.5)
    assert shown_points(shapes, labels, attributes, result.frames) == expected_points(recorded, schema, 0.5)
    hidden_before = sum(e.outside for s in shapes for e in s.elements)  # a model point may lie off the image

    # the same document with a point off the image, one absent (v=0) and a doubtful spine point hidden,
    # flagged at the median score so that both answers occur
    doc = json.loads(json.dumps(recorded))
    image = doc["images"][0]
    first = next(a for a in doc["annotations"] if a["image_id"] == image["id"])
    kp = np.asarray(first["keypoints"], dtype=float).reshape(-1, 3)
    off = (kp[:, 2] == 0) | (kp[:, 0] < 0) | (kp[:, 0] > image["width"]) | (kp[:, 1] < 0) | (kp[:, 1] > image["height"])
    newly_hidden = len({0, 1, schema.spine[0]} - set(np.flatnonzero(off)))
    first["keypoints"][0] = image["width"] + 5.0
    first["keypoints"][3 * 1 + 2] = 0
    spine = schema.spine[0]
    first["keypoints"][3 * spine] = -3.0
    first["scores"][spine] = 0.0
    median = float(np.median([s for a in doc["annotations"] for s in a["scores"]]))
    upload_preannotations(task, doc, schema, check_below=median)
    shapes = task.get_annotations().shapes
    for shape in shapes:
        assert_flags_follow_the_rule(shape, labels, attributes, schema, check_below=median)
    got = shown_points(shapes, labels, attributes, result.frames)
    assert got == expected_points(doc, schema, median)
    assert {p[3] for points in got.values() for p in points} == {"true", "false"}
    outside = [e for s in shapes for e in s.elements if e.outside]
    assert len(outside) == hidden_before + newly_hidden
    assert all(attrs(e, attributes) == {CHECK: "false", CONFIDENCE: "100"} for e in outside)
    assert len(shapes) == len(recorded["annotations"])


@pytest.fixture
def plain_project(cvat_client, schema):
    """A project made before the points-to-check attributes: its skeleton and points have none."""
    label = schema.cvat_label()
    label.pop("attributes", None)
    label["sublabels"] = [{k: v for k, v in sub.items() if k != "attributes"} for sub in label["sublabels"]]
    created = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}", "labels": [label]})
    yield created
    cvat_client.projects.remove_by_ids([created.id])


def test_a_project_without_the_attributes_gets_its_round_without_them(cvat_client, plain_project, model,
                                                                       blurred_pool, schema, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cals.cvat.round_upload"):
        result = open_round(cvat_client, RoundSpec(plain_project.id, size=2, job_size=2),
                            LocalPool(blurred_pool, schema), Scorer(model), create("entropy", schema=schema),
                            data_dir=tmp_path, progress=False)
    task = cvat_client.tasks.retrieve(result.task_id)
    shapes = task.get_annotations().shapes
    assert len(shapes) == len(preannotations.load(tmp_path / "preannotations", task.id)["annotations"]) > 0
    assert all(s.source == "auto" and not s.attributes and all(not e.attributes for e in s.elements)
               for s in shapes)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "check, spine_confidence" in warning and "check, confidence" in warning
    assert "make setup-project" in warning


def test_cvat_refuses_an_attribute_of_another_label(cvat_client, project, blurred_pool, schema):
    """What the upload relies on: CVAT checks every spec_id against the shape's own label (400)."""
    task = cvat_client.tasks.create_from_data(models.TaskWriteRequest(name="pool", project_id=project.id),
                                              sorted((blurred_pool / "images").iterdir())[:1])
    (label,) = task.get_labels()
    skeleton_check = next(a.id for a in label.attributes if a.name == CHECK)
    elements = [models.SubLabeledShapeRequest(type="points", frame=0, label_id=sub.id, points=[1.0, 2.0],
                                              attributes=[models.AttributeValRequest(spec_id=skeleton_check,
                                                                                     value="true")])
                for sub in label.sublabels]
    shape = models.LabeledShapeRequest(type="skeleton", frame=0, label_id=label.id, elements=elements)
    with pytest.raises(ApiException) as refused:
        task.set_annotations(models.LabeledDataRequest(shapes=[shape]))
    assert refused.value.status == 400 and f"spec_id `{skeleton_check}` is invalid" in refused.value.body
    assert task.get_annotations().shapes == []
