"""Diversity over the pool: core-set k-center greedy, and the uncertainty-then-diversity hybrid."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from cals.errors import CalsError
from cals.sampling.strategies.base import PoolStrategy, Strategy


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


class Hybrid(PoolStrategy):
    """Uncertainty shortlist (the `factor`·k most uncertain), then core-set order inside it.

    Pure uncertainty fills a round with near-duplicates of one hard situation; the shortlist keeps
    the informative frames, the diversity step spreads the round over them. The shortlist ranks
    above the rest; the rest keep their uncertainty order.
    References: Ash et al., "BADGE", ICLR 2020 (uncertainty + diversity); Sener & Savarese 2018.
    """

    name = "hybrid"
    needs = frozenset({"features"})

    def __init__(self, uncertainty: Strategy, *, factor: float = 3.0) -> None:
        if not isinstance(uncertainty, Strategy):
            raise CalsError("hybrid needs a per-image uncertainty strategy to shortlist with")
        if not factor >= 1:
            raise CalsError(f"hybrid factor must be >= 1, got {factor!r}")
        self.uncertainty = uncertainty
        self.factor = float(factor)

    @property
    def components(self) -> list[Strategy]:
        return [self.uncertainty]

    @property
    def cache_id(self) -> str:
        return f"hybrid({self.uncertainty.cache_id};factor={self.factor})"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        u = np.asarray(per_image[self.uncertainty.cache_id], dtype=np.float64)
        n = len(u)
        size = min(n, max(k, int(np.ceil(self.factor * k))))
        shortlist = np.argsort(-u, kind="stable")[:size]
        diverse = k_center_greedy(np.asarray(features)[shortlist], k, labelled)
        ranks = np.empty(n)
        ranks[np.argsort(-u, kind="stable")] = np.arange(n)  # uncertainty rank 0 = most uncertain
        scores = -ranks  # the rest: uncertainty order, all below 0 ...
        order = np.argsort(-diverse, kind="stable")
        scores[shortlist[order]] = np.arange(size, 0, -1)  # ... the shortlist: diversity order, > 0
        return scores
