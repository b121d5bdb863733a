"""Turn a pool's score table into the ranked list a round is made from (highest score first)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cals.sampling.scoring import ScoreTable
from cals.sampling.strategies import PoolStrategy, Strategy


@dataclass
class Ranked:
    rank: int  # 1 = label first
    name: str
    key: str
    score: float  # the ranking strategy's score
    scores: dict[str, float]  # every per-image strategy computed, by cache_id


def rank(table: ScoreTable, strategy: Strategy | PoolStrategy, *, k: int,
         exclude: set[str] | frozenset[str] = frozenset(), labelled: np.ndarray | None = None) -> list[Ranked]:
    """All pool frames not in `exclude` (frame names), best first; ties keep pool order.

    `k` is the round size: pool strategies (core-set, hybrid) plan their diversity for it.
    """
    keep = np.array([n not in exclude for n in table.names], dtype=bool)
    idx = np.flatnonzero(keep)
    per_image = {sid: np.asarray(v, float)[idx] for sid, v in table.scores.items()}
    if isinstance(strategy, PoolStrategy):
        feats = table.feature_matrix()
        score = strategy.pool_scores(feats[idx] if len(feats) else feats, per_image, k=k, labelled=labelled)
    else:
        score = per_image[strategy.cache_id]
    order = np.argsort(-np.asarray(score, float), kind="stable")
    return [Ranked(rank=r + 1, name=table.names[idx[i]], key=table.keys[idx[i]], score=float(score[i]),
                   scores={sid: float(v[i]) for sid, v in per_image.items()})
            for r, i in enumerate(order)]
