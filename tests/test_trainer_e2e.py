"""The trainer end to end over HTTP: CVAT (test server, driven by cvat-sdk) → signed webhook →
export → merge → fine-tune (few iterations) → evaluate → promote; and the failure paths that
must leave the current model serving: corrupt exports and a trainer killed mid-training."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cvat_sdk import models

from cals.sampling import preannotations
from cals.registry import Registry
from tests.trainer_helpers import (HttpClient, cvat_proxy, generated_frames, ground_truth, make_task, serve,
                                   small_current_model, wait_for_run, zip_bytes)
from trainer import create_app

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

SECRET = "whsec-" + "e" * 24
TOKEN = "api-token-e2e"
NAMES = [f"{i:06d}.jpg" for i in range(10)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return generated_frames(tmp_path_factory.mktemp("trainer-e2e-frames"), len(NAMES), seed=23)


@pytest.fixture(scope="module")
def base_registry(frames, tmp_path_factory) -> Path:
    """The "current" model each test starts from (10 iterations on the frames)."""
    return small_current_model(frames, tmp_path_factory.mktemp("trainer-base-registry"), iters=10)


@pytest.fixture
def registry_root(base_registry, tmp_path) -> Path:
    """A private copy of the base registry (tests promote into it)."""
    return Path(shutil.copytree(base_registry, tmp_path / "registry"))


def settings(cvat_url: str, cvat_server, tmp_path: Path, registry_root: Path, **extra) -> dict:
    return {"CVAT_URL": cvat_url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
            "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": SECRET, "API_TOKEN": TOKEN,
            "REGISTRY": str(registry_root), "DATA": str(tmp_path / "data"), "TRAIN_ITERS": "20",
            "PROMOTE_MARGIN": "1.0", "WORKER_POLL_SECONDS": "0.2", **extra}


def partly_moved(coco: dict, schema, moved: set[str]) -> tuple[dict, int]:
    """Pre-annotations equal to `coco` except the spine points of frames in `moved`, pushed away
    by a person's bbox width + height; returns the record and how many labelled spine points moved."""
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    spine = schema.groups["spine"]
    anns, count = [], 0
    for ann in coco["annotations"]:
        kps = list(ann["keypoints"])
        if names[ann["image_id"]] in moved:
            shift = ann["bbox"][2] + ann["bbox"][3]
            for i in spine:
                if kps[3 * i + 2] > 0:
                    kps[3 * i] += shift
                    count += 1
        anns.append({**ann, "keypoints": kps})
    return {**coco, "annotations": anns}, count


def test_completed_job_is_exported_trained_evaluated_and_promoted(
        cvat_client, cvat_server, project, schema, frames, registry_root, tmp_path, webhook_receiver):
    before = Registry(registry_root).current()
    sampler = webhook_receiver.url.rsplit("/", 1)[0]  # records the trainer's promotion notice
    app = create_app(settings(cvat_server.url, cvat_server, tmp_path, registry_root, SAMPLER_URL=sampler))
    with serve(app) as url:
        cvat_client.api_client.webhooks_api.create(models.WebhookWriteRequest(
            target_url=f"{url}/webhooks/cvat", type="project", project_id=project.id, secret=SECRET,
            events=["update:job"], content_type="application/json", enable_ssl=False))
        task = make_task(cvat_client, project.id, frames, NAMES, tmp_path)
        record, spine_moved = partly_moved(ground_truth(frames, NAMES), schema, set(NAMES[:4]))
        preannotations.record(tmp_path / "data" / "preannotations", task.id, record)
        (job,) = task.get_jobs()
        api = HttpClient(url)
        job.update({"state": "completed"})  # the annotators are done: CVAT sends update:job

        deadline = time.monotonic() + 30
        while not api.get("/runs").get_json()["runs"]:
            assert time.monotonic() < deadline, "the webhook did not create a run"
            time.sleep(0.1)
        (run,) = api.get("/runs").get_json()["runs"]
        seen: list[dict] = []
        run = wait_for_run(api, run["id"], seen=seen, timeout=600)
        models_doc = api.get("/models").get_json()
    app.extensions["cals_trainer"].worker.stop(30)

    assert run["state"] == "succeeded", run["error"]
    assert run["targets"]["jobs"] == [job.id] and run["result"]["jobs"] == [job.id]
    live = [s["progress"]["training"] for s in seen if s["phase"] == "training" and s["progress"].get("training")]
    assert live, "progress was never visible while training"
    final = run["progress"]["training"]
    assert final["max_iterations"] == 20 and final["iteration"] == 20 and final["loss"] > 0

    model = run["result"]["model"]
    assert model["promoted"] and model["previous"] == before.id
    registry = Registry(registry_root)
    assert registry.current().id == model["version"] != before.id == registry.get(model["version"]).parent
    assert models_doc["current"] == model["version"]
    assert run["result"]["metrics"]["candidate"]["overall"]["AP"] is not None

    sizes = run["result"]["labelled_set"]["sizes"]
    assert sizes["train"]["images"] + sizes["val"]["images"] == len(NAMES) and sizes["val"]["images"] >= 1

    effort = run["result"]["effort"][str(job.id)]
    assert effort["preannotated"] and effort["frames"] == len(NAMES)
    assert effort["groups"]["body"]["moved"] == 0 and effort["groups"]["body"]["points"] > 0
    spine = effort["groups"]["spine"]
    assert spine["moved"] == spine_moved > 0 and 0 < spine["moved_share"] < 1

    (notice,) = webhook_receiver.wait_for(1)
    assert notice.json == {"version": model["version"], "project_id": project.id}
    assert notice.headers["Authorization"] == f"Bearer {TOKEN}"
    assert run["result"]["notification"]["sent"] is True


def test_a_job_completed_while_the_trainer_was_down_is_learned_by_catch_up_at_start(
        cvat_client, cvat_server, project, frames, registry_root, tmp_path):
    before = Registry(registry_root).current()
    jobs = make_task(cvat_client, project.id, frames, NAMES[:9], tmp_path,
                     jobs=[NAMES[i:i + 3] for i in range(0, 9, 3)]).get_jobs()
    for job in jobs:
        job.update({"state": "completed"})  # 3 jobs, and no trainer is up: nobody hears CVAT's webhooks
    app = create_app(settings(cvat_server.url, cvat_server, tmp_path, registry_root,
                              PROJECT_ID=str(project.id), CATCHUP_SECONDS="3600", TRAIN_ITERS="3"))
    worker = app.extensions["cals_trainer"].worker
    with serve(app) as url:
        api = HttpClient(url)
        deadline = time.monotonic() + 30
        while not api.get("/runs").get_json()["runs"]:
            assert time.monotonic() < deadline, "catch-up at start queued no run"
            time.sleep(0.1)
        (run,) = api.get("/runs").get_json()["runs"]
        run = wait_for_run(api, run["id"], timeout=600)
        health = api.get("/health").get_json()
    worker.stop(30)

    assert run["state"] == "succeeded", run["error"]
    ids = sorted(job.id for job in jobs)
    assert run["trigger"] == "catch-up" and run["targets"]["jobs"] == ids == sorted(run["result"]["jobs"])
    assert run["result"]["model"]["previous"] == before.id
    assert sorted(health["catch_up"]["last"]["queued"]) == ids and health["catch_up"]["interval_seconds"] == 3600
    assert worker.catch_up.run().queued == []  # the next interval: the update is known, nothing trains twice
    assert app.extensions["cals_trainer"].queue.pending_jobs() == []


@pytest.mark.parametrize("damaged, message", [
    (b"this is not a zip archive", "not a readable zip"),
    (zip_bytes({"annotations/person_keypoints_default.json": b"{}", "../../escaped.txt": b"x"}), "zip-slip"),
])
def test_corrupt_export_fails_the_run_and_the_model_keeps_serving(
        cvat_client, cvat_server, project, frames, registry_root, tmp_path, damaged, message):
    task = make_task(cvat_client, project.id, frames, NAMES[:4], tmp_path)
    (job,) = task.get_jobs()
    before = Registry(registry_root)
    current, versions = before.current().id, [v.id for v in before.list()]
    with cvat_proxy(cvat_server.url, damaged_body=damaged) as proxy:
        app = create_app(settings(proxy, cvat_server, tmp_path, registry_root))
        with serve(app) as url:
            api = HttpClient(url, token=TOKEN)
            response = api.post("/train", {"jobs": [job.id]})
            assert response.status_code == 202
            run = wait_for_run(api, response.get_json()["id"])
            missing = wait_for_run(api, api.post("/train", {"jobs": [987654]}).get_json()["id"])
            listed = api.get("/runs").get_json()["runs"]
        app.extensions["cals_trainer"].worker.stop(30)
    assert run["state"] == "failed" and message in run["error"] and f"job {job.id}" not in message
    assert missing["state"] == "failed" and "export of job 987654 failed" in missing["error"]
    after = Registry(registry_root)
    assert after.current().id == current and [v.id for v in after.list()] == versions
    assert not (tmp_path / "data" / "labelled" / "train").exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert {r["id"]: r["targets"]["jobs"] for r in listed} == {run["id"]: [job.id], missing["id"]: [987654]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_killed_trainer_leaves_the_model_and_requeues_the_run(
        cvat_client, cvat_server, project, frames, registry_root, tmp_path):
    task = make_task(cvat_client, project.id, frames, NAMES[:6], tmp_path)
    (job,) = task.get_jobs()
    current = Registry(registry_root).current().id
    config = settings(cvat_server.url, cvat_server, tmp_path, registry_root, TRAIN_ITERS="30")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")}
    env.update({f"CALS_{k}": v for k, v in config.items()}, CALS_TRAINER_BIND=f"127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "trainer"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "trainer.log", "wb"))
    try:
        api = HttpClient(f"http://127.0.0.1:{port}", token=TOKEN)
        _wait_until(lambda: _up(api), 180, "the trainer did not start (see trainer.log)")
        run_id = api.post("/train", {"jobs": [job.id]}).get_json()["id"]
        _wait_until(lambda: api.get(f"/runs/{run_id}").get_json()["progress"].get("training", {}).get("iteration"),
                    300, "the run never reached training")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole gunicorn process group, mid-training
        proc.wait(30)
    assert Registry(registry_root).current().id == current

    app = create_app({**config, "TRAIN_ITERS": "10"})  # the trainer starts again
    client = app.test_client()
    old = client.get(f"/runs/{run_id}").get_json()
    assert old["state"] == "interrupted" and "'training'" in old["error"]
    retry = next(r for r in client.get("/runs").get_json()["runs"] if r["trigger"] == f"retry of interrupted run {run_id}")
    assert retry["targets"]["jobs"] == [job.id]
    done = wait_for_run(client, retry["id"], timeout=600)
    app.extensions["cals_trainer"].worker.stop(30)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["labelled_set"]["updated_frames"] == 6  # re-merged, not duplicated
    assert Registry(registry_root).current().id == done["result"]["model"]["version"] != current


def _up(api: HttpClient) -> bool:
    try:
        return api.get("/health").status_code == 200
    except OSError:
        return False


def _wait_until(check, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(message)


def test_a_failed_training_keeps_the_model_and_the_labels(
        cvat_client, cvat_server, project, frames, registry_root, tmp_path):
    names = NAMES[:3]
    task = cvat_client.tasks.create_from_data({"name": "unlabelled", "project_id": project.id},
                                              [frames / "images" / n for n in names])
    (job,) = task.get_jobs()  # nobody labelled anything: there is nothing to train on
    before = Registry(registry_root)
    current, versions = before.current().id, [v.id for v in before.list()]
    app = create_app(settings(cvat_server.url, cvat_server, tmp_path, registry_root))
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        run = wait_for_run(api, api.post("/train", {"jobs": [job.id]}).get_json()["id"], timeout=300)
    app.extensions["cals_trainer"].worker.stop(30)
    assert run["state"] == "failed" and "no annotations to train on" in run["error"]
    after = Registry(registry_root)
    assert after.current().id == current and [v.id for v in after.list()] == versions
    recorded = json.loads((tmp_path / "data" / "labelled" / "train" / "annotations.json").read_text())
    assert sorted(im["cvat"]["frame"] for im in recorded["images"]) == names


def test_without_an_initial_model_the_run_fails_and_trains_nothing(
        cvat_client, cvat_server, project, frames, tmp_path):
    """An empty registry means the function could not register its COCO-body model: the trainer must
    not put a model trained from scratch in its place."""
    names = NAMES[:3]
    task = make_task(cvat_client, project.id, frames, names, tmp_path)
    (job,) = task.get_jobs()
    registry_root = tmp_path / "empty-registry"
    app = create_app(settings(cvat_server.url, cvat_server, tmp_path, registry_root))
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        run = wait_for_run(api, api.post("/train", {"jobs": [job.id]}).get_json()["id"], timeout=300)
    app.extensions["cals_trainer"].worker.stop(30)
    assert run["state"] == "failed", run
    assert run["error"] == (f"no initial model registered in {registry_root}: the trainer only fine-tunes; "
                            "the Nuclio function registers it from CALS_INIT_CHECKPOINT at its first start "
                            "(its 503 reply says why it could not), or run `cals train --init CHECKPOINT`; "
                            "this run's labels are kept for the next")
    registry = Registry(registry_root)
    assert registry.current() is None and registry.list() == []
    labelled = tmp_path / "data" / "labelled"
    merged = [json.loads((labelled / split / "annotations.json").read_text())["images"]
              for split in ("train", "val") if (labelled / split / "annotations.json").is_file()]
    assert sorted(im["cvat"]["frame"] for images in merged for im in images) == names


def test_candidate_and_current_are_scored_on_the_same_split_before_promotion(registry_root, frames):
    from cals.training.fine_tune import evaluate_and_decide

    registry = Registry(registry_root)
    current = registry.current()
    decision, candidate, scored = evaluate_and_decide(registry, current, current, frames, margin=0.0)
    assert decision.promote and candidate["overall"]["AP"] == scored["overall"]["AP"]
    decision, _, _ = evaluate_and_decide(registry, current, current, frames, margin=-1.0, confidence=0)
    assert not decision.promote and "worse than current" in decision.reason
    # the same model is not worse beyond noise: its people are matched exactly as well
    decision, _, _ = evaluate_and_decide(registry, current, current, frames, margin=-1.0)
    assert decision.promote and "not beyond noise: per-person OKS +0.0000" in decision.reason
    assert "oks" not in candidate  # the per-person figures decide; they are not stored
    decision, _, _ = evaluate_and_decide(registry, current, None, frames)
    assert decision.promote and decision.reason == "no current model"
