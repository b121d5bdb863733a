"""Uncertainty from one forward pass: random baseline, least confidence, entropy, multi-peak entropy."""
from __future__ import annotations

import hashlib

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.special import softmax

from cals.model.person_pose import PersonPose
from cals.sampling.strategies.base import Observation, Strategy
from cals.sampling.strategies.spec import option_float, option_int

_EPS = 1e-12


class Random(Strategy):
    """Uniform random order, reproducible per (seed, image): the baseline every strategy must beat."""

    name = "random"
    reads_model = False

    def __init__(self, *, seed: int = 0, **options) -> None:
        super().__init__(**options)
        self.seed = option_int(self.name, "seed", seed)

    @property
    def cache_id(self) -> str:
        return f"random(seed={self.seed})"

    def score(self, obs: Observation) -> float:
        digest = hashlib.blake2b(f"{self.seed}:{obs.key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64


class LeastConfidence(Strategy):
    """1 − mean confidence (heatmap peak / SimCC maximum) of the selected points.

    References: Settles, "Active Learning Literature Survey", 2009 (least confidence).
    """

    name = "least_confidence"
    needs = frozenset()

    def score_person(self, obs: Observation, index: int) -> float:
        return 1.0 - float(np.mean(self._select(obs.people[index].scores)))


class Entropy(Strategy):
    """Mean normalised Shannon entropy (0..1) of each selected point's location distribution.

    A flat or smeared heatmap/SimCC vector means the model does not know where the point is.
    Heatmaps are clipped at 0 and normalised to sum 1; SimCC vectors go through a softmax.
    References: Shannon entropy sampling, Settles 2009; for pose, Liu & Ferrari, ICCV 2017.
    """

    name = "entropy"
    needs = frozenset({"distributions"})

    def score_person(self, obs: Observation, index: int) -> float:
        per_axis = [_entropy(p) / np.log(p.shape[1]) for p in point_probabilities(obs.people[index])]
        return float(np.mean([self._select(h).mean() for h in per_axis]))


class MultiPeakEntropy(Strategy):
    """Entropy over the local maxima of each point's distribution (Liu & Ferrari's MPE).

    One sharp peak scores 0 however wide it is; two competing places for a point (a left/right
    confusion, an occluded spine) score high. Peaks are local maxima above `min_peak` × the
    highest one; their heights, normalised to sum 1, are the distribution whose entropy is taken.
    References: Liu & Ferrari, "Active Learning for Human Pose Estimation", ICCV 2017.
    """

    name = "multipeak_entropy"
    needs = frozenset({"distributions"})

    def __init__(self, *, min_peak: float = 0.1, **options) -> None:
        super().__init__(**options)
        self.min_peak = option_float(self.name, "min_peak", min_peak, 0.0, 1.0)

    @property
    def cache_id(self) -> str:
        return f"{super().cache_id[:-1]};min_peak={self.min_peak})"

    def score_person(self, obs: Observation, index: int) -> float:
        maps = point_maps(obs.people[index])
        return float(np.mean([self._select(self._peak_entropy(m)).mean() for m in maps]))

    def _peak_entropy(self, maps: np.ndarray) -> np.ndarray:
        """(K,) entropies of the peak heights of (K, ...) non-negative maps."""
        size = (1,) + (3,) * (maps.ndim - 1)
        flat = maps.reshape(len(maps), -1)
        is_peak = (maps == maximum_filter(maps, size=size, mode="constant")).reshape(len(maps), -1)
        top = flat.max(axis=1, keepdims=True)
        heights = np.where(is_peak & (flat >= self.min_peak * top) & (flat > 0), flat, 0.0)
        return _entropy(heights / (heights.sum(axis=1, keepdims=True) + _EPS))


def point_maps(person: PersonPose) -> list[np.ndarray]:
    """Non-negative per-point maps: [(K, H, W)] for heatmaps, [(K, Wx), (K, Wy)] for SimCC."""
    d = person.distributions
    if "heatmaps" in d:
        return [np.clip(np.asarray(d["heatmaps"], dtype=np.float64), 0.0, None)]
    if "simcc_x" in d:
        return [softmax(np.asarray(d[k], dtype=np.float64), axis=1) for k in ("simcc_x", "simcc_y")]
    raise ValueError("prediction has no distributions: predict with distributions=True")


def point_probabilities(person: PersonPose) -> list[np.ndarray]:
    """Per-point probability vectors (K, M), one array per axis (one for heatmaps)."""
    out = []
    for m in point_maps(person):
        flat = m.reshape(len(m), -1) + _EPS
        out.append(flat / flat.sum(axis=1, keepdims=True))
    return out


def _entropy(p: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy (nats) of (K, M) probabilities."""
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
