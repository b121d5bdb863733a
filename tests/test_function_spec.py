"""function.yaml: CVAT's annotations from the schema, and a build that CVAT can use."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from cals.schema import Schema
from cals.serving.function_spec import function_spec, main, with_spec
from tests.test_function_helpers import FUNCTION_DIR, ROOT

FILES = [FUNCTION_DIR / "function.yaml", FUNCTION_DIR / "function-gpu.yaml"]


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


def test_deploy_script_runs_nuctl_as_cvat_does(tmp_path):
    """A recording nuctl: project cvat, the staged function with cals sources, CVAT's network."""
    log = tmp_path / "calls"
    fake = tmp_path / "nuctl"
    fake.write_text(f'#!/bin/bash\necho "$@" >> {log}\n'
                    f'if [ "$1" = deploy ]; then ls "$5" "$5/cals-src" >> {log};'
                    f' grep -e "path: " -e "_URL=" "$7" >> {log}; fi\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"),
           "CALS_POINT_THRESHOLD": "0.4", "CALS_POSE_URL": "https://example.org/pose.pth"}
    result = subprocess.run(["bash", str(ROOT / "serverless" / "deploy.sh"), "--gpu"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
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


def test_deploy_script_reads_the_env_file_under_the_shell(tmp_path):
    """make deploy-function passes deploy/.env: its values apply unless the shell set them."""
    log = tmp_path / "calls"
    fake = tmp_path / "nuctl"
    fake.write_text(f'#!/bin/bash\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env_file = tmp_path / ".env"
    env_file.write_text(f"# comment\nCALS_NUCLIO_NETWORK=my_cvat_net\nCALS_POINT_THRESHOLD=0.2\n"
                        f"CALS_REGISTRY_HOST={tmp_path / 'from-file'}\nCALS_MAX_PIXELS=\nCALS_DETECTOR_SCORE=$(touch {tmp_path / 'pwned'})\n")
    env = {"PATH": "/usr/bin:/bin", "NUCTL": str(fake), "CALS_POINT_THRESHOLD": "0.5"}
    result = subprocess.run(["bash", str(ROOT / "serverless" / "deploy.sh"), "--env-file", str(env_file)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert '{"attributes": {"network": "my_cvat_net"}}' in calls
    assert "--env CALS_POINT_THRESHOLD=0.5" in calls and "CALS_POINT_THRESHOLD=0.2" not in calls
    assert "CALS_MAX_PIXELS" not in calls  # empty in the file: the function.yaml default stays
    assert (tmp_path / "from-file").is_dir() and not (tmp_path / "pwned").exists()
