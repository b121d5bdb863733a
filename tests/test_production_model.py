"""RTMPose-m, the model users deploy, through every service on CPU with a handful of iterations.

From a COCO-17 checkpoint in mmpose's released layout (tests/test_rtmpose_release.py): the
function's first start registers it with its ONNX export, a completed CVAT job fine-tunes it through
the trainer, which promotes it by the rule, the function then serves the new version through ONNX
Runtime, the sampler scores a pool with every strategy from SimCC distributions, and
`cals simulate --config rtmpose-m` runs a tiny campaign.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cvat_sdk import models

from cals.sampling import strategies
from cals.model.predict import Predictor
from cals.registry import Registry
from cals.serving.initial import ensure_initial_model
from cals.serving.service import SkeletonService
from sampler import create_app as create_sampler
from tests.test_pool_scoring import blurred_pool  # noqa: F401  (module fixture: 16 frames, 8 blurred)
from tests.test_rtmpose_release import released_state
from tests.trainer_helpers import HttpClient, generated_frames, make_task, serve, wait_for_run
from trainer import create_app as create_trainer

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

SECRET = "whsec-" + "r" * 24
TOKEN = "api-token-rtmpose"
NAMES = [f"{i:06d}.jpg" for i in range(6)]


@pytest.fixture(scope="module")
def initial(tmp_path_factory, schema) -> Path:
    """A registry whose current version is the function's first model: RTMPose-m from the release."""
    root = tmp_path_factory.mktemp("rtmpose-m")
    release = root / "rtmpose-m_aic-coco_body17.pth"
    torch.save({"state_dict": released_state(), "meta": {"epoch": 420}}, release)
    registry = Registry(root / "registry")
    ensure_initial_model(registry, str(release), config="rtmpose-m", schema=schema)
    return registry.root


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return generated_frames(tmp_path_factory.mktemp("rtmpose-frames"), len(NAMES), seed=41)


def test_the_first_model_is_exported_and_served_by_onnx_runtime(initial, frames):
    version = Registry(initial).current()
    assert version.meta["config"] == "rtmpose-m" and "model.onnx" in version.meta["files"]
    ort = Predictor(version.path, device="cpu")
    reference = Predictor(version.path, device="cpu", backend="pytorch")
    assert (ort.backend, ort.precision) == ("openvino", "fp32")  # auto's first runtime for fp32
    image, boxes = _frame(frames, NAMES[0])
    a, b = ort.predict(image, boxes)[0], reference.predict(image, boxes)[0]
    assert set(a.distributions) == {"simcc_x", "simcc_y"}
    assert a.distributions["simcc_x"].shape == (26, 384) and a.distributions["simcc_y"].shape == (26, 512)
    for axis in ("simcc_x", "simcc_y"):
        assert np.abs(a.distributions[axis] - b.distributions[axis]).max() < 1e-3
    assert np.abs(a.scores - b.scores).max() < 1e-3


def test_a_completed_job_fine_tunes_rtmpose_m_and_the_function_serves_it(
        initial, frames, cvat_client, cvat_server, project, tmp_path):
    root = Path(shutil.copytree(initial, tmp_path / "registry"))
    before = Registry(root).current()
    config = {"CVAT_URL": cvat_server.url, "CVAT_USER": cvat_server.user, "CVAT_PASSWORD": cvat_server.password,
              "CVAT_POLL_SECONDS": "0.05", "WEBHOOK_SECRET": SECRET, "API_TOKEN": TOKEN,
              "REGISTRY": str(root), "DATA": str(tmp_path / "data"), "CONFIG": "rtmpose-m",
              "TRAIN_ITERS": "2", "TRAIN_BATCH_SIZE": "2", "PROMOTE_MARGIN": "1.0",
              "WORKER_POLL_SECONDS": "0.2"}
    app = create_trainer(config)
    with serve(app) as url:
        cvat_client.api_client.webhooks_api.create(models.WebhookWriteRequest(
            target_url=f"{url}/webhooks/cvat", type="project", project_id=project.id, secret=SECRET,
            events=["update:job"], content_type="application/json", enable_ssl=False))
        task = make_task(cvat_client, project.id, frames, NAMES, tmp_path)
        (job,) = task.get_jobs()
        job.update({"state": "completed"})
        api = HttpClient(url)
        deadline = time.monotonic() + 60
        while not api.get("/runs").get_json()["runs"]:
            assert time.monotonic() < deadline, "the webhook did not create a run"
            time.sleep(0.2)
        (run,) = api.get("/runs").get_json()["runs"]
        run = wait_for_run(api, run["id"], timeout=300)
    app.extensions["cals_trainer"].worker.stop(30)

    assert run["state"] == "succeeded", run["error"]
    model = run["result"]["model"]
    assert model["promoted"] and model["previous"] == before.id
    version = Registry(root).current()
    assert version.id == model["version"] and version.parent == before.id
    assert version.meta["config"] == "rtmpose-m" and version.meta["iterations"] == 2
    assert version.meta["batch_size"] == 2 and version.meta["spine_trained"] is True
    assert "model.onnx" in version.meta["files"]
    # its int8 model was calibrated on the job's frames and checked on the run's validation split
    report = json.loads((version.path / "int8.json").read_text())
    assert report == version.meta["int8"] and "int8.json" in version.meta["files"]
    assert ("model.int8.onnx" in version.meta["files"]) == ("spine_ap_drop" in report), report
    print("int8 report of the fine-tuned RTMPose-m:", report)

    image, boxes = _frame(frames, NAMES[0])
    service = SkeletonService(Registry(root), detector=lambda img, score=None: np.c_[boxes, np.ones(len(boxes))],
                              device="cpu")
    served = service.annotate(image)
    assert served.predictor.version_id == version.id
    assert (served.predictor.backend, served.predictor.precision) == \
        (("onnxruntime", "int8") if report["approved"] else ("openvino", "fp32"))
    assert len(served.people) == len(boxes) and served.prior_points == []  # the spine is the model's now


def test_the_sampler_scores_a_pool_with_every_strategy_from_simcc(initial, blurred_pool, synthetic, cvat_server,
                                                                  tmp_path):
    from cals.model.train import train

    registry = Registry(shutil.copytree(initial, tmp_path / "registry"))  # committee: the initial and a newer one
    registry.promote(train(synthetic / "val", registry, config="rtmpose-m", iters=1, batch_size=2, init="current",
                           progress=False).id)
    names = strategies.names()
    app = create_sampler({"API_TOKEN": TOKEN, "REGISTRY": str(registry.root), "DATA": str(tmp_path / "data"),
                          "POOL": str(blurred_pool), "SAMPLER_STRATEGY": "least_confidence",
                          "SAMPLER_LABELLED": str(synthetic / "val" / "annotations.json"),  # the pose strategy's space
                          **cvat_server.settings(poll_seconds=2.0)})
    client = app.test_client()
    for name in names:  # each strategy ranks the whole pool (the first request scores, the rest reuse it)
        resp = client.post("/rank", json={"strategy": name, "strategies": names, "limit": 16},
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, (name, resp.get_json())
        ranking = resp.get_json()["ranking"]
        assert len(ranking) == 16 and all(np.isfinite(r["score"]) for r in ranking), name
        assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
        if name == "entropy":  # SimCC distributions, not a constant
            assert ranking[0]["score"] > ranking[-1]["score"]
            pooled = {n for n in names if issubclass(strategies.STRATEGIES[n], strategies.PoolStrategy)}
            assert {k.split("(")[0] for k in ranking[0]["scores"]} >= set(names) - {"random"} - pooled  # per-frame scores


def test_cals_simulate_runs_rtmpose_m(tmp_path, monkeypatch):
    from cals.cli import main

    monkeypatch.setenv("CALS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--config", "rtmpose-m", "--pool-images", "8", "--test-images", "2",
            "--val-fraction", "0.5", "--initial", "2", "--batch", "2", "--rounds", "1", "--seeds", "0",
            "--strategies", "random,least_confidence", "--base-iters", "1", "--round-iters", "1",
            "--batch-size", "2"]
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted((r["strategy"], r["round"], r["labelled"]) for r in rows) == [
        ("least_confidence", 0, 2), ("least_confidence", 1, 4), ("random", 0, 2), ("random", 1, 4)]


def _frame(dataset: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from cals.data.coco import xywh_to_xyxy

    coco = json.loads((dataset / "annotations.json").read_text())
    (image_id,) = [im["id"] for im in coco["images"] if im["file_name"] == name]
    boxes = [xywh_to_xyxy(a["bbox"]) for a in coco["annotations"] if a["image_id"] == image_id]
    return cv2.imread(str(dataset / "images" / name)), np.array(boxes, np.float32)
