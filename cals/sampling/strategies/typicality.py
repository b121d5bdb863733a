"""Typicality for cold starts: TypiClust, uncertainty among typical frames, and TCM (one, then the other).

With a few dozen labels, a model's uncertainty points at outliers (blur, odd crops) that teach it
little; what helps first is covering the dense regions of the pool with their most typical frames.
Typicality (Hacohen et al.) is 1 / mean distance to a point's nearest neighbours in feature space.
scikit-learn is imported inside the functions: the sampler's settings import this package.
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from cals.sampling.strategies.base import PoolStrategy, Strategy, UncertaintyPool
from cals.sampling.strategies.spec import option_float, option_int

MINIBATCH_ABOVE = 5000  # points; MiniBatchKMeans above, full KMeans below
_EPS = 1e-12


def typicality(features: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """(N,) 1 / mean Euclidean distance to the min(neighbours, N-1) nearest other points (1 if N < 2).

    References: Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit
    High and Low Budgets", ICML 2022 (TypiClust).
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=np.float32)
    count = min(int(neighbours), len(x) - 1)
    if count < 1:
        return np.ones(len(x))
    dist, _ = NearestNeighbors(n_neighbors=count).fit(x).kneighbors()  # no X: a point is not its own neighbour
    return 1.0 / (dist.mean(axis=1).astype(np.float64) + _EPS)


def kmeans(features: np.ndarray, clusters: int, *, seed: int = 0, weights: np.ndarray | None = None,
           n_init: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), centres (C, D)) of k-means with C = min(clusters, N); deterministic per seed.

    MiniBatchKMeans above MINIBATCH_ABOVE points keeps large pools fast. Clusters may stay empty
    when the points have fewer distinct values than C.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    x = np.asarray(features, dtype=np.float32)
    clusters = max(1, min(int(clusters), len(x)))
    if clusters == 1:
        w = np.ones(len(x)) if weights is None else np.asarray(weights, float)
        return np.zeros(len(x), dtype=int), (np.average(x, axis=0, weights=w) if len(x) else x[:0])[None]
    cls = MiniBatchKMeans if len(x) > MINIBATCH_ABOVE else KMeans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: fewer distinct than clusters
        model = cls(n_clusters=clusters, random_state=seed, n_init=n_init).fit(x, sample_weight=weights)
    return np.asarray(model.labels_, dtype=int), model.cluster_centers_


def typiclust_picks(features: np.ndarray, k: int, labelled: np.ndarray | None = None, *, seed: int = 0,
                    max_clusters: int = 500, min_cluster: int = 5, neighbours: int = 20) -> np.ndarray:
    """Indices of min(k, N) pool frames in TypiClust's pick order.

    Labelled (M) and pool (N) features are clustered together into min(M + k, max_clusters)
    clusters. Each pick takes the cluster with the fewest labelled members (earlier picks count),
    ties to the largest, skipping clusters with fewer than `min_cluster` unpicked pool members while
    others have enough; from it the pool member most typical among the cluster's pool members.
    """
    x = np.asarray(features, dtype=np.float32)
    k = min(int(k), len(x))
    if k <= 0:
        return np.zeros(0, dtype=int)
    lab = np.zeros((0, x.shape[1]), np.float32) if labelled is None or not len(labelled) else \
        np.asarray(labelled, dtype=np.float32)
    m = len(lab)
    clusters = min(m + k, max_clusters)
    labels, _ = kmeans(np.concatenate([lab, x]) if m else x, clusters, seed=seed)
    pool_labels = labels[m:]
    covered = np.bincount(labels[:m], minlength=clusters)
    size = np.bincount(labels, minlength=clusters)
    left = np.bincount(pool_labels, minlength=clusters)
    queues: dict[int, list[int]] = {}  # cluster → its pool members, most typical first
    picks = []
    for _ in range(k):
        open_ = left > 0
        big = open_ & (left >= min_cluster)
        candidates = np.flatnonzero(big if big.any() else open_)
        j = int(candidates[np.lexsort((-size[candidates], covered[candidates]))[0]])  # fewest labelled, largest
        if j not in queues:
            members = np.flatnonzero(pool_labels == j)
            queues[j] = list(members[np.argsort(-typicality(x[members], neighbours), kind="stable")])
        picks.append(queues[j].pop(0))
        covered[j] += 1
        left[j] -= 1
    return np.asarray(picks, dtype=int)


class TypiClust(PoolStrategy):
    """TypiClust: the most typical frame of each uncovered cluster (no model involved).

    Scores: the k picks k..1 in pick order; the rest their typicality over the pool, scaled into
    [0, 0.5] (typical frames next). Deterministic for a seed.
    References: Hacohen, Dekel & Weinshall, ICML 2022.
    """

    name = "typiclust"

    def __init__(self, *, seed: int = 0, max_clusters: int = 500, min_cluster: int = 5, neighbours: int = 20) -> None:
        self.seed = option_int(self.name, "seed", seed, 0)
        self.max_clusters = option_int(self.name, "max_clusters", max_clusters, 1)
        self.min_cluster = option_int(self.name, "min_cluster", min_cluster, 1)
        self.neighbours = option_int(self.name, "neighbours", neighbours, 1)

    @property
    def cache_id(self) -> str:
        return (f"typiclust(seed={self.seed};max_clusters={self.max_clusters};min_cluster={self.min_cluster};"
                f"neighbours={self.neighbours})")

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if not len(x):
            return np.zeros(0)
        typical = typicality(x, self.neighbours)
        scores = 0.5 * typical / typical.max()
        picks = typiclust_picks(x, k, labelled, seed=self.seed, max_clusters=self.max_clusters,
                                min_cluster=self.min_cluster, neighbours=self.neighbours)
        scores[picks] = np.arange(len(picks), 0, -1)
        return scores


class TypicalUncertainty(UncertaintyPool):
    """Uncertainty order among typical frames: the least typical `drop` share of the pool ranks last.

    Uncertainty alone fills a round with outliers (a blurred frame is uncertain and unlike anything
    else to label); dropping the atypical tail keeps the uncertain frames that stand for many others.
    The dropped frames keep their uncertainty order among themselves.
    References: Hacohen et al., ICML 2022 (typicality); Doucet et al. 2024 (TCM).
    """

    name = "typical_uncertainty"

    def __init__(self, uncertainty: Strategy, *, drop: float = 0.1, neighbours: int = 20) -> None:
        super().__init__(uncertainty)
        self.drop = option_float(self.name, "drop", drop, 0.0, 1.0, high_open=True)
        self.neighbours = option_int(self.name, "neighbours", neighbours, 1)

    @property
    def cache_id(self) -> str:
        return f"{self.name}({self.uncertainty.cache_id};drop={self.drop};neighbours={self.neighbours})"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        u = self.uncertainty_scores(per_image)
        n = len(u)
        by_u = np.argsort(-u, kind="stable")
        atypical = np.zeros(n, dtype=bool)
        dropped = int(np.floor(self.drop * n + 0.5))
        if dropped:
            atypical[np.argsort(typicality(features, self.neighbours), kind="stable")[:dropped]] = True
        order = np.concatenate([by_u[~atypical[by_u]], by_u[atypical[by_u]]])
        scores = np.empty(n)
        scores[order] = np.arange(n, 0, -1)
        return scores


class TCM(UncertaintyPool):
    """TypiClust while fewer than `switch` frames are labelled, then uncertainty among typical frames.

    The labelled count M is len(labelled) (0 when no labelled features are known). drop=0 is the
    paper's plain uncertainty after the switch.
    References: Doucet et al., "Bridging Diversity and Uncertainty in Active Learning with
    Self-Supervised Pre-Training", 2024 (TCM: TypiClust, then margin uncertainty).
    """

    name = "tcm"

    def __init__(self, uncertainty: Strategy, *, switch: int = 60, drop: float = 0.1, seed: int = 0,
                 max_clusters: int = 500, min_cluster: int = 5, neighbours: int = 20) -> None:
        super().__init__(uncertainty)
        self.switch = option_int(self.name, "switch", switch, 0)
        option_float(self.name, "drop", drop, 0.0, 1.0, high_open=True)  # named as tcm's option
        self.typiclust = TypiClust(seed=seed, max_clusters=max_clusters, min_cluster=min_cluster,
                                   neighbours=neighbours)
        self.typical = TypicalUncertainty(uncertainty, drop=drop, neighbours=neighbours)

    @property
    def cache_id(self) -> str:
        return f"tcm(switch={self.switch};{self.typiclust.cache_id};{self.typical.cache_id})"

    def phase(self, labelled: np.ndarray | None) -> PoolStrategy:
        """The strategy that ranks with these labelled features: typiclust below `switch`, else typical."""
        m = 0 if labelled is None else len(labelled)
        return self.typiclust if m < self.switch else self.typical

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        return self.phase(labelled).pool_scores(features, per_image, k=k, labelled=labelled)
