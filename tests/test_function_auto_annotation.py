"""The cvat-sdk auto-annotation function against the CVAT-compatible test server."""
from __future__ import annotations

import json
import shutil
import uuid

import numpy as np
import pytest
from cvat_sdk.auto_annotation import annotate_task

from cals.errors import CalsError
from cals.metrics.evaluate import keypoints_array, oks
from cals.serving.auto_annotation import create
from tests.test_function_helpers import DETECTOR, OKS_BAR

pytestmark = pytest.mark.skipif(not DETECTOR.is_file(), reason="../shared detector not present")


@pytest.fixture
def spine_task(cvat_client, schema, synthetic, tmp_path):
    """A task of 4 generated frames (with their GT people), in a project with the spine label."""
    coco = json.loads((synthetic / "val" / "annotations.json").read_text())
    images = coco["images"][:4]
    paths = []
    for im in images:
        paths.append(tmp_path / im["file_name"])
        shutil.copy(synthetic / "val" / "images" / im["file_name"], paths[-1])
    project = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}",
                                           "labels": [schema.cvat_label()]})
    task = cvat_client.tasks.create_from_data({"name": "auto", "project_id": project.id}, paths,
                                              data_params={"sorting_method": "predefined"})
    gt = {im["file_name"]: [a for a in coco["annotations"] if a["image_id"] == im["id"]] for im in images}
    yield task, gt
    cvat_client.projects.remove_by_ids([project.id])


def test_annotate_task_writes_scored_flagged_skeletons(cvat_client, cvat_server, spine_task, trained, schema):
    task, gt = spine_task
    function = create(str(trained[0].root), str(DETECTOR), point_threshold=0.0)
    annotate_task(cvat_client, task.id, function, clear_existing=True)
    shapes = task.get_annotations().shapes
    assert shapes, "no skeleton was uploaded"
    frames = [f.name for f in task.get_meta().frames]
    labels = {label.id: label for label in task.get_labels()}
    sublabel_names = {s.id: s.name for label in labels.values() for s in label.sublabels}
    sigmas = np.array(schema.sigmas)
    best_by_frame = {}
    for shape in shapes:
        assert labels[shape.label_id].name == schema.label and shape.type.value == "skeleton"
        names = [sublabel_names[e.label_id] for e in shape.elements]
        assert sorted(names) == sorted(schema.names)
        # CVAT 2.23 stores no scores (its shapes have no `score`); the stand-in answers as 2.80, which keeps them
        assert "score" in shape or cvat_server.real
        if "score" in shape:
            assert 0 < shape.score <= 1  # the detector's score travels with the skeleton
            scores = [e.score for e in shape.elements]
            assert len(set(scores)) > 1 and all(0 <= s <= 1 for s in scores)  # per-point model scores
        # points to check: flagged and scored on the skeleton and on every point, by attribute name
        top = {a.id: a.name for a in labels[shape.label_id].attributes}
        assert {top[a.spec_id] for a in shape.attributes} == {"check", "spine_confidence"}
        subs = {s.id: {a.id: a.name for a in s.attributes} for s in labels[shape.label_id].sublabels}
        for e in shape.elements:
            values = {subs[e.label_id][a.spec_id]: a.value for a in e.attributes}
            assert set(values) == {"check", "confidence"} and values["confidence"].isnumeric()
            assert values["check"] == "false" or int(values["confidence"]) <= 60
        points = dict(zip(names, (e.points for e in shape.elements)))
        pred = np.array([points[n] for n in schema.names])
        for ann in gt[frames[shape.frame]]:
            value = oks(pred, keypoints_array(ann), sigmas, ann["area"])
            best_by_frame[shape.frame] = max(best_by_frame.get(shape.frame, 0), value)
    assert len(best_by_frame) >= 2 and max(best_by_frame.values()) > OKS_BAR, best_by_frame


def test_create_names_a_missing_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("CALS_REGISTRY", raising=False)
    with pytest.raises(CalsError, match="no registry"):
        create(detector=str(DETECTOR))
    with pytest.raises(CalsError, match="no current version"):
        create(str(tmp_path / "empty"), str(DETECTOR))
