"""Unlabelled pools the sampler ranks: what a pool is, and a local COCO dataset folder as one.

A pool yields `PoolItem`s (cheap metadata, no pixels) and loads the pixels of a batch on demand,
so scoring streams through any pool size. The CVAT pool lives in `cals.cvat.pool`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from cals.data.coco import load_dataset
from cals.errors import CalsError
from cals.data.coco import annotations_by_image, xywh_to_xyxy
from cals.schema import Schema


@dataclass
class PoolItem:
    key: str  # stable cache key (changes when the image changes)
    name: str  # file name, unique in the pool: the frame name in a CVAT round
    boxes: np.ndarray | None  # (N, 4) x1, y1, x2, y2; None: ask the person detector
    labelled: np.ndarray | None = None  # (N, K, 3) keypoints people already labelled (v > 0), aligned with boxes
    ref: object = None  # what the pool needs to load the pixels (a path, a frame index)


class Pool(Protocol):
    name: str

    def __len__(self) -> int: ...

    def items(self) -> Iterator[PoolItem]: ...

    def load(self, items: list[PoolItem]) -> list[np.ndarray]:
        """BGR images of a batch of items, in order."""
        ...

    def image_bytes(self, item: PoolItem) -> bytes:
        """The original encoded file (what a CVAT round uploads)."""
        ...


class LocalPool:
    """A COCO dataset folder (`annotations.json` + `images/`): person boxes and any labelled points.

    Every image is a pool frame; its annotations give the boxes (and body keypoints kept as
    labelled); images without annotations get boxes from the person detector.
    """

    def __init__(self, root: str | os.PathLike, schema: Schema) -> None:
        self.root = Path(root)  # what another process opens the same pool from (sharded scoring)
        self.dataset = load_dataset(root, schema)
        self.name = f"local:{Path(root).resolve()}"
        self._by_image = annotations_by_image(self.dataset.coco)
        names = [im["file_name"] for im in self.dataset.coco["images"]]
        if len(set(names)) != len(names):
            raise CalsError(f"{root}: image file names must be unique in a pool")

    def __len__(self) -> int:
        return len(self.dataset.coco["images"])

    def items(self) -> Iterator[PoolItem]:
        for im in self.dataset.coco["images"]:
            path = self.dataset.image_path(im)
            st = path.stat()
            anns = self._by_image.get(im["id"], [])
            boxes = np.array([xywh_to_xyxy(a["bbox"]) for a in anns], np.float32).reshape(-1, 4) if anns else None
            labelled = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3) if anns else None
            yield PoolItem(key=f"{im['file_name']}:{st.st_size}:{st.st_mtime_ns}", name=Path(im["file_name"]).name,
                           boxes=boxes, labelled=labelled, ref=path)

    def load(self, items: list[PoolItem]) -> list[np.ndarray]:
        import cv2

        images = []
        for item in items:
            img = cv2.imread(str(item.ref), cv2.IMREAD_COLOR)
            if img is None:
                raise CalsError(f"cannot read pool image {item.ref}")
            images.append(img)
        return images

    def image_bytes(self, item: PoolItem) -> bytes:
        return Path(item.ref).read_bytes()


def decode_image(data: bytes, what: str) -> np.ndarray:
    """BGR pixels of an encoded image file, as `cv2.imread` gives them for the same file."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CalsError(f"pool frame {what} is not a decodable image")
    return img
