"""A drawing surface that also records, per pixel, which drawn part is on top.

Every shape is drawn twice: anti-aliased into the image and as a part number into
`labels`. Parts are numbered in drawing order, so a keypoint is occluded exactly when
the part on top of its pixel was drawn after every part the keypoint belongs to.
"""
from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4                      # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=np.float64) * _ONE).astype(np.int32)


class Canvas:
    """Image (H, W, 3) uint8 BGR plus a (H, W) uint16 map of the top-most part number (0 = background)."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.labels = np.zeros(image.shape[:2], np.uint16)
        self.part = 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]

    def new_part(self) -> int:
        """Start a new part: later shapes sit on top of everything drawn before."""
        self.part += 1
        return self.part

    def polygon(self, pts: np.ndarray, color) -> None:
        p = [_fixed(pts).reshape(-1, 1, 2)]
        cv2.fillPoly(self.image, p, _bgr(color), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.labels, p, self.part, cv2.LINE_8, _SHIFT)

    def line(self, pts: np.ndarray, color, thickness: float, *, label: bool = True) -> None:
        """Polyline with round ends; `label=False` draws decoration that owns no pixels."""
        p = [_fixed(pts).reshape(-1, 1, 2)]
        t = max(1, int(round(thickness)))
        cv2.polylines(self.image, p, False, _bgr(color), t, cv2.LINE_AA, _SHIFT)
        if label:
            cv2.polylines(self.labels, p, False, self.part, t, cv2.LINE_8, _SHIFT)

    def ellipse(self, center, axes, angle: float, color, *, label: bool = True) -> None:
        c = tuple(int(v) for v in _fixed(center))
        ax = tuple(max(1, int(v)) for v in _fixed(axes))
        cv2.ellipse(self.image, c, ax, float(angle), 0, 360, _bgr(color), -1, cv2.LINE_AA, _SHIFT)
        if label:
            cv2.ellipse(self.labels, c, ax, float(angle), 0, 360, self.part, -1, cv2.LINE_8, _SHIFT)


def _bgr(color) -> tuple[int, int, int]:
    return tuple(int(np.clip(c, 0, 255)) for c in color)
