"""Writing a synthetic COCO keypoints dataset (images/ + annotations.json) with a worker pool.

Each image is drawn from its own generator seeded by (seed, image index), so the output is
identical whatever the number of workers; ids are assigned afterwards in image order.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from cals.data.coco import ANNOTATIONS, IMAGES, write_coco
from cals.errors import CalsError
from cals.schema import Schema, load_schema
from cals.synth.body import KEYPOINT_NAMES
from cals.synth.poses import POSE_FAMILIES
from cals.synth.scene import Person, make_scene

log = logging.getLogger(__name__)
JPEG_QUALITY = 90
_START = "fork" if "fork" in get_all_start_methods() else "spawn"   # spawn: Windows
DEFAULT_MIX = {f: 1.0 / len(POSE_FAMILIES) for f in POSE_FAMILIES}


class SynthError(CalsError):
    """Bad arguments to the synthetic data generator."""


def parse_mix(text: str) -> dict[str, float]:
    """'upright=0.7,bending=0.1,...' -> weights normalised to sum 1 (families left out get 0)."""
    if not text or not text.strip():
        raise SynthError(f"empty pose mix; expected e.g. 'upright=0.7,bending=0.3' with families {POSE_FAMILIES}")
    raw: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SynthError(f"bad pose mix entry {item.strip()!r}; expected 'family=weight'")
        try:
            raw[name] = float(value)
        except ValueError:
            raise SynthError(f"bad weight {value.strip()!r} for pose family {name!r} in the mix") from None
    return check_mix(raw)


def check_mix(mix: dict[str, float]) -> dict[str, float]:
    """Validate family names and weights; returns all families, normalised."""
    unknown = sorted(set(mix) - set(POSE_FAMILIES))
    if unknown:
        raise SynthError(f"unknown pose family {unknown[0]!r} in the mix; choose from {POSE_FAMILIES}")
    for name, w in mix.items():
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise SynthError(f"weight of pose family {name!r} must be a finite number >= 0, got {w!r}")
    total = float(sum(mix.values()))
    if total <= 0:
        raise SynthError("the pose mix needs at least one family with a positive weight")
    return {f: mix.get(f, 0.0) / total for f in POSE_FAMILIES}


@dataclass(frozen=True)
class _Job:
    """What a worker needs to draw image `index` (picklable)."""
    image_dir: str
    seed: int
    size: tuple[int, int]
    max_people: int
    families: tuple[str, ...]
    weights: tuple[float, ...]


def _draw_image(job: _Job, index: int) -> tuple[str, list[Person], float]:
    """Draw, encode and write image `index`; returns (file name, people, blur sigma)."""
    rng = np.random.default_rng([job.seed, index])
    counts = np.arange(1, job.max_people + 1)
    n = int(rng.choice(counts, p=(1 / counts) / (1 / counts).sum()))
    families = [job.families[i] for i in rng.choice(len(job.families), size=n, p=job.weights)]
    scene = make_scene(rng, job.size, families)
    name = f"{index:06d}.jpg"
    ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SynthError(f"could not encode image {name}")
    Path(job.image_dir, name).write_bytes(buf.tobytes())
    return name, scene.people, scene.blur


def _work(args: tuple[_Job, int]) -> tuple[str, list[Person], float]:
    return _draw_image(*args)


def _schema_order(schema: Schema) -> np.ndarray:
    """Index into the generator's keypoints for every schema point, in schema order."""
    missing = [n for n in schema.names if n not in KEYPOINT_NAMES]
    if missing:
        raise SynthError(f"the generator cannot draw schema point(s) {missing}; it knows {list(KEYPOINT_NAMES)}")
    return np.array([KEYPOINT_NAMES.index(n) for n in schema.names])


def _annotation(person: Person, order: np.ndarray, ann_id: int, image_id: int) -> dict[str, Any]:
    kps = person.keypoints[order]
    flat = [v for x, y, vis in kps for v in (round(float(x), 2), round(float(y), 2), int(vis))]
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1,
        "bbox": [round(v, 2) for v in person.bbox], "area": person.area, "iscrowd": 0,
        "num_keypoints": int((kps[:, 2] > 0).sum()), "keypoints": flat,
        "pose_family": person.family, "occluder": bool(person.occluder),
    }


def _check_args(n_images: int, image_size: tuple[int, int], max_people: int, workers: int | None) -> None:
    if not isinstance(n_images, int) or n_images < 1:
        raise SynthError(f"n_images must be a positive integer, got {n_images!r}")
    if len(image_size) != 2 or min(image_size) < 32:
        raise SynthError(f"image_size must be (width, height), each at least 32 px, got {image_size!r}")
    if max_people < 1:
        raise SynthError(f"max_people must be at least 1, got {max_people!r}")
    if workers is not None and workers < 1:
        raise SynthError(f"workers must be at least 1, got {workers!r}")


def _draw_all(jobs: list[tuple[_Job, int]], workers: int, progress: bool):
    """Yield (file name, people, blur sigma) in image order, in-process or from a pool."""
    bar = dict(total=len(jobs), disable=not progress, desc="generate", unit="img")
    if workers == 1 or len(jobs) == 1:
        yield from tqdm(map(_work, jobs), **bar)
        return
    chunk = max(1, min(16, len(jobs) // (workers * 4)))
    # fork needs no `if __name__ == "__main__"` guard in the caller's script; OpenCV is set to one
    # thread while forking so workers neither oversubscribe the cores nor touch a copied thread pool
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with get_context(_START).Pool(workers) as pool:
            yield from tqdm(pool.imap(_work, jobs, chunksize=chunk), **bar)
    finally:
        cv2.setNumThreads(threads)


def generate_dataset(out_dir: str | Path, n_images: int, *, seed: int = 0, mix: dict[str, float] | None = None,
                     schema: Schema | None = None, image_size: tuple[int, int] = (320, 240),
                     max_people: int = 3, workers: int | None = None, progress: bool = True) -> Path:
    """Write out_dir/images/*.jpg and out_dir/annotations.json (COCO keypoints); returns the json path.

    image_size is (width, height). The same seed gives byte-identical output for any `workers`.
    Only the generated files are written; nothing else in out_dir is touched.
    """
    _check_args(n_images, image_size, max_people, workers)
    weights = check_mix(DEFAULT_MIX if mix is None else mix)
    schema = schema or load_schema()
    order = _schema_order(schema)
    out = Path(out_dir)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    job = _Job(str(out / IMAGES), int(seed), (int(image_size[0]), int(image_size[1])), int(max_people),
               POSE_FAMILIES, tuple(weights[f] for f in POSE_FAMILIES))
    workers = min(workers or os.cpu_count() or 1, n_images)
    log.info("generating %d images into %s with %d worker(s), seed %d", n_images, out, workers, seed)
    images, annotations = [], []
    drawn = _draw_all([(job, i) for i in range(n_images)], workers, progress)
    for index, (name, people, blur) in enumerate(drawn):
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": job.size[0], "height": job.size[1],
                       "pose_families": [p.family for p in people], "blur": round(blur, 4)})
        for person in people:
            annotations.append(_annotation(person, order, len(annotations) + 1, image_id))
    coco = {"info": {"description": "CALS synthetic people", "seed": int(seed),
                     "pose_mix": {f: round(w, 6) for f, w in weights.items()}},
            "images": images, "annotations": annotations, "categories": [schema.coco_category()]}
    path = write_coco(coco, out / ANNOTATIONS)
    log.info("wrote %d images, %d people to %s", len(images), len(annotations), path)
    return path
