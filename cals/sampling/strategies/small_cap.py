"""A cap on frames people can barely label: rounds take at most a share of frames with only tiny people.

Uncertainty is highest where the pixels say least: a person a few dozen pixels tall has spine points
nobody can place either, so an uncertainty order spends labels on corrections that teach little.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from cals.sampling.strategies.base import Observation, PoolStrategy, Strategy, Wrapper, box_scale, order_scores
from cals.sampling.strategies.spec import option_float


class LargestPerson(Strategy):
    """The frame's largest person, in px (sqrt of the box area); 0 without people. A measure, not a ranking."""

    name = "largest_person"

    @property
    def cache_id(self) -> str:
        return "largest_person"

    def score(self, obs: Observation) -> float:
        return max((box_scale(p) for p in obs.people), default=0.0)


class SmallCap(Wrapper):
    """Of a round's k picks, at most round(share·k) are frames whose largest person is under `min_box` px.

    Order: the base's, with the small frames beyond the first round(share·k) moved after every other frame.
    """

    name = "small_cap"

    def __init__(self, base: Strategy | PoolStrategy, *, min_box: float, share: float = 0.0) -> None:
        super().__init__(base)
        self.min_box = option_float(base.name, "min_box", min_box, 0.0, 1e5)
        self.share = option_float(base.name, "small_share", share, 0.0, 1.0)
        self.size = LargestPerson()

    @property
    def components(self) -> list[Strategy]:
        return [*super().components, self.size]

    @property
    def cache_id(self) -> str:
        return f"{self.base.cache_id}+small_cap(min_box={self.min_box};share={self.share})"

    def pool_scores(self, features: np.ndarray, per_image: Mapping[str, np.ndarray], *, k: int,
                    labelled: np.ndarray | None = None) -> np.ndarray:
        order = np.argsort(-self.base_scores(features, per_image, k=k, labelled=labelled), kind="stable")
        small = np.asarray(per_image[self.size.cache_id], dtype=np.float64)[order] < self.min_box
        allowed = int(np.floor(self.share * k + 0.5))
        keep = ~small | (np.cumsum(small) <= allowed)
        return order_scores(np.concatenate([order[keep], order[~keep]]))
