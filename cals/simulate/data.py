"""The simulation's datasets: a pool whose spine labels stay hidden until the simulated annotator
reveals them, a validation split for the promotion rule, and a held-out test set.

Views of the pool (body only, or the revealed frames) are COCO folders whose `images` link to
the pool's images, so nothing is copied per round.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterable

from cals.data.coco import ANNOTATIONS, IMAGES, load_dataset, write_coco
from cals.schema import Schema
from cals.synth import generate_dataset, parse_mix


def ensure_dataset(given: str | None, target: Path, images: int, mix: str, seed: int,
                   max_people: int) -> Path:
    """A user's COCO folder as is, else a generated one (made once; reused on resume)."""
    if given:
        return Path(given)
    if not (target / ANNOTATIONS).is_file():
        generate_dataset(target, images, seed=seed, mix=parse_mix(mix), max_people=max_people, progress=False)
    return target


def body_only(pool: Path, out: Path, schema: Schema) -> Path:
    """The pool as a COCO-style dataset has it before spine annotation: spine points unlabelled."""
    coco = copy.deepcopy(load_dataset(pool, schema).coco)
    hidden = set(schema.groups["spine"])
    for ann in coco["annotations"]:
        kps = ann["keypoints"]
        for i in hidden:
            kps[3 * i:3 * i + 3] = [0, 0, 0]
        ann["num_keypoints"] = sum(1 for v in kps[2::3] if v > 0)
    return _write_view(pool, out, coco)


def revealed(pool: Path, names: Iterable[str], out: Path, schema: Schema) -> Path:
    """The frames the annotator has labelled so far, with all their points."""
    coco = load_dataset(pool, schema).coco
    keep = set(names)
    images = [im for im in coco["images"] if im["file_name"] in keep]
    ids = {im["id"] for im in images}
    view = {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    return _write_view(pool, out, view)


def image_names(root: Path, schema: Schema) -> list[str]:
    """Pool frames that have at least one person to label, in file order."""
    coco = load_dataset(root, schema).coco
    with_people = {a["image_id"] for a in coco["annotations"]}
    return [im["file_name"] for im in coco["images"] if im["id"] in with_people]


def _write_view(pool: Path, out: Path, coco: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    link = out / IMAGES
    if not link.exists():
        os.symlink((pool / IMAGES).resolve(), link, target_is_directory=True)
    write_coco(coco, out / ANNOTATIONS)
    return out
