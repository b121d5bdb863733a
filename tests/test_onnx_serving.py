"""The ONNX Runtime serving path: every version is exported when it is written, ONNX Runtime and
PyTorch predict the same people, and a missing or broken export falls back to PyTorch."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.data.coco import annotations_by_image, xywh_to_xyxy


@pytest.fixture(scope="module")
def frames(synthetic) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR image, person boxes) of the generated validation frames with people."""
    import cv2

    root = synthetic / "val"
    coco = json.loads((root / "annotations.json").read_text())
    boxes = {k: [xywh_to_xyxy(a["bbox"]) for a in anns] for k, anns in annotations_by_image(coco).items()}
    return [(cv2.imread(str(root / "images" / im["file_name"])), np.array(boxes[im["id"]], np.float32))
            for im in coco["images"] if im["id"] in boxes][:12]


def test_a_trained_version_carries_its_onnx_export(trained):
    version = trained[1]
    assert "model.onnx" in version.meta["files"] and (version.path / "model.onnx").stat().st_size > 100_000
    assert Predictor(version.path, device="cpu").backend == "openvino"  # fp32: auto's first runtime
    assert Predictor(version.path, device="cpu", backend="pytorch").backend == "pytorch"


@pytest.mark.parametrize("flip", [True, False])
def test_onnx_runtime_and_pytorch_predict_the_same_people(trained, frames, flip):
    ort = Predictor(trained[1].path, device="cpu", backend="onnxruntime", flip_test=flip)
    torch_ = Predictor(trained[1].path, device="cpu", backend="pytorch", flip_test=flip)
    gaps, score_gaps, feature_gaps = [], [], []
    for image, boxes in frames:
        for a, b in zip(ort.predict(image, boxes), torch_.predict(image, boxes)):
            gaps.append(np.abs(a.keypoints - b.keypoints).max(axis=1))
            score_gaps.append(np.abs(a.scores - b.scores).max())
            feature_gaps.append(np.abs(a.feature - b.feature).max() / np.abs(b.feature).max())
            assert np.allclose(a.distributions["heatmaps"], b.distributions["heatmaps"], atol=1e-4)
    gaps = np.concatenate(gaps)
    # sub-pixel decoding moves a point by ~1e-5 px; a point may jump only where two heatmap cells
    # tie to within float rounding
    assert np.mean(gaps < 0.01) > 0.99 and np.median(gaps) < 1e-3, np.sort(gaps)[-5:]
    assert max(score_gaps) < 1e-4 and max(feature_gaps) < 1e-4


def test_the_flip_test_setting_is_applied(trained, frames, monkeypatch):
    image, boxes = frames[0]
    on = Predictor(trained[1].path, device="cpu").predict(image, boxes)
    monkeypatch.setenv("CALS_FLIP_TEST", "0")
    predictor = Predictor(trained[1].path, device="cpu")
    assert predictor.flip_test is False
    off = predictor.predict(image, boxes)
    assert not np.allclose(on[0].scores, off[0].scores)  # the mirrored view no longer averages in
    assert np.allclose(predictor.predict(image, boxes, flip_test=True)[0].scores, on[0].scores, atol=1e-5)
    monkeypatch.setenv("CALS_FLIP_TEST", "maybe")
    with pytest.raises(CalsError, match="CALS_FLIP_TEST: Input should be a valid boolean.*got 'maybe'"):
        Predictor(trained[1].path, device="cpu")


def test_a_broken_export_falls_back_to_pytorch_unless_onnxruntime_is_asked_for(trained, tmp_path, caplog,
                                                                                  monkeypatch):
    folder = shutil.copytree(trained[1].path, tmp_path / "version")
    (folder / "model.onnx").write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING):
        assert Predictor(folder, device="cpu").backend == "pytorch"
    assert "ONNX Runtime cannot load" in caplog.text and "OpenVINO cannot compile" in caplog.text
    assert "no ONNX runtime could load version: serving it with PyTorch" in caplog.text
    with pytest.raises(CalsError, match="ONNX Runtime cannot load"):
        Predictor(folder, device="cpu", backend="onnxruntime")
    (folder / "model.onnx").unlink()
    assert Predictor(folder, device="cpu").backend == "pytorch"
    with pytest.raises(CalsError, match="has no model.onnx"):
        Predictor(folder, device="cpu", backend="onnxruntime")
    monkeypatch.setenv("CALS_POSE_BACKEND", "tensorrt")
    with pytest.raises(CalsError, match="CALS_POSE_BACKEND: Input should be 'auto', 'onnxruntime', 'openvino' or 'pytorch', got 'tensorrt'"):
        Predictor(folder, device="cpu")


def test_a_failed_export_registers_the_version_without_it(trained, tmp_path, monkeypatch, caplog):
    import torch

    from cals.model.train import version_files, write_version_files
    from cals.model.checkpoint import load_checkpoint
    from mmengine.config import Config
    from cals.schema import load_schema

    def refuse(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    state, meta = load_checkpoint(trained[1].checkpoint)
    cfg = Config.fromfile(trained[1].config)
    with caplog.at_level(logging.WARNING):
        folder = write_version_files(tmp_path / "candidate", cfg, load_schema(trained[1].schema), state,
                                     {"keypoint_names": meta["keypoint_names"], "spine_trained": True})
    assert "no ONNX export for candidate" in caplog.text and "exporter exploded" in caplog.text
    assert sorted(version_files(folder)) == ["checkpoint.pth", "config.py", "schema.yaml"]
    assert not list(folder.glob("*.onnx*"))
