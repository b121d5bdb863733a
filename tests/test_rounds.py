"""Opening CVAT rounds against the CVAT-compatible test server, with the real trained model."""
import json

import numpy as np
import pytest
from cvat_sdk.api_client import models

from cals.sampling import preannotations
from cals.cvat.coco_upload import import_coco
from cals.cvat.pool import CvatPool
from cals.cvat.rounds import RoundSpec, open_round, round_tasks
from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.sampling.pool import LocalPool
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

    monkeypatch.setattr("cals.cvat.rounds.round_coco", broken)  # fault injection after task creation
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
    for shape in shapes:
        points = {names[e.label_id]: e.points for e in shape.elements}
        person = [a for a in labelled[result.frames[shape.frame]]]
        wanted = [np.asarray(a["keypoints"]).reshape(-1, 3) for a in person]
        assert any(points["left_shoulder"] == pytest.approx(list(w[schema.index("left_shoulder"), :2]))
                   and points["right_ankle"] == pytest.approx(list(w[schema.index("right_ankle"), :2]))
                   for w in wanted)
    assert len(pool_task.get_annotations().shapes) == len(before)  # the pool task is untouched


def test_cvat_pool_frames_without_boxes_need_the_detector(cvat_client, project, model, blurred_pool, schema,
                                                          tmp_path):
    make_pool_task(cvat_client, project, blurred_pool, schema, 1, tmp_path, label=False)
    with pytest.raises(CalsError, match="CALS_DETECTOR"):
        open_round(cvat_client, RoundSpec(project.id, size=1, job_size=1), CvatPool(cvat_client, project.id, schema),
                   Scorer(model), create("entropy", schema=schema), data_dir=tmp_path, progress=False)
    assert round_tasks(cvat_client, project.id) == {}
