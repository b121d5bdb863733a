"""Trainer sidecar without training: configuration, webhook security and deduplication, the API's
errors, safe extraction of exports, the labelled set and the run queue."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from cvat_sdk import models

from cals.cvat.export import ExportError, ExportedJob, read_export
from cals.training.labelled_set import LabelledSet
from cals.training.queue import RunQueue
from cals.cvat.safe_zip import UnsafeArchiveError, extract
from tests.trainer_helpers import make_task, zip_bytes
from trainer import create_app
from cals.settings import SettingsError

SECRET = "whsec-" + "x" * 24
TOKEN = "api-token-for-tests"


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    from cals.synth import generate_dataset

    root = tmp_path_factory.mktemp("trainer-frames")
    generate_dataset(root, 6, seed=11, progress=False, workers=1)
    return root


def config(cvat_server, tmp_path: Path, **extra) -> dict:
    return {"CVAT_URL": cvat_server.url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
            "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": SECRET, "API_TOKEN": TOKEN,
            "REGISTRY": str(tmp_path / "registry"), "DATA": str(tmp_path / "data"), "WORKER": "0", **extra}


@pytest.fixture
def app(cvat_server, tmp_path):
    return create_app(config(cvat_server, tmp_path))


def signed(body: bytes, secret: str = SECRET) -> dict:
    return {"X-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


# --- configuration -------------------------------------------------------------------------------

def test_missing_configuration_names_the_variables(tmp_path):
    with pytest.raises(SettingsError, match="CALS_WEBHOOK_SECRET.*CALS_API_TOKEN"):
        create_app({"CVAT_URL": "http://cvat:8080", "CVAT_USER": "u", "CVAT_PASSWORD": "p",
                    "REGISTRY": str(tmp_path / "r"), "DATA": str(tmp_path / "d")})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")}
    done = subprocess.run([sys.executable, "-m", "trainer"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "CALS_CVAT_URL" in done.stderr and "CALS_WEBHOOK_SECRET" in done.stderr


@pytest.mark.parametrize("key, value, message", [
    ("TRAIN_ITERS", "many", "CALS_TRAIN_ITERS: Input should be a valid integer"),
    ("JOB_TRIGGER", "state:done", "CALS_JOB_TRIGGER: unknown job trigger 'state:done'"),
    ("CVAT_URL", "cvat:8080", "CALS_CVAT_URL"),
    ("VAL_FRACTION", "1.5", "CALS_VAL_FRACTION: Input should be less than or equal to 0.99"),
    ("CONFIG", "huge", "CALS_CONFIG: unknown config 'huge'"),
])
def test_wrong_configuration_names_the_variable(cvat_server, tmp_path, key, value, message):
    with pytest.raises(SettingsError, match=message):
        create_app(config(cvat_server, tmp_path, **{key: value}))


def test_wrong_cvat_credentials_stop_the_server_at_start(cvat_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")}
    env.update({f"CALS_{k}": v for k, v in config(cvat_server, tmp_path, CVAT_PASSWORD="wrong").items()})
    done = subprocess.run([sys.executable, "-m", "trainer"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "refused the credentials" in done.stderr


# --- webhooks --------------------------------------------------------------------------------------

@pytest.fixture
def completed_delivery(cvat_client, cvat_server, schema, frames, tmp_path, webhook_receiver):
    """A real signed delivery: the CVAT test server's webhook for a job set to completed."""
    project = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}",
                                           "labels": [schema.cvat_label()]})
    cvat_client.api_client.webhooks_api.create(models.WebhookWriteRequest(
        target_url=webhook_receiver.url, type="project", project_id=project.id, secret=SECRET,
        events=["update:job"], content_type="application/json", enable_ssl=False))
    task = make_task(cvat_client, project.id, frames, ["000000.jpg", "000001.jpg"], tmp_path)
    (job,) = task.get_jobs()
    job.update({"state": "completed"})
    delivery = webhook_receiver.wait_for_job("completed")
    yield delivery, job
    cvat_client.projects.remove_by_ids([project.id])


def test_unsigned_and_forged_webhooks_are_refused_and_queue_nothing(app, completed_delivery):
    delivery, _ = completed_delivery
    client = app.test_client()
    body = delivery.body
    for headers in ({"Content-Type": "application/json"}, signed(body, "not-the-secret"),
                    {**signed(body), "X-Signature-256": "sha1=" + "0" * 40}):
        response = client.post("/webhooks/cvat", data=body, headers=headers)
        assert response.status_code == 401
        assert "X-Signature-256" in response.get_json()["error"]
    tampered = body.replace(b'"completed"', b'"completed" ', 1)
    assert client.post("/webhooks/cvat", data=tampered, headers=delivery.headers).status_code == 401
    queue = RunQueue(app.extensions["cals_trainer"].settings.queue_db)
    assert queue.pending_jobs() == [] and queue.list() == []


def test_redelivered_event_queues_one_job_and_a_later_completion_queues_again(app, completed_delivery):
    delivery, job = completed_delivery
    client = app.test_client()
    first = client.post("/webhooks/cvat", data=delivery.body, headers=delivery.headers)
    again = client.post("/webhooks/cvat", data=delivery.body, headers=delivery.headers)
    assert (first.status_code, first.get_json()["status"]) == (202, "queued")
    assert (again.status_code, again.get_json()["status"]) == (200, "duplicate")
    queue = app.extensions["cals_trainer"].queue
    assert queue.pending_jobs() == [job.id]
    run = queue.claim_next()
    assert run.targets["jobs"] == [job.id] and queue.pending_jobs() == []

    # the job is reopened and completed again later: its labels may have changed, so it is queued
    later = json.loads(delivery.body)
    later["job"]["updated_date"] = "2099-01-01T00:00:00.000000Z"
    body = json.dumps(later).encode()
    response = client.post("/webhooks/cvat", data=body, headers=signed(body))
    assert response.get_json()["status"] == "queued" and queue.pending_jobs() == [job.id]


def test_editing_a_completed_job_is_not_a_second_completion(app, completed_delivery, cvat_client,
                                                            webhook_receiver):
    """CVAT sends update:job for every annotation save; on a completed job only updated_date changed."""
    delivery, job = completed_delivery
    client = app.test_client()
    assert client.post("/webhooks/cvat", data=delivery.body, headers=delivery.headers).status_code == 202
    seen = len(webhook_receiver.deliveries)
    cvat_client.jobs.retrieve(job.id).remove_annotations()
    edit = webhook_receiver.wait_for(seen + 1)[seen]
    assert edit.json["job"]["state"] == "completed"
    assert set(edit.json.get("before_update") or {"updated_date": None}) == {"updated_date"}
    response = client.post("/webhooks/cvat", data=edit.body, headers=edit.headers)
    assert response.get_json()["status"] == "ignored"
    assert app.extensions["cals_trainer"].queue.pending_jobs() == [job.id]


def test_updates_that_do_not_reach_the_trigger_are_ignored(cvat_server, tmp_path):
    app = create_app(config(cvat_server, tmp_path, JOB_TRIGGER="stage:acceptance"))
    client = app.test_client()
    job = {"id": 7, "task_id": 3, "project_id": 1, "state": "completed", "stage": "annotation",
           "updated_date": "2026-01-01T00:00:00Z"}
    for payload in ({"event": "update:job", "job": job, "before_update": {"state": "new"}},
                    {"event": "update:job", "job": {**job, "stage": "acceptance"}, "before_update": {"assignee": None}},
                    {"event": "create:task", "task": {"id": 3}}):
        body = json.dumps(payload).encode()
        response = client.post("/webhooks/cvat", data=body, headers=signed(body))
        assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    body = json.dumps({"event": "update:job", "job": {**job, "stage": "acceptance"},
                       "before_update": {"stage": "validation"}}).encode()
    assert client.post("/webhooks/cvat", data=body, headers=signed(body)).status_code == 202
    assert app.extensions["cals_trainer"].queue.pending_jobs() == [7]
    for bad in (b"{not json", b"[1, 2]", json.dumps({"event": "update:job", "job": {"id": "7"}}).encode()):
        response = client.post("/webhooks/cvat", data=bad, headers=signed(bad))
        assert response.status_code == 400 and response.get_json()["error"]


# --- API -----------------------------------------------------------------------------------------------

def test_train_endpoint_needs_the_token_and_precise_bodies(app):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/train", json={"jobs": [1]}).status_code == 401
    assert client.post("/train", json={"jobs": [1]}, headers={"Authorization": "Bearer nope"}).status_code == 401
    for body, message in (([1], "JSON object"), ({"job": [1]}, "unknown field(s) ['job']"),
                          ({"jobs": ["1"]}, "'jobs' must be a list of positive integer ids"),
                          ({"tasks": [0]}, "'tasks' must be"), ({"jobs": []}, "at least one of")):
        response = client.post("/train", json=body, headers=auth)
        assert response.status_code == 400 and message in response.get_json()["error"], body
    response = client.post("/train", json={"jobs": [5, 5], "tasks": [2]}, headers=auth)
    assert response.status_code == 202
    run = response.get_json()
    assert run["state"] == "queued" and run["targets"] == {"projects": [], "tasks": [2], "jobs": [5]}
    assert client.get(f"/runs/{run['id']}").get_json()["id"] == run["id"]
    assert client.get("/runs").get_json()["runs"][0]["id"] == run["id"]
    assert client.get("/runs/999").status_code == 404
    assert "unknown state" in client.get("/runs?state=done").get_json()["error"]
    assert client.get("/runs?limit=x").status_code == 400
    assert client.get("/nothing").get_json() == {"error": "no endpoint /nothing"}
    assert client.delete("/runs").get_json() == {"error": "DELETE is not allowed on /runs"}
    assert client.get("/health").get_json()["queued_runs"] == 1
    assert client.get("/healthz").get_json() == client.get("/health").get_json()  # the older name still answers
    assert client.get("/models").get_json() == {"current": None, "versions": []}


# --- exports, labelled set, queue ------------------------------------------------------------------

@pytest.mark.parametrize("members, message", [
    ({"../evil.txt": b"x"}, "zip-slip"), ({"/etc/evil.txt": b"x"}, "zip-slip"),
    ({"images/default/../../../evil.txt": b"x"}, "zip-slip"),
])
def test_zip_slip_archives_write_nothing(tmp_path, members, message):
    archive = tmp_path / "export.zip"
    archive.write_bytes(zip_bytes({"annotations/person_keypoints_default.json": b"{}", **members}))
    dest = tmp_path / "out" / "content"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(archive, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()


def test_corrupt_and_incomplete_archives_fail_clearly(tmp_path, schema):
    archive = tmp_path / "export.zip"
    archive.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UnsafeArchiveError, match="not a readable zip"):
        extract(archive, tmp_path / "a")
    link = zipfile.ZipInfo("images/default/link.jpg")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "b")
    archive.write_bytes(zip_bytes({"images/default/a.jpg": b"x"}))
    extract(archive, tmp_path / "c")
    with pytest.raises(ExportError, match="no annotations/person_keypoints_default.json"):
        read_export(tmp_path / "c", schema, source="export of job 3")


def _export(schema, job_id: int, task_id: int, frames: dict[str, float], tmp: Path) -> ExportedJob:
    """A job export where each frame has one person whose points all sit at x = frames[name]."""
    images, anns, files = [], [], {}
    for i, (name, x) in enumerate(frames.items(), 1):
        images.append({"id": i, "file_name": name, "width": 64, "height": 64})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, 1.0, 10.0, 10.0], "area": 100,
                     "keypoints": [x, 2.0, 2] * schema.num_keypoints})
        files[name] = tmp / name
        files[name].write_bytes(name.encode())
    coco = {"images": images, "annotations": anns, "categories": [schema.coco_category()]}
    return ExportedJob(job_id, task_id, 1, coco, files)


def test_labelled_set_latest_labels_win_and_validation_only_grows(tmp_path, schema):
    labelled = LabelledSet(tmp_path / "set", schema, val_fraction=0.25)
    first = _export(schema, 10, 4, {f"f{i}.jpg": 5.0 for i in range(8)}, tmp_path)
    report = labelled.merge([first], run_id=1)
    assert report.new_frames == 8 and report.sizes["val"]["images"] == 2
    val_keys = {im["cvat"]["key"] for im in labelled.load("val")["images"]}

    again = _export(schema, 10, 4, {"f0.jpg": 30.0, "f5.jpg": 30.0}, tmp_path)
    more = _export(schema, 11, 4, {f"g{i}.jpg": 5.0 for i in range(4)}, tmp_path)
    report = labelled.merge([again, more], run_id=2)
    assert (report.new_frames, report.updated_frames) == (4, 2)
    docs = {s: labelled.load(s) for s in ("train", "val")}
    assert val_keys <= {im["cvat"]["key"] for im in docs["val"]["images"]}
    assert sum(len(d["images"]) for d in docs.values()) == 12
    assert sum(len(d["annotations"]) for d in docs.values()) == 12  # replaced, not duplicated
    f0 = next((s, im) for s, d in docs.items() for im in d["images"] if im["cvat"]["frame"] == "f0.jpg")
    (ann,) = [a for a in docs[f0[0]]["annotations"] if a["image_id"] == f0[1]["id"]]
    assert ann["keypoints"][0] == 30.0
    assert [p["run"] for p in f0[1]["provenance"]] == [1, 2]
    assert f0[1]["cvat"] == {"key": "task-4/f0.jpg", "task_id": 4, "frame": "f0.jpg", "job_id": 10,
                             "project_id": 1}
    assert (labelled.split_root(f0[0]) / "images" / f0[1]["file_name"]).read_bytes() == b"f0.jpg"


def test_interrupted_run_is_marked_and_its_work_queued_again(tmp_path):
    queue = RunQueue(tmp_path / "q.sqlite3")
    queue.record_job_event("k1", 3, 1, 1)
    run = queue.claim_next()
    queue.update_progress(run.id, "training", {"training": {"iteration": 4}})
    queue.record_job_event("k2", 4, 1, 1)  # completed during the run: waits for the next one

    restarted = RunQueue(tmp_path / "q.sqlite3")  # a new process after a crash
    (retry,) = restarted.recover()
    old = restarted.get(run.id)
    assert old.state == "interrupted" and "phase 'training'" in old.error
    assert retry.targets["jobs"] == [3] and retry.state == "queued"
    nxt = restarted.claim_next()
    assert nxt.id == retry.id and nxt.targets["jobs"] == [3, 4]
