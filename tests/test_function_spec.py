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
from tests.test_function_helpers import DETECTOR, FUNCTION_DIR, ROOT, worker_threads

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


# ---- pretrained files: pinned, and installable offline from local files ------------------------------------

def _build_env(doc: dict) -> dict[str, str]:
    return dict(d["value"].split("=", 1) for d in doc["spec"]["build"]["directives"]["preCopy"] if d["kind"] == "ENV")


def _check_run(doc: dict) -> str:
    """The postCopy RUN that installs and checks the pretrained files (before any pip install)."""
    runs = [d["value"] for d in doc["spec"]["build"]["directives"]["postCopy"] if d["kind"] == "RUN"]
    assert "cals.model.pretrained" in runs[0] and "pip install" not in runs[0]
    return runs[0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_build_downloads_the_pinned_files_and_checks_them(path):
    from cals.model.pretrained import DETECTOR, POSE

    doc = yaml.safe_load(path.read_text())
    build = _build_env(doc)
    assert build["CALS_POSE_URL"] == POSE.url and build["CALS_DETECTOR_URL"] == DETECTOR.url
    assert build["CALS_POSE_SHA256"] == build["CALS_DETECTOR_SHA256"] == ""  # the pins of cals/model/pretrained.py
    assert "curl" not in str(doc["spec"]["build"])  # nothing reaches the image unchecked
    run = _check_run(doc)
    assert "--all" in run and "/opt/nuclio/models" in run
    env = {e["name"]: e["value"] for e in doc["spec"]["env"]}
    assert env["CALS_INIT_CHECKPOINT"] == f"/opt/nuclio/models/{POSE.file}"
    assert f"{env['CALS_DETECTOR']}/end2end.onnx" == f"/opt/nuclio/models/{DETECTOR.file}"
    assert POSE.file == "rtmpose-m_aic-coco_body17.pth"  # named for what it is: AIC+COCO, COCO's 17 points
    assert POSE.sha256 == "5e55be2a03f6e5dcd14d088afc4ae5afe94a4f9de93c22e5deb725ad0eee899d"
    assert DETECTOR.sha256 == "b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd"


def test_the_detector_pin_is_the_shared_detectors_sha256():
    from cals.model.pretrained import DETECTOR, sha256_of
    from tests.test_function_helpers import DETECTOR as SHARED_DETECTOR

    if not SHARED_DETECTOR.is_file():
        pytest.skip(f"{SHARED_DETECTOR} not present")
    assert sha256_of(SHARED_DETECTOR) == DETECTOR.sha256


def test_the_builds_check_installs_from_urls_and_stops_on_a_mismatch(tmp_path):
    """The postCopy RUN exactly as written, in a models folder of this machine, with small files."""
    import hashlib
    import sys
    from pathlib import Path

    from tests.test_pretrained import detector_zip, http_folder

    www = tmp_path / "www"
    www.mkdir()
    (www / "pose.pth").write_bytes(b"pose weights")
    detector_zip(www / "det.zip", b"detector onnx")
    run = _check_run(yaml.safe_load(FILES[0].read_text())).replace("/opt/nuclio/models", str(tmp_path / "models"))
    with http_folder(www) as url:
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "CALS_POSE_URL": f"{url}/pose.pth",
               "CALS_DETECTOR_URL": f"{url}/det.zip",
               "CALS_POSE_SHA256": hashlib.sha256(b"pose weights").hexdigest(),
               "CALS_DETECTOR_SHA256": hashlib.sha256(b"detector onnx").hexdigest()}
        done = subprocess.run(["bash", "-c", run], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "models" / "rtmpose-m_aic-coco_body17.pth").read_bytes() == b"pose weights"
        assert (tmp_path / "models" / "rtmdet-nano-person" / "end2end.onnx").read_bytes() == b"detector onnx"
        staged = subprocess.run(["bash", "-c", run], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**env, "CALS_POSE_URL": "", "CALS_DETECTOR_URL": ""})
        assert staged.returncode == 0, staged.stderr  # files deploy.sh staged: checked, nothing downloaded
        (tmp_path / "models" / "rtmpose-m_aic-coco_body17.pth").unlink()
        wrong = subprocess.run(["bash", "-c", run], cwd=ROOT, env={**env, "CALS_POSE_SHA256": ""},
                               capture_output=True, text=True, timeout=120)  # the real pin
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith("cals: error: RTMPose-m checkpoint")
    assert "expected 5e55be2a03f6e5dcd14d088afc4ae5afe94a4f9de93c22e5deb725ad0eee899d" in wrong.stderr
    assert not (tmp_path / "models" / "rtmpose-m_aic-coco_body17.pth").exists()


def _keeping_nuctl(tmp_path):
    """fake_nuctl that keeps a copy of the build context it is given (deploy.sh removes its own)."""
    fake, _ = fake_nuctl(tmp_path, "1.13.0", f'if [ "$1" = deploy ]; then cp -r "$5" {tmp_path / "context"}; fi')
    return fake, tmp_path / "context"


def test_offline_deploy_stages_local_files_and_downloads_nothing(tmp_path, dashboard):
    import hashlib

    from tests.test_pretrained import detector_zip

    fake, context = _keeping_nuctl(tmp_path)
    (tmp_path / "pose.pth").write_bytes(b"pose weights")
    env = {"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"), "CALS_NUCLIO_DASHBOARD_URL": dashboard.url,
           "CALS_POSE_FILE": str(tmp_path / "pose.pth"),
           "CALS_DETECTOR_FILE": str(detector_zip(tmp_path / "det.zip", b"detector onnx")),
           "CALS_POSE_SHA256": hashlib.sha256(b"pose weights").hexdigest(),
           "CALS_DETECTOR_SHA256": hashlib.sha256(b"detector onnx").hexdigest()}
    result = deploy(env=env)
    assert result.returncode == 0, result.stderr
    assert (context / "models" / "rtmpose-m_aic-coco_body17.pth").read_bytes() == b"pose weights"
    assert (context / "models" / "rtmdet-nano-person" / "end2end.onnx").read_bytes() == b"detector onnx"
    build = _build_env(yaml.safe_load((context / "function.yaml").read_text()))
    assert build["CALS_POSE_URL"] == build["CALS_DETECTOR_URL"] == ""  # the build's check only checks them
    assert build["CALS_POSE_SHA256"] == env["CALS_POSE_SHA256"]
    assert build["CALS_DETECTOR_SHA256"] == env["CALS_DETECTOR_SHA256"]


def test_offline_deploy_refuses_a_file_that_is_not_the_pinned_one(tmp_path, dashboard):
    fake, context = _keeping_nuctl(tmp_path)
    (tmp_path / "pose.pth").write_bytes(b"some other checkpoint")
    env = {"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"), "CALS_NUCLIO_DASHBOARD_URL": dashboard.url,
           "CALS_POSE_FILE": str(tmp_path / "pose.pth")}
    result = deploy(env=env)
    assert result.returncode == 1 and not context.exists()  # nothing deployed
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"cals: error: RTMPose-m checkpoint (AIC+COCO, COCO's 17 points) "
                                    f"{tmp_path / 'pose.pth'} has sha256 ")
    assert "expected 5e55be2a03f6e5dcd14d088afc4ae5afe94a4f9de93c22e5deb725ad0eee899d" in result.stderr
    both = deploy(env={**env, "CALS_POSE_URL": "https://example.org/pose.pth"})
    assert both.returncode == 1 and both.stderr == "deploy.sh: error: set CALS_POSE_FILE or CALS_POSE_URL, not both\n"


# ---- workers: the trigger's numWorkers, CALS_FUNCTION_WORKERS, threads per worker ---------------------------

def _workers(doc: dict) -> tuple[int, int]:
    """(the HTTP trigger's numWorkers, the function's CALS_FUNCTION_WORKERS) of a function.yaml."""
    (trigger,) = doc["spec"]["triggers"].values()
    env = {e["name"]: e["value"] for e in doc["spec"]["env"]}
    return trigger["numWorkers"], int(env["CALS_FUNCTION_WORKERS"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_committed_worker_count_is_the_settings_default(path):
    """Nuclio 1.13 reads numWorkers (maxWorkers is deprecated); the function sizes its threads by the env."""
    from cals.settings import default

    doc = yaml.safe_load(path.read_text())
    assert _workers(doc) == (int(default("CALS_FUNCTION_WORKERS")),) * 2
    (trigger,) = doc["spec"]["triggers"].values()
    assert trigger["kind"] == "http" and "maxWorkers" not in trigger


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_deploy_sets_the_workers_from_CALS_FUNCTION_WORKERS(tmp_path, dashboard, gpu):
    """The deployed spec's numWorkers and CALS_FUNCTION_WORKERS are the setting's; nothing else changes."""
    fake, context = _keeping_nuctl(tmp_path)
    name = "function-gpu.yaml" if gpu else "function.yaml"
    result = deploy(*(["--gpu"] if gpu else []), env={"NUCTL": str(fake), "CALS_REGISTRY_HOST": str(tmp_path / "reg"),
                                                      "CALS_NUCLIO_DASHBOARD_URL": dashboard.url,
                                                      "CALS_FUNCTION_WORKERS": "3"})
    assert result.returncode == 0, result.stderr
    assert "workers: 3" in result.stdout
    deployed = (context / name).read_text()
    assert _workers(yaml.safe_load(deployed)) == (3, 3)
    committed = (FUNCTION_DIR / name).read_text().replace("/var/lib/cals/registry", str(tmp_path / "reg"))
    changed = [(a, b) for a, b in zip(committed.splitlines(), deployed.splitlines()) if a != b]
    assert len(changed) == 2 and len(committed.splitlines()) == len(deployed.splitlines()), changed


def test_deploy_takes_the_workers_from_the_env_file_and_refuses_a_bad_count(tmp_path, dashboard):
    fake, context = _keeping_nuctl(tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text(f"CALS_FUNCTION_WORKERS=2\nCALS_NUCLIO_DASHBOARD_URL={dashboard.url}\n"
                        f"CALS_REGISTRY_HOST={tmp_path / 'reg'}\n")
    result = deploy("--env-file", str(env_file), env={"NUCTL": str(fake)})
    assert result.returncode == 0, result.stderr
    assert _workers(yaml.safe_load((context / "function.yaml").read_text())) == (2, 2)
    for bad in ("0", "two", "2.5"):
        refused = deploy("--env-file", str(env_file), env={"NUCTL": str(fake), "CALS_FUNCTION_WORKERS": bad})
        assert refused.returncode == 1 and refused.stderr == (
            f"deploy.sh: error: CALS_FUNCTION_WORKERS must be a positive integer (Nuclio workers), got '{bad}'\n")
    assert (tmp_path / "calls").read_text().count("deploy --project-name") == 1  # the refused ones deployed nothing


@pytest.fixture(scope="module")
def onnx_registry(tmp_path_factory):
    """A registry whose current version (the `cpu` config, random weights) has its model.onnx."""
    from bench.serving import version_folder
    from cals.model.train import version_files
    from cals.registry import Registry

    root = tmp_path_factory.mktemp("workers")
    version = version_folder("cpu", root)
    registry = Registry(root / "registry")
    registry.promote(registry.add(version_files(version), meta={"config": "cpu"}).id)
    return registry


@pytest.mark.skipif(not DETECTOR.is_file(), reason="../shared detector not present")
@pytest.mark.parametrize("workers, threads", [(1, None), (2, None), (2, 3)], ids=["1-worker", "2-workers", "CALS_THREADS"])
def test_each_worker_process_gets_its_share_of_the_cores(onnx_registry, workers, threads):
    """init_context in a fresh process, as each Nuclio worker runs it: torch, the detector and the pose
    model's runtime (OpenVINO, auto's first for an fp32 model) all get cores / CALS_FUNCTION_WORKERS
    (CALS_THREADS overrides)."""
    import os

    cores = len(os.sched_getaffinity(0))
    env = {"CALS_REGISTRY": str(onnx_registry.root), "CALS_DETECTOR": str(DETECTOR), "CALS_DEVICE": "cpu",
           "CALS_FUNCTION_WORKERS": str(workers), **({"CALS_THREADS": str(threads)} if threads else {})}
    share = threads or max(1, cores // workers)
    # OpenVINO runs at most one thread per core, whatever CALS_THREADS asks
    assert worker_threads(env) == {"torch": share, "detector": share, "pose": min(share, cores),
                                   "backend": "openvino"}
