"""The strategy interface: what the pool scorer measured about one image, and how a score is made from it.

Two kinds, both "higher = label first":
- `Strategy` scores one image from an `Observation` (`score(obs) -> float`). Most strategies only
  override `score_person`; the base reduces people to one number with a named reduction.
- `PoolStrategy` scores a whole pool at once from per-image scores and pooled backbone features
  (`pool_scores(features, per_image, k=...) -> (N,) array`), for selection that depends on the other
  frames (diversity). It lists the per-image strategies it needs in `components`; an
  `UncertaintyPool` has exactly one, its uncertainty strategy.
Shaped after baal's heuristics: one base, a reduction table, a name→class factory in `__init__`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np

from cals.errors import CalsError
from cals.model.person_pose import PersonPose

def _max(v: np.ndarray) -> float:
    return float(np.max(v))


def _mean(v: np.ndarray) -> float:
    return float(np.mean(v))


def _sum(v: np.ndarray) -> float:
    return float(np.sum(v))


# named functions, not lambdas: a strategy pickles (sharded scoring sends it to other processes)
REDUCTIONS: dict[str, Callable[[np.ndarray], float]] = {"max": _max, "mean": _mean, "sum": _sum}

# What a strategy may ask the scorer to compute beyond the plain prediction.
NEEDS = ("distributions", "mirrored", "previous", "features")


@dataclass
class Observation:
    """One image as the pool scorer saw it with one model version (never kept for the whole pool)."""

    key: str  # stable id of the image in its pool (cache key with the model version)
    people: Sequence[PersonPose]  # current model, with distributions when a strategy needs them
    mirrored: Sequence[PersonPose] | None = None  # current model on the mirrored image, mapped back
    previous: Sequence[PersonPose] | None = None  # previous model version, same boxes, same order


def resolve_reduce(reduce: str | Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
    """A reduction by name ('max', 'mean', 'sum') or a callable taking an array."""
    if callable(reduce):
        return reduce
    try:
        return REDUCTIONS[reduce]
    except (KeyError, TypeError):
        raise CalsError(f"unknown reduction {reduce!r}; choose one of {sorted(REDUCTIONS)}") from None


class Strategy:
    """Per-image score; subclasses override `score_person` (or `score` for image-level measures)."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    higher_is_informative: ClassVar[bool] = True  # flip the sign of the raw measure when False
    reads_model: ClassVar[bool] = True  # False: scores without a prediction (the scorer loads no image)

    def __init__(self, *, points: Sequence[int] | None = None,
                 reduce: str | Callable[[np.ndarray], float] = "max") -> None:
        self.points = None if points is None else list(points)
        self.reduce_name = reduce if isinstance(reduce, str) else getattr(reduce, "__name__", "custom")
        self.reduce = resolve_reduce(reduce)

    @property
    def cache_id(self) -> str:
        """Name plus the options that change the number: scores are cached under it."""
        pts = "all" if self.points is None else ",".join(map(str, self.points))
        return f"{self.name}(reduce={self.reduce_name};points={pts})"

    def score(self, obs: Observation) -> float:
        """People reduced to one number; an image without people scores 0 (nothing to label)."""
        if not obs.people:
            return 0.0
        values = np.array([self.score_person(obs, i) for i in range(len(obs.people))], dtype=float)
        value = self.reduce(values)
        return value if self.higher_is_informative else -value

    def score_person(self, obs: Observation, index: int) -> float:
        raise NotImplementedError

    def _select(self, array: np.ndarray) -> np.ndarray:
        """The configured points (first axis) of a per-point array."""
        return array if self.points is None else array[self.points]

    def __repr__(self) -> str:
        return self.cache_id


class PoolStrategy:
    """Scores depending on the whole pool (diversity); `components` are per-image inputs it needs."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"features"})

    @property
    def components(self) -> list[Strategy]:
        return []

    @property
    def cache_id(self) -> str:
        return self.name

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        """(N,) scores for the N pool images; features (N, D); per_image: cache_id → (N,) scores."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.cache_id


class UncertaintyPool(PoolStrategy):
    """A pool strategy ranking by one per-image uncertainty strategy (its only component)."""

    def __init__(self, uncertainty: Strategy) -> None:
        if not isinstance(uncertainty, Strategy):
            raise CalsError(f"{self.name} needs a per-image uncertainty strategy, not {uncertainty!r}")
        self.uncertainty = uncertainty

    @property
    def components(self) -> list[Strategy]:
        return [self.uncertainty]

    def uncertainty_scores(self, per_image: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(per_image[self.uncertainty.cache_id], dtype=np.float64)


def box_scale(person: PersonPose) -> float:
    """sqrt of the person box area: the length that makes pixel distances comparable across people."""
    x1, y1, x2, y2 = np.asarray(person.bbox, dtype=float)[:4]
    return float(np.sqrt(max((x2 - x1) * (y2 - y1), 1.0)))


class Wrapper(PoolStrategy):
    """A pool strategy that reorders another strategy's ranking (random share, stochastic draws, caps)."""

    def __init__(self, base: Strategy | PoolStrategy) -> None:
        self.base = base
        self.needs = base.needs  # type: ignore[misc]  # per instance: the base's (no features of its own)

    @property
    def components(self) -> list[Strategy]:
        return self.base.components if isinstance(self.base, PoolStrategy) else [self.base]

    def base_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        """The base's (N,) scores for this pool, planned for a round of k."""
        if isinstance(self.base, PoolStrategy):
            return np.asarray(self.base.pool_scores(features, per_image, k=k, labelled=labelled), np.float64)
        return np.asarray(per_image[self.base.cache_id], np.float64)


def order_scores(order: np.ndarray) -> np.ndarray:
    """Scores n..1 that rank the frames in `order` (indices, label first) exactly so."""
    scores = np.empty(len(order))
    scores[np.asarray(order, dtype=np.int64)] = np.arange(len(order), 0, -1)
    return scores
