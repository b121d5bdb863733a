"""Textured backgrounds, clutter and occluders: what makes people hard to find and read."""
from __future__ import annotations

import cv2
import numpy as np

from cals.synth.canvas import Canvas


def _grid(w: int, h: int, angle: float) -> np.ndarray:
    """Coordinate along a direction, 0..1 across the image."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = x * np.cos(angle) + y * np.sin(angle)
    return (t - t.min()) / (np.ptp(t) + 1e-6)


def _gradient(rng, w, h):
    t = _grid(w, h, rng.uniform(0, 2 * np.pi))[..., None]
    return (1 - t) * rng.uniform(0, 255, 3) + t * rng.uniform(0, 255, 3)


def _blotches(rng, w, h):
    small = rng.uniform(0, 255, (int(rng.integers(2, 10)), int(rng.integers(2, 10)), 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _stripes(rng, w, h):
    t = _grid(w, h, rng.uniform(0, np.pi))[..., None]
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 25) * t)
    if rng.random() < 0.5:
        wave = (wave > 0.5).astype(np.float32)
    return (1 - wave) * rng.uniform(0, 255, 3) + wave * rng.uniform(0, 255, 3)


def _room(rng, w, h):
    """Wall and floor split by a horizon line."""
    horizon = int(h * rng.uniform(0.35, 0.8))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = _gradient(rng, w, horizon)
    img[horizon:] = _stripes(rng, w, h - horizon) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    return img


_TEXTURES = (_gradient, _blotches, _stripes, _room)


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: a random texture, fine noise, and often random shapes on top."""
    w, h = size
    img = _TEXTURES[rng.integers(len(_TEXTURES))](rng, w, h)
    img = img + rng.normal(0, rng.uniform(2, 14), (h, w, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        draw_shapes(img, rng, int(rng.integers(2, 12)))
    return img


def draw_shapes(img: np.ndarray, rng: np.random.Generator, n: int) -> None:
    """Rectangles, circles, lines and limb-like strokes as clutter."""
    h, w = img.shape[:2]
    for _ in range(n):
        color = tuple(int(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.uniform(0.03, 0.25) * h)
        kind = rng.integers(4)
        if kind == 0:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r), color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        else:
            pts = np.array([[x, y]] + [[x + rng.integers(-2 * r, 2 * r + 1), y + rng.integers(-2 * r, 2 * r + 1)]
                                       for _ in range(int(rng.integers(1, 3)))], np.int32)
            cv2.polylines(img, [pts], False, color, max(1, int(rng.uniform(0.01, 0.06) * h)), cv2.LINE_AA)


def draw_occluder(cv: Canvas, rng: np.random.Generator, near: np.ndarray, size: float) -> None:
    """A box or blob over a point of a person (`near`, pixels) as a new top-most part."""
    cv.new_part()
    color = rng.uniform(0, 255, 3)
    centre = near + rng.normal(0, size * 0.3, 2)
    a, b = size * rng.uniform(0.25, 0.6), size * rng.uniform(0.15, 0.5)
    angle = rng.uniform(0, 180)
    if rng.random() < 0.5:
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        corners = np.array([[-a, -b], [a, -b], [a, b], [-a, b]]) @ np.array([[c, s], [-s, c]]) + centre
        cv.polygon(corners, color)
    else:
        cv.ellipse(centre, (a, b), angle, color)


def draw_seat(cv: Canvas, rng: np.random.Generator, hips: np.ndarray, knees: np.ndarray,
              feet: np.ndarray, height: float) -> None:
    """A stool or chair under a sitting person (pixels), drawn before the person so it never hides them."""
    cv.new_part()
    color = rng.uniform(20, 200, 3)
    pelvis, knee = hips.mean(0), knees.mean(0)
    x0 = min(pelvis[0], knee[0]) - 0.1 * height
    x1 = max(pelvis[0], knee[0]) + 0.06 * height
    top = max(pelvis[1], knee[1]) + 0.035 * height
    seat = 0.045 * height
    cv.polygon(np.array([[x0, top], [x1, top], [x1, top + seat], [x0, top + seat]]), color)
    floor = max(feet[:, 1].max(), top + 2 * seat)
    leg = 0.025 * height
    for x in (x0 + leg, x1 - leg):
        cv.line(np.array([[x, top + seat], [x, floor]]), color * 0.8, leg)
    side = knee[0] - pelvis[0]
    if abs(side) > 0.08 * height and rng.random() < 0.7:   # side view: a backrest behind the hips
        x = x0 + leg if side > 0 else x1 - leg
        cv.line(np.array([[x, top], [x, top - rng.uniform(0.25, 0.4) * height]]), color * 0.9, 1.5 * leg)
