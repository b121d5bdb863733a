"""The trainer trains in a child process: with CALS_TRAIN_PROCS=2 a round is one torchrun job that
registers one version; a training process that dies (as under the OOM killer) fails only its run
while the service answers and the next run works; a stopping trainer leaves no training process
behind and its run is queued again; a trainer killed outright takes its training process along."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cals.registry import Registry
from tests.trainer_helpers import (HttpClient, generated_frames, make_task, serve, small_current_model,
                                   wait_for_run)
from trainer import create_app

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

TOKEN = "token-subprocess"
NAMES = [f"{i:06d}.jpg" for i in range(6)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return generated_frames(tmp_path_factory.mktemp("subprocess-frames"), len(NAMES), seed=53)


@pytest.fixture(scope="module")
def base_registry(frames, tmp_path_factory) -> Path:
    return small_current_model(frames, tmp_path_factory.mktemp("subprocess-registry"), iters=3)


@pytest.fixture
def job_id(cvat_client, project, frames, tmp_path) -> int:
    (job,) = make_task(cvat_client, project.id, frames, NAMES, tmp_path).get_jobs()
    return job.id


def config(cvat_server, base_registry: Path, tmp_path: Path, **extra) -> dict:
    registry = shutil.copytree(base_registry, tmp_path / "registry")
    return {"CVAT_URL": cvat_server.url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
            "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": "whsec-" + "s" * 24, "API_TOKEN": TOKEN,
            "REGISTRY": str(registry), "DATA": str(tmp_path / "data"), "TRAIN_ITERS": "6",
            "TRAIN_BATCH_SIZE": "2", "PROMOTE_MARGIN": "1.0", "WORKER_POLL_SECONDS": "0.1", **extra}


def post_run(api: HttpClient, job: int) -> int:
    response = api.post("/train", {"jobs": [job]})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def wait_for_training(api: HttpClient, run_id: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not api.get(f"/runs/{run_id}").get_json()["progress"].get("training", {}).get("iteration"):
        assert time.monotonic() < deadline, f"run {run_id} never reached training"
        time.sleep(0.1)


def training_processes(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (a run's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            pass
    return found


def test_two_processes_train_one_round_and_register_one_version(cvat_server, base_registry, job_id, tmp_path):
    settings = config(cvat_server, base_registry, tmp_path, TRAIN_PROCS="2")
    before = [v.id for v in Registry(settings["REGISTRY"]).list()]
    app = create_app(settings)
    seen: list[dict] = []
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        try:
            run = wait_for_run(api, post_run(api, job_id), seen=seen, timeout=300)
        finally:
            app.extensions["cals_trainer"].worker.stop(30)
    assert run["state"] == "succeeded", run["error"]
    registry = Registry(settings["REGISTRY"])
    new = [v.id for v in registry.list() if v.id not in before]
    assert new == [run["result"]["model"]["version"]]
    assert json.loads((registry.get(new[0]).path / "meta.json").read_text())["world_size"] == 2
    live = [s["progress"]["training"] for s in seen if s["phase"] == "training" and s["progress"].get("training")]
    assert live and live[0]["max_iterations"] == 6, "progress was never visible while training"
    assert run["progress"]["training"]["iteration"] == 6
    assert not list((tmp_path / "data" / "runs").glob("run-*"))


def test_a_killed_training_process_fails_only_its_run(cvat_server, base_registry, job_id, tmp_path):
    settings = config(cvat_server, base_registry, tmp_path, TRAIN_ITERS="12")
    current = Registry(settings["REGISTRY"]).current().id
    versions = [v.id for v in Registry(settings["REGISTRY"]).list()]
    app = create_app(settings)
    state = app.extensions["cals_trainer"]
    update, killed = state.queue.update_progress, []

    def kill_at_first_iteration(run_id, phase, progress):  # as the kernel's OOM killer would
        update(run_id, phase, progress)
        if not killed and progress.get("training", {}).get("iteration"):
            killed.append(state.worker.training.pid)
            os.kill(killed[0], signal.SIGKILL)

    state.queue.update_progress = kill_at_first_iteration
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        try:
            failed = wait_for_run(api, post_run(api, job_id), timeout=300)
            health = api.get("/health").get_json()
            after = Registry(settings["REGISTRY"])
            assert (after.current().id, [v.id for v in after.list()]) == (current, versions)
            done = wait_for_run(api, post_run(api, job_id), timeout=300)
        finally:
            state.worker.stop(30)
    assert killed and failed["state"] == "failed"
    assert "training process failed (killed by signal 9 (SIGKILL))" in failed["error"]
    assert health["status"] == "ok" and health["worker_alive"] and health["current_model"] == current
    assert done["state"] == "succeeded", done["error"]
    assert Registry(settings["REGISTRY"]).list()[-1].id == done["result"]["model"]["version"]
    assert not list(Path(settings["REGISTRY"]).glob(".tmp-*"))


def test_a_stopping_trainer_leaves_no_training_process_and_requeues_the_run(
        cvat_server, base_registry, job_id, tmp_path):
    settings = config(cvat_server, base_registry, tmp_path, TRAIN_PROCS="2", TRAIN_ITERS="100000")
    current = Registry(settings["REGISTRY"]).current().id
    app = create_app(settings)
    worker = app.extensions["cals_trainer"].worker
    with serve(app) as url:
        api = HttpClient(url, token=TOKEN)
        run_id = post_run(api, job_id)
        wait_for_training(api, run_id)
        run_folder = str(tmp_path / "data" / "runs" / f"run-{run_id}")
        assert len(training_processes(run_folder)) == 3  # torchrun and its two ranks
        worker.stop(5)  # shorter than the run: its training is terminated
        assert training_processes(run_folder) == []
        run = wait_for_run(api, run_id, timeout=30)
        (retry,) = api.get("/runs?state=queued").get_json()["runs"]
    assert not worker.alive
    assert run["state"] == "interrupted" and "'training'" in run["error"]
    assert retry["trigger"] == f"retry of interrupted run {run_id}" and retry["targets"]["jobs"] == [job_id]
    assert not Path(run_folder).exists() and Registry(settings["REGISTRY"]).current().id == current


KILLED_PARENT = """
import sys
from cals.registry import Registry
from cals.training.train_process import TrainProcess


registry, frames, work = sys.argv[1:]
training = TrainProcess(1)
training(frames, Registry(registry), init="current", iters=100000, batch_size=2, work_dir=work,
         on_progress=lambda state: print(training.pid, flush=True))
"""


def test_a_training_process_dies_with_the_trainer(base_registry, frames, tmp_path):
    """The trainer killed outright (SIGKILL, no atexit): its training process must not train on and
    register a version behind the back of the trainer that starts next."""
    registry = shutil.copytree(base_registry, tmp_path / "registry")
    work = tmp_path / "work"
    marker = str(work / "train")  # in the training process's --work-dir, not in the trainer's argv
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(registry), str(frames), str(work)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        child = int(parent.stdout.readline())
        assert training_processes(marker) == [child]
    finally:
        parent.kill()
        parent.wait(30)
    deadline = time.monotonic() + 10
    while (orphans := training_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in orphans:  # a failed test must not leave it training
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], "the training process outlived the trainer"
    assert [v.id for v in Registry(registry).list()] == [v.id for v in Registry(base_registry).list()]
