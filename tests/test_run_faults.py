"""Faults on the CVAT and trainer side that must lose nothing and block nothing:
a job deleted in CVAT before its run exports it fails only itself; a run killed mid-way leaves no
work folder, registry staging dir or half-merged labels once the trainer starts again, and its
requeued run succeeds."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from cals.registry import Registry
from cals.training.queue import RunQueue
from tests.trainer_helpers import (Outage, cvat_proxy, generated_frames, make_task, small_current_model,
                                   wait_for_run)
from trainer import create_app

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

NAMES = [f"{i:06d}.jpg" for i in range(6)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return generated_frames(tmp_path_factory.mktemp("run-faults-frames"), len(NAMES), seed=41)


@pytest.fixture(scope="module")
def base_registry(frames, tmp_path_factory) -> Path:
    """A promoted model of a few iterations: the current model each test starts from."""
    return small_current_model(frames, tmp_path_factory.mktemp("run-faults-registry"), iters=5)


@pytest.fixture
def config(cvat_server, base_registry, tmp_path) -> dict:
    registry = shutil.copytree(base_registry, tmp_path / "registry")
    return {"CVAT_URL": cvat_server.url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
            "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": "whsec-" + "f" * 24, "API_TOKEN": "token-faults",
            "REGISTRY": str(registry), "DATA": str(tmp_path / "data"), "TRAIN_ITERS": "3",
            "PROMOTE_MARGIN": "1.0", "WORKER_POLL_SECONDS": "0.1"}


def post_run(client, jobs: list[int]) -> dict:
    response = client.post("/train", json={"jobs": jobs}, headers={"Authorization": "Bearer token-faults"})
    assert response.status_code == 202, response.get_json()
    return wait_for_run(client, response.get_json()["id"], timeout=300)


def test_a_job_deleted_in_cvat_is_skipped_and_the_others_are_learned(
        cvat_client, project, frames, config, tmp_path):
    kept = make_task(cvat_client, project.id, frames, NAMES[:3], tmp_path)
    gone = make_task(cvat_client, project.id, frames, NAMES[3:], tmp_path)
    (kept_job,), (gone_job,) = kept.get_jobs(), gone.get_jobs()
    gone.remove()  # a job cannot be deleted alone in CVAT: deleting its task is how it disappears

    app = create_app(config)
    client = app.test_client()
    try:
        run = post_run(client, [kept_job.id, gone_job.id])
        alone = post_run(client, [gone_job.id])
    finally:
        app.extensions["cals_trainer"].worker.stop(30)

    assert run["state"] == "succeeded", run["error"]
    assert run["result"]["jobs"] == [kept_job.id]
    (skipped,) = run["result"]["skipped"]
    assert skipped["job"] == gone_job.id and "HTTP 404" in skipped["reason"]
    assert run["result"]["labelled_set"]["new_frames"] == 3 and run["result"]["model"]["version"]
    assert alone["state"] == "failed"
    assert "every job of this run is gone" in alone["error"] and f"job {gone_job.id}" in alone["error"]


# sitecustomize of the training process (the trainer trains in a child): at the rename of a fully
# staged candidate into versions/, the trainer and the training process both die
KILLED_AT_REGISTER = """
import os, signal
from pathlib import Path
real = os.rename

def rename(src, dst, *args, **kwargs):
    if Path(dst).parent.name == "versions":
        Path(os.environ["KILLED_TRAINING_PID"]).write_text(str(os.getpid()))
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)

os.rename = rename
"""

KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
config, point = json.loads(sys.argv[1]), sys.argv[2]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "merge":  # images copied, annotations.json not yet switched
    import cals.training.labelled_set
    cals.training.labelled_set.write_coco = die
from trainer import create_app
create_app({**config, "WORKER": "0"}).extensions["cals_trainer"].worker.run_once()
"""


@pytest.mark.parametrize("point", ["merge", "register"])
def test_a_killed_run_leaves_nothing_behind_and_its_retry_succeeds(
        cvat_client, project, frames, config, tmp_path, point):
    task = make_task(cvat_client, project.id, frames, NAMES[:3], tmp_path)
    (job,) = task.get_jobs()
    data, registry_root = Path(config["DATA"]), Path(config["REGISTRY"])
    before = Registry(registry_root)
    current, versions = before.current().id, [v.id for v in before.list()]
    run = RunQueue(data / "queue.sqlite3").request_run({"jobs": [job.id]}, "test")
    env = dict(os.environ)
    if point == "register":
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "sitecustomize.py").write_text(KILLED_AT_REGISTER)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "site"), env.get("PYTHONPATH")]))
        env["KILLED_TRAINING_PID"] = str(tmp_path / "training.pid")
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_RUN), json.dumps(config), point],
                            capture_output=True, timeout=300, env=env)
    assert killed.returncode == -9, killed.stderr.decode()[-3000:]
    assert list((data / "runs").glob("run-*")), "the killed run should have left its work folder"
    assert leftovers(data, registry_root), "the kill should have left staging files"
    if point == "register":  # the training process runs in a session of its own (start_new_session)
        session = int((tmp_path / "training.pid").read_text())
        assert outliving(session, seconds=10) == [], "a process of the killed training outlived it"

    app = create_app(config)  # the trainer starts again: recover, clean, retry
    client = app.test_client()
    try:
        old = client.get(f"/runs/{run.id}").get_json()
        retry = next(r for r in client.get("/runs").get_json()["runs"]
                     if r["trigger"] == f"retry of interrupted run {run.id}")
        done = wait_for_run(client, retry["id"], timeout=300)
    finally:
        app.extensions["cals_trainer"].worker.stop(30)

    assert old["state"] == "interrupted"
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["labelled_set"]["sizes"]["train"]["images"] + \
        done["result"]["labelled_set"]["sizes"]["val"]["images"] == 3
    assert leftovers(data, registry_root) == []
    after = Registry(registry_root)
    assert [v.id for v in after.list()][:len(versions)] == versions and len(after.list()) == len(versions) + 1
    assert after.get(current).checkpoint.is_file()


KILLED_WRITER = """
import os, signal, sys
from cals.registry import Registry
with Registry(sys.argv[1])._stage() as staged:
    (staged / "checkpoint.pth").write_bytes(b"half")
    print(staged, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_run_removes_a_killed_writers_staging_and_keeps_a_live_ones(
        cvat_client, project, frames, config, tmp_path):
    """Not only a restart: a version writer killed while the trainer serves (a `cals train` of
    someone's, a training process) leaves a staging dir that the trainer's next run removes."""
    task = make_task(cvat_client, project.id, frames, NAMES[:3], tmp_path)
    (job,) = task.get_jobs()
    registry = Registry(config["REGISTRY"])
    app = create_app(config)  # started and cleaned before the writer below is killed
    client = app.test_client()
    try:
        killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(registry.root)], capture_output=True,
                                text=True, timeout=60)
        assert killed.returncode == -9, killed.stderr
        staged = Path(killed.stdout.strip())
        with registry._stage() as live:  # a writer alive through the whole run
            assert staged.is_dir() and staged.parent == registry.root
            run = post_run(client, [job.id])
            assert live.is_dir(), "a live writer's staging dir was removed"
    finally:
        app.extensions["cals_trainer"].worker.stop(30)
    assert run["state"] == "succeeded", run["error"]
    assert not staged.exists()
    assert leftovers(Path(config["DATA"]), registry.root) == [live]  # its writer left it unfinished on purpose


def leftovers(data: Path, registry_root: Path) -> list[Path]:
    """Run folders, registry staging dirs/files and labelled-set files no annotations.json lists."""
    found = [*(data / "runs").glob("run-*"), *registry_root.glob(".tmp-*"), *registry_root.glob(".*.tmp")]
    for split in ("train", "val"):
        root = data / "labelled" / split
        doc = root / "annotations.json"
        kept = {im["file_name"] for im in json.loads(doc.read_text())["images"]} if doc.is_file() else set()
        found += [p for p in (root / "images").glob("*") if p.name not in kept]
        found += list(root.glob("*.tmp"))
    return found


def outliving(session: int, seconds: float) -> list[str]:
    """Processes of `session` still running or holding a lock (any file) after `seconds` at most."""
    deadline = time.monotonic() + seconds
    while True:
        locks = Path("/proc/locks").read_text().split("\n")
        found = []
        for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            pid = stat.parent.parent.name
            if int(fields[3]) == session and (fields[0] != "Z" or any(f" {pid} " in line for line in locks)):
                found.append(f"pid {pid} thread {stat.parent.name} state {fields[0]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# sitecustomize of the training process where no small disk can be mounted: every file opened for
# writing in a registry staging dir fails as a full disk would
FULL_DISK = """
import builtins, errno, os

real = builtins.open

def full(file, mode="r", *args, **kwargs):
    full_disk = os.environ.get("FULL_REGISTRY")
    if full_disk and "w" in mode and "/.tmp-" in str(file) and str(file).startswith(full_disk):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(file, mode, *args, **kwargs)

builtins.open = full
"""


@contextlib.contextmanager
def full_registry_disk(registry: Path, tmp_path: Path, monkeypatch) -> Iterator[Callable[[], None]]:
    """The registry on a disk too small for one more version: a tmpfs where this machine lets the test
    mount one (root), else ENOSPC injected at the training process's writes. Yields `make_room`."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    size_kib = sum(f.stat().st_size for f in registry.rglob("*") if f.is_file()) // 1024 + 2048
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                      capture_output=True).returncode == 0:
        try:
            shutil.copytree(registry, mount / "registry")
            shutil.rmtree(registry)
            registry.symlink_to(mount / "registry")
            yield lambda: subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        finally:
            registry.unlink()
            shutil.copytree(mount / "registry", registry)
            subprocess.run(["umount", str(mount)], check=True)
        return
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FULL_DISK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "site"),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FULL_REGISTRY", str(registry.resolve()))
    yield lambda: monkeypatch.delenv("FULL_REGISTRY")


def test_a_full_registry_disk_fails_the_run_in_one_line_keeps_the_model_and_the_job_is_learned_later(
        cvat_client, project, frames, config, tmp_path, monkeypatch):
    (job,) = make_task(cvat_client, project.id, frames, NAMES[:3], tmp_path).get_jobs()
    job.update({"state": "completed"})
    registry_root = Path(config["REGISTRY"])
    current = Registry(registry_root).current().id
    with full_registry_disk(registry_root, tmp_path, monkeypatch) as make_room:
        app = create_app({**config, "PROJECT_ID": str(project.id), "CATCHUP_SECONDS": "1"})
        client = app.test_client()
        try:
            failed = wait_for_run(client, _first_run(client), timeout=300)
            health = client.get("/health")
            assert Registry(registry_root).current().id == current  # still served
            make_room()  # a retry may already be failing on the full disk: the first success counts
            learned = _succeeded_run(client, timeout=300)
            runs = client.get("/runs").get_json()["runs"]
        finally:
            app.extensions["cals_trainer"].worker.stop(30)
        registered = [v.id for v in Registry(registry_root).list()]  # 3 frames: registered, not promoted
        assert learned["result"]["model"]["version"] in registered and len(registered) == 2
        assert leftovers(Path(config["DATA"]), registry_root) == []

    assert failed["state"] == "failed" and failed["trigger"] == "catch-up"
    line = failed["error"]
    assert "\n" not in line  # one line: the training process's output stays in the trainer's log
    assert f"no space left on the disk of {registry_root}" in line or \
        f"no space left on the disk of {registry_root.resolve()}" in line
    assert "the version was not registered; the current version stays" in line
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    assert learned["state"] == "succeeded" and learned["trigger"] == "catch-up"
    assert learned["targets"]["jobs"] == [job.id]
    assert all("no space left on the disk of" in r["error"] for r in runs if r["state"] == "failed")


def _first_run(client, after: int = 0, timeout: float = 60) -> int:
    """The id of the first run after run `after` (catch-up queues them)."""
    deadline = time.monotonic() + timeout
    while True:
        ids = [r["id"] for r in client.get("/runs").get_json()["runs"] if r["id"] > after]
        if ids:
            return min(ids)
        assert time.monotonic() < deadline, f"no run after run {after} within {timeout} s"
        time.sleep(0.2)


def test_cvat_going_away_during_an_export_fails_the_run_clearly_and_the_next_catch_up_learns_the_job(
        cvat_client, cvat_server, project, frames, config, tmp_path):
    (job,) = make_task(cvat_client, project.id, frames, NAMES[:3], tmp_path).get_jobs()
    job.update({"state": "completed"})
    outage = Outage(down_at="/dataset")  # CVAT restarts right after it is asked for the export
    with cvat_proxy(cvat_server.url, outage=outage) as proxy:
        app = create_app({**config, "CVAT_URL": proxy, "PROJECT_ID": str(project.id), "CATCHUP_SECONDS": "1"})
        client = app.test_client()
        try:
            failed = wait_for_run(client, _first_run(client), timeout=300)
            merged = Path(config["DATA"]) / "labelled"
            half_merged = sorted(p.name for p in merged.rglob("*") if p.is_file()) if merged.exists() else []
            outage.down.clear()  # CVAT is back: runs that failed meanwhile are retried too
            learned = _succeeded_run(client, timeout=300)
        finally:
            app.extensions["cals_trainer"].worker.stop(30)
    assert failed["state"] == "failed" and failed["error"].startswith(f"export of job {job.id} failed")
    assert "CVAT stopped answering" in failed["error"] or "unreachable" in failed["error"]
    assert half_merged == []  # nothing of the failed run reached the labelled set
    assert learned["state"] == "succeeded", learned["error"]
    assert learned["trigger"] == "catch-up" and learned["result"]["jobs"] == [job.id]
    assert learned["result"]["labelled_set"]["new_frames"] == 3


def _succeeded_run(client, timeout: float) -> dict:
    """The first run to succeed (catch-up retries failed ones), waited for."""
    deadline = time.monotonic() + timeout
    while True:
        done = [r for r in client.get("/runs").get_json()["runs"] if r["state"] == "succeeded"]
        if done:
            return min(done, key=lambda r: r["id"])
        assert time.monotonic() < deadline, f"no run succeeded within {timeout} s"
        time.sleep(0.2)
