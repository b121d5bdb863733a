"""Before any spine model exists: the function registers an initial model or waits with a 503."""
from __future__ import annotations

import nuclio_sdk.test
import numpy as np
import pytest
import torch

from cals.model.checkpoint import load_checkpoint
from cals.registry import Registry
from tests.test_function_helpers import DETECTOR, bgr_to_pil, call, copy_version, encode

pytestmark = pytest.mark.skipif(not DETECTOR.is_file(), reason="../shared detector not present")


@pytest.fixture(scope="module")
def coco17_checkpoint(trained, tmp_path_factory):
    """A COCO-17 checkpoint of the cpu architecture: the trained model's 17 body channels only,
    as an mmpose COCO release has them (no CALS meta, so the names come from the count)."""
    state, _ = load_checkpoint(trained[1].checkpoint)
    body = {k: v[:17] if k.startswith("head.final_layer") else v for k, v in state.items()}
    path = tmp_path_factory.mktemp("coco17") / "coco17.pth"
    torch.save({"state_dict": body}, path)
    return path


@pytest.fixture
def empty(tmp_path, monkeypatch):
    registry = Registry(tmp_path / "registry")
    monkeypatch.setenv("CALS_REGISTRY", str(registry.root))
    monkeypatch.setenv("CALS_DETECTOR", str(DETECTOR))
    monkeypatch.setenv("CALS_DEVICE", "cpu")
    monkeypatch.setenv("CALS_CONFIG", "cpu")
    monkeypatch.delenv("CALS_INIT_CHECKPOINT", raising=False)
    return registry, monkeypatch


@pytest.fixture(scope="module")
def image_body(synthetic):
    import cv2

    return {"image": encode(bgr_to_pil(cv2.imread(str(next((synthetic / "val" / "images").iterdir())))))}


def test_first_start_registers_the_coco_body_model_with_the_spine_prior(empty, coco17_checkpoint,
                                                                       schema, image_body):
    registry, monkeypatch = empty
    monkeypatch.setenv("CALS_INIT_CHECKPOINT", str(coco17_checkpoint))
    status, shapes, headers = call(nuclio_sdk.test.Platform(), {**image_body, "threshold": 0.0})
    assert status == 200 and shapes, shapes
    current = registry.current()
    assert headers["X-CALS-Model-Version"] == current.id
    assert current.meta["spine_trained"] is False and current.meta["init"] == str(coco17_checkpoint)
    names = schema.names
    for shape in shapes:
        pts = np.array([e["points"] for e in shape["elements"]])
        hips = pts[[names.index("left_hip"), names.index("right_hip")]].mean(axis=0)
        assert np.allclose(pts[names.index("hip")], hips, atol=0.05)  # the prior's sacrum
        assert all(e["outside"] == 0 for e in shape["elements"])  # prior points are draggable
    # a second worker starting on the same registry registers nothing new
    call(nuclio_sdk.test.Platform(), image_body)
    assert len(registry.list()) == 1


def test_without_any_model_it_answers_503_until_a_promote(empty, trained, image_body):
    registry, _ = empty
    platform = nuclio_sdk.test.Platform()
    status, reply, _ = call(platform, image_body)
    assert status == 503 and "no current version" in reply["error"]
    version = copy_version(trained[1], registry)
    registry.promote(version.id)
    status, _, headers = call(platform, image_body)
    assert status == 200 and headers["X-CALS-Model-Version"] == version.id


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_initial_model_that_cannot_be_registered_is_named_in_the_503(empty, tmp_path, image_body, trained,
                                                                       damage):
    """The function comes up, answers 503 naming the checkpoint and what went wrong, and serves the
    first version promoted later."""
    registry, monkeypatch = empty
    bad = tmp_path / "rtmpose-m-coco.pth"
    if damage == "corrupt":
        bad.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("CALS_INIT_CHECKPOINT", str(bad))
    platform = nuclio_sdk.test.Platform()
    status, reply, _ = call(platform, image_body)
    assert status == 503, reply
    error = reply["error"]
    assert error.startswith(f"initial model could not be registered from CALS_INIT_CHECKPOINT={bad}")
    assert ("checkpoint not found" if damage == "missing" else "cannot load checkpoint") in error
    assert "\n" not in error and "restart the function" in error
    assert registry.current() is None
    status, reply, _ = call(platform, image_body)  # the same answer, still running
    assert status == 503 and reply["error"] == error
    version = copy_version(trained[1], registry)
    registry.promote(version.id)
    status, _, headers = call(platform, image_body)
    assert status == 200 and headers["X-CALS-Model-Version"] == version.id
