"""`cals setup-project` and `cals check` (make setup-project / make check) against the CVAT test server:
the project, label and webhook they leave are exactly what the trainer and sampler rely on."""
from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from cals import env_file
from cals.cli import main
from cals.cvat.pool import skeleton_point_index
from cals.cvat.project_setup import label_problems
from cals.startup_checks import FUNCTIONS, check_function, check_label, check_webhook, check_writable
from tests.trainer_helpers import make_task, serve
from trainer import create_app
from cals.settings import TrainerEnv
from tests.trainer_helpers import env_file_settings

FUNCTION_YAML = Path(__file__).parents[1] / "serverless" / "spine-pose" / "nuclio" / "function.yaml"
ENV_EXAMPLE = Path(__file__).parents[1] / "deploy" / ".env.example"


@pytest.fixture
def env_path(tmp_path, cvat_server) -> Path:
    """A deploy/.env as an admin fills it in from .env.example: CVAT's address and credentials only."""
    path = tmp_path / ".env"
    path.write_text(f"# CVAT\nCALS_CVAT_URL={cvat_server.url}\nCALS_CVAT_USER={cvat_server.user}\n"
                    f"CALS_CVAT_PASSWORD={cvat_server.password}\nCALS_PROJECT_NAME=cals-{uuid.uuid4().hex[:8]}\n"
                    "CALS_PROJECT_ID=\nCALS_WEBHOOK_SECRET=\n")
    return path


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    for key in ("CALS_PROJECT_ID", "CALS_WEBHOOK_SECRET", "CALS_API_TOKEN", "CALS_PROJECT_NAME", "CALS_TRAINER_URL",
                "CALS_REGISTRY", "CALS_REGISTRY_HOST", "CALS_CVAT_TOKEN"):
        monkeypatch.delenv(key, raising=False)


def setup(env_path: Path, *extra: str) -> int:
    return main(["setup-project", "--env-file", str(env_path), *extra])


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def hooks_of(client, project_id: int) -> list:
    return client.api_client.webhooks_api.list(project_id=project_id)[0].results


def trainer_config(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The trainer's settings as docker compose builds them from the same env file."""
    return {**env_file_settings(env, TrainerEnv), "REGISTRY": str(tmp_path / "registry"), "DATA": str(tmp_path / "data"), "WORKER": "0"}


def test_setup_creates_project_label_and_webhook_and_stores_secrets(env_path, cvat_client, schema, capsys):
    trainer_url = env_file.read(ENV_EXAMPLE)["CALS_TRAINER_URL"]  # the address compose gives the trainer
    assert setup(env_path, "--trainer-url", trainer_url) == 0
    env = env_file.read(env_path)
    project = cvat_client.projects.retrieve(int(env["CALS_PROJECT_ID"]))
    assert project.name == env["CALS_PROJECT_NAME"]
    labels = project.get_labels()
    assert label_problems(labels, schema) == []
    # the sampler and the trainer map every CVAT point to a schema point by name
    assert sorted(skeleton_point_index(labels, schema).values()) == list(range(schema.num_keypoints))
    (hook,) = hooks_of(cvat_client, project.id)
    assert hook.target_url == f"{trainer_url}/webhooks/cvat"
    assert [str(e.value) for e in hook.events] == ["update:job"] and hook.is_active
    assert len(env["CALS_WEBHOOK_SECRET"]) >= 32 and len(env["CALS_API_TOKEN"]) >= 32
    assert env["CALS_WEBHOOK_SECRET"] != env["CALS_API_TOKEN"]
    assert "project" in capsys.readouterr().out


def test_a_trainer_address_cvat_would_refuse_is_named_before_anything_changes(env_path, cvat_client, capsys):
    """CVAT refuses webhook targets like http://cals-trainer:8010 ("Enter a valid URL."): say so up front."""
    assert setup(env_path, "--trainer-url", "http://cals-trainer:8010") != 0
    err = capsys.readouterr().err
    assert "'cals-trainer' has no dot" in err and "CALS_TRAINER_URL" in err
    name = env_file.read(env_path)["CALS_PROJECT_NAME"]
    assert not [p for p in cvat_client.projects.list() if p.name == name]


def test_setup_again_changes_nothing(env_path, cvat_client):
    assert setup(env_path) == 0
    first = env_path.read_text()
    project_id = int(env_file.read(env_path)["CALS_PROJECT_ID"])
    assert setup(env_path) == 0
    assert env_path.read_text() == first
    assert len(hooks_of(cvat_client, project_id)) == 1
    labels = cvat_client.projects.retrieve(project_id).get_labels()
    assert len([lab for lab in labels if getattr(lab, "parent_id", None) is None]) == 1


def test_setup_adds_the_label_to_an_existing_project_by_id(env_path, cvat_client, schema):
    project = cvat_client.projects.create({"name": "existing", "labels": [{"name": "car", "type": "rectangle"}]})
    env_file.store(env_path, "CALS_PROJECT_ID", str(project.id))
    assert setup(env_path) == 0
    labels = cvat_client.projects.retrieve(project.id).get_labels()
    assert {lab.name for lab in labels if getattr(lab, "parent_id", None) is None} == {"car", schema.label}
    assert label_problems(labels, schema) == []


def test_setup_refuses_to_edit_a_different_skeleton(env_path, cvat_client, schema, capsys):
    spec = schema.cvat_label()
    spec["sublabels"] = spec["sublabels"][:17]  # body only: a project made before the spine points
    spec["svg"] = "".join(e for e in re.findall(r"<[^<]+</\w+>", spec["svg"])
                          if not re.search(r'data-(node-(from|to)|element-id)="(1[89]|2\d)"', e))
    project = cvat_client.projects.create({"name": "old", "labels": [spec]})
    env_file.store(env_path, "CALS_PROJECT_ID", str(project.id))
    assert setup(env_path) == 1
    err = capsys.readouterr().err
    assert "lacks point(s) neck_03" in err and "does not edit existing labels" in err
    assert hooks_of(cvat_client, project.id) == []  # nothing done to a project it cannot use
    assert "CALS_WEBHOOK_SECRET=\n" in env_path.read_text()


def _attributes(label) -> dict[str, tuple[str, list[str]]]:
    return {a.name: (str(a.input_type.value), list(a.values)) for a in label.attributes}


def test_setup_makes_the_points_to_check_attributes(env_path, cvat_client, schema):
    assert setup(env_path) == 0
    labels = cvat_client.projects.retrieve(int(env_file.read(env_path)["CALS_PROJECT_ID"])).get_labels()
    skeleton = next(lab for lab in labels if lab.name == schema.label)
    assert _attributes(skeleton) == {"check": ("checkbox", ["false"]), "spine_confidence": ("number", ["0", "100", "1"])}
    points = [lab for lab in labels if getattr(lab, "parent_id", None) == skeleton.id] or skeleton.sublabels
    assert len(points) == schema.num_keypoints
    assert all(_attributes(p) == {"check": ("checkbox", ["false"]), "confidence": ("number", ["0", "100", "1"])}
               for p in points)


def test_a_project_made_before_the_attributes_gets_one_line_and_is_left_as_it_is(env_path, cvat_client, schema,
                                                                                 capsys):
    spec = schema.cvat_label()
    del spec["attributes"]
    for sub in spec["sublabels"]:
        del sub["attributes"]
    project = cvat_client.projects.create({"name": "before-checks", "labels": [spec]})
    env_file.store(env_path, "CALS_PROJECT_ID", str(project.id))
    before = [(lab.id, lab.name, len(lab.attributes)) for lab in project.get_labels()]
    assert setup(env_path) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "points-to-check" in line]
    assert "lacks the points-to-check attributes (skeleton: check, spine_confidence; 26 point(s): check, " \
           "confidence)" in line and "new CALS_PROJECT_NAME" in line, out
    assert [(lab.id, lab.name, len(lab.attributes)) for lab in
            cvat_client.projects.retrieve(project.id).get_labels()] == before


def test_check_webhook_says_why_cvat_could_not_deliver(env_path, cvat_client):
    """Nothing listens at the target: the delivery fails as it does behind CVAT's smokescreen proxy."""
    assert setup(env_path, "--trainer-url", "http://127.0.0.1:9") == 0
    project_id = int(env_file.read(env_path)["CALS_PROJECT_ID"])
    result = check_webhook(cvat_client, project_id, "http://127.0.0.1:9/webhooks/cvat")
    assert not result.ok and "SMOKESCREEN_OPTS=--allow-address=127.0.0.1:9 " in result.message  # that one only
    missing = check_webhook(cvat_client, project_id, "http://elsewhere:8010/webhooks/cvat")
    assert not missing.ok and "run make setup-project" in missing.message


def test_setup_reports_an_unknown_project_id(env_path, capsys):
    env_file.store(env_path, "CALS_PROJECT_ID", "999999")
    assert setup(env_path) == 1
    assert "no project 999999" in capsys.readouterr().err


def test_setup_reports_wrong_credentials(env_path, capsys):
    env_file.store(env_path, "CALS_CVAT_PASSWORD", "wrong")
    assert setup(env_path) == 1
    assert "refused the credentials" in capsys.readouterr().err


def test_check_passes_once_trainer_runs_with_the_stored_secret(env_path, cvat_server, nuclio, cvat_client,
                                                               synthetic, tmp_path, capsys):
    """The webhook setup registered reaches the real trainer, which accepts CVAT's signature and
    queues a completed job of the project."""
    assert setup(env_path, "--trainer-url", "http://127.0.0.1:1") == 0  # nothing listens there yet
    env = env_file.read(env_path)
    nuclio.deploy(FUNCTION_YAML.read_text())
    try:
        with serve(create_app(trainer_config(env, tmp_path))) as trainer_url:
            env_file.store(env_path, "CALS_TRAINER_URL", trainer_url)
            assert setup(env_path) == 0  # moves the webhook to the running trainer
            capsys.readouterr()
            assert main(["check", "--env-file", str(env_path)]) == 0, capsys.readouterr()
            out = capsys.readouterr().out
            assert "[ok] webhook: CVAT delivered a ping" in out and "[FAIL]" not in out
            names = [im["file_name"] for im in json.loads((synthetic / "val" / "annotations.json").read_text())[
                "images"][:2]]
            task = make_task(cvat_client, int(env["CALS_PROJECT_ID"]), synthetic / "val", names, tmp_path)
            (job,) = task.get_jobs()
            job.update({"state": "completed"})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _get(trainer_url + "/runs")["pending_jobs"]:
                time.sleep(0.05)
            assert _get(trainer_url + "/runs")["pending_jobs"] == [job.id]
            # a trainer with another secret refuses CVAT's ping, and check says so
            wrong = trainer_config({**env, "CALS_WEBHOOK_SECRET": "not-the-secret"}, tmp_path / "other")
        with serve(create_app(wrong)) as other_url:
            env_file.store(env_path, "CALS_TRAINER_URL", other_url)
            assert setup(env_path) == 0
            assert main(["check", "--env-file", str(env_path)]) == 1
            assert "[FAIL] webhook" in capsys.readouterr().out
    finally:
        nuclio.remove("cals-spine-pose")


def test_check_names_what_is_missing(env_path, cvat_client, schema, nuclio, tmp_path, capsys):
    assert setup(env_path) == 0
    project_id = int(env_file.read(env_path)["CALS_PROJECT_ID"])
    assert main(["check", "--env-file", str(env_path), "--no-ping"]) == 1
    out = capsys.readouterr().out
    assert "[ok] label" in out
    assert "[FAIL] function: function 'cals-spine-pose' or 'cals-spine-pose-gpu' is not deployed" in out
    # a label someone changed by hand: the sampler could not read that project
    other = cvat_client.projects.create({"name": "other", "labels": [{"name": schema.label, "type": "points"}]})
    assert not check_label(cvat_client, other.id, schema).ok
    assert "not a skeleton" in check_label(cvat_client, other.id, schema).message
    assert check_label(cvat_client, project_id, schema).ok


def test_check_function_matches_the_schema(nuclio, cvat_server, cvat_client, schema):
    gpu = FUNCTION_YAML.with_name("function-gpu.yaml")
    assert FUNCTIONS == tuple(yaml.safe_load(f.read_text())["metadata"]["name"] for f in (FUNCTION_YAML, gpu))
    nuclio.deploy(gpu.read_text())
    try:
        assert check_function(cvat_client, None, schema).ok  # whichever build is deployed
        assert not check_function(cvat_client, "cals-spine-pose", schema).ok
    finally:
        nuclio.remove("cals-spine-pose-gpu")
    nuclio.deploy(FUNCTION_YAML.read_text())
    try:
        assert check_function(cvat_client, "cals-spine-pose", schema).ok
        assert not check_function(cvat_client, "cals-spine-pose-gpu", schema).ok
        if cvat_server.server is not None:  # a CVAT without CVAT_SERVERLESS: the REST API lists, the UI hides
            cvat_server.server.app.config["CVAT_SERVERLESS"] = False
            try:
                result = check_function(cvat_client, "cals-spine-pose", schema)
            finally:
                cvat_server.server.app.config["CVAT_SERVERLESS"] = True
            assert not result.ok and "CVAT_SERVERLESS=1" in result.message
        fewer = FUNCTION_YAML.read_text().replace('"name": "hip",', '"name": "pelvis",')
        nuclio.deploy(fewer)
        result = check_function(cvat_client, None, schema)
        assert not result.ok and "redeploy" in result.message
    finally:
        nuclio.remove("cals-spine-pose")


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "registry", "CALS_REGISTRY").ok
    (tmp_path / "file").write_text("not a folder")
    result = check_writable(tmp_path / "file" / "registry", "CALS_REGISTRY")
    assert not result.ok and "is not writable" in result.message and "file/registry" in result.message


def test_secrets_from_the_shell_are_written_where_compose_reads_them(env_path, monkeypatch, capsys):
    """docker compose's env_file sees only the file: secrets CVAT now signs with must be in it."""
    monkeypatch.setenv("CALS_WEBHOOK_SECRET", "from-the-shell-" + "x" * 20)
    assert setup(env_path) == 0
    assert env_file.read(env_path)["CALS_WEBHOOK_SECRET"] == "from-the-shell-" + "x" * 20
    assert "start the trainer and sampler" in capsys.readouterr().out


def test_a_malformed_project_id_is_named(env_path, capsys):
    env_file.store(env_path, "CALS_PROJECT_ID", "seven")
    assert setup(env_path) == 1
    assert "CALS_PROJECT_ID: must be a CVAT project id (a positive integer), got 'seven'" in capsys.readouterr().err
