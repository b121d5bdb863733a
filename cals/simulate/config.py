"""What a simulation runs: data, budget, strategies, seeds, model — one JSON-able record.

The record is written next to the results; a resumed run must use the same one, so results of
different set-ups never mix in one folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cals.errors import CalsError
from cals.training.labelled_set import DEFAULT_VAL_FRACTION
from cals.training.pool_set import PoolTraining
from cals.training.promotion import DEFAULT_CONFIDENCE, DEFAULT_MARGIN, DEFAULT_METRIC

# A pool skewed like real data (bent and lying people are rare); a balanced test set.
POOL_MIX = "upright=0.8,bending=0.15,lying=0.05"
TEST_MIX = "upright=0.34,bending=0.33,lying=0.33"
CONFIG_FILE = "simulation.json"
TRAIN_FROM = ("current", "base")
ADDABLE = ("strategies", "seeds", "survey")  # a resumed run may change these; the rest must match
POOL_PARTS = ("pool", "pseudo")  # a campaign "STRATEGY@pool+pseudo" also trains on the pool set


@dataclass
class SimulationConfig:
    """Defaults are `make demo`'s configuration: about 8 minutes on 2 CPU cores."""
    out: str
    pool: str | None = None  # COCO keypoints folder; None: generate `pool_images` with `pool_mix`
    test: str | None = None  # held-out COCO folder; None: generate `test_images` with `test_mix`
    pool_images: int = 300
    test_images: int = 100
    pool_mix: str = POOL_MIX
    test_mix: str = TEST_MIX
    max_people: int = 1
    initial: int = 20  # labelled images before round 1 (the same random frames for every strategy)
    batch: int = 20  # images labelled per round
    rounds: int = 2
    # random order on human labels alone (the former default) against random order with the pool set (the pool's
    # labels and pseudo-labels), the trainer's default (docs/label-efficiency.md)
    strategies: list[str] = field(default_factory=lambda: ["random", "random@pool+pseudo"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # 3: the fewest that give a verdict
    survey: list[str] = field(default_factory=list)  # more strategies, run on the first seed only
    model: str = "cpu"
    base_iters: int = 800  # body-only base model, trained once per pool and cached
    round_iters: int = 100  # fine-tune per round
    batch_size: int | None = None  # training batch; None: the model config's
    # the promotion gate is the trainer's: labelled frames split by its rule (CALS_VAL_FRACTION), its
    # default metric, margin and confidence (CALS_PROMOTE_METRIC, _MARGIN, _CONFIDENCE)
    val_fraction: float = DEFAULT_VAL_FRACTION
    margin: float = DEFAULT_MARGIN
    metric: str = DEFAULT_METRIC
    confidence: float = DEFAULT_CONFIDENCE  # CALS_PROMOTE_CONFIDENCE: keep the model only when worse beyond noise
    train_from: str = "current"  # "current": fine-tune the served model (the trainer); "base": retrain from the base
    # the pool set of campaigns named STRATEGY@pool, @pseudo or @pool+pseudo (the trainer's CALS_PSEUDO_THRESHOLD,
    # CALS_HUMAN_SHARE); a campaign without "@" trains on human labels alone
    pseudo_threshold: float = PoolTraining.threshold
    human_share: float = PoolTraining.human_share

    def __post_init__(self) -> None:
        for name in ("initial", "batch", "rounds", "base_iters", "round_iters"):
            if getattr(self, name) < 1:
                raise CalsError(f"simulation {name} must be at least 1, got {getattr(self, name)}")
        if self.train_from not in TRAIN_FROM:
            raise CalsError(f"simulation train_from must be one of {TRAIN_FROM}, got {self.train_from!r}")
        if not 0 < self.val_fraction < 1:
            raise CalsError(f"simulation val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not self.strategies or not self.seeds:
            raise CalsError("a simulation needs at least one strategy and one seed")
        if "random" not in self.strategies:
            raise CalsError("include 'random' in the strategies: savings are measured against it")
        for name in self.strategies + self.survey:
            self.pool_training(name)
        if set(self.survey) & set(self.strategies):
            raise CalsError(f"a survey strategy is already among the strategies: {sorted(set(self.survey) & set(self.strategies))}")

    def pool_training(self, campaign: str) -> PoolTraining | None:
        """What of the pool a campaign trains on: None for "STRATEGY", the parts after "@" otherwise."""
        parts = split_campaign(campaign)[1]
        if not parts:
            return None
        return PoolTraining(labels="pool" in parts, pseudo="pseudo" in parts, threshold=self.pseudo_threshold,
                            human_share=self.human_share)

    def strategies_for(self, seed: int) -> list[str]:
        """Every seed runs `strategies`; the first also runs the survey's."""
        return self.strategies + (self.survey if seed == self.seeds[0] else [])

    @property
    def budget(self) -> int:
        return self.initial + self.batch * self.rounds

    def check_resume(self) -> None:
        """Refuse to continue a folder that was started with a different set-up. Strategies, seeds and
        the survey may change: each (strategy, seed) campaign is run alone, so adding one reuses the rest."""
        path = Path(self.out) / CONFIG_FILE
        now = asdict(self)
        if path.is_file():
            before = json.loads(path.read_text())
            diff = sorted(k for k in before.keys() | now.keys() if k not in ADDABLE and before.get(k) != now.get(k))
            if diff:
                raise CalsError(f"{self.out} holds a simulation with other settings ({', '.join(diff)}); "
                                "use another --out or the same options (only strategies, seeds and survey may change)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(now, indent=2))


def split_campaign(campaign: str) -> tuple[str, set[str]]:
    """("least_confidence", {"pool", "pseudo"}) of "least_confidence@pool+pseudo": the sampler's
    strategy spec, and what of the pool its training uses."""
    spec, at, extra = campaign.partition("@")
    parts = set(extra.split("+")) if at else set()
    if at and (not parts or parts - set(POOL_PARTS)):
        raise CalsError(f"{campaign!r}: after '@' come {' and/or '.join(POOL_PARTS)}, joined by '+' "
                        "(e.g. random@pool+pseudo)")
    return spec, parts
