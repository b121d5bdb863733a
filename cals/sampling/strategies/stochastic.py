"""Stochastic batches: draw a round's frames in proportion to their rank instead of taking the top k.

Top-k of a per-frame score fills a round with one kind of frame: least confidence took 50 % bending
people from a pool with 15 % (docs/label-efficiency.md). Kirsch et al. ("Stochastic batch
acquisition", TMLR 2023) draw the batch instead, and find it as good as top-k or better, at no cost.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from cals.sampling.strategies.base import PoolStrategy, Strategy, Wrapper, order_scores
from cals.sampling.strategies.spec import option_float, option_int


class Stochastic(Wrapper):
    """Softrank sampling: frames drawn without replacement with probability ∝ rank^-β in the base's order.

    Drawn with Gumbel-top-k (the order of -β·log(rank) + Gumbel noise), so one sort gives the whole
    ranking. β = 0 is uniform random; a large β approaches the base's top k; Kirsch et al. use β = 1.
    The noise is seeded by `seed` and the size of the unlabelled pool, so each round draws afresh
    and a run repeats exactly.
    """

    name = "stochastic"

    def __init__(self, base: Strategy | PoolStrategy, *, beta: float, seed: int = 0) -> None:
        super().__init__(base)
        self.beta = option_float(base.name, "stochastic", beta, 0.0, 1e6)
        self.seed = option_int(base.name, "stochastic_seed", seed, 0)

    @property
    def cache_id(self) -> str:
        return f"{self.base.cache_id}+softrank(beta={self.beta};seed={self.seed})"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        base = self.base_scores(features, per_image, k=k, labelled=labelled)
        n = len(base)
        ranks = np.empty(n)
        ranks[np.argsort(-base, kind="stable")] = np.arange(1, n + 1)
        noise = np.random.default_rng([self.seed, n]).gumbel(size=n)
        return order_scores(np.argsort(-(noise - self.beta * np.log(ranks)), kind="stable"))
