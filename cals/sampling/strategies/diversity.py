"""Diversity over the pool: core-set k-center greedy, and the uncertainty-then-clusters hybrid."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from cals.sampling.strategies.base import PoolStrategy, Strategy, UncertaintyPool
from cals.sampling.strategies.spec import option_float
from cals.sampling.strategies.typicality import kmeans


def k_center_greedy(features: np.ndarray, k: int, labelled: np.ndarray | None = None) -> np.ndarray:
    """(N,) scores whose descending order is the k-center greedy order.

    The i-th pick is the point farthest from the labelled points and earlier picks (with nothing
    labelled, the first is the farthest from the mean); picks score k..1 in pick order. The rest
    score their scaled distance to the nearest pick (never above the last pick's distance, so the
    order continues the greedy one) in [0, 0.5]. O(N·k·D) time, O(N) extra memory.
    features: (N, D); labelled: (M, D) or None.
    """
    x = np.asarray(features, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0)
    if labelled is not None and len(labelled):
        nearest = np.full(n, np.inf, dtype=np.float32)
        for start in range(0, len(labelled), 1024):  # bounded memory for large labelled sets
            chunk = np.asarray(labelled[start:start + 1024], dtype=np.float32)
            d = np.sqrt(((x[:, None, :] - chunk[None]) ** 2).sum(-1))
            nearest = np.minimum(nearest, d.min(axis=1))
    else:
        nearest = np.full(n, np.inf, dtype=np.float32)
    first = np.linalg.norm(x - x.mean(axis=0), axis=1)  # nothing labelled: start farthest from the mean
    picked = np.zeros(n, dtype=bool)
    scores = np.zeros(n)
    for step in range(min(k, n)):
        masked = np.where(picked, -np.inf, nearest if np.isfinite(nearest).any() else first)
        i = int(np.argmax(masked))
        picked[i] = True
        scores[i] = min(k, n) - step  # picks in pick order, above everything else
        nearest = np.minimum(nearest, np.linalg.norm(x - x[i], axis=1))
    rest = (nearest if np.isfinite(nearest).all() else first)[~picked]
    if len(rest):
        scores[~picked] = 0.5 * rest / (rest.max() + 1e-12)  # in [0, 0.5], below every pick (>= 1)
    return scores


class CoreSet(PoolStrategy):
    """Core-set selection: k-center greedy on pooled backbone features.

    Covers the feature space so that every pool frame is close to a labelled or selected one;
    no uncertainty involved, so it also finds far-away clusters a confident model ignores.
    References: Sener & Savarese, "Active Learning for CNNs: A Core-Set Approach", ICLR 2018.
    """

    name = "coreset"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        return k_center_greedy(features, k, labelled)


def cluster_picks(features: np.ndarray, weights: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Indices of min(k, N) points: per cluster of a weighted k-means, its member nearest the centre.

    A cluster left empty (duplicate points) gives its pick to the heaviest point not yet picked.
    References: Zhdanov, "Diverse mini-batch Active Learning", 2019.
    """
    x = np.asarray(features, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float64)
    k = min(int(k), len(x))
    if k <= 0:
        return np.zeros(0, dtype=int)
    labels, centres = kmeans(x, k, seed=seed, weights=w)
    picks = []
    for j, centre in enumerate(centres):
        members = np.flatnonzero(labels == j)
        if len(members):
            picks.append(int(members[np.argmin(((x[members] - centre) ** 2).sum(axis=1))]))
    taken = set(picks)
    rest = [i for i in np.argsort(-w, kind="stable") if i not in taken]
    return np.asarray(picks + rest[:k - len(picks)], dtype=int)


class Hybrid(UncertaintyPool):
    """Uncertainty shortlist (the `factor`·k most uncertain), then one pick per cluster of it.

    Pure uncertainty fills a round with near-duplicates of one hard situation; the shortlist keeps
    the informative frames, and a k-means into k clusters weighted by uncertainty (Zhdanov's diverse
    mini-batch) spreads the round over them: each cluster gives the shortlisted frame nearest its
    centre. The k picks rank first in uncertainty order; every other frame follows in uncertainty
    order. Labelled frames play no part. Deterministic (fixed k-means seed).
    References: Zhdanov, "Diverse mini-batch Active Learning", 2019; Ash et al., "BADGE", ICLR 2020.
    """

    name = "hybrid"

    def __init__(self, uncertainty: Strategy, *, factor: float = 3.0) -> None:
        super().__init__(uncertainty)
        self.factor = option_float(self.name, "factor", factor, 1.0, 1000.0)

    @property
    def cache_id(self) -> str:
        return f"hybrid({self.uncertainty.cache_id};factor={self.factor})"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        u = self.uncertainty_scores(per_image)
        n = len(u)
        by_u = np.argsort(-u, kind="stable")  # most uncertain first
        shortlist = by_u[:min(n, max(k, int(np.ceil(self.factor * k))))]
        picks = shortlist[cluster_picks(np.asarray(features)[shortlist], _weights(u[shortlist]), k)]
        picked = np.zeros(n, dtype=bool)
        picked[picks] = True
        order = np.concatenate([by_u[picked[by_u]], by_u[~picked[by_u]]])  # picks, then the rest; each by u
        scores = np.empty(n)
        scores[order] = np.arange(n, 0, -1)
        return scores


def _weights(u: np.ndarray) -> np.ndarray:
    """Non-negative k-means weights from uncertainty scores (shifted when a strategy scores below 0)."""
    w = u - min(float(u.min()), 0.0) if len(u) else u
    return w + 1e-6 * max(float(w.max()) if len(w) else 0.0, 1.0)
