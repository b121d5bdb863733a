"""Catch-up against CVAT: a completed job whose webhook never reached the trainer is queued once;
an update a webhook already brought is not queued again; a later completion is. Runs made from
caught-up jobs say so; a CVAT that cannot be reached costs a report line, not the trainer."""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid

import pytest
from cvat_sdk.api_client import models

from cals.cvat.trigger import JobTrigger, update_key
from cals.training.catch_up import CatchUp, catch_up
from cals.training.queue import RunQueue
from tests.trainer_helpers import generated_frames, make_task

TRIGGER = JobTrigger.parse("state:completed")
FRAMES = [f"{i:06d}.jpg" for i in range(12)]  # more than CVAT's default page of 10
NAMES = FRAMES[:3]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return generated_frames(tmp_path_factory.mktemp("catch-up-frames"), len(FRAMES), seed=61)


@pytest.fixture
def jobs(cvat_client, project, frames, tmp_path):
    """Three one-frame jobs of one task in the project."""
    task = make_task(cvat_client, project.id, frames, NAMES, tmp_path, jobs=[[n] for n in NAMES])
    return sorted(task.get_jobs(), key=lambda j: j.id)


def test_catch_up_queues_each_missed_completion_once_and_never_one_a_webhook_brought(
        cvat_client, project, jobs, tmp_path, webhook_receiver):
    queue = RunQueue(tmp_path / "queue.sqlite3")
    cvat_client.api_client.webhooks_api.create(models.WebhookWriteRequest(
        target_url=webhook_receiver.url, type="project", project_id=project.id, secret="s" * 24,
        events=["update:job"], content_type="application/json", enable_ssl=False))
    heard, missed, _still_open = jobs
    heard.update({"state": "completed"})
    delivery = webhook_receiver.wait_for_job("completed")  # the trainer got this one ...
    job = delivery.json["job"]
    assert queue.record_job_event(update_key(job["id"], TRIGGER, job["updated_date"]), job["id"],
                                  job["task_id"], project.id) == "queued"
    missed.update({"state": "completed"})  # ... and not this one (down, restarting, proxy broken)

    report = catch_up(cvat_client, project.id, TRIGGER, queue)
    assert report.listed == 2 and report.queued == [missed.id] and report.error is None
    assert sorted(queue.pending_jobs()) == sorted([heard.id, missed.id])
    run = queue.claim_next()
    assert run.trigger == "webhook, catch-up" and run.targets["jobs"] == sorted([heard.id, missed.id])

    again = catch_up(cvat_client, project.id, TRIGGER, queue)  # the next interval: nothing new
    assert again.listed == 2 and again.queued == [] and queue.pending_jobs() == []

    missed.update({"state": "in progress"})
    missed.update({"state": "completed"})  # reopened and completed again: new labels to learn
    assert catch_up(cvat_client, project.id, TRIGGER, queue).queued == [missed.id]
    assert queue.pending_jobs() == [missed.id]  # never the job still open
    queue.finish(run.id, result={})
    assert queue.claim_next().trigger == "catch-up"


def test_catch_up_lists_past_cvat_default_page_of_ten(cvat_client, project, frames, tmp_path):
    task = cvat_client.tasks.create_from_data(
        {"name": f"many-{uuid.uuid4().hex[:6]}", "project_id": project.id, "segment_size": 1},
        [frames / "images" / n for n in FRAMES])
    for job in task.get_jobs():
        job.update({"state": "completed"})
    queue = RunQueue(tmp_path / "queue.sqlite3")
    report = catch_up(cvat_client, project.id, TRIGGER, queue)
    assert report.listed == len(FRAMES) == len(report.queued) == len(set(report.queued))


def test_a_failing_catch_up_is_reported_and_retried_and_the_old_queue_is_upgraded(tmp_path):
    legacy = tmp_path / "queue.sqlite3"  # a queue written before catch-up: pending has no source
    db = sqlite3.connect(legacy)
    db.executescript("CREATE TABLE pending (job_id INTEGER PRIMARY KEY, task_id INTEGER, project_id INTEGER, "
                     "queued_at TEXT NOT NULL); INSERT INTO pending VALUES (5, 1, 1, '2026-01-01');")
    db.commit()
    db.close()
    queue = RunQueue(legacy)
    assert queue.claim_next().trigger == "webhook"  # the waiting job came by webhook, and still runs

    @contextlib.contextmanager
    def down():
        raise ConnectionRefusedError("CVAT at http://cvat:8080 refused the connection")
        yield

    late = CatchUp(down, 1, TRIGGER, queue, interval=300)
    assert late.due()
    report = late.run()
    assert "ConnectionRefusedError" in report.error and "refused the connection" in report.error
    assert not late.due() and 299 < late.seconds_to_next() <= 300 and queue.pending_jobs() == []
    assert json.loads(json.dumps(report.as_dict()))["error"] == report.error


def test_update_keys_agree_between_a_webhook_payload_and_a_job_listing():
    from datetime import datetime, timedelta, timezone

    listed = datetime(2026, 12, 7, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert update_key(3, TRIGGER, "2026-12-07T03:04:05.123456Z") == update_key(3, TRIGGER, listed) \
        == "job:3:state:completed:2026-12-07T03:04:05.123456Z"
    assert update_key(3, TRIGGER, "2026-12-07T04:04:05.123456+01:00") == update_key(3, TRIGGER, listed)
    assert update_key(3, TRIGGER, "2026-12-07T03:04:05Z") == update_key(3, TRIGGER, listed.replace(microsecond=0))
    assert update_key(3, TRIGGER, listed + timedelta(microseconds=1)) != update_key(3, TRIGGER, listed)
    assert update_key(3, TRIGGER, None) is None and update_key(3, TRIGGER, "yesterday") is None


def test_while_cvat_is_down_the_trainer_says_so_and_catches_up_when_it_is_back(tmp_path):
    from tests.cvat_server import CvatTestServer
    from trainer import create_app

    cvat = CvatTestServer().start()
    app = create_app({"CVAT_URL": cvat.url, "CVAT_USER": cvat.user, "CVAT_PASSWORD": cvat.password,
                      "WEBHOOK_SECRET": "whsec-" + "o" * 24, "API_TOKEN": "token-outage", "DATA": str(tmp_path / "data"),
                      "REGISTRY": str(tmp_path / "registry"), "PROJECT_ID": "1", "CATCHUP_SECONDS": "0.2",
                      "WORKER_POLL_SECONDS": "0.1"})
    state = app.extensions["cals_trainer"]
    state.cvat.ttl = 0
    client = app.test_client()
    try:
        cvat.stop()
        down = _health_when(client, lambda h: (h["catch_up"]["last"] or {}).get("error"))
        cvat = CvatTestServer(port=cvat.port).start()
        back = _health_when(client, lambda h: h["catch_up"]["last"] and h["catch_up"]["last"]["error"] is None)
    finally:
        state.worker.stop(10)
        cvat.stop()
    assert down["status"] == "degraded" and down["cvat"]["reachable"] is False and cvat.url in down["cvat"]["error"]
    error = down["catch_up"]["last"]["error"]  # CVAT went away before the login, or between it and the listing
    assert f"CVAT at {cvat.url} is unreachable" in error or \
        error.startswith("catch-up could not list the jobs of project 1: CVAT stopped answering")
    assert back["status"] == "ok" and back["cvat"]["reachable"] is True
    assert back["catch_up"]["last"]["listed"] == 0


def _health_when(client, ready, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = client.get("/health").get_json()
        if ready(health):
            return health
        assert time.monotonic() < deadline, f"/health never got there: {health}"
        time.sleep(0.1)
