"""One synthetic image: background, people placed with scale variation and truncation, occluders,
and each person's keypoints with COCO visibility read back from what was actually drawn."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from cals.synth.background import background, draw_occluder, draw_seat
from cals.synth.body import HEAD_RADIUS, KEYPOINT_NAMES, SPINE_CHAIN, Body, build_body
from cals.synth.canvas import Canvas
from cals.synth.poses import sample_pose
from cals.synth.render import Placement, draw_person, sample_look

_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


@dataclass
class Person:
    """One annotated person: keypoints (K, 3) as x, y, visibility in KEYPOINT_NAMES order;
    `occluder` says an occluder was drawn over one of its points (reports of what a sampler picks)."""
    family: str
    keypoints: np.ndarray
    bbox: list[float]
    area: float
    occluder: bool = False


class Scene(NamedTuple):
    """One drawn image (BGR), its people, and the Gaussian blur sigma applied to it (0.0: none)."""
    image: np.ndarray
    people: list[Person]
    blur: float


def _place(rng: np.random.Generator, body: Body, size: tuple[int, int], height: float) -> Placement:
    """Scale and shift so the body lands in the frame, sometimes partly outside it."""
    probe = Placement(height, body.pose.roll, np.zeros(2))
    pts = np.array([probe.point(p) for p in body.points.values()])
    lo, hi = pts.min(0) - HEAD_RADIUS * height, pts.max(0) + 0.03 * height
    extent = hi - lo
    inside = rng.uniform(0.45, 0.85, 2) if rng.random() < 0.3 else np.ones(2)
    a = -(1 - inside) * extent
    b = np.array(size) - inside * extent
    corner = rng.uniform(np.minimum(a, b), np.maximum(a, b))
    return Placement(height, body.pose.roll, corner - lo)


def _pair(body: Body, at: Placement, joint: str) -> np.ndarray:
    """(2, 2) pixel positions of the left and right `joint`."""
    return np.array([at.point(body.points[f"{side}_{joint}"]) for side in ("left", "right")])


def _self_occluded(body: Body) -> np.ndarray:
    """Points hidden by the body itself: the far side of the head, the spine when facing the camera."""
    hidden = np.zeros(len(KEYPOINT_NAMES), bool)
    for i, name in enumerate(KEYPOINT_NAMES):
        if name in _HEAD:
            hidden[i] = body.points[name][2] < body.head_center[2] - 0.2 * HEAD_RADIUS
        elif name in SPINE_CHAIN:
            hidden[i] = body.spine_frames[SPINE_CHAIN.index(name)][2, 2] > 0.35
    return hidden


def _annotate(cv: Canvas, body: Body, at: Placement, owner: dict[str, int], family: str,
              first_part: int) -> tuple[Person, np.ndarray] | None:
    """Keypoints, visibility, box and owning part per keypoint of the person just drawn;
    None when nothing of the person landed in the frame."""
    w, h = cv.size
    # cv2 draws coordinate x at the centre of pixel x; COCO puts that centre at x + 0.5
    xy = np.array([at.point(body.points[n]) for n in KEYPOINT_NAMES]) + 0.5
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    mask = cv.labels >= first_part
    ys, xs = np.nonzero(mask)
    if not len(xs) and not inside.any():
        return None
    xs = np.concatenate([xs, xs + 1, xy[inside, 0]])
    ys = np.concatenate([ys, ys + 1, xy[inside, 1]])
    x0, y0 = max(0.0, float(xs.min())), max(0.0, float(ys.min()))
    x1, y1 = min(float(w), float(xs.max())), min(float(h), float(ys.max()))
    kps = np.zeros((len(KEYPOINT_NAMES), 3))
    kps[inside, :2] = xy[inside]
    kps[inside, 2] = 2
    kps[inside & _self_occluded(body), 2] = 1
    owners = np.array([owner[n] for n in KEYPOINT_NAMES])
    return Person(family, kps, [x0, y0, x1 - x0, y1 - y0], float(mask.sum())), owners


def _mark_covered(cv: Canvas, person: Person, owners: np.ndarray) -> None:
    """Visibility 1 where a later part (an occluder, a nearer person) covers the point."""
    k = person.keypoints
    on = k[:, 2] > 0
    xi = np.clip(k[:, 0].astype(int), 0, cv.size[0] - 1)
    yi = np.clip(k[:, 1].astype(int), 0, cv.size[1] - 1)
    covered = on & (cv.labels[yi, xi] > owners)
    k[covered, 2] = 1


def make_scene(rng: np.random.Generator, size: tuple[int, int], families: list[str]) -> Scene:
    """Draw one image with one person per entry of `families`."""
    cv = Canvas(background(rng, size))
    crowd = 1.0 if len(families) == 1 else rng.uniform(0.45, 0.85)
    heights = sorted(rng.uniform(0.45, 1.15, len(families)) * size[1] * crowd)  # far (small) first
    people, owners = [], []
    for family, height in zip(families, heights):
        body = build_body(sample_pose(family, rng))
        at = _place(rng, body, size, height)
        if family == "sitting":
            draw_seat(cv, rng, *(_pair(body, at, joint) for joint in ("hip", "knee", "ankle")), height)
        first = cv.part + 1
        owner = draw_person(cv, body, at, sample_look(rng))
        annotated = _annotate(cv, body, at, owner, family, first)
        if annotated is None:
            continue
        person, own = annotated
        people.append(person)
        owners.append(own)
        if rng.random() < 0.4:
            visible = np.flatnonzero(person.keypoints[:, 2] > 0)
            if len(visible):
                draw_occluder(cv, rng, person.keypoints[rng.choice(visible), :2], height * rng.uniform(0.2, 0.5))
                person.occluder = True
    for person, own in zip(people, owners):
        _mark_covered(cv, person, own)
    image, blur = _finish(rng, cv.image)
    return Scene(image, people, blur)


def _finish(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, float]:
    """Camera-ish degradations: blur, contrast/brightness, sensor noise; returns (image, blur sigma).

    The draws' order is what makes a seed's images; recording the sigma must not change it."""
    sigma = 0.0
    if rng.random() < 0.35:
        sigma = float(rng.uniform(0.5, 1.3))
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    out = img.astype(np.float32) * rng.uniform(0.75, 1.2) + rng.uniform(-25, 25)
    out += rng.normal(0, rng.uniform(0, 7), img.shape[:2] + (1,)).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), sigma
