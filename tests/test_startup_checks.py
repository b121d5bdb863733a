"""The trainer and the sampler refuse to start, with a message naming the problem, when CVAT is
unreachable or refuses them, the project's skeleton label is missing or different, or a volume
is not writable; a missing Nuclio function is a warning only."""
from __future__ import annotations

import logging

import pytest

import sampler.__main__ as sampler_main
import trainer.__main__ as trainer_main


@pytest.fixture
def service_env(monkeypatch, tmp_path, cvat_server):
    env = {"CALS_CVAT_URL": cvat_server.url, "CALS_CVAT_USER": cvat_server.user,
           "CALS_CVAT_PASSWORD": cvat_server.password, "CALS_WEBHOOK_SECRET": "s" * 32, "CALS_API_TOKEN": "t" * 32,
           "CALS_REGISTRY": str(tmp_path / "registry"), "CALS_DATA": str(tmp_path / "data")}
    (tmp_path / "registry").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CALS_PROJECT_ID", raising=False)
    served = []
    from cals import http_service

    # the production server is not started: each service's start records that it got that far
    monkeypatch.setattr(trainer_main, "serve", lambda load_app, **kw: served.append("trainer"))
    monkeypatch.setattr(http_service, "serve", lambda load_app, **kw: served.append("sampler"))
    return served


def start(service: str) -> int:
    return trainer_main.main() if service == "trainer" else sampler_main.main(["serve"])


@pytest.mark.parametrize("service", ["trainer", "sampler"])
def test_starts_when_all_is_right_and_warns_about_the_function(service, service_env, cvat_client, project, nuclio,
                                                                monkeypatch, caplog):
    monkeypatch.setenv("CALS_PROJECT_ID", str(project.id))
    with caplog.at_level(logging.INFO):
        assert start(service) == 0
    assert service_env == [service]
    assert "function 'cals-spine-pose' or 'cals-spine-pose-gpu' is not deployed" in caplog.text


@pytest.mark.parametrize("service", ["trainer", "sampler"])
def test_refuses_a_project_without_the_skeleton(service, service_env, cvat_client, monkeypatch, capsys):
    project = cvat_client.projects.create({"name": "no skeleton", "labels": [{"name": "car", "type": "rectangle"}]})
    monkeypatch.setenv("CALS_PROJECT_ID", str(project.id))
    assert start(service) == 2
    err = capsys.readouterr().err
    assert f"{service} cannot start" in err and "no label named 'person'" in err
    assert service_env == []


@pytest.mark.parametrize("service", ["trainer", "sampler"])
def test_refuses_wrong_credentials(service, service_env, monkeypatch, capsys):
    monkeypatch.setenv("CALS_CVAT_PASSWORD", "wrong")
    assert start(service) == 2
    assert "refused the credentials" in capsys.readouterr().err
    assert service_env == []


@pytest.mark.parametrize("service", ["trainer", "sampler"])
def test_refuses_unreachable_cvat(service, service_env, monkeypatch, capsys):
    monkeypatch.setenv("CALS_CVAT_URL", "http://127.0.0.1:9")
    assert start(service) == 2
    assert "unreachable" in capsys.readouterr().err
    assert service_env == []


def test_trainer_refuses_a_data_volume_it_cannot_write(service_env, tmp_path, monkeypatch, capsys):
    (tmp_path / "mounted-file").write_text("a file where a folder should be")
    monkeypatch.setenv("CALS_DATA", str(tmp_path / "mounted-file"))
    assert start("trainer") == 2
    err = capsys.readouterr().err
    assert "CALS_DATA" in err and "mounted-file" in err
    assert service_env == []
