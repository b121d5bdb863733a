"""The trainer's pool set for one run: the pool the sampler ranks, the served version's predictions
from the sampler's score cache, the labelled set's frames left out (`cals.training.pool_set`).

A run never waits for predictions: it reads what the sampler cached for the served version (the
sampler predicts the pool after each promotion, `sampler/README.md`) and trains without
pseudo-labels when there are none, saying so in its record. The pool set is written under
`$CALS_DATA/pool-set/`; a CVAT pool's frames are downloaded there once and kept.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from cals.registry import Registry
from cals.sampling.cache import ScoreCache, cache_file
from cals.data.pool import LocalPool, Pool
from cals.schema import Schema
from cals.training.pool_set import PoolTraining, build_pool_set
from cals.training.train_process import PoolData

log = logging.getLogger(__name__)
POOL_SET = "pool-set"


def run_pool_set(training: PoolTraining, pool: str, data_root: Path, registry: Registry, schema: Schema, *,
                 labelled: set[str], open_cvat_pool: Callable[[], contextlib.AbstractContextManager[Pool]],
                 ) -> tuple[dict[str, Any], PoolData | None]:
    """(the run record's "pool_set", what training mixes in or None). `pool`: CALS_POOL ("cvat" or a
    COCO folder); `open_cvat_pool` opens the project's pool task; `labelled`: frame names people labelled."""
    if not training.enabled:
        return {"used": False, "reason": "off (CALS_POOL_LABELS and CALS_PSEUDO_LABELS are 0, or "
                                         "CALS_HUMAN_SHARE is 1)"}, None
    start = time.perf_counter()
    served = registry.current()
    cache = ScoreCache(cache_file(data_root) if training.pseudo else None)  # None: no pseudo-labels
    try:
        with _opened(pool, schema, open_cvat_pool) as opened:
            people = (lambda item: cache.people(served.id, item.key)) if training.pseudo else None
            report = build_pool_set(opened, data_root / POOL_SET, schema, training, exclude=labelled, people=people)
    finally:
        cache.close()  # also when the pool fails: the run goes on without the pool set
    if training.pseudo and not report["frames_with_predictions"]:
        report["pseudo_labels"] = (f"none: the sampler has cached no prediction of the served version {served.id} "
                                   "for these frames yet")
        log.warning("pool set without pseudo-labels: %s", report["pseudo_labels"])
    report.update(used=bool(report["people"]), version=served.id, seconds=round(time.perf_counter() - start, 1))
    if not report["people"]:
        report["reason"] = "no pool frame with a labelled person or a pseudo-label: human labels alone"
        return report, None
    return report, PoolData(data_root / POOL_SET, training.human_share)


@contextlib.contextmanager
def _opened(pool: str, schema: Schema, open_cvat_pool: Callable[[], contextlib.AbstractContextManager[Pool]]
            ) -> Iterator[Pool]:
    if pool != "cvat":
        yield LocalPool(pool, schema)
        return
    with open_cvat_pool() as opened:
        yield opened
