"""From a COCO-17 keypoints dataset to the schema's layout (`cals import-coco`) and into CVAT as the
pool task (`cals pool-task`): the first steps of the README's deployment."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from cals import env_file
from cals.cli import main
from cals.cvat.pool import CvatPool
from cals.cvat.project_setup import ensure_project
from cals.data.coco import DatasetError, load_dataset
from cals.data.coco_import import convert

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-coco4"


def coco17(dataset: Path, schema, tmp_path: Path, order: list[int] | None = None) -> Path:
    """The generated dataset as a COCO-17 file would have it: body points only, in `order`."""
    coco = json.loads((dataset / "annotations.json").read_text())
    order = order or list(range(17))
    for ann in coco["annotations"]:
        kp = np.asarray(ann["keypoints"]).reshape(-1, 3)[order]
        ann["keypoints"] = kp.reshape(-1).tolist()
    coco["categories"] = [{"id": 1, "name": "person", "keypoints": [schema.names[i] for i in order],
                           "skeleton": []}]
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(coco))
    return path


def test_import_matches_points_by_name_and_leaves_the_spine_unlabelled(synthetic, schema, tmp_path):
    order = list(reversed(range(17)))  # a source that lists its points in another order
    src = coco17(synthetic / "val", schema, tmp_path, order)
    out = tmp_path / "imported"
    assert main(["import-coco", "--annotations", str(src), "--images", str(synthetic / "val" / "images"),
                 "--out", str(out)]) == 0
    dataset = load_dataset(out, schema)  # valid for cals train / pool-task
    original = json.loads((synthetic / "val" / "annotations.json").read_text())
    kept = [a for a in original["annotations"] if any(np.asarray(a["keypoints"][:51])[2::3] > 0)]
    assert len(dataset.coco["annotations"]) == len(kept) > 0
    for got, want in zip(dataset.coco["annotations"], kept):
        got_kp, want_kp = np.asarray(got["keypoints"]).reshape(-1, 3), np.asarray(want["keypoints"]).reshape(-1, 3)
        np.testing.assert_allclose(got_kp[:17], want_kp[:17], atol=0.01)
        assert (got_kp[17:] == 0).all()
    assert len(dataset.coco["images"]) == len(original["images"])
    first = out / "images" / dataset.coco["images"][0]["file_name"]
    assert first.is_symlink() and first.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda c: c["annotations"][0].update(keypoints=[1, 2, 2]), "needs 17 keypoints"),
    (lambda c: c["annotations"][0].update(image_id=-5), "unknown image"),
    (lambda c: c["annotations"][0].update(bbox=[0, 0, 0, 10]), "non-empty 'bbox'"),
    (lambda c: c.update(categories=[{"id": 1, "name": "person"}]), "no category with a 'keypoints' list"),
    (lambda c: c["categories"][0].update(keypoints=[f"p{i}" for i in range(17)]), "is in the schema"),
    (lambda c: c["images"][0].update(file_name="../../etc/passwd"), "leaves the image folder"),
    (lambda c: c.pop("annotations"), "'images' and 'annotations'"),
])
def test_malformed_coco_is_refused_with_the_entry(synthetic, schema, tmp_path, damage, message):
    coco = json.loads(coco17(synthetic / "val", schema, tmp_path).read_text())
    damage(coco)
    with pytest.raises(DatasetError, match=message):
        convert(coco, schema)


def test_missing_images_are_named_and_nothing_is_written(synthetic, schema, tmp_path, capsys):
    src = coco17(synthetic / "val", schema, tmp_path)
    out = tmp_path / "imported"
    assert main(["import-coco", "--annotations", str(src), "--images", str(tmp_path), "--out", str(out)]) == 1
    assert "are not in" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/real-coco4 is on the team's machines only")
def test_real_coco_val2017_people(schema, tmp_path):
    out = tmp_path / "real"
    assert main(["import-coco", "--annotations", str(SHARED / "test_coco.json"), "--images", str(SHARED),
                 "--out", str(out)]) == 0
    source = json.loads((SHARED / "test_coco.json").read_text())
    useful = [a for a in source["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    dataset = load_dataset(out, schema)
    assert len(dataset.coco["annotations"]) == len(useful)
    assert {a["num_keypoints"] for a in dataset.coco["annotations"]} == {a["num_keypoints"] for a in useful}


def test_pool_task_carries_the_labelled_body_points_into_cvat(synthetic, schema, tmp_path, cvat_server, cvat_client,
                                                              capsys):
    src = coco17(synthetic / "val", schema, tmp_path)
    data = tmp_path / "pool-data"
    assert main(["import-coco", "--annotations", str(src), "--images", str(synthetic / "val" / "images"),
                 "--out", str(data)]) == 0
    # a name of its own: a real CVAT keeps the projects of earlier runs
    project, _ = ensure_project(cvat_client, schema, name=f"pool-task-test-{uuid.uuid4().hex[:8]}")
    env = tmp_path / ".env"
    env.write_text(f"CALS_CVAT_URL={cvat_server.url}\nCALS_CVAT_USER={cvat_server.user}\n"
                   f"CALS_CVAT_PASSWORD={cvat_server.password}\nCALS_PROJECT_ID={project.id}\n")
    assert main(["pool-task", "--data", str(data), "--env-file", str(env)]) == 0
    assert "labelled people" in capsys.readouterr().out
    pool = CvatPool(cvat_client, project.id, schema)  # what the sampler reads
    dataset = load_dataset(data, schema)
    assert len(pool) == len(dataset.coco["images"])
    by_name = {im["file_name"]: im["id"] for im in dataset.coco["images"]}
    items = {item.name: item for item in pool.items()}
    some = next(im for im in dataset.coco["images"]
                if any(a["image_id"] == im["id"] for a in dataset.coco["annotations"]))
    want = [np.asarray(a["keypoints"]).reshape(-1, 3) for a in dataset.coco["annotations"]
            if a["image_id"] == by_name[some["file_name"]]]
    got = items[some["file_name"]].labelled
    assert got is not None and len(got) == len(want)
    np.testing.assert_allclose(sorted(g[:17, :2].sum() for g in got), sorted(w[:17, :2].sum() for w in want), atol=1)
    assert (got[:, 17:, 2] == 0).all()  # the spine is what the rounds will ask for
    # the pool is uploaded once: a second upload is refused, the first task stays
    assert main(["pool-task", "--data", str(data), "--env-file", str(env)]) == 1
    assert "already has a task named 'pool'" in capsys.readouterr().err
    assert env_file.read(env)["CALS_PROJECT_ID"] == str(project.id)
    cvat_client.projects.remove_by_ids([project.id])
