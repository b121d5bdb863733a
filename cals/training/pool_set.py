"""The pool set: what the unlabelled pool teaches beside the frames people labelled.

A COCO folder written for one training, from two sources, each on or off:

- the pool's own labels (CALS_POOL_LABELS): the points the team imported with the pool (COCO's body
  points), with the spine unlabelled, so it carries no loss;
- pseudo-labels (CALS_PSEUDO_LABELS): on those people, the served model's points of the new group
  (the spine) that scored at least CALS_PSEUDO_THRESHOLD become targets; lower ones carry no loss.
  They come from the predictions the sampler cached for the served version (`ScoreCache`), never from
  the candidate being trained, and never replace a point the pool labels.

A frame in the labelled set (either split) never enters: its human labels replace its pool labels
and pseudo-labels, and a validation frame stays unseen by training. `cals simulate` and the trainer
both build their pool set here.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from cals.data.coco import ANNOTATIONS, IMAGES, write_coco
from cals.errors import CalsError
from cals.data.pool import Pool, PoolItem
from cals.schema import Schema
from cals.settings import default

log = logging.getLogger(__name__)
PSEUDO_GROUP = "spine"  # the group a COCO pool lacks: the one pseudo-labels fill in
BOX_TOLERANCE = 2.0  # px: a cached person belongs to a pool person when their boxes agree this closely
People = Callable[[PoolItem], "list[dict] | None"]  # cached predictions of a pool frame, None: none cached


@dataclass(frozen=True)
class PoolTraining:
    """What of the pool a training uses, and how much of each batch stays human."""

    labels: bool = default("CALS_POOL_LABELS")
    pseudo: bool = default("CALS_PSEUDO_LABELS")
    threshold: float = default("CALS_PSEUDO_THRESHOLD")
    human_share: float = default("CALS_HUMAN_SHARE")

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise CalsError(f"the pseudo-label threshold must be in [0, 1], got {self.threshold!r}")
        if not 0 < self.human_share <= 1:
            raise CalsError(f"the human share must be in (0, 1], got {self.human_share!r}")

    @property
    def enabled(self) -> bool:
        return (self.labels or self.pseudo) and self.human_share < 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_pool_set(pool: Pool, out: Path, schema: Schema, training: PoolTraining, *,
                   exclude: Iterable[str], people: People | None) -> dict[str, Any]:
    """Write the pool set to `out` (annotations.json + images/) and return what it holds.

    `exclude`: frame names people labelled. `people`: the served version's cached predictions per
    frame (None: no pseudo-labels). Frames the pool has no labelled person on are skipped: their
    boxes would come from a detector, and a wrong box teaches a wrong body.
    """
    if PSEUDO_GROUP not in schema.groups:
        raise CalsError(f"pseudo-labels fill the schema's {PSEUDO_GROUP!r} group, which this schema lacks")
    skip = set(exclude)
    images, annotations, refs = [], [], {}
    counts = {"frames_seen": 0, "frames_with_predictions": 0, "pseudo_candidates": 0, "pseudo_points": 0}
    for item in pool.items():
        if item.name in skip or item.boxes is None or item.labelled is None:
            continue
        counts["frames_seen"] += 1
        predicted = people(item) if people is not None and training.pseudo else None
        counts["frames_with_predictions"] += predicted is not None
        anns = frame_annotations(item, predicted, schema, training, counts)
        if anns:
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": item.name, "width": 0, "height": 0})
            annotations += [{**a, "id": len(annotations) + i + 1, "image_id": image_id} for i, a in enumerate(anns)]
            refs[item.name] = item
    _link_images(pool, refs, out / IMAGES)
    _fill_sizes(images, out / IMAGES)
    write_coco({"images": images, "annotations": annotations, "categories": [schema.coco_category()]},
               out / ANNOTATIONS)
    return {"frames": len(images), "people": len(annotations), **counts,
            "labelled_points": _group_counts(annotations, schema), **training.as_dict()}


def frame_annotations(item: PoolItem, predicted: list[dict] | None, schema: Schema,
                      training: PoolTraining, counts: dict[str, int]) -> list[dict]:
    """The COCO annotations of one pool frame: per person, its pool labels and its pseudo-labels."""
    matched = _aligned(item.boxes, predicted)
    pseudo_idx = np.asarray(schema.groups[PSEUDO_GROUP])
    out = []
    for i, (box, labelled) in enumerate(zip(item.boxes, item.labelled)):
        kps = np.zeros((schema.num_keypoints, 3), np.float32)
        if training.labels:
            kps[labelled[:, 2] > 0] = labelled[labelled[:, 2] > 0]
        guess = matched[i] if matched is not None else None
        if guess is not None:
            points = np.asarray(guess["keypoints"], np.float32).reshape(-1, 2)
            scores = np.asarray(guess["scores"], np.float32)
            free = pseudo_idx[labelled[pseudo_idx, 2] <= 0]
            keep = free[scores[free] >= training.threshold]
            counts["pseudo_candidates"] += len(free)
            counts["pseudo_points"] += len(keep)
            kps[keep, :2], kps[keep, 2] = points[keep], 2
        if (kps[:, 2] > 0).any():
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0, "keypoints": np.round(kps, 2).reshape(-1).tolist(),
                        "num_keypoints": int((kps[:, 2] > 0).sum())})
    return out


def _aligned(boxes: np.ndarray, predicted: list[dict] | None) -> list[dict | None] | None:
    """Per pool person, the cached person with the same box (within BOX_TOLERANCE px), else None: a
    person whose box changed since the sampler predicted the frame gets no pseudo-label. Matched by box,
    not by order: a CVAT server need not list a frame's shapes in the same order every time."""
    if not predicted:
        return None
    cached = np.asarray([p["bbox"][:4] for p in predicted], np.float32).reshape(-1, 4)
    out: list[dict | None] = []
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        gap = np.abs(cached - box).max(axis=1)
        best = int(gap.argmin())
        out.append(predicted[best] if gap[best] <= BOX_TOLERANCE else None)
    return out


def _link_images(pool: Pool, items: dict[str, PoolItem], folder: Path) -> None:
    """Each frame's file in `folder`: a link to a local pool's file, else a copy of the pool's bytes,
    kept for the next training (a CVAT pool's frames are downloaded once)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, item in items.items():
        target = folder / name
        if isinstance(item.ref, (str, os.PathLike)):
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(Path(item.ref).resolve())
        elif not target.is_file():
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(pool.image_bytes(item))
            os.replace(tmp, target)


def _fill_sizes(images: list[dict], folder: Path) -> None:
    """Width and height from each file's header (no decoding: a thousand frames take well under a second)."""
    from PIL import Image, UnidentifiedImageError

    for im in images:
        try:
            with Image.open(folder / im["file_name"]) as img:
                im["width"], im["height"] = img.size
        except (OSError, UnidentifiedImageError) as exc:
            raise CalsError(f"pool frame {im['file_name']} is not a readable image: {exc}") from None


def _group_counts(annotations: list[dict], schema: Schema) -> dict[str, int]:
    vis = np.asarray([a["keypoints"][2::3] for a in annotations]).reshape(len(annotations), schema.num_keypoints)
    return {g: int((vis[:, idx] > 0).sum()) for g, idx in schema.groups.items()}
