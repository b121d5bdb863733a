"""A trainer run with the pool set, against CVAT: the pool task's body labels and the served
version's spine points from the sampler's score cache train beside the completed jobs, the
labelled frames (validation included) never among them; a run with nothing cached trains on the
human labels alone and says so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cals.cvat.pool import CvatPool
from cals.cvat.pool_task import create_pool_task
from cals.data.coco import annotations_by_name, load_dataset
from cals.model.predict import Predictor
from cals.registry import Registry
from cals.sampling.cache import ScoreCache, cache_file
from cals.sampling.scoring import Scorer
from cals.simulate.data import body_only
from tests.trainer_helpers import HttpClient, generated_frames, make_task, serve, small_current_model, wait_for_run
from trainer import create_app

TOKEN = "api-token-pool"
NAMES = [f"{i:06d}.jpg" for i in range(14)]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return generated_frames(tmp_path_factory.mktemp("pool-set-frames"), len(NAMES), seed=41)


@pytest.fixture(scope="module")
def base_registry(frames, tmp_path_factory) -> Path:
    return small_current_model(frames, tmp_path_factory.mktemp("pool-set-registry"), iters=10)


@pytest.fixture
def registry_root(base_registry, tmp_path) -> Path:
    return Path(shutil.copytree(base_registry, tmp_path / "registry"))


@pytest.fixture
def pool_task(cvat_client, project, frames, schema, tmp_path):
    """The project's pool task as `cals pool-task` uploads a COCO pool: every frame, body points only."""
    return create_pool_task(cvat_client, project.id, load_dataset(body_only(frames, tmp_path / "body", schema), schema))


def settings(cvat_server, tmp_path: Path, registry_root: Path, **extra) -> dict:
    return {"CVAT_URL": cvat_server.url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
            "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": "whsec-" + "p" * 24, "API_TOKEN": TOKEN,
            "REGISTRY": str(registry_root), "DATA": str(tmp_path / "data"), "TRAIN_ITERS": "10",
            "WORKER_POLL_SECONDS": "0.2", **extra}


def predict_pool(cvat_client, project, schema, registry: Registry, data: Path) -> None:
    """What the sampler does after a promotion: the served version's people on the pool, cached."""
    cache = ScoreCache(cache_file(data))
    try:
        current = registry.current()
        Scorer(Predictor.from_registry(registry, current.id), cache=cache).predict(
            CvatPool(cvat_client, project.id, schema), progress=False)
    finally:
        cache.close()


def train_on(api: HttpClient, cvat_client, project, frames, names: list[str], tmp_path: Path) -> dict:
    (job,) = make_task(cvat_client, project.id, frames, names, tmp_path).get_jobs()
    run = wait_for_run(api, api.post("/train", {"jobs": [job.id]}).get_json()["id"], timeout=600)
    assert run["state"] == "succeeded", run["error"]
    return run


def pool_set_doc(data: Path) -> tuple[dict, dict[str, list[dict]]]:
    coco = json.loads((data / "pool-set" / "annotations.json").read_text())
    return coco, annotations_by_name(coco)


def test_a_run_trains_on_the_pool_set_from_the_samplers_cache_and_labelled_frames_leave_it(
        cvat_client, cvat_server, project, pool_task, schema, frames, registry_root, tmp_path):
    data = tmp_path / "data"
    registry = Registry(registry_root)
    truth = {im["file_name"]: im["id"] for im in load_dataset(frames, schema).coco["images"]}
    people = {n: [a for a in load_dataset(frames, schema).coco["annotations"] if a["image_id"] == truth[n]]
              for n in NAMES}
    predict_pool(cvat_client, project, schema, registry, data)
    served = registry.current().id
    app = create_app(settings(cvat_server, tmp_path, registry_root, PSEUDO_LABELS="1", PSEUDO_THRESHOLD="0"))
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        first = train_on(api, cvat_client, project, frames, NAMES[:6], tmp_path)
        coco, by_name = pool_set_doc(data)
        predict_pool(cvat_client, project, schema, Registry(registry_root), data)  # after the promotion notice
        second = train_on(api, cvat_client, project, frames, NAMES[6:9], tmp_path)
        _, later = pool_set_doc(data)
    app.extensions["cals_trainer"].worker.stop(30)

    spine = schema.groups["spine"]
    report = first["result"]["pool_set"]
    unlabelled = NAMES[6:]
    assert report["used"] and report["version"] == served and report["frames"] == len(unlabelled)
    assert set(by_name) == set(unlabelled)  # the labelled frames, either split, are not in it
    assert report["people"] == sum(len(people[n]) for n in unlabelled) == len(coco["annotations"])
    assert report["pseudo_points"] == len(spine) * report["people"]  # threshold 0: every spine point
    cache = ScoreCache(cache_file(data))
    pool = {item.name: item for item in CvatPool(cvat_client, project.id, schema).items()}
    for name in unlabelled:
        cached = cache.people(served, pool[name].key)
        for ann in by_name[name]:  # people matched by box: a CVAT may list a frame's shapes in any order
            x, y, w, h = ann["bbox"]
            box = np.array([x, y, x + w, y + h])
            labelled = pool[name].labelled[int(np.abs(pool[name].boxes - box).max(axis=1).argmin())]
            guess = min(cached, key=lambda p: np.abs(np.asarray(p["bbox"]) - box).max())
            kps = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            assert np.allclose(kps[spine, :2], np.asarray(guess["keypoints"])[spine], atol=0.01)
            body = labelled[:, 2] > 0
            assert np.allclose(kps[body, :2], labelled[body, :2], atol=0.01)
    cache.close()

    labelled_set = data / "labelled"
    val = {im["cvat"]["frame"] for im in json.loads((labelled_set / "val" / "annotations.json").read_text())["images"]}
    assert val and not val & set(by_name)
    candidate = Registry(registry_root).get(first["result"]["model"]["version"])
    assert candidate.meta["train_data"]["pool"]["annotations"] == report["people"]
    assert candidate.meta["train_data"]["annotations"] < report["people"]  # the human set is its own, smaller

    # frames people labelled since leave the pool set: their human labels replace the pseudo-labels
    assert second["result"]["pool_set"]["frames"] == len(NAMES) - 9 and set(later) == set(NAMES[9:])
    labelled_now = {im["cvat"]["frame"] for s in ("train", "val")
                    for im in json.loads((labelled_set / s / "annotations.json").read_text())["images"]}
    assert set(NAMES[6:9]) <= labelled_now


def test_without_cached_predictions_a_run_trains_on_human_labels_alone_and_says_so(
        cvat_client, cvat_server, project, pool_task, frames, registry_root, tmp_path):
    app = create_app(settings(cvat_server, tmp_path, registry_root, POOL_LABELS="0", PSEUDO_LABELS="1"))
    with serve(app) as url:
        run = train_on(HttpClient(url, token=TOKEN), cvat_client, project, frames, NAMES[:4], tmp_path)
    app.extensions["cals_trainer"].worker.stop(30)
    report = run["result"]["pool_set"]
    assert not report["used"] and report["people"] == 0
    assert "no prediction of the served version" in report["pseudo_labels"]
    assert "human labels alone" in report["reason"]
    candidate = Registry(registry_root).get(run["result"]["model"]["version"])
    assert "pool" not in candidate.meta["train_data"]
