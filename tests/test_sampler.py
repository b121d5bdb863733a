"""The sampler service over HTTP: auth, precise 4xx, rank, rounds in CVAT, promotion notices, CVAT down."""
import time

import pytest

from cals.sampling.rounds import round_tasks
from cals.errors import CalsError
from cals.settings import SamplerEnv
from sampler import create_app
from sampler.__main__ import main

from tests.test_pool_scoring import blurred_pool  # noqa: F401  (module fixture: 16 frames, 8 blurred)

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(cvat_server):
    return cvat_server.settings()


@pytest.fixture
def config(trained, blurred_pool, tmp_path, settings):
    # no pool predictions after a promotion notice unless a test waits for them: a job thread still
    # predicting when a later test forks (generate_dataset's workers) can leave the child deadlocked
    return {"API_TOKEN": TOKEN, "REGISTRY": str(trained[0].root), "DATA": str(tmp_path / "data"),
            "POOL": str(blurred_pool), "SAMPLER_STRATEGY": "least_confidence", "PSEUDO_LABELS": False, **settings}


@pytest.fixture
def client(config):
    return create_app(config).test_client()


def wait_job(client, url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(url).get_json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {url} did not finish")


def test_configuration_errors_name_the_variable(config, monkeypatch):
    for key, message in (("API_TOKEN", "CALS_API_TOKEN"), ("REGISTRY", "CALS_REGISTRY")):
        with pytest.raises(CalsError, match=message):
            create_app({**config, key: None})
    with pytest.raises(CalsError, match="CALS_SAMPLER_STRATEGY: unknown strategy; choose one of .*, got 'bald'"):
        create_app({**config, "SAMPLER_STRATEGY": "bald"})
    with pytest.raises(CalsError, match="CALS_POOL"):
        create_app({**config, "POOL": "/nowhere"})
    monkeypatch.setenv("CALS_ROUND_SIZE", "many")
    with pytest.raises(CalsError, match="CALS_ROUND_SIZE: Input should be a valid integer"):
        create_app(config)
    monkeypatch.delenv("CALS_ROUND_SIZE")
    monkeypatch.delenv("CALS_CVAT_URL", raising=False)
    with pytest.raises(CalsError, match="CALS_CVAT_URL"):
        create_app({k: v for k, v in config.items() if not k.startswith("CVAT_")})


@pytest.mark.parametrize("body, status, message", [
    (None, 401, "bearer token"),
    ("not json", 400, "JSON object"),
    ({"strategy": "bald"}, 400, "unknown strategy 'bald'"),
    ({"limit": 0}, 400, "'limit' must be a positive integer"),
    ({"limit": True}, 400, "'limit' must be a positive integer"),
    ({"pool": "x"}, 400, "unknown field(s) ['pool']"),
    ({"strategies": "entropy"}, 400, "'strategies' must be a list"),
    ({"project_id": "7"}, 400, "'project_id' must be a positive integer"),
])
def test_bad_rank_requests_get_a_precise_4xx(client, body, status, message):
    kwargs = {"headers": AUTH} if status != 401 else {}
    if isinstance(body, str):
        resp = client.post("/rank", data=body, content_type="application/json", **kwargs)
    else:
        resp = client.post("/rank", json=body or {}, **kwargs)
    assert resp.status_code == status
    assert message in resp.get_json()["error"]


def test_rank_returns_the_ordered_pool_with_every_strategys_scores(client):
    resp = client.post("/rank", json={"strategy": "least_confidence", "strategies": ["entropy", "pose"],
                                      "limit": 5}, headers=AUTH)
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    ranking = data["ranking"]
    assert data["pool_size"] == 16 and len(ranking) == 5 and data["scored_now"] == 16
    assert [r["rank"] for r in ranking] == [1, 2, 3, 4, 5]
    assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
    assert {s.split("(")[0] for s in ranking[0]["scores"]} == {"least_confidence", "entropy", "pose"}
    again = client.post("/rank", json={"strategy": "least_confidence", "strategies": ["entropy", "pose"],
                                       "limit": 5}, headers=AUTH).get_json()
    assert again["scored_now"] == 0 and again["ranking"] == ranking  # served from the cache


def test_round_request_opens_a_round_and_promotion_reuses_it(client, project, cvat_client, config):
    assert client.post("/rounds", json={}, headers=AUTH).status_code == 400  # no project anywhere
    assert client.post("/rounds", json={"project_id": project.id}).status_code == 401
    resp = client.post("/rounds", json={"project_id": project.id, "size": 4, "job_size": 2}, headers=AUTH)
    assert resp.status_code == 202
    job = wait_job(client, resp.get_json()["status_url"])
    assert job["state"] == "done", job
    task = cvat_client.tasks.retrieve(job["result"]["task_id"])
    assert task.name == "round 1" and [f.name for f in task.get_frames_info()] == job["result"]["frames"]

    auto = create_app({**config, "AUTO_OPEN": True, "PROJECT_ID": project.id}).test_client()
    assert auto.post("/notify/promoted", json={"version": "v9-x"}, headers=AUTH).status_code == 404
    assert auto.post("/notify/promoted", json={"project_id": project.id}, headers=AUTH).status_code == 400
    version = config["REGISTRY"] and auto.get("/health").get_json()["version"]
    resp = auto.post("/notify/promoted", json={"version": version, "project_id": None}, headers=AUTH)
    assert resp.status_code == 202
    job = wait_job(auto, resp.get_json()["status_url"])
    assert job["state"] == "done" and job["result"]["created"] is False  # same model: same round
    assert list(round_tasks(cvat_client, project.id)) == [1]
    off = client.post("/notify/promoted", json={"version": version, "project_id": project.id}, headers=AUTH)
    assert off.status_code == 202 and off.get_json()["opening"] is False


def test_a_promotion_notice_predicts_the_pool_for_pseudo_labels(config):
    from cals.sampling.cache import ScoreCache, cache_file
    from cals.data.pool import LocalPool
    from cals.schema import load_schema

    client = create_app({**config, "PSEUDO_LABELS": True}).test_client()
    version = client.get("/health").get_json()["version"]
    resp = client.post("/notify/promoted", json={"version": version}, headers=AUTH)
    assert resp.status_code == 202 and resp.get_json()["opening"] is False
    job = wait_job(client, f"/jobs/{resp.get_json()['predicting']['id']}")
    assert job["state"] == "done" and job["kind"] == "predict", job
    assert job["result"]["version"] == version and job["result"]["predicted_now"] == 16
    cache = ScoreCache(cache_file(config["DATA"]))
    items = list(LocalPool(config["POOL"], load_schema()).items())
    for item in items:  # one cached person per labelled person (the trainer matches them by box)
        people = cache.people(version, item.key)
        assert people is not None and len(people) == len(item.boxes)
    cache.close()
    again = wait_job(client, f"/jobs/{client.post('/notify/promoted', json={'version': version}, headers=AUTH).get_json()['predicting']['id']}")
    assert again["result"]["predicted_now"] == 0  # cached: nothing predicted twice

    off = create_app({**config, "PSEUDO_LABELS": False}).test_client()
    assert off.post("/notify/promoted", json={"version": version}, headers=AUTH).get_json()["predicting"] is None


def test_cvat_unreachable_is_a_clear_error_and_opens_nothing(config, project, cvat_client):
    client = create_app({**config, "CVAT_URL": "http://127.0.0.1:9"}).test_client()
    resp = client.post("/rank", json={"project_id": project.id}, headers=AUTH)
    assert resp.status_code == 502 and "unreachable" in resp.get_json()["error"]
    resp = client.post("/rounds", json={"project_id": project.id}, headers=AUTH)
    job = wait_job(client, resp.get_json()["status_url"])
    assert job["state"] == "failed" and "unreachable" in job["error"]
    assert round_tasks(cvat_client, project.id) == {}


def test_health_says_cvat_is_down_and_recovers_without_a_restart(config):
    from tests.cvat_server import CvatTestServer

    first = CvatTestServer().start()
    client = create_app({**config, "CVAT_URL": first.url, "CVAT_USER": first.user,
                         "CVAT_PASSWORD": first.password}).test_client()
    client.application.extensions["cals_sampler"].cvat.ttl = 0  # measure at every request
    up = client.get("/health").get_json()
    first.stop()  # CVAT goes away (a restart, an upgrade, the network)
    down = client.get("/health")
    again = CvatTestServer(port=first.port).start()  # and comes back at the same address
    try:
        back = client.get("/health").get_json()
    finally:
        again.stop()
    assert up["status"] == "ok" and up["cvat"]["reachable"] is True and up["cvat"]["error"] is None
    assert down.status_code == 200 and down.get_json()["status"] == "degraded"
    assert down.get_json()["cvat"]["reachable"] is False and first.url in down.get_json()["cvat"]["error"]
    assert back["status"] == "ok" and back["cvat"]["reachable"] is True


def test_cvat_pool_rank_needs_a_project(config):
    client = create_app({**config, "POOL": "cvat"}).test_client()
    resp = client.post("/rank", json={}, headers=AUTH)
    assert resp.status_code == 400 and "'project_id' is required" in resp.get_json()["error"]


def test_unknown_endpoint_and_method_answer_json(client):
    assert client.get("/nope").get_json()["error"] == "no endpoint /nope"
    assert client.get("/rank").status_code == 405
    assert "entropy" in client.get("/strategies").get_json()


def test_round_command_needs_its_settings(monkeypatch, capsys):
    for var in ("CALS_API_TOKEN", "CALS_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["round", "--project", "1"]) == 2
    assert "CALS_REGISTRY" in capsys.readouterr().err


def test_round_command_opens_the_next_round(monkeypatch, capsys, cvat_server, trained, blurred_pool, project,
                                            cvat_client, tmp_path):
    import json

    env = {"CALS_REGISTRY": str(trained[0].root), "CALS_DATA": str(tmp_path), "CALS_POOL": str(blurred_pool),
           "CALS_CVAT_URL": cvat_server.url, "CALS_CVAT_USER": cvat_server.user,
           "CALS_CVAT_PASSWORD": cvat_server.password, "CALS_CVAT_POLL_SECONDS": "0.05"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CALS_API_TOKEN", raising=False)  # the command serves nothing: no token needed
    args = ["round", "--project", str(project.id), "--size", "3", "--job-size", "3", "--strategy", "least_confidence"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["created"] and out["number"] == 1 and len(out["frames"]) == 3
    assert cvat_client.tasks.retrieve(out["task_id"]).name == "round 1"
    assert main(["round", "--project", str(project.id), "--strategy", "bald"]) == 2
    assert "unknown strategy 'bald'" in capsys.readouterr().err


def test_cals_round_asks_the_running_sampler_and_waits(config, project, cvat_client, tmp_path, capsys):
    """`make round`: the host's command talks to the sampler service over HTTP with the env file's token."""
    import json

    from cals.cli import main as cals_main
    from tests.trainer_helpers import serve

    env = tmp_path / ".env"
    env.write_text(f"CALS_API_TOKEN={TOKEN}\nCALS_PROJECT_ID={project.id}\n")
    with serve(create_app(config)) as url:
        assert cals_main(["round", "--env-file", str(env), "--sampler-url", url, "--size", "3",
                          "--job-size", "3"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["created"] and out["number"] == 1 and len(out["frames"]) == 3
        assert cvat_client.tasks.retrieve(out["task_id"]).name == "round 1"
        env.write_text(f"CALS_API_TOKEN=wrong\nCALS_PROJECT_ID={project.id}\n")
        assert cals_main(["round", "--env-file", str(env), "--sampler-url", url]) == 1
        assert "HTTP 401" in capsys.readouterr().err
    assert cals_main(["round", "--env-file", str(env), "--sampler-url", url]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_the_sampler_follows_promotions_as_the_function_does(trained, tmp_path, settings, monkeypatch):
    """One model watcher for both: a promoted version is picked up; one that fails to load is not,
    and the model before it keeps scoring."""
    import shutil

    from cals.registry import Registry
    from sampler.service import Sampler
    from tests.test_function_helpers import copy_version

    released = []  # each switch hands the replaced model's heap back (cals/model/memory.py)
    monkeypatch.setattr("cals.serving.watcher.release_freed_memory", lambda: released.append(1) or True)
    registry = Registry(shutil.copytree(trained[0].root, tmp_path / "registry"))
    sampler = Sampler(SamplerEnv.load(REGISTRY=str(registry.root), DATA=str(tmp_path / "data"), **settings))
    first = sampler.predictor()
    assert first.version_id == registry.current().id and sampler.predictor() is first  # loaded once
    new = copy_version(trained[1], registry)
    registry.promote(new.id)
    assert sampler.predictor().version_id == new.id and len(released) == 2
    assert sampler.previous_predictor(new.id).version_id == first.version_id
    broken = copy_version(trained[1], registry)
    (broken.path / "checkpoint.pth").write_bytes(b"corrupt")
    registry.promote(broken.id)
    assert sampler.predictor().version_id == new.id and len(released) == 2  # nothing switched
