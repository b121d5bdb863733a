"""The sampler's resources for one process: loaded models, the score cache, strategies, pools.

Models load once per version and stay loaded (the heavy part); every request and background round
uses them under one lock. The HTTP routes and the `round` command both call `Sampler`.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cals.cvat.client import CvatSettings, connect
from cals.sampling.rounds import RoundResult, RoundSpec, open_round, round_tasks, used_frames
from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.data.pool import LocalPool
from cals.sampling.ranking import Ranked, rank
from cals.registry import Registry
from cals.sampling.cache import ScoreCache, cache_file
from cals.sampling.scoring import Scorer, strategy_needs
from cals.sampling.sharded import RankGroup, Sharding
from cals.sampling.strategies import PoolStrategy, Strategy
from cals.serving.watcher import ModelWatcher, NoModel
from cals.settings import SamplerEnv
from cals.sampling.inputs import StrategyOptions, build_strategy, labelled_features

log = logging.getLogger(__name__)


class Sampler:
    def __init__(self, settings: SamplerEnv) -> None:
        self.settings = settings
        self.cvat = CvatSettings.from_env(settings)
        self.registry = Registry(str(settings.REGISTRY))
        self.data = Path(settings.DATA)
        self.cache = ScoreCache(cache_file(self.data))
        # the current model as the function serves it: loaded once per promotion, the previous one kept
        # serving when a new version fails to load
        self.models: ModelWatcher[Predictor] = ModelWatcher(
            self.registry, lambda version: Predictor.from_registry(self.registry, version.id))
        self._previous: tuple[str, Predictor] | None = None  # the committee strategy's second model
        self._detector = None
        self.lock = threading.RLock()  # one model user at a time
        # CALS_SAMPLER_RANKS > 1: scoring ranks, started at the first scoring and kept (start-up paid once)
        self.ranks = RankGroup(settings.SAMPLER_RANKS) if settings.SAMPLER_RANKS > 1 else None
        if self.ranks is not None:
            atexit.register(self.ranks.close)

    def close(self) -> None:
        """Stop the scoring ranks, if any (they also stop when this process ends)."""
        if self.ranks is not None:
            self.ranks.close()

    # ---- models ---------------------------------------------------------
    def predictor(self) -> Predictor:
        """The current version's model (cals.serving.watcher, shared with the function)."""
        try:
            return self.models.get()
        except NoModel:
            raise CalsError(f"registry {self.registry.root} has no current model; train and promote one first") from None

    def previous_predictor(self, current_id: str) -> Predictor | None:
        """The version promoted before `current_id` (else its parent), loaded once."""
        prev_id = self.registry.previous(current_id)
        if not prev_id:
            return None
        if self._previous is None or self._previous[0] != prev_id:
            self._previous = (prev_id, Predictor.from_registry(self.registry, prev_id))
        return self._previous[1]

    def scorer(self, strategies: list[Strategy | PoolStrategy]) -> Scorer:
        """A scorer with the current model, plus the previous one when a strategy compares versions."""
        current = self.predictor()
        previous = self.previous_predictor(current.version_id) if "previous" in strategy_needs(strategies) else None
        return Scorer(current, previous=previous, detector=self.detector(), cache=self.cache,
                      batch_size=self.settings.SAMPLER_BATCH, sharding=self.sharding())

    def sharding(self) -> Sharding | None:
        """CALS_SAMPLER_RANKS > 1: the pool's model passes run in that many processes (cals.sampling.sharded)."""
        s = self.settings
        if self.ranks is None:
            return None
        return Sharding(s.SAMPLER_RANKS, str(self.registry.root), detector=s.DETECTOR,
                        cvat=self.cvat if s.POOL == "cvat" else None, group=self.ranks)

    def detector(self):
        if self._detector is None and self.settings.DETECTOR:
            from cals.model.detector import PersonDetector
            self._detector = PersonDetector(self.settings.DETECTOR)
        return self._detector

    # ---- strategies and pools ------------------------------------------
    def strategy(self, name: str | None = None) -> Strategy | PoolStrategy:
        current = self.registry.current()
        schema = self.predictor().schema if current else None
        s = self.settings
        options = StrategyOptions(reduce=s.SAMPLER_REDUCE, group=s.SAMPLER_GROUP, uncertainty=s.SAMPLER_UNCERTAINTY)
        return build_strategy(name or s.SAMPLER_STRATEGY, schema, current, options=options,
                              labelled=s.SAMPLER_LABELLED)

    def labelled_features(self, scorer: Scorer, strategy: Strategy | PoolStrategy) -> np.ndarray | None:
        return labelled_features(scorer, strategy, self.registry.current(), progress=True)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        client = connect(self.cvat)
        try:
            yield client
        finally:
            client.close()

    def pool(self, client, project_id: int | None, schema):
        if self.settings.POOL != "cvat":
            return LocalPool(self.settings.POOL, schema)
        if project_id is None:
            raise CalsError("the CVAT pool needs a project id (request 'project_id' or CALS_PROJECT_ID)")
        from cals.cvat.pool import CvatPool
        return CvatPool(client, project_id, schema, task_name=self.settings.POOL_TASK)

    # ---- the two operations --------------------------------------------
    def rank(self, strategies: list[str], *, project_id: int | None, limit: int) -> dict[str, Any]:
        """Rank the pool by the first strategy, with every strategy's per-image scores."""
        built = [self.strategy(n) for n in strategies]
        with self.lock, self._maybe_client(project_id) as client:
            scorer = self.scorer(built)
            pool = self.pool(client, project_id, scorer.predictor.schema)
            used = used_frames(round_tasks(client, project_id).values()) if client and project_id else set()
            table = scorer.score(pool, built, exclude=used, progress=True)
            ranked = rank(table, built[0], k=min(limit, self.settings.ROUND_SIZE), exclude=used,
                          labelled=self.labelled_features(scorer, built[0]))
        return {"version": table.version, "strategy": built[0].cache_id, "pool_size": len(table.keys),
                "in_rounds": len(used), "scored_now": table.computed,
                "ranking": [_ranked_json(r) for r in ranked[:limit]]}

    def open_round(self, *, project_id: int | None, size: int | None = None, job_size: int | None = None,
                   strategy: str | None = None) -> RoundResult:
        project_id = project_id if project_id is not None else self.settings.PROJECT_ID
        if project_id is None:
            raise CalsError("no CVAT project: pass project_id or set CALS_PROJECT_ID")
        spec = RoundSpec(project_id, size or self.settings.ROUND_SIZE, job_size or self.settings.JOB_SIZE)
        spec.check()
        built = self.strategy(strategy)
        with self.lock, self.client() as client:
            scorer = self.scorer([built])
            pool = self.pool(client, project_id, scorer.predictor.schema)
            return open_round(client, spec, pool, scorer, built, data_dir=self.data,
                              labelled=self.labelled_features(scorer, built))

    def predict_pool(self, *, project_id: int | None) -> dict[str, Any]:
        """Cache the served model's people on every pool frame with labelled people that the cache
        lacks for it: the trainer's pseudo-labels read them (`cals.training.pool_round`)."""
        with self.lock, self._maybe_client(project_id) as client:
            scorer = Scorer(self.predictor(), detector=None, cache=self.cache, batch_size=self.settings.SAMPLER_BATCH)
            pool = self.pool(client, project_id, scorer.predictor.schema)
            unboxed = {item.name for item in pool.items() if item.boxes is None}
            start = time.perf_counter()
            predicted = scorer.predict(pool, exclude=unboxed, progress=True)
        return {"version": scorer.predictor.version_id, "pool_size": len(pool), "predicted_now": predicted,
                "without_people": len(unboxed), "seconds": round(time.perf_counter() - start, 1)}

    @contextlib.contextmanager
    def _maybe_client(self, project_id: int | None) -> Iterator[Any]:
        if self.settings.POOL == "cvat" or project_id is not None:
            with self.client() as client:
                yield client
        else:
            yield None


def _ranked_json(r: Ranked) -> dict[str, Any]:
    return {"rank": r.rank, "frame": r.name, "score": r.score, "scores": r.scores}
