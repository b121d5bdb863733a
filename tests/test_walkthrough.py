"""The README's "Deploy next to your CVAT" (docs/walkthrough.md in full), command by command, against the CVAT test server.

What docker compose would run is served in-process over real HTTP: the trainer and the sampler,
configured from the same deploy/.env the commands write (the initial model is the session's small
trained model instead of the function's RTMPose-m). The annotator is simulated: the ground truth
of a round's frames is imported into its task and job 1 is set to completed, as in CVAT's UI.
"""
from __future__ import annotations

import json
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from werkzeug.serving import make_server

import sampler
import trainer
from cals import env_file
from cals.cli import main
from cals.cvat.coco_upload import import_coco
from cals.sampling.rounds import round_tasks
from cals.registry import Registry
from cals.settings import SamplerEnv, TrainerEnv
from tests.test_coco_import import coco17
from tests.trainer_helpers import HttpClient, env_file_settings, ground_truth, running, serve

ROUND, JOB = 10, 5  # a first job of 5 frames puts 1 in the validation split (CALS_VAL_FRACTION 0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services(env: dict[str, str], registry: Path, data: Path, cvat_server):
    """The trainer's and sampler's settings as compose derives them from deploy/.env."""
    trainer_cfg = {**env_file_settings(env, TrainerEnv), "REGISTRY": str(registry), "DATA": str(data),
                   "TRAIN_ITERS": "20", "PROMOTE_MARGIN": "1.0", "WORKER_POLL_SECONDS": "0.2", "CVAT_POLL_SECONDS": "0.05"}
    sampler_cfg = {**env_file_settings(env, SamplerEnv), "REGISTRY": str(registry), "DATA": str(data),
                   "ROUND_SIZE": ROUND, "JOB_SIZE": JOB, "AUTO_OPEN": True, "SAMPLER_STRATEGY": "least_confidence",
                   "CVAT_POLL_SECONDS": "0.05"}
    return trainer_cfg, sampler_cfg


def configured_project(cvat_server, schema, frames: Path, tmp: Path, trainer_port: int, name: str) -> Path:
    """Steps 1-4: deploy/.env from .env.example, `setup-project` (project, label, webhook to the
    trainer on `trainer_port`), the pool task from `frames` as a COCO-17 file; the env file."""
    env = tmp / ".env"
    shutil.copy(Path(__file__).parents[1] / "deploy" / ".env.example", env)
    for key, value in {"CALS_CVAT_URL": cvat_server.url, "CALS_CVAT_USER": cvat_server.user,
                       "CALS_CVAT_PASSWORD": cvat_server.password, "CALS_PROJECT_NAME": name,
                       "CALS_TRAINER_URL": f"http://127.0.0.1:{trainer_port}"}.items():
        env_file.store(env, key, value)
    assert main(["setup-project", "--env-file", str(env)]) == 0
    assert main(["import-coco", "--annotations", str(coco17(frames, schema, tmp)), "--images",
                 str(frames / "images"), "--out", str(tmp / "pool")]) == 0
    assert main(["pool-task", "--data", str(tmp / "pool"), "--env-file", str(env)]) == 0
    return env


@dataclass
class Deployment:
    """Steps 1-6 done: a generated COCO set, the project from deploy/.env, the initial model, the services' settings."""
    frames: Path
    env: Path
    project_id: int
    registry: Path
    port: int  # where the trainer must listen: the project's webhook points there
    trainer_cfg: dict
    sampler_cfg: dict


def deployed(cvat_server, schema, trained, tmp: Path, *, images: int, seed: int, name: str) -> Deployment:
    """`images` generated frames (`seed`) as the pool of a project named `name` + the trainer's port,
    the session's trained model as the initial one, the trainer's and sampler's settings (data in tmp/data)."""
    from cals.synth import generate_dataset

    frames = tmp / "coco"
    generate_dataset(frames, images, seed=seed, progress=False, workers=1)
    port = free_port()
    env = configured_project(cvat_server, schema, frames, tmp, port, f"{name}-{port}")
    values = env_file.read(env)
    registry = Path(shutil.copytree(trained[0].root, tmp / "registry"))
    trainer_cfg, sampler_cfg = services(values, registry, tmp / "data", cvat_server)
    return Deployment(frames, env, int(values["CALS_PROJECT_ID"]), registry, port, trainer_cfg, sampler_cfg)


@contextmanager
def running_services(trainer_cfg: dict, sampler_cfg: dict, trainer_port: int) -> Iterator[tuple[str, str]]:
    """(trainer URL, sampler URL): the sampler, then the trainer (told the sampler's URL) on
    `trainer_port`, over real HTTP as compose runs them; the trainer's worker is stopped on exit."""
    with serve(sampler.create_app(sampler_cfg)) as sampler_url:
        app = trainer.create_app({**trainer_cfg, "SAMPLER_URL": sampler_url})
        try:
            with running(make_server("127.0.0.1", trainer_port, app, threaded=True)) as trainer_url:
                yield trainer_url, sampler_url
        finally:
            app.extensions["cals_trainer"].worker.stop(30)


def annotate_and_complete_job_1(cvat_client, task, frames: Path, tmp_path: Path):
    """The annotator fixes the round's frames (ground truth in) and completes its first job."""
    names = [Path(f.name).name for f in task.get_frames_info()]
    import_coco(task, ground_truth(frames, names))
    job = min(task.get_jobs(), key=lambda j: j.start_frame)
    job.update({"state": "completed"})
    return job


def wait_for_round(cvat_client, project_id: int, number: int, urls: tuple[str, str], timeout: float = 240):
    """The round's task once the sampler has finished opening it (frames and pre-annotations in: an
    annotator's import before that collides with the sampler's, 409 "Import job already exists")."""
    trainer_url, sampler_url = urls
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opened = [j["result"]["task_id"] for j in HttpClient(sampler_url).get("/jobs").get_json()
                  if j["state"] == "done" and (j.get("result") or {}).get("number") == number]
        tasks = round_tasks(cvat_client, project_id)
        if number in tasks and tasks[number].id in opened:
            return tasks[number]
        time.sleep(0.5)
    raise AssertionError(f"round {number} was not opened within {timeout} s; trainer runs: "
                         f"{HttpClient(trainer_url).get('/runs').get_json()}; sampler jobs: "
                         f"{HttpClient(sampler_url).get('/jobs').get_json()}")


@pytest.mark.slow
def test_from_a_coco_dataset_to_round_3(cvat_server, cvat_client, schema, trained, tmp_path, capsys):
    # 1.-6. deploy/.env, the project and its webhook, the pool task, the initial model in the registry
    d = deployed(cvat_server, schema, trained, tmp_path, images=36, seed=31, name="walk")
    env, project_id, registry, frames = d.env, d.project_id, d.registry, d.frames
    with running_services(d.trainer_cfg, d.sampler_cfg, d.port) as urls:
        trainer_url, sampler_url = urls
        # 7. round 1 through the sampler service
        capsys.readouterr()
        assert main(["round", "--env-file", str(env), "--sampler-url", sampler_url]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["number"] == 1 and len(first["frames"]) == ROUND and len(first["jobs"]) == ROUND // JOB

        # rounds 2 and 3 open by themselves: job completed -> trainer -> promotion -> sampler
        for number in (2, 3):
            previous = wait_for_round(cvat_client, project_id, number - 1, urls)
            annotate_and_complete_job_1(cvat_client, previous, frames, tmp_path)
            wait_for_round(cvat_client, project_id, number, urls)
        capsys.readouterr()
        assert main(["round", "--env-file", str(env), "--sampler-url", sampler_url]) == 0
        again = json.loads(capsys.readouterr().out)

    assert again["number"] == 3 and again["created"] is False  # the same model gives the same round back
    tasks = round_tasks(cvat_client, project_id)
    assert sorted(tasks) == [1, 2, 3]
    seen = [{Path(f.name).name for f in tasks[n].get_frames_info()} for n in (1, 2, 3)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # no frame labelled twice
    reg = Registry(registry)
    history = [v for v in reg.list() if v.meta.get("promotion", {}).get("promoted")]
    assert len(history) == 2 and reg.current().id == history[-1].id  # one promoted model per completed job
