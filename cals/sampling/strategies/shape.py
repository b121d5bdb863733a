"""Pose implausibility: how far a predicted pose lies from the shape space of the labelled poses."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cals.errors import CalsError
from cals.sampling.strategies.base import Observation, Strategy

MIN_POSES = 5


@dataclass(frozen=True)
class ShapeSpace:
    """PCA of labelled poses after removing position and size (a point distribution model).

    `distance(xy)` is the Mahalanobis distance inside the kept components plus the residual
    outside them (in units of the discarded components' mean variance).
    References: Cootes et al., "Active Shape Models", CVIU 1995.
    """

    points: tuple[int, ...]  # schema indices the space is built on
    mean: np.ndarray  # (2P,)
    components: np.ndarray  # (C, 2P)
    variances: np.ndarray  # (C,)
    residual_var: float
    n_poses: int

    @classmethod
    def fit(cls, poses: np.ndarray, points: Sequence[int], *, keep: float = 0.95) -> "ShapeSpace":
        """poses: (M, P, 2) labelled points (all visible), in the order of `points`."""
        poses = np.asarray(poses, dtype=float)
        if len(poses) < MIN_POSES:
            raise CalsError(f"pose shape space needs at least {MIN_POSES} fully labelled poses, "
                            f"got {len(poses)}")
        x = np.stack([normalise(p) for p in poses])
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = s ** 2 / max(len(x) - 1, 1)
        c = int(np.searchsorted(np.cumsum(var) / max(var.sum(), 1e-12), keep) + 1)
        c = min(c, len(var))
        rest = var[c:]
        residual = float(rest.mean()) if len(rest) and rest.mean() > 0 else float(var[c - 1]) * 0.1
        return cls(tuple(int(i) for i in points), mean, vt[:c], np.maximum(var[:c], 1e-9),
                   max(residual, 1e-9), len(x))

    @classmethod
    def from_coco(cls, coco: dict[str, Any], points: Sequence[int]) -> "ShapeSpace":
        """Fit on the annotations of a COCO keypoints document that label every one of `points`."""
        points = list(points)
        poses = []
        for ann in coco.get("annotations", []):
            kp = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            if (kp[points, 2] > 0).all():
                poses.append(kp[points, :2])
        return cls.fit(np.array(poses).reshape(-1, len(points), 2), points)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(self.mean.tobytes() + self.components.tobytes(), digest_size=6)
        return f"{self.n_poses}:{digest.hexdigest()}"

    def distance(self, xy: np.ndarray) -> float:
        """Distance of one pose (P, 2) — the space's points only — from the labelled poses."""
        z = normalise(np.asarray(xy, dtype=float)) - self.mean
        coef = self.components @ z
        residual = z - self.components.T @ coef
        return float(np.sqrt((coef ** 2 / self.variances).sum() + residual @ residual / self.residual_var))


def normalise(xy: np.ndarray) -> np.ndarray:
    """(P, 2) → (2P,) centred at the mean point and scaled to unit RMS radius."""
    centred = xy - xy.mean(axis=0)
    scale = np.sqrt((centred ** 2).sum(axis=1).mean())
    return (centred / max(scale, 1e-9)).reshape(-1)


class PoseImplausibility(Strategy):
    """Shape-space distance of the predicted pose (the space's points) from the labelled poses.

    Poses unlike anything labelled (a bent spine in an upright data set, or a broken prediction)
    are where labels teach the most. Needs a `ShapeSpace` fitted on the labelled set.
    References: Cootes et al., "Active Shape Models", CVIU 1995 (point distribution model).
    """

    name = "pose"

    def __init__(self, *, space: ShapeSpace, **options) -> None:
        if not isinstance(space, ShapeSpace):
            raise CalsError("pose strategy needs space=ShapeSpace fitted on the labelled poses")
        super().__init__(**options)
        self.space = space

    @property
    def cache_id(self) -> str:
        return f"pose(reduce={self.reduce_name};space={self.space.fingerprint})"

    def score_person(self, obs: Observation, index: int) -> float:
        return self.space.distance(np.asarray(obs.people[index].keypoints)[list(self.space.points)])
