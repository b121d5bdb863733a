"""function.yaml: CVAT's annotations from the schema, and a build that CVAT can use."""
from __future__ import annotations

import json
import shlex
import socket
import subprocess

import pytest
import yaml

from cals.schema import Schema
from cals.serving.function_spec import function_spec, main, with_spec
from tests.nuclio_dashboard import NuclioDashboard
from tests.test_function_helpers import FUNCTION_DIR, ROOT

FILES = [FUNCTION_DIR / "function.yaml", FUNCTION_DIR / "function-gpu.yaml"]
# What `nuctl version` prints (nuclio pkg/nuctl/command/version.go: "Client version:\n%#v\n" of the label line)
NUCTL_VERSION = 'Client version:\n"Label: {}, Git commit: 4e1b8a2c, OS: linux, Arch: amd64, Go version: go1.21.13"'


@pytest.fixture
def dashboard():
    """Nuclio's dashboard at the release CVAT v2.23.1 and v2.24 pin (1.13.0); deploy.sh asks it its version."""
    with NuclioDashboard([], version="1.13.0") as server:
        yield server


def fake_nuctl(tmp_path, version: str, on_call: str = ""):
    """A nuctl of release `version` that logs each other call to $LOG (tmp_path/calls), then runs `on_call`."""
    log = tmp_path / "calls"
    fake = tmp_path / "nuctl"
    fake.write_text(f'#!/bin/bash\nLOG={log}\nif [ "$1" = version ]; then printf "%s\\n" '
                    f'{shlex.quote(NUCTL_VERSION.format(version))}; exit 0; fi\necho "$@" >> "$LOG"\n{on_call}\n')
    fake.chmod(0o755)
    return fake, log


def deploy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "serverless" / "deploy.sh"), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=120)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_committed_spec_is_what_the_schema_derives(path, schema):
    doc = yaml.safe_load(path.read_text())
    annotations = doc["metadata"]["annotations"]
    assert annotations["type"] == "detector" and annotations["name"]
    assert doc["spec"]["description"] and doc["spec"]["handler"] == "main:handler"
    spec = json.loads(annotations["spec"])
    assert spec == function_spec(schema)
    assert [s["name"] for s in spec[0]["sublabels"]] == schema.names
    env = {e["name"]: e["value"] for e in doc["spec"]["env"]}
    assert {"CALS_REGISTRY", "CALS_DETECTOR", "CALS_INIT_CHECKPOINT"} <= set(env)
    mount = doc["spec"]["volumes"][0]["volumeMount"]["mountPath"]
    assert env["CALS_REGISTRY"] == mount  # the registry is the volume shared with the trainer


def test_spec_check_fails_when_the_schema_changes(schema, tmp_path):
    renamed = Schema.from_dict({**schema.to_dict(), "points": [
        {**p, "name": "sacrum"} if p["name"] == "hip" else p for p in schema.to_dict()["points"]],
        "edges": [[("sacrum" if n == "hip" else n) for n in e] for e in schema.to_dict()["edges"]]})
    copy = tmp_path / "function.yaml"
    copy.write_text(FILES[0].read_text())
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(yaml.safe_dump(renamed.to_dict()))
    assert main(["--check", str(copy)]) == 0
    assert main(["--check", "--schema", str(schema_file), str(copy)]) == 1
    assert main(["--schema", str(schema_file), str(copy)]) == 0  # regenerates in place
    regenerated = json.loads(yaml.safe_load(copy.read_text())["metadata"]["annotations"]["spec"])
    assert "sacrum" in [s["name"] for s in regenerated[0]["sublabels"]]
    assert with_spec(copy.read_text(), renamed) == copy.read_text()


def test_gpu_file_differs_only_where_it_must():
    cpu, gpu = (yaml.safe_load(p.read_text()) for p in FILES)
    assert gpu["spec"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {e["name"]: e["value"] for e in gpu["spec"]["env"]}["CALS_DEVICE"] == "cuda:0"
    assert cpu["metadata"]["annotations"]["spec"] == gpu["metadata"]["annotations"]["spec"]
    assert cpu["metadata"]["name"] != gpu["metadata"]["name"]


def test_deploy_script_says_when_nuctl_is_missing(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "serverless" / "deploy.sh")], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "NUCTL": str(tmp_path / "nuctl")})
    assert result.returncode == 1 and "nuctl not found" in result.stderr


def test_deploy_script_runs_nuctl_as_cvat_does(tmp_path, dashboard):
    """A recording nuctl: project cvat, the staged function with cals sources, CVAT's network."""
    fake, log = fake_nuctl(tmp_path, "1.13.5", 'if [ "$1" = deploy ]; then ls "$5" "$5/cals-src" >> "$LOG";'
                                               ' grep -e "path: " -e "_URL=" "$7" >> "$LOG"; fi')
    env = {"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"), "CALS_NUCLIO_DASHBOARD_URL": dashboard.url,
           "CALS_POINT_THRESHOLD": "0.4", "CALS_POSE_URL": "https://example.org/pose.pth"}
    result = deploy("--gpu", env=env)
    assert result.returncode == 0, result.stderr
    assert f"nuctl 1.13.5 matches Nuclio's dashboard 1.13.0 ({dashboard.url})" in result.stdout  # a patch may differ
    calls = log.read_text()
    assert "create project cvat" in calls
    assert "--project-name cvat" in calls and "function-gpu.yaml" in calls
    assert '{"attributes": {"network": "cvat_cvat"}}' in calls
    assert "--env CALS_POINT_THRESHOLD=0.4" in calls
    assert "main.py" in calls and "pyproject.toml" in calls and "requirements" in calls
    assert f"path: {tmp_path / 'reg'}" in calls
    assert "CALS_POSE_URL=https://example.org/pose.pth" in calls
    assert "CALS_DETECTOR_URL=https://download.openmmlab.com/" in calls  # default kept
    assert (tmp_path / "reg").is_dir()


def test_deploy_script_reads_the_env_file_under_the_shell(tmp_path, dashboard):
    """make deploy-function passes deploy/.env: its values apply unless the shell set them."""
    fake, log = fake_nuctl(tmp_path, "1.13.0")
    env_file = tmp_path / ".env"
    env_file.write_text(f"# comment\nCALS_NUCLIO_NETWORK=my_cvat_net\nCALS_POINT_THRESHOLD=0.2\n"
                        f"CALS_NUCLIO_DASHBOARD_URL={dashboard.url}\n"
                        f"CALS_REGISTRY_HOST={tmp_path / 'from-file'}\nCALS_MAX_PIXELS=\nCALS_DETECTOR_SCORE=$(touch {tmp_path / 'pwned'})\n")
    result = deploy("--env-file", str(env_file), env={"NUCTL": str(fake), "CALS_POINT_THRESHOLD": "0.5"})
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert '{"attributes": {"network": "my_cvat_net"}}' in calls
    assert "--env CALS_POINT_THRESHOLD=0.5" in calls and "CALS_POINT_THRESHOLD=0.2" not in calls
    assert "CALS_MAX_PIXELS" not in calls  # empty in the file: the function.yaml default stays
    assert (tmp_path / "from-file").is_dir() and not (tmp_path / "pwned").exists()


def test_deploy_stops_when_nuctl_is_another_nuclio_release(tmp_path, dashboard):
    """CVAT's current releases pin Nuclio 1.15.x, v2.24 pins 1.13.0: a nuctl of the other one deploys nothing."""
    fake, log = fake_nuctl(tmp_path, "1.15.9")
    result = deploy(env={"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"),
                         "CALS_NUCLIO_DASHBOARD_URL": dashboard.url})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr  # one line, naming both releases and the fix
    assert "nuctl is Nuclio 1.15.9" in result.stderr and f"dashboard at {dashboard.url} is 1.13.0" in result.stderr
    assert "install nuctl 1.13.0 from https://github.com/nuclio/nuclio/releases/tag/1.13.0" in result.stderr
    assert not log.exists() and not (tmp_path / "reg").exists()  # no project, no deploy, no registry folder
    assert ("GET", "/api/versions") in [(m, p) for m, p, _ in dashboard.requests]


def test_deploy_says_when_the_dashboard_cannot_be_reached(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    fake, log = fake_nuctl(tmp_path, "1.13.0")
    result = deploy(env={"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"),
                         "CALS_NUCLIO_DASHBOARD_URL": url})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot reach Nuclio's dashboard at {url}/api/versions" in result.stderr
    assert "set CALS_NUCLIO_DASHBOARD_URL" in result.stderr
    assert not log.exists()
