"""Pretrained person detector (RTMDet-nano, mmdeploy ONNX export) through onnxruntime.

Top-down pose needs person boxes where nobody drew them: frames that CVAT sends to the
function, unlabelled frames the sampler scores, `cals predict` without `--boxes`.
The preprocessing is the export's own (mmdeploy `pipeline.json`): keep-ratio resize to
320x320, pad with 114 at the bottom/right, BGR mean/std; `dets` come back in the
resized frame as (x1, y1, x2, y2, score), already NMS'ed by the graph.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cals.errors import CalsError
from cals.settings import default

INPUT_SIZE = 320
PAD_VALUE = 114
MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)  # BGR
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
PERSON_LABEL = 0
DEFAULT_SCORE: float = default("CALS_DETECTOR_SCORE")


class PersonDetector:
    """Boxes of people in a BGR image: `PersonDetector(path)(image) -> (N, 5) x1, y1, x2, y2, score`.

    `threads`: ONNX Runtime's intra-op threads; None: as the pose sessions (`threads.session_threads`)."""

    def __init__(self, model: str | os.PathLike | None = None, *, score_threshold: float = DEFAULT_SCORE,
                 threads: int | None = None):
        import onnxruntime as ort

        from cals.model.threads import session_threads

        path = resolve_model(model)
        options = ort.SessionOptions()
        # this process's share of the cores (threads.configure, CALS_THREADS); 0: ONNX Runtime's every core
        options.intra_op_num_threads = session_threads() if threads is None else threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=_providers(ort))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise CalsError(f"cannot load person detector {path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.path = path

    def __call__(self, image: np.ndarray, score_threshold: float | None = None) -> np.ndarray:
        tensor, scale = preprocess(image)
        dets, labels = self.session.run(None, {self.input_name: tensor})[:2]
        dets, labels = dets[0], labels[0]
        threshold = self.score_threshold if score_threshold is None else score_threshold
        keep = (labels == PERSON_LABEL) & (dets[:, 4] >= threshold)
        boxes = dets[keep].astype(np.float32)
        boxes[:, :4] /= scale
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        valid = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        return boxes[valid]


def preprocess(image: np.ndarray) -> tuple[np.ndarray, float]:
    """(1, 3, 320, 320) float tensor and the resize factor from image to tensor pixels."""
    import cv2

    if image.ndim != 3 or image.shape[2] != 3:
        raise CalsError(f"detector expects a BGR image (H, W, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    scale = min(INPUT_SIZE / h, INPUT_SIZE / w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_LINEAR)
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), PAD_VALUE, dtype=np.float32)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    canvas = (canvas - MEAN) / STD
    return canvas.transpose(2, 0, 1)[None].copy(), scale


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A local end2end.onnx from the argument or $CALS_DETECTOR (a URL is downloaded once and cached)."""
    from cals.model.checkpoint import fetch

    from cals.settings import ModelEnv

    spec = str(model) if model else ModelEnv.load().DETECTOR
    if not spec:
        raise CalsError("no person detector configured: pass a model path or set $CALS_DETECTOR "
                        "to an RTMDet person end2end.onnx")
    path = fetch(spec) if "://" in spec else Path(spec)
    if path.is_dir():
        path = path / "end2end.onnx"
    if not path.is_file():
        raise CalsError(f"person detector {path} does not exist")
    return path


def _providers(ort) -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
