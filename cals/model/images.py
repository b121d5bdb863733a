"""Predict a folder of images, with person boxes from a COCO file, the person detector, or the whole frame."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from cals.data.coco import annotations_by_image, read_json, xywh_to_xyxy
from cals.errors import CalsError
from cals.model.evaluation import coco_result

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _boxes_by_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[Any, list]]:
    """file_name → image id, and image id → [x, y, w, h] boxes from a COCO dataset."""
    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise CalsError(f"{path}: --boxes needs a COCO file with 'images' and 'annotations'")
    ids = {Path(im["file_name"]).name: im["id"] for im in coco["images"]}
    return ids, {image: [a["bbox"] for a in anns] for image, anns in annotations_by_image(coco).items()}


def predict_folder(predictor, images: str | os.PathLike, *, boxes: str | os.PathLike | None = None,
                   detector=None, progress: bool = True) -> list[dict[str, Any]]:
    """COCO keypoint results (with per-point scores) for every image in a folder.

    Boxes come from `boxes` (a COCO file), else from `detector` (a PersonDetector), else the
    whole frame is one person.
    """
    folder = Path(images)
    if not folder.is_dir():
        raise CalsError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalsError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    ids, known = _boxes_by_file(boxes) if boxes else ({}, {})
    results = []
    for i, path in enumerate(tqdm(files, desc="predicting", unit="img", disable=not progress)):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise CalsError(f"cannot read image {path}")
        image_id = ids.get(path.name, i) if boxes else i
        xywh = known.get(image_id, []) if boxes else _frame_boxes(img, detector)
        if not xywh:
            continue
        people = predictor.predict(img, np.array([xywh_to_xyxy(b) for b in xywh]), distributions=False)
        results += [coco_result(image_id, p.keypoints, p.scores, bbox=[float(v) for v in b],
                                file_name=path.name) for p, b in zip(people, xywh)]
    return results


def _frame_boxes(img: np.ndarray, detector) -> list[list[float]]:
    if detector is None:
        return [[0, 0, img.shape[1], img.shape[0]]]
    return [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2, _ in detector(img)]
