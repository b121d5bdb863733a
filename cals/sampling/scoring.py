"""Score a pool with the current model: streamed in batches, cached per (image, model version).

Distributions live only while their image is scored; what is kept for the whole pool is one
number per strategy, one pooled feature vector per image (for diversity) and the keys — memory
grows by a few hundred bytes per image, never by a heatmap.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from cals.errors import CalsError
from cals.model.predict import PersonPose, Predictor
from cals.sampling.model_passes import image_feature, predict_mirrored
from cals.data.pool import Pool, PoolItem
from cals.sampling.cache import ScoreCache
from cals.sampling.strategies import Observation, PoolStrategy, Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardReport:
    """What the ranks did: images each scored, and where the time went."""

    scored: list[int]  # by rank
    startup_s: float  # from the request until every rank was ready: process start-up, models of a new version
    scoring_s: float  # the ranks' scoring, until rank 0 stored the last step
    exit_s: float  # until the result was back (and, for ranks started for this scoring alone, they had exited)

    @property
    def seconds(self) -> float:
        return self.startup_s + self.scoring_s + self.exit_s


class Filler(Protocol):
    """Fills the score cache for a scoring before the Scorer reads it: `cals.sampling.sharded.Sharding`
    (several processes, CALS_SAMPLER_RANKS)."""

    def fill(self, scorer: "Scorer", pool: Pool, strategies: Sequence[Strategy | PoolStrategy], *,
             exclude: set[str] | frozenset[str] = frozenset(), progress: bool = True) -> ShardReport: ...


@dataclass
class ScoreTable:
    """Per-image scores of one pool with one model version, in pool order."""

    version: str
    keys: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)  # cache_id → scores
    features: list[np.ndarray] = field(default_factory=list)
    computed: int = 0  # images scored now (the rest came from the cache)
    sharded: ShardReport | None = None  # who scored what now, and how long it took (sharded scoring only)

    def feature_matrix(self) -> np.ndarray:
        return np.stack(self.features) if self.features else np.zeros((0, 0), np.float32)


@dataclass
class Scorer:
    """The models and options one scoring run needs; build once, score many pools."""

    predictor: Predictor
    previous: Predictor | None = None  # for committee disagreement
    detector: object = None  # PersonDetector for frames without boxes
    cache: ScoreCache = field(default_factory=lambda: ScoreCache(None))
    batch_size: int = 16
    sharding: Filler | None = None  # several processes measure what the cache lacks (CALS_SAMPLER_RANKS)

    def score(self, pool: Pool, strategies: Sequence[Strategy | PoolStrategy], *,
              exclude: set[str] | frozenset[str] = frozenset(), progress: bool = True) -> ScoreTable:
        """All per-image scores the strategies need, for every pool image not named in `exclude`."""
        per_image = per_image_strategies(strategies)
        needs = strategy_needs(strategies)
        if "previous" in needs and self.previous is None:
            raise CalsError("committee disagreement needs a previous model version; the registry has none")
        table = ScoreTable(self.predictor.version_id, scores={s.cache_id: [] for s in per_image})
        if self.sharding is not None and next(self.pending(pool, per_image, needs, exclude), None) is not None:
            # the ranks fill the cache; the loop below then builds the table from it, as for a rerun
            table.sharded = self.sharding.fill(self, pool, strategies, exclude=exclude, progress=progress)
            table.computed = sum(table.sharded.scored)
        items = (item for item in pool.items() if item.name not in exclude)
        bar = tqdm(total=max(len(pool) - len(exclude), 0), desc="scoring pool", unit="img", disable=not progress)
        with bar:
            for batch in _batches(items, self.batch_size):
                entries, computed = self._batch(pool, batch, per_image, needs)
                table.computed += computed
                for item in batch:
                    e = entries[item.key]
                    table.keys.append(item.key)
                    table.names.append(item.name)
                    for s in per_image:
                        table.scores[s.cache_id].append(e["scores"][s.cache_id])
                    if "features" in needs:
                        table.features.append(e["features"])
                bar.update(len(batch))
        return table

    def predict(self, pool: Pool, *, exclude: set[str] | frozenset[str] = frozenset(),
                progress: bool = True) -> int:
        """Cache the people of every pool frame not in `exclude` that the cache lacks for this version,
        without scoring them: what pseudo-labels read when the order is random and nothing scored the
        pool. Returns how many frames were predicted now."""
        todo_total = 0
        items = (item for item in pool.items() if item.name not in exclude)
        bar = tqdm(total=max(len(pool) - len(exclude), 0), desc="predicting pool", unit="img", disable=not progress)
        with bar:
            for batch in _batches(items, self.batch_size):
                cached = self.cache.lookup(self.predictor.version_id, [i.key for i in batch], ())
                todo = [i for i in batch if i.key not in cached]
                if todo:
                    self.cache.store(self.predictor.version_id, self.measure(todo, pool.load(todo), [], set()))
                    todo_total += len(todo)
                bar.update(len(batch))
        return todo_total

    def pending(self, pool: Pool, per_image: list[Strategy], needs: set[str],
                exclude: set[str] | frozenset[str] = frozenset()) -> Iterator[PoolItem]:
        """Pool items, in pool order, whose cache entry lacks something the strategies need: what a
        scoring would measure (none for strategies that read no pixel)."""
        items = (item for item in pool.items() if item.name not in exclude)
        for batch in _batches(items, self.batch_size):
            yield from self._lookup(batch, per_image, needs)[1]

    def _lookup(self, batch: list[PoolItem], per_image: list[Strategy], needs: set[str]
                ) -> tuple[dict[str, dict], list[PoolItem]]:
        """Cached entries of the batch, and the items to measure (those the cache lacks or holds incomplete)."""
        if not reads_pixels(per_image, needs):
            return {}, []
        ids = [s.cache_id for s in per_image]
        cached = self.cache.lookup(self.predictor.version_id, [i.key for i in batch], ids)
        return cached, [i for i in batch if not _complete(cached.get(i.key), ids, "features" in needs)]

    def _batch(self, pool: Pool, batch: list[PoolItem], per_image: list[Strategy], needs: set[str]
               ) -> tuple[dict[str, dict], int]:
        """Cached entries of the batch, completed by measuring what is missing; and how many were measured."""
        if not reads_pixels(per_image, needs):  # random: no pixels, no model, no cache
            return {i.key: {"scores": {s.cache_id: s.score(Observation(i.key, [])) for s in per_image},
                            "features": None} for i in batch}, 0
        cached, todo = self._lookup(batch, per_image, needs)
        if todo:
            fresh = self.measure(todo, pool.load(todo), per_image, needs)
            self.cache.store(self.predictor.version_id, fresh)
            cached.update(fresh)
        return cached, len(todo)

    def measure(self, items: list[PoolItem], images: list[np.ndarray], per_image: list[Strategy],
                needs: set[str]) -> dict[str, dict]:
        """Cache entries (people, feature, scores) of items whose pixels are loaded, by key."""
        return {item.key: self._measure(item, image, per_image, needs) for item, image in zip(items, images)}

    def _measure(self, item: PoolItem, image: np.ndarray, per_image: list[Strategy], needs: set[str]) -> dict:
        boxes = self.boxes(item, image)
        people = self.predictor.predict(image, boxes, distributions="distributions" in needs)
        obs = Observation(item.key, people)
        if "mirrored" in needs:
            obs.mirrored = predict_mirrored(self.predictor, image, boxes)
        if "previous" in needs:
            obs.previous = self.previous.predict(image, boxes, distributions=False)
        features = image_feature(self.predictor, people) if "features" in needs else None
        return {"people": [person_record(p) for p in people], "features": features,
                "scores": {s.cache_id: s.score(obs) for s in per_image}}

    def frame_record(self, item: PoolItem, data: bytes) -> dict:
        """What a round's pre-annotations need of a chosen frame: its size, the people the model found
        when it scored the frame (from the cache; predicted again, same model and boxes, without one)
        and the points people already labelled."""
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        people = self.cache.people(self.predictor.version_id, item.key)
        if people is None:
            people = [person_record(p) for p in self.predictor.predict(image, self.boxes(item, image),
                                                                       distributions=False)]
        return {"name": item.name, "width": image.shape[1], "height": image.shape[0], "people": people,
                "labelled": item.labelled}

    def boxes(self, item: PoolItem, image: np.ndarray) -> np.ndarray:
        if item.boxes is not None:
            return item.boxes
        if self.detector is None:
            raise CalsError(f"pool frame {item.name!r} has no person boxes; set CALS_DETECTOR to detect them")
        return self.detector(image)[:, :4]


def per_image_strategies(strategies: Sequence[Strategy | PoolStrategy]) -> list[Strategy]:
    """The per-image strategies to compute: the given ones plus pool strategies' components."""
    out: dict[str, Strategy] = {}
    for s in strategies:
        for c in (s.components if isinstance(s, PoolStrategy) else [s]):
            out.setdefault(c.cache_id, c)
    return list(out.values())


def strategy_needs(strategies: Sequence[Strategy | PoolStrategy]) -> set[str]:
    """Extra passes (see strategies.NEEDS) the strategies and their components ask for."""
    return set().union(*(s.needs for s in [*strategies, *per_image_strategies(strategies)]))


def reads_pixels(per_image: list[Strategy], needs: set[str]) -> bool:
    """Whether scoring loads images and runs the model (not for `random`, which scores keys alone)."""
    return bool(needs) or any(s.reads_model for s in per_image)


def person_record(p: PersonPose) -> dict:
    return {"bbox": [round(float(v), 2) for v in p.bbox[:4]],
            "keypoints": np.round(np.asarray(p.keypoints, float), 2).tolist(),
            "scores": np.round(np.asarray(p.scores, float), 4).tolist()}


def _complete(entry: dict | None, ids: list[str], need_features: bool) -> bool:
    return entry is not None and all(i in entry["scores"] for i in ids) and \
        (not need_features or entry["features"] is not None)


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
