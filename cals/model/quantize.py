"""INT8 for a version's pose network, made and checked when the version is registered.

ONNX Runtime's static quantization (QDQ, weights per channel) of `model.onnx`, calibrated on crops
of the labelled set the version was trained on, plain and mirrored as the flip test feeds them.
The int8 model is then checked against fp32 on the test set: it is approved only where spine AP
drops by at most MAX_AP_DROP and the median point moves at most MAX_MEDIAN_PX. `int8.json` keeps
the figures; CALS_POSE_PRECISION=auto serves int8 only where it was approved (pose_network).

Each version gets its own calibration: a fine-tuned network's activation ranges are its own.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cals.data.coco import Dataset, annotations_by_image, load_dataset, xywh_to_xyxy
from cals.model.pose_network import INT8_FILE, INT8_REPORT, ONNX_FILE, OnnxNetwork

log = logging.getLogger(__name__)

MAX_AP_DROP = 0.005  # spine AP on the test set, fp32 minus int8
MAX_MEDIAN_PX = 1.0  # median distance between a point's int8 and fp32 predictions, image pixels
CALIBRATION_PEOPLE = 64  # people of the labelled set whose crops calibrate the activation ranges


def quantize_version(version_dir: str | os.PathLike, labelled_root: str | os.PathLike,
                     test_root: str | os.PathLike | None) -> dict[str, Any]:
    """Write `model.int8.onnx` and `int8.json` into a version's folder; the report, approved or not.

    Never raises: a version that cannot be quantized or checked is served in fp32, as before."""
    from cals.model.predict import Predictor

    version_dir = Path(version_dir)
    target = version_dir / INT8_FILE
    try:
        if not (version_dir / ONNX_FILE).is_file():
            report = _refused(f"no {ONNX_FILE} to quantize")
        elif test_root is None or not _has_people(test_root):
            report = _refused("no labelled test set to check it on")
        else:
            fp32 = Predictor(version_dir, device="cpu", backend="onnxruntime", precision="fp32")
            people = calibrate(fp32, load_dataset(labelled_root, fp32.schema), target)
            int8 = copy.copy(fp32)  # the same mmpose model around it (building one takes a second)
            int8.network = OnnxNetwork(target)
            report = {**check(fp32, int8, test_root), "calibration_people": people}
    except Exception as e:  # noqa: BLE001 - any failure means: serve this version in fp32
        report = _refused(f"quantization failed: {type(e).__name__}: {e}")
    if not report["approved"] and "spine_ap_drop" not in report:
        target.unlink(missing_ok=True)
    (version_dir / INT8_REPORT).write_text(json.dumps(report, indent=1))
    log.info("int8 for %s: %s", version_dir.name, describe(report))
    return report


def describe(report: dict[str, Any]) -> str:
    """One line: the check's figures and verdict."""
    if "spine_ap_drop" not in report:
        return f"not made ({report['reason']})"
    verdict = "approved, served by default" if report["approved"] else f"kept fp32 ({report['reason']})"
    return (f"spine AP {report['spine_ap_fp32']:.4f} -> {report['spine_ap_int8']:.4f}, median point moved "
            f"{report['median_px']:.3f} px: {verdict}")


def calibrate(predictor, labelled: Dataset, target: Path, people: int = CALIBRATION_PEOPLE) -> int:
    """Quantize the predictor's model.onnx into `target`, calibrated on up to `people` labelled
    people spread over the set; the number of people used."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(_calibration_batches(predictor, labelled, people))
    if not batches:
        raise ValueError("the labelled set has no person to calibrate on")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({"crops": b} for b in batches)

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="cals-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(target.with_name(ONNX_FILE)), str(prepared), skip_symbolic_shape=True)
        partial = Path(tmp) / INT8_FILE
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        partial.replace(target)
    return sum(len(b) for b in batches) // 2


def _calibration_batches(predictor, labelled: Dataset, people: int) -> Iterator[np.ndarray]:
    """The network's input for labelled people of evenly spaced images, each crop with its mirror."""
    import torch

    from cals.model.predict import _read_image

    by_image = annotations_by_image(labelled.coco)
    images = [im for im in labelled.coco["images"] if by_image.get(im["id"])]
    step = max(1, len(images) * 2 // max(1, people))  # about two people per image in the sets seen
    taken = 0
    for image in images[::step]:
        if taken >= people:
            break
        anns = by_image[image["id"]][:people - taken]
        boxes = np.array([xywh_to_xyxy(a["bbox"]) for a in anns], dtype=np.float32)
        with torch.no_grad():
            crops, _ = predictor.crops(_read_image(labelled.image_path(image)), boxes)
        taken += len(anns)
        yield torch.cat([crops, crops.flip(-1)]).numpy()


def check(fp32, int8, test_root: str | os.PathLike) -> dict[str, Any]:
    """Spine AP of both on the test set's boxes, and how far int8 moves the points."""
    from cals.metrics.evaluate import evaluate
    from cals.model.evaluation import predict_dataset

    test = load_dataset(test_root, fp32.schema)
    ours, theirs = (predict_dataset(p, test, progress=False) for p in (int8, fp32))
    ap = {name: evaluate(test.coco, results, fp32.schema, quiet=True)["groups"]["spine"]["AP"]
          for name, results in (("int8", ours), ("fp32", theirs))}
    moved = [np.linalg.norm(np.reshape(a["keypoints"], (-1, 3))[:, :2] - np.reshape(b["keypoints"], (-1, 3))[:, :2],
                            axis=1) for a, b in zip(ours, theirs)]
    median = float(np.median(np.concatenate(moved)))
    drop = ap["fp32"] - ap["int8"]
    reasons = [f"spine AP drops {drop:.4f} > {MAX_AP_DROP}"] * (drop > MAX_AP_DROP) + \
        [f"median point moves {median:.3f} px > {MAX_MEDIAN_PX}"] * (median > MAX_MEDIAN_PX)
    return {"approved": not reasons, "reason": "; ".join(reasons) or "within both limits",
            "spine_ap_fp32": ap["fp32"], "spine_ap_int8": ap["int8"], "spine_ap_drop": drop,
            "median_px": median, "people": len(ours), "limits": {"spine_ap_drop": MAX_AP_DROP,
                                                                  "median_px": MAX_MEDIAN_PX}}


def _refused(reason: str) -> dict[str, Any]:
    return {"approved": False, "reason": reason}


def _has_people(root: str | os.PathLike) -> bool:
    path = Path(root) / "annotations.json"
    return path.is_file() and bool(json.loads(path.read_text()).get("annotations"))
