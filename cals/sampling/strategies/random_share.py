"""A random share of every round: the safety net when a strategy's idea of informative is wrong.

Any strategy can be wrapped (option `random_share` of `create`). A strategy that misjudges the
pool (uncertainty chasing outliers at a cold start) then still gets a random sample of it each
round, and a strategy that is right loses only that share.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from cals.sampling.strategies.base import PoolStrategy, Strategy, Wrapper, order_scores
from cals.sampling.strategies.spec import option_float, option_int
from cals.sampling.strategies.uncertainty import Random


class RandomShare(Wrapper):
    """Of a round's k picks, r = round(share·k) (half up) follow Random's order, the rest the base's.

    Order: the base's top k - r (the base plans a round of k - r), then the r random picks in
    Random's order (none among the base's picks), then every other frame in the base's order.
    """

    name = "random_share"

    def __init__(self, base: Strategy | PoolStrategy, *, share: float, seed: int = 0) -> None:
        super().__init__(base)
        self.share = option_float(base.name, "random_share", share, 0.0, 1.0)
        self.random = Random(seed=option_int(base.name, "random_seed", seed, 0))

    @property
    def components(self) -> list[Strategy]:
        own = super().components
        return own + [c for c in [self.random] if c.cache_id not in {o.cache_id for o in own}]

    @property
    def cache_id(self) -> str:
        return f"{self.base.cache_id}+random(share={self.share};seed={self.random.seed})"

    def random_count(self, k: int, n: int) -> int:
        """r: the random picks of a round of k from a pool of n."""
        return int(np.floor(self.share * min(k, n) + 0.5))

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        r_scores = np.asarray(per_image[self.random.cache_id], dtype=np.float64)
        n = len(r_scores)
        r = self.random_count(k, n)
        own = min(k, n) - r
        base = self.base_scores(features, per_image, k=own, labelled=labelled)
        by_base = np.argsort(-base, kind="stable")
        taken = np.zeros(n, dtype=bool)
        taken[by_base[:own]] = True
        by_random = np.argsort(-r_scores, kind="stable")
        extra = by_random[~taken[by_random]][:r]
        taken[extra] = True
        return order_scores(np.concatenate([by_base[:own], extra, by_base[~taken[by_base]]]))


def picked_at_random(strategy: Strategy | PoolStrategy, picks: list[str], *, k: int, n: int) -> list[str]:
    """The picks of a round of `k` from `n` unused frames that followed Random's order: all of a
    Random round, a RandomShare's last r; an unbiased sample of the pool, so the loop report
    measures the served model's accuracy on them."""
    if isinstance(strategy, Random):
        return list(picks)
    if isinstance(strategy, RandomShare):
        r = min(strategy.random_count(k, n), len(picks))
        return list(picks[len(picks) - r:]) if r else []
    return []
