"""The pose network's runtimes and precisions.

OpenVINO and ONNX Runtime predict what PyTorch fp32 predicts, for the `cpu` config and for RTMPose-m
as users deploy it (the function's first model, from a checkpoint in mmpose's release layout), on
generated people and on real COCO photos; the same check catches a transposed or unnormalised input.
auto falls back runtime by runtime; OpenVINO keeps its compiled model; an int8 model is made at
registration, checked against fp32, and served by default only where it passed.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cals.data.coco import annotations_by_image, xywh_to_xyxy
from cals.errors import CalsError
from cals.model import pose_network, quantize
from cals.model.predict import Predictor
from cals.registry import Registry
from cals.serving.initial import ensure_initial_model
from tests.test_rtmpose_release import released_state

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-coco4"
POINT_PX = 0.5  # decoded points, image pixels
SCORE = 0.01


def _frames(root: Path, annotations: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import cv2

    coco = json.loads((root / annotations).read_text())
    boxes = {k: [xywh_to_xyxy(a["bbox"]) for a in anns] for k, anns in annotations_by_image(coco).items()}
    folder = root / "images" if (root / "images").is_dir() else root
    return [(cv2.imread(str(folder / im["file_name"])), np.array(boxes[im["id"]], np.float32))
            for im in coco["images"] if im["id"] in boxes][:count]


@pytest.fixture(scope="module")
def frames(synthetic) -> dict[str, list]:
    """Generated frames, and the four real COCO photos with their people's boxes where ../shared has them."""
    found = {"generated": _frames(synthetic / "val", "annotations.json", 6)}
    if PHOTOS.is_dir():
        found["real photos"] = _frames(PHOTOS, "test_coco.json", 4)
    return found


@pytest.fixture(scope="module")
def versions(trained, tmp_path_factory, schema) -> dict[str, Path]:
    """`cpu`: the session's trained model; `rtmpose-m`: the function's first model from a release."""
    root = tmp_path_factory.mktemp("runtimes")
    release = root / "rtmpose-m_aic-coco_body17.pth"
    torch.save({"state_dict": released_state(), "meta": {"epoch": 420}}, release)
    registry = Registry(root / "registry")
    ensure_initial_model(registry, str(release), config="rtmpose-m", schema=schema)
    return {"cpu": trained[1].path, "rtmpose-m": registry.current().path}


def gaps(predictor: Predictor, reference: Predictor, frames: list) -> tuple[np.ndarray, float]:
    """Every point's distance to the reference's, and the largest score difference."""
    distances, scores = [], 0.0
    for image, boxes in frames:
        for a, b in zip(predictor.predict(image, boxes, distributions=False),
                        reference.predict(image, boxes, distributions=False)):
            distances.append(np.linalg.norm(a.keypoints - b.keypoints, axis=1))
            scores = max(scores, float(np.abs(a.scores - b.scores).max()))
    return np.concatenate(distances), scores


def agrees(predictor: Predictor, reference: Predictor, frames: list) -> bool:
    """Every point within POINT_PX, every score within SCORE (a SimCC or heatmap argmax may tie in
    float rounding: one point in a hundred may jump, no more)."""
    distances, scores = gaps(predictor, reference, frames)
    return bool(np.mean(distances <= POINT_PX) >= 0.99 and np.median(distances) <= 0.05 and scores <= SCORE)


@pytest.mark.parametrize("config", ["cpu", "rtmpose-m"])
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_every_runtime_predicts_what_pytorch_predicts(versions, frames, config, runtime):
    reference = Predictor(versions[config], device="cpu", backend="pytorch")
    predictor = Predictor(versions[config], device="cpu", backend=runtime, precision="fp32")
    assert (predictor.backend, predictor.precision) == (runtime, "fp32")
    for name, batch in frames.items():
        distances, scores = gaps(predictor, reference, batch)
        assert agrees(predictor, reference, batch), (name, np.sort(distances)[-5:], scores)


@pytest.mark.parametrize("mistake", ["transposed", "not normalised"])
def test_the_agreement_check_catches_a_wrong_input(versions, frames, mistake):
    batch = frames.get("real photos", frames["generated"])
    for config in ("cpu", "rtmpose-m"):
        reference = Predictor(versions[config], device="cpu", backend="pytorch")
        predictor = Predictor(versions[config], device="cpu", backend="openvino", precision="fp32")
        network = predictor.network
        if mistake == "transposed":  # HWC memory read as CHW
            predictor.network = lambda x: network(x.permute(0, 2, 3, 1).reshape(x.shape).contiguous())
        else:  # pixel values, as if the mean and std were never applied
            predictor.network = lambda x: network(x * 58.0 + 120.0)
        assert not agrees(predictor, reference, batch), config


def test_auto_falls_back_to_the_next_runtime_with_one_line_naming_why(versions, monkeypatch, caplog):
    import openvino

    class Refusing(openvino.Core):
        def compile_model(self, *args, **kwargs):
            raise RuntimeError("Exception from src/plugins/intel_cpu: unsupported operation Foo\nmore")

    monkeypatch.setattr(openvino, "Core", Refusing)
    monkeypatch.setitem(pose_network.AUTO_ORDER, "fp32", ("openvino", "onnxruntime"))
    with caplog.at_level(logging.WARNING, logger="cals.model.pose_network"):
        predictor = Predictor(versions["cpu"], device="cpu", precision="fp32")
    assert predictor.backend == "onnxruntime"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (f"OpenVINO cannot compile {versions['cpu'] / 'model.onnx'}: Exception from "
                    f"src/plugins/intel_cpu: unsupported operation Foo; trying the next runtime for "
                    f"{versions['cpu'].name}")
    with pytest.raises(CalsError, match="OpenVINO cannot compile .*unsupported operation Foo"):
        Predictor(versions["cpu"], device="cpu", backend="openvino")


def test_openvino_keeps_its_compiled_model_in_the_cache(versions, tmp_path, monkeypatch):
    monkeypatch.setenv("CALS_CACHE", str(tmp_path))
    Predictor(versions["cpu"], device="cpu", backend="openvino")
    cached = list((tmp_path / "openvino").iterdir())
    assert cached and all(f.stat().st_size > 0 for f in cached)
    Predictor(versions["cpu"], device="cpu", backend="openvino")  # a second start loads it
    assert sorted(p.name for p in (tmp_path / "openvino").iterdir()) == sorted(p.name for p in cached)


def test_an_int8_model_is_served_only_where_it_passed_its_check(trained, synthetic, tmp_path, monkeypatch):
    folder = shutil.copytree(trained[1].path, tmp_path / "version")
    report = quantize.quantize_version(folder, synthetic / "train", synthetic / "val")
    assert json.loads((folder / "int8.json").read_text()) == report
    assert (folder / "model.int8.onnx").stat().st_size < (folder / "model.onnx").stat().st_size / 2
    assert 0 < report["calibration_people"] <= quantize.CALIBRATION_PEOPLE
    assert report["approved"] == (report["spine_ap_drop"] <= quantize.MAX_AP_DROP
                                  and report["median_px"] <= quantize.MAX_MEDIAN_PX)
    fp32 = Predictor(folder, device="cpu", backend="onnxruntime", precision="fp32")
    int8 = Predictor(folder, device="cpu", backend="onnxruntime", precision="int8")
    # the report's figures are the predictors' own
    from cals.model.evaluation import evaluate_predictor
    assert evaluate_predictor(fp32, synthetic / "val", progress=False)["groups"]["spine"]["AP"] == \
        pytest.approx(report["spine_ap_fp32"], abs=1e-9)
    assert evaluate_predictor(int8, synthetic / "val", progress=False)["groups"]["spine"]["AP"] == \
        pytest.approx(report["spine_ap_int8"], abs=1e-9)
    assert Predictor(folder, device="cpu").precision == ("int8" if report["approved"] else "fp32")

    monkeypatch.setattr(quantize, "MAX_MEDIAN_PX", -1.0)  # a limit nothing meets
    refused = quantize.quantize_version(folder, synthetic / "train", synthetic / "val")
    assert not refused["approved"] and "median point moves" in refused["reason"]
    auto = Predictor(folder, device="cpu")
    assert (auto.backend, auto.precision) == ("openvino", "fp32")
    assert Predictor(folder, device="cpu", precision="int8").precision == "int8"  # asked for by name


def test_without_a_test_set_there_is_no_int8_model_and_asking_for_one_says_why(trained, synthetic, tmp_path):
    folder = shutil.copytree(trained[1].path, tmp_path / "version")
    report = quantize.quantize_version(folder, synthetic / "train", None)
    assert report == {"approved": False, "reason": "no labelled test set to check it on"}
    assert not (folder / "model.int8.onnx").exists()
    with pytest.raises(CalsError, match="CALS_POSE_PRECISION=int8 but version has no model.int8.onnx"):
        Predictor(folder, device="cpu", precision="int8")
    with pytest.raises(CalsError, match="int8 needs an ONNX runtime"):
        Predictor(folder, device="cpu", backend="pytorch", precision="int8")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    failed = quantize.quantize_version(folder, empty, synthetic / "val")  # nobody to calibrate on
    assert not failed["approved"] and failed["reason"].startswith("quantization failed")
    assert Predictor(folder, device="cpu").precision == "fp32"
